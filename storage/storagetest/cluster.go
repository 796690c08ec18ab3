package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
)

var clusterTests = []test{
	{"Nodes", testNodes},
	{"NodeInvalid", testNodeInvalid},
	{"Lease", testLease},
	{"LeaseExpires", testLeaseExpires},
}

func testNodes(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	got, err := s.Nodes(ctx, now)
	require.NoError(t, err)
	assert.Empty(t, got)

	require.NoError(t, s.Heartbeat(ctx, storage.Node{ID: "n2", Address: "127.0.0.1:5062", Expires: now.Add(10 * time.Second)}))
	require.NoError(t, s.Heartbeat(ctx, storage.Node{ID: "n1", Address: "127.0.0.1:5061", Expires: now.Add(5 * time.Second)}))
	got, err = s.Nodes(ctx, now)
	require.NoError(t, err)
	assert.Equal(t, []storage.Node{
		{ID: "n1", Address: "127.0.0.1:5061", Expires: now.Add(5 * time.Second)},
		{ID: "n2", Address: "127.0.0.1:5062", Expires: now.Add(10 * time.Second)},
	}, got, "ID order")

	// A heartbeat replaces the record (a restarted node on a new port).
	require.NoError(t, s.Heartbeat(ctx, storage.Node{ID: "n1", Address: "127.0.0.1:6061", Expires: now.Add(20 * time.Second)}))
	got, err = s.Nodes(ctx, now.Add(10*time.Second))
	require.NoError(t, err)
	assert.Equal(t, []storage.Node{{ID: "n1", Address: "127.0.0.1:6061", Expires: now.Add(20 * time.Second)}}, got,
		"n2 is not alive at its Expires")
	got, err = s.Nodes(ctx, now.Add(30*time.Second))
	require.NoError(t, err)
	assert.Empty(t, got)
}

func testNodeInvalid(t *testing.T, s storage.Store) {
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	assert.ErrorIs(t, s.Heartbeat(ctx, storage.Node{Address: "127.0.0.1:5060", Expires: exp}), storage.ErrInvalid)
	assert.ErrorIs(t, s.Heartbeat(ctx, storage.Node{ID: "n1", Expires: exp}), storage.ErrInvalid)
	_, err := s.Lease(ctx, "", "n1", time.Now(), time.Second)
	assert.ErrorIs(t, err, storage.ErrInvalid)
	_, err = s.Lease(ctx, "k", "", time.Now(), time.Second)
	assert.ErrorIs(t, err, storage.ErrInvalid)
}

func testLease(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := time.Now()
	take := func(key, owner string) bool {
		t.Helper()
		ok, err := s.Lease(ctx, key, owner, now, time.Minute)
		require.NoError(t, err)
		return ok
	}
	assert.True(t, take("drain:sip:bob@rcs.local", "n1"))
	assert.False(t, take("drain:sip:bob@rcs.local", "n2"), "held by n1")
	assert.True(t, take("drain:sip:bob@rcs.local", "n1"), "renewal")
	assert.True(t, take("drain:{odd}key", "n2"), "another key is independent")

	require.NoError(t, s.Release(ctx, "drain:sip:bob@rcs.local", "n2"))
	assert.False(t, take("drain:sip:bob@rcs.local", "n2"), "a release by another owner does nothing")
	require.NoError(t, s.Release(ctx, "drain:sip:bob@rcs.local", "n1"))
	assert.True(t, take("drain:sip:bob@rcs.local", "n2"), "released")
	require.NoError(t, s.Release(ctx, "never-taken", "n1"))
}

// Leases expire on their own (a node that died holding one); Redis uses
// its own clock, so this runs in real time.
func testLeaseExpires(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ok, err := s.Lease(ctx, "k", "n1", time.Now(), time.Second) // long enough for a loaded CI machine
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.Lease(ctx, "k", "n2", time.Now(), time.Minute)
	require.NoError(t, err)
	require.False(t, ok)
	time.Sleep(1200 * time.Millisecond)
	ok, err = s.Lease(ctx, "k", "n2", time.Now(), time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "n1's lease expired")
}
