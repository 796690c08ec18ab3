package pager

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"rcsd/registrar"
	"rcsd/storage"
	"rcsd/storage/memory"
)

// countingStore records the store calls a request makes: each is one
// round trip on Redis.
type countingStore struct {
	storage.Store
	mu    sync.Mutex
	calls []string
}

func (c *countingStore) note(name string) {
	c.mu.Lock()
	c.calls = append(c.calls, name)
	c.mu.Unlock()
}

func (c *countingStore) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

func (c *countingStore) Bindings(ctx context.Context, aor string, now time.Time) ([]storage.Binding, error) {
	c.note("Bindings " + aor)
	return c.Store.Bindings(ctx, aor, now)
}

func (c *countingStore) BindingsOf(ctx context.Context, aors []string, now time.Time) ([][]storage.Binding, error) {
	c.note("BindingsOf " + strings.Join(aors, " "))
	return storage.BindingsOf(ctx, c.Store, aors, now)
}

func (c *countingStore) PendingMessages(ctx context.Context, r string, limit int) ([]storage.Message, error) {
	c.note("PendingMessages " + r)
	return c.Store.PendingMessages(ctx, r, limit)
}

func (c *countingStore) PutMessage(ctx context.Context, m storage.Message) (string, error) {
	c.note("PutMessage " + m.Recipient)
	return c.Store.PutMessage(ctx, m)
}

func (c *countingStore) SubscriberByIMPU(ctx context.Context, impu string) (storage.Subscriber, error) {
	c.note("SubscriberByIMPU " + impu)
	return c.Store.SubscriberByIMPU(ctx, impu)
}

// A MESSAGE for an offline user costs two store round trips: one
// pipelined read of the sender's bindings (its flow check) and the
// recipient's under all its identities, then the write — the issue's
// budget for Redis is three. The subscriber lookup that names the
// recipient's identities is remembered (aliasCache).
func TestStoredMessageRoundTrips(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	t.Cleanup(func() { mem.Close() })
	store := &countingStore{Store: mem}
	require.NoError(t, mem.PutSubscribers(ctx, []storage.Subscriber{
		{IMPI: "bob@rcs.local", IMPUs: []string{"sip:bob@rcs.local", "tel:+8613900000002"}},
		{IMPI: "carol@rcs.local", IMPUs: []string{"sip:carol@rcs.local"}},
	}))
	now := time.Now()
	_, err := mem.UpdateBindings(ctx, "sip:alice@rcs.local", now, func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{{AOR: "sip:alice@rcs.local", Contact: "sip:alice@127.0.0.1:5555", CallID: "a", CSeq: 1,
			Expires: now.Add(time.Hour), Transport: "udp", Source: "127.0.0.1:5555"}}, nil
	})
	require.NoError(t, err)
	p := New(Options{Domain: "rcs.local"}, store, nil, zap.NewNop(), NewMetrics(prometheus.NewRegistry(), nil))
	t.Cleanup(p.Close)

	send := func(to, n string) int {
		raw := "MESSAGE sip:" + to + "@rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5555;branch=z9hG4bK-rt" + n + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@rcs.local>;tag=a" + n + "\r\nTo: <sip:" + to + "@rcs.local>\r\n" +
			"Call-ID: rt" + n + "@test\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
		msg, err := siplib.ParseMessage([]byte(raw))
		require.NoError(t, err)
		req := msg.(*siplib.Request)
		req.SetTransport("UDP")
		req.SetSource("127.0.0.1:5555")
		return p.ServeSIP(ctx, req).StatusCode
	}
	require.Equal(t, 202, send("bob", "1"))
	assert.Equal(t, []string{"SubscriberByIMPU sip:bob@rcs.local",
		"BindingsOf sip:alice@rcs.local sip:bob@rcs.local tel:+8613900000002", "PutMessage sip:bob@rcs.local"}, store.take(),
		"first message: aliases looked up")
	require.Equal(t, 202, send("bob", "2"))
	assert.Equal(t, []string{"BindingsOf sip:alice@rcs.local sip:bob@rcs.local tel:+8613900000002",
		"PutMessage sip:bob@rcs.local"}, store.take(), "the sender's and all the recipient's identities in one read")

	require.Equal(t, 202, send("carol", "3"))
	store.take()
	require.Equal(t, 202, send("carol", "4"))
	assert.Equal(t, []string{"BindingsOf sip:alice@rcs.local sip:carol@rcs.local", "PutMessage sip:carol@rcs.local"},
		store.take())
}

