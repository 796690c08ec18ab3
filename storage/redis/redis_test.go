package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
	"rcsd/storage/storagetest"
)

// prefixes hands every store of a shared server a fresh key prefix, so
// that subtests start empty without a FLUSHALL (which Cluster would need
// on every node).
var prefixes atomic.Int64

func freshPrefix() string { return fmt.Sprintf("t%d:", prefixes.Add(1)) }

func open(t testing.TB, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := startServer(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, Options{Addrs: []string{srv.Addr}, Prefix: freshPrefix()})
	})
}

// TestConformanceCluster runs the suite on a three-node Redis Cluster,
// where the indexes are updated after the per-user keys.
func TestConformanceCluster(t *testing.T) {
	addrs := startCluster(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, Options{Addrs: addrs, Prefix: freshPrefix()})
	})
}

// dirPrefix maps a suite's "directory" to a key prefix: reopening the
// same directory is a new client on the same data.
func dirPrefix(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return "p" + hex.EncodeToString(h[:6]) + ":"
}

func TestPersistence(t *testing.T) {
	srv := startServer(t)
	reopen := func(t *testing.T, dir string) storage.Store {
		return open(t, Options{Addrs: []string{srv.Addr}, Prefix: dirPrefix(dir)})
	}
	storagetest.RunPersistence(t, reopen)
	storagetest.RunMessagePersistence(t, reopen)
}

func TestPassword(t *testing.T) {
	srv := startServer(t, "--requirepass", "s3cret")
	ctx := t.Context()

	_, err := Open(ctx, Options{Addrs: []string{srv.Addr}, Password: "wrong"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), srv.Addr)
	assert.Regexp(t, `WRONGPASS|invalid password`, err.Error())
	assert.NotContains(t, err.Error(), "wrong\"", "the password is not repeated")

	_, err = Open(ctx, Options{Addrs: []string{srv.Addr}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NOAUTH")

	s := open(t, Options{Addrs: []string{srv.Addr}, Password: "s3cret"})
	require.NoError(t, s.Ping(ctx))
	require.NoError(t, s.PutSubscribers(ctx, []storage.Subscriber{{IMPI: "a@x", IMPUs: []string{"sip:a@x"}}}))
}

func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, err := Open(ctx, Options{Addrs: []string{addr}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "redis: connecting to "+addr)
	assert.Contains(t, err.Error(), "refused")
}

func TestPingWhenDown(t *testing.T) {
	srv := startServer(t)
	s := open(t, Options{Addrs: []string{srv.Addr}})
	require.NoError(t, s.Ping(t.Context()))
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.Eventually(t, func() bool { return s.Ping(ctx) != nil }, 5*time.Second, 20*time.Millisecond)
	_, err := s.SubscriberByIMPI(ctx, "a@x")
	require.Error(t, err)
	assert.NotErrorIs(t, err, storage.ErrNotFound)
}

// TestStalledServer: a server that stops answering but keeps its
// connections open (SIGSTOP) fails each operation after Options.Timeout,
// single commands, pipelines, scripts and WATCH/MULTI alike — not after
// go-redis's retries of its 3 s read timeout — and works again when it
// moves. Single and Cluster (where WATCH/MULTI runs on a node's client).
func TestStalledServer(t *testing.T) {
	for _, mode := range []string{"single", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var servers []*server
			var opts Options
			if mode == "single" {
				servers = []*server{startServer(t)}
				opts = Options{Addrs: []string{servers[0].Addr}}
			} else {
				servers = startClusterWith(t, "", func() []string { return nil })
				opts = Options{Addrs: []string{servers[0].Addr, servers[1].Addr, servers[2].Addr}}
			}
			opts.Prefix, opts.Timeout = freshPrefix(), 300*time.Millisecond
			s := open(t, opts)
			ctx := t.Context()
			const aor = "sip:stall@example.net"
			exp := time.Now().Add(time.Hour)
			require.NoError(t, s.PutSubscribers(ctx, []storage.Subscriber{{IMPI: "a@x", IMPUs: []string{"sip:a@x"}}}))
			ops := map[string]func() error{
				"get": func() error { _, err := s.SubscriberByIMPI(ctx, "a@x"); return err },
				"pipeline": func() error {
					_, err := storage.BindingsOf(ctx, s, []string{aor, "sip:other@example.net"}, time.Now())
					return err
				},
				"script": func() error {
					_, err := s.PutMessage(ctx, storage.Message{ID: fmt.Sprintf("m%d", prefixes.Add(1)), Recipient: aor, Expires: exp})
					return err
				},
				"watch": func() error {
					_, err := s.UpdateBindings(ctx, aor, time.Now(), func([]storage.Binding) ([]storage.Binding, error) {
						return []storage.Binding{{AOR: aor, Contact: "sip:stall@192.0.2.1", Expires: exp}}, nil
					})
					return err
				},
			}
			for name, op := range ops {
				require.NoError(t, op(), name)
			}
			for _, srv := range servers {
				require.NoError(t, srv.cmd.Process.Signal(syscall.SIGSTOP))
			}
			for name, op := range ops {
				start := time.Now()
				err := op()
				took := time.Since(start)
				require.Error(t, err, name)
				var ne net.Error
				assert.True(t, errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout(), "%s: %v", name, err)
				assert.Less(t, took, 2*time.Second, "%s: about one Timeout (300ms), took %v", name, took)
			}
			for _, srv := range servers {
				require.NoError(t, srv.cmd.Process.Signal(syscall.SIGCONT))
			}
			for name, op := range ops {
				require.Eventually(t, func() bool { return op() == nil }, 5*time.Second, 50*time.Millisecond, name)
			}
		})
	}
}

