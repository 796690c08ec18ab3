package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"rcsd/storage/memory"
)

// Two registries on one store see each other after a beat, and a node
// that stops beating is gone once its TTL has passed: its bindings are
// then not held by anyone.
func TestRegistry(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	reg := prometheus.NewRegistry()
	n1 := New("n1", "", 9*time.Second, store, zap.NewNop(), reg)
	n1.SetAddress("127.0.0.1:5061")
	n2 := New("n2", "127.0.0.1:5062", 9*time.Second, store, zap.NewNop(), nil)
	n1.now, n2.now = clock, clock

	assert.True(t, n1.Holds(""), "a binding recorded before nodes were")
	assert.True(t, n1.Holds("n1"), "itself, before any beat")
	assert.False(t, n1.Holds("n2"))
	require.NoError(t, n1.Beat(ctx))
	require.NoError(t, n2.Beat(ctx))
	require.NoError(t, n1.Beat(ctx))
	addr, ok := n1.Address("n2")
	assert.True(t, ok)
	assert.Equal(t, "127.0.0.1:5062", addr)
	addr, ok = n2.Address("n1")
	assert.True(t, ok)
	assert.Equal(t, "127.0.0.1:5061", addr)
	assert.ElementsMatch(t, []string{"n1", "n2"}, n1.Alive())
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1)
	assert.Equal(t, 2.0, mfs[0].GetMetric()[0].GetGauge().GetValue(), "rcsd_cluster_nodes")

	// n2 dies: n1 keeps beating, n2's record lapses even in n1's cached view.
	now = now.Add(6 * time.Second)
	require.NoError(t, n1.Beat(ctx))
	assert.True(t, n1.Holds("n2"), "within its TTL")
	now = now.Add(4 * time.Second)
	assert.False(t, n1.Holds("n2"), "past its TTL, before n1's next beat")
	require.NoError(t, n1.Beat(ctx))
	assert.False(t, n1.Holds("n2"))
	assert.Equal(t, []string{"n1"}, n1.Alive())
	assert.False(t, n1.Holds("n9"), "a node never seen")
}

// A failing store keeps the last view: live nodes stay reachable until
// their recorded expiry.
func TestRegistryStoreDown(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	n1 := New("n1", "a:1", 9*time.Second, store, zap.NewNop(), nil)
	n2 := New("n2", "b:2", 9*time.Second, store, zap.NewNop(), nil)
	require.NoError(t, n2.Beat(ctx))
	require.NoError(t, n1.Beat(ctx))
	require.NoError(t, store.Close())
	assert.Error(t, n1.Beat(ctx))
	assert.True(t, n1.Holds("n2"))
}
