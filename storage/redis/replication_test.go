package redis

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
	"rcsd/storage/storagetest"
)

// startMaster starts a redis-server that serves a replica's first sync
// at once (Redis 7 waits 5s by default for more replicas to join it).
func startMaster(t testing.TB) *server {
	t.Helper()
	return startServer(t, "--repl-diskless-sync-delay", "0")
}

// startReplica starts a redis-server replicating master and waits until
// the master counts it as a connected replica.
func startReplica(t testing.TB, master *server) *server {
	t.Helper()
	r := startServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	waitReplicas(t, master, 1)
	return r
}

// waitReplicas waits until master reports n replicas online.
func waitReplicas(t testing.TB, master *server, n int) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: master.Addr, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	want := "connected_slaves:" + strconv.Itoa(n)
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, want+"\r\n") && (n == 0 || strings.Contains(info, "state=online")) {
			// Online, and acknowledging: a replica just synced
			// may still be loading what it got.
			acks, err := c.Wait(context.Background(), n, 5*time.Second).Result()
			if err == nil && acks >= int64(n) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("master %s: want %s within 15s, have %v\n%s", master.Addr, want, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testMessage(id, key string) storage.Message {
	return storage.Message{ID: id, Recipient: "sip:rita@example.net", Sender: "sip:sam@example.net",
		Expires: time.Now().Add(time.Hour), DedupKeys: []string{key}, Body: []byte("hello " + id)}
}

// TestWaitReplicas: with WaitReplicas, PutMessage returns only once a
// replica has the message (it is readable there at once), and fails with
// ErrNotReplicated, after WaitTimeout, when no replica takes it; a retry
// of that message once a replica is back finds it stored and succeeds.
func TestWaitReplicas(t *testing.T) {
	master := startMaster(t)
	replica := startReplica(t, master)
	ctx := t.Context()
	prefix := freshPrefix()
	s := open(t, Options{Addrs: []string{master.Addr}, Prefix: prefix, WaitReplicas: 1, WaitTimeout: time.Second})

	onReplica := func(r *server, id string) bool {
		c := goredis.NewClient(&goredis.Options{Addr: r.Addr, Protocol: 2, DisableIdentity: true})
		defer c.Close()
		ok, err := c.HExists(ctx, s.recipientKeys("sip:rita@example.net")[0], id).Result()
		require.NoError(t, err)
		return ok
	}
	for i := range 20 {
		id := "m" + strconv.Itoa(i)
		dup, err := s.PutMessage(ctx, testMessage(id, "k"+id))
		require.NoError(t, err)
		require.Empty(t, dup)
		require.True(t, onReplica(replica, id), "WAIT returned before the replica had %s", id)
	}

	replica.Kill()
	start := time.Now()
	_, err := s.PutMessage(ctx, testMessage("lonely", "k-lonely"))
	require.ErrorIs(t, err, ErrNotReplicated)
	assert.Contains(t, err.Error(), "0 of 1 replicas")
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "waited WaitTimeout")
	assert.Less(t, time.Since(start), 5*time.Second)
	ms, err := s.PendingMessages(ctx, "sip:rita@example.net", 0)
	require.NoError(t, err)
	assert.Len(t, ms, 21, "the unreplicated message is on the primary, just not acknowledged")

	// A dedup hit waits too: the primary's earlier write is not
	// acknowledged until a replica has it.
	_, err = s.PutMessage(ctx, testMessage("lonely-retry", "k-lonely"))
	require.ErrorIs(t, err, ErrNotReplicated)

	fresh := startReplica(t, master)
	dup, err := s.PutMessage(ctx, testMessage("lonely-retry2", "k-lonely"))
	require.NoError(t, err)
	assert.Equal(t, "lonely", dup)
	assert.True(t, onReplica(fresh, "lonely"))

	// Without the option nothing waits: the same primary, no replica.
	fresh.Kill()
	plain := open(t, Options{Addrs: []string{master.Addr}, Prefix: prefix})
	start = time.Now()
	_, err = plain.PutMessage(ctx, testMessage("plain", "k-plain"))
	require.NoError(t, err)
	assert.Less(t, time.Since(start), time.Second)
}

// TestWaitReplicasAfterScriptFlush: the WAIT pipeline falls back to EVAL
// when the server lost its script cache (restart, failover).
func TestWaitReplicasAfterScriptFlush(t *testing.T) {
	master := startMaster(t)
	startReplica(t, master)
	ctx := t.Context()
	s := open(t, Options{Addrs: []string{master.Addr}, Prefix: freshPrefix(), WaitReplicas: 1, WaitTimeout: MaxWaitTimeout})
	_, err := s.PutMessage(ctx, testMessage("a", "ka"))
	require.NoError(t, err)
	require.NoError(t, s.rdb.ScriptFlush(ctx).Err())
	_, err = s.PutMessage(ctx, testMessage("b", "kb"))
	require.NoError(t, err)
	dup, err := s.PutMessage(ctx, testMessage("c", "ka"))
	require.NoError(t, err)
	assert.Equal(t, "a", dup)
	n, err := s.CountMessages(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

// TestConformanceWaitReplicas runs the suite with WAIT on every
// PutMessage.
func TestConformanceWaitReplicas(t *testing.T) {
	master := startMaster(t)
	startReplica(t, master)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, Options{Addrs: []string{master.Addr}, Prefix: freshPrefix(), WaitReplicas: 1, WaitTimeout: MaxWaitTimeout})
	})
}