// TestPutSubscribersLargeBatch: a subscriber import of 50 000 in one
// atomic batch completes. Done with WATCH it took minutes (Redis's WATCH
// is quadratic in its keys: 100 000 subscribers, 216 s).
func TestPutSubscribersLargeBatch(t *testing.T) {
	srv := startServer(t)
	s := open(t, Options{Addrs: []string{srv.Addr}, Prefix: freshPrefix()})
	const n = 50000
	subs := make([]storage.Subscriber, n)
	for i := range subs {
		subs[i] = storage.Subscriber{IMPI: fmt.Sprintf("bulk%d@ims.example", i),
			IMPUs: []string{fmt.Sprintf("sip:bulk%d@ims.example", i), fmt.Sprintf("tel:+86138%08d", i)}}
	}
	ctx := t.Context()
	start := time.Now()
	require.NoError(t, s.PutSubscribers(ctx, subs))
	t.Logf("%d subscribers in %v", n, time.Since(start).Round(time.Millisecond))
	// Again: every one replaced, its identities released and claimed again.
	require.NoError(t, s.PutSubscribers(ctx, subs))
	count, err := s.CountSubscribers(ctx)
	require.NoError(t, err)
	assert.Equal(t, n, count)
	got, err := s.SubscriberByIMPU(ctx, "tel:+8613800012345")
	require.NoError(t, err)
	assert.Equal(t, "bulk12345@ims.example", got.IMPI)
}

// TestBackstopTTL checks that the keys Redis may expire by itself carry a
// TTL Retention past their data's expiry.
func TestBackstopTTL(t *testing.T) {
	srv := startServer(t)
	ctx := t.Context()
	s := open(t, Options{Addrs: []string{srv.Addr}, Prefix: freshPrefix(), Retention: time.Minute})
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	const aor = "sip:alice@example.net"
	_, err := s.UpdateBindings(ctx, aor, time.Now(), func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{{AOR: aor, Contact: "sip:alice@192.0.2.1", Expires: exp}}, nil
	})
	require.NoError(t, err)
	at, err := s.rdb.PExpireTime(ctx, s.aorKey(aor)).Result()
	require.NoError(t, err)
	assert.Equal(t, exp.Add(time.Minute).UnixMilli(), at.Milliseconds())

	_, err = s.PutMessage(ctx, storage.Message{ID: "1", Recipient: aor, Expires: exp, DedupKeys: []string{"k"}})
	require.NoError(t, err)
	for _, k := range s.recipientKeys(aor) {
		at, err := s.rdb.PExpireTime(ctx, k).Result()
		require.NoError(t, err)
		assert.Equal(t, backstop(exp.Add(time.Minute)).UnixMilli(), at.Milliseconds(), k, "rounded up to the hour")
	}
	// A binding that expired long ago on Redis's clock still waits
	// Retention for a sweep.
	_, err = s.UpdateBindings(ctx, aor, time.Time{}, func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{{AOR: aor, Contact: "sip:alice@192.0.2.1", Expires: exp.AddDate(-10, 0, 0)}}, nil
	})
	require.NoError(t, err)
	ttl, err := s.rdb.PTTL(ctx, s.aorKey(aor)).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 50*time.Second)
}

func TestKeysShareSlots(t *testing.T) {
	s := &Store{prefix: DefaultPrefix}
	for _, r := range []string{"sip:bob@example.net", "", "sip:{odd}@x", "}x", "tel:+1555"} {
		ks := s.recipientKeys(r)
		for _, k := range ks[1:] {
			assert.Equal(t, slot(ks[0]), slot(k), "%q: %q and %q", r, ks[0], k)
		}
	}
	assert.Equal(t, slot(s.subKey("a@x")), slot(s.impuKey("sip:b@x")))
	assert.Equal(t, slot(s.subKey("a@x")), slot(DefaultPrefix+"{subscribers}:index"))
}