func (c *countingStore) ExpireMessages(ctx context.Context, now time.Time, limit int) ([]storage.Message, error) {
	c.note("ExpireMessages")
	return c.Store.ExpireMessages(ctx, now, limit)
}

func (c *countingStore) DueRetries(ctx context.Context, now time.Time, limit int) ([]string, error) {
	c.note("DueRetries")
	return c.Store.DueRetries(ctx, now, limit)
}

func (c *countingStore) PendingRecipients(ctx context.Context, after string, limit int) ([]string, error) {
	c.note("PendingRecipients")
	return c.Store.PendingRecipients(ctx, after, limit)
}

// A sweep reads the retry schedule, not every recipient: messages stored
// for offline users (their registration drains them) cost it nothing,
// however many. The rescan, every RescanInterval on one of the nodes
// sharing the store, still reads them all.
func TestSweepReadsOnlyDueRetries(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	t.Cleanup(func() { mem.Close() })
	store := &countingStore{Store: mem}
	now := time.Now()
	const offline = 500
	for i := range offline {
		_, err := mem.PutMessage(ctx, storage.Message{ID: fmt.Sprintf("%06d", i), Recipient: fmt.Sprintf("sip:u%d@rcs.local", i),
			Received: now, Expires: now.Add(time.Hour)})
		require.NoError(t, err)
	}
	p := New(Options{Domain: "rcs.local", RescanInterval: time.Hour}, store, nil, zap.NewNop(), NewMetrics(prometheus.NewRegistry(), nil))
	t.Cleanup(p.Close)
	p.lastRescan = now

	p.sweep(ctx)
	assert.Equal(t, []string{"ExpireMessages", "DueRetries"}, store.take())

	p.lastRescan = now.Add(-time.Hour)
	p.sweep(ctx)
	calls := store.take()
	reads := 0
	for _, c := range calls {
		if strings.HasPrefix(c, "PendingMessages ") {
			reads++
		}
	}
	assert.Equal(t, offline, reads, "the rescan looks at every recipient")
	assert.Equal(t, 1.0, testutil.ToFloat64(p.metrics.Rescans))
	t.Logf("store calls: sweep 2, rescan %d", len(calls))
	p.sweep(ctx)
	assert.Equal(t, []string{"ExpireMessages", "DueRetries"}, store.take(), "and not again until RescanInterval")

	other := New(Options{Domain: "rcs.local", RescanInterval: time.Hour, Node: "n2"}, store, nil, zap.NewNop(), NewMetrics(prometheus.NewRegistry(), nil))
	t.Cleanup(other.Close)
	other.lastRescan = now.Add(-time.Hour)
	other.sweep(ctx)
	assert.Equal(t, []string{"ExpireMessages", "DueRetries"}, store.take(), "one node per RescanInterval rescans")
}

// The second look a registration asks for, a sweep later, costs one read
// when nothing was stored meanwhile (no lease, no drain).
func TestRegistrationSecondLookCost(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	t.Cleanup(func() { mem.Close() })
	store := &countingStore{Store: mem}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	p := New(Options{Domain: "rcs.local", Now: now}, store, nil, zap.NewNop(), NewMetrics(prometheus.NewRegistry(), nil))
	t.Cleanup(p.Close)
	idle := func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.draining) == 0 }

	b := storage.Binding{AOR: "sip:bob@rcs.local", Contact: "sip:bob@127.0.0.1:5555", CallID: "b", CSeq: 1,
		Expires: now().Add(time.Hour), Transport: "udp", Source: "127.0.0.1:5555"}
	_, err := mem.UpdateBindings(ctx, b.AOR, now(), func([]storage.Binding) ([]storage.Binding, error) { return []storage.Binding{b}, nil })
	require.NoError(t, err)
	p.RegistrationChanged(registrar.Change{AOR: b.AOR, After: []storage.Binding{b}, At: now()})
	require.Eventually(t, idle, 2*time.Second, 5*time.Millisecond)
	store.take()

	clock.Add(int64(11 * time.Second)) // past SweepInterval (10s)
	p.lastRescan = now()
	p.sweep(ctx)
	require.Eventually(t, idle, 2*time.Second, 5*time.Millisecond)
	assert.Equal(t, []string{"ExpireMessages", "DueRetries", "PendingMessages sip:bob@rcs.local"}, store.take())
	p.sweep(ctx)
	assert.Equal(t, []string{"ExpireMessages", "DueRetries"}, store.take(), "once")
}