func TestWaitReplicasInvalid(t *testing.T) {
	ctx := t.Context()
	for name, o := range map[string]Options{
		"negative":               {Addrs: []string{"127.0.0.1:1"}, WaitReplicas: -1},
		"too long":               {Addrs: []string{"127.0.0.1:1"}, WaitReplicas: 1, WaitTimeout: 5 * time.Second},
		"below 1ms":              {Addrs: []string{"127.0.0.1:1"}, WaitReplicas: 1, WaitTimeout: time.Microsecond},
		"cluster":                {Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, WaitReplicas: 1},
		"cluster=1 one":          {Addrs: []string{"127.0.0.1:1"}, Cluster: true, WaitReplicas: 1},
		"timeout below the wait": {Addrs: []string{"127.0.0.1:1"}, WaitReplicas: 1, WaitTimeout: time.Second, Timeout: time.Second},
		"timeout below 10ms":     {Addrs: []string{"127.0.0.1:1"}, Timeout: time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(ctx, o)
			assert.ErrorIs(t, err, storage.ErrInvalid)
		})
	}
	for url, want := range map[string]string{
		"redis://h:1?wait_replicas=x":                   "not a count",
		"redis://h:1?wait_replicas=-1":                  "not a count",
		"redis://h:1?wait_replicas=1&wait_timeout=3s":   "1ms to 2s",
		"redis://h:1?wait_replicas=1&wait_timeout=0":    "1ms to 2s",
		"redis://h:1?wait_replicas=1&wait_timeout=soon": "1ms to 2s",
		"redis://h:1?wait_timeout=100ms":                "without wait_replicas",
		"redis://a:1,b:2?wait_replicas=1":               "Cluster",
		"redis://a:1?cluster=1&wait_replicas=1":         "Cluster",
	} {
		_, err := ParseURL(url)
		require.ErrorIs(t, err, storage.ErrInvalid, url)
		assert.Contains(t, err.Error(), want, url)
	}
	o, err := ParseURL("redis://s1,s2/0?master=rcsd&wait_replicas=1&wait_timeout=250ms")
	require.NoError(t, err)
	assert.Equal(t, Options{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "rcsd", WaitReplicas: 1, WaitTimeout: 250 * time.Millisecond}, o)
	o, err = ParseURL("redis://h:1?wait_replicas=2")
	require.NoError(t, err)
	assert.Equal(t, 2, o.WaitReplicas)
	assert.Zero(t, o.WaitTimeout, "Open applies DefaultWaitTimeout")
}