// slot is the hash tag part of a key, which decides its Cluster slot.
func slot(key string) string {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func TestOpenInvalid(t *testing.T) {
	ctx := t.Context()
	for name, o := range map[string]Options{
		"no address":      {},
		"brace in prefix": {Addrs: []string{"127.0.0.1:1"}, Prefix: "a{b}:"},
		"cluster with db": {Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, DB: 3},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(ctx, o)
			assert.ErrorIs(t, err, storage.ErrInvalid)
		})
	}
}

func TestParseURL(t *testing.T) {
	cases := []struct {
		url     string
		want    Options
		tls     bool
		wantErr string
	}{
		{url: "redis://localhost:6379", want: Options{Addrs: []string{"localhost:6379"}}},
		{url: "redis://localhost", want: Options{Addrs: []string{"localhost:6379"}}},
		{url: "redis://:pw@10.0.0.1:7000/2", want: Options{Addrs: []string{"10.0.0.1:7000"}, Password: "pw", DB: 2}},
		{url: "redis://rcsd:p%40ss@h:1/0", want: Options{Addrs: []string{"h:1"}, Username: "rcsd", Password: "p@ss"}},
		{url: "redis://[2001:db8::1]:6380", want: Options{Addrs: []string{"[2001:db8::1]:6380"}}},
		{url: "redis://a:1,b:2,c:3", want: Options{Addrs: []string{"a:1", "b:2", "c:3"}}},
		{url: "redis://a:1?cluster=1", want: Options{Addrs: []string{"a:1"}, Cluster: true}},
		{url: "redis://s1,s2:26380/1?master=mymaster", want: Options{Addrs: []string{"s1:26379", "s2:26380"}, MasterName: "mymaster", DB: 1}},
		{url: "redis://h:1?prefix=prod:", want: Options{Addrs: []string{"h:1"}, Prefix: "prod:"}},
		{url: "rediss://u:p@redis.example.net:6380", want: Options{Addrs: []string{"redis.example.net:6380"}, Username: "u", Password: "p"}, tls: true},
		{url: "http://h:1", wantErr: "scheme"},
		{url: "redis:h:1", wantErr: "want redis://host:port"},
		{url: "redis://", wantErr: "no host"},
		{url: "redis://a:1,,b:2", wantErr: "empty address"},
		{url: "redis://h:99999", wantErr: "bad port"},
		{url: "redis://h:1/x", wantErr: "not a number"},
		{url: "redis://a:1,b:2/3", wantErr: "only database 0"},
		{url: "redis://h:1?cluster=maybe", wantErr: "not a boolean"},
		{url: "redis://h:1?master=m&cluster=1", wantErr: "exclude"},
		{url: "redis://h:1?pool=3", wantErr: `unknown option "pool"`},
		{url: "redis://u:secret@h:1/x", wantErr: "not a number"},
		{url: "redis://h:1?timeout=500ms", want: Options{Addrs: []string{"h:1"}, Timeout: 500 * time.Millisecond}},
		{url: "redis://h:1?timeout=5ms", wantErr: "10ms or more"},
		{url: "redis://h:1?timeout=soon", wantErr: "not a duration"},
		{url: "redis://h:1?tls_ca=/etc/ssl/ca.pem", wantErr: "need rediss://"},
		{url: "rediss://h:1?tls_cert=/c.pem", wantErr: "go together"},
		{url: "rediss://h:1?tls_ca=/nonexistent/ca.pem", wantErr: "tls_ca: open /nonexistent/ca.pem"},
		{url: "rediss://h:1?tls_ca=/dev/null", wantErr: "no PEM certificate"},
		{url: "rediss://h:1?tls_cert=/nonexistent/c.pem&tls_key=/nonexistent/k.pem", wantErr: "tls_cert/tls_key"},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			got, err := ParseURL(tc.url)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, storage.ErrInvalid)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.NotContains(t, err.Error(), "secret")
				return
			}
			require.NoError(t, err)
			if tc.tls {
				require.NotNil(t, got.TLS)
				host := tc.want.Addrs[0][:len(tc.want.Addrs[0])-5]
				assert.Equal(t, host, got.TLS.ServerName)
				got.TLS = nil
			} else {
				assert.Nil(t, got.TLS)
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCloseThenErrClosed(t *testing.T) {
	srv := startServer(t)
	s := open(t, Options{Addrs: []string{srv.Addr}, Prefix: freshPrefix()})
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	ctx := t.Context()
	_, err := s.PutMessage(ctx, storage.Message{ID: "1", Recipient: "sip:a@x"})
	assert.ErrorIs(t, err, storage.ErrClosed)
	_, err = s.NextSQN(ctx, "a", 0)
	assert.ErrorIs(t, err, storage.ErrClosed)
	_, err = s.PendingRecipients(ctx, "", 0)
	assert.ErrorIs(t, err, storage.ErrClosed)
}
