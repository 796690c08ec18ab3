package migrate

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
	"rcsd/storage/bolt"
	"rcsd/storage/memory"
)

func TestCopy(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 10, 0, 0, 123, time.UTC)
	src := memory.New()
	defer src.Close()
	require.NoError(t, src.PutSubscribers(ctx, []storage.Subscriber{
		{IMPI: "alice@rcs.local", IMPUs: []string{"sip:alice@rcs.local", "tel:+8613800000001"}, Realm: "rcs.local", HA1MD5: "0123"},
		{IMPI: "native@rcs.local", IMPUs: []string{"sip:native@rcs.local"}, Realm: "rcs.local", K: make([]byte, 16), OPc: make([]byte, 16), AMF: []byte{0x80, 0}},
	}))
	for range 42 {
		_, err := src.NextSQN(ctx, "native@rcs.local", 0)
		require.NoError(t, err)
	}
	live := storage.Binding{AOR: "sip:alice@rcs.local", Contact: "sip:alice@192.0.2.1:5060", CallID: "c1", CSeq: 2, Expires: now.Add(time.Hour),
		Params: `+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"`, Transport: "udp", Source: "192.0.2.1:5060", RegisteredAt: now}
	stale := storage.Binding{AOR: "sip:alice@rcs.local", Contact: "sip:alice@192.0.2.2:5060", CallID: "c2", CSeq: 1, Expires: now.Add(-time.Minute), RegisteredAt: now}
	_, err := src.UpdateBindings(ctx, "sip:alice@rcs.local", time.Time{}, func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{live, stale}, nil
	})
	require.NoError(t, err)
	m := storage.Message{ID: "0001", Recipient: "sip:bob@rcs.local", Sender: "sip:alice@rcs.local", DedupKeys: []string{"mid:x"},
		Received: now, Expires: now.Add(7 * 24 * time.Hour), Headers: []string{"Content-Type: message/cpim"}, Body: []byte("hi")}
	_, err = src.PutMessage(ctx, m)
	require.NoError(t, err)
	m.Attempts, m.NextAttempt = 3, now.Add(time.Minute)
	require.NoError(t, src.UpdateMessage(ctx, m))

	dst, err := bolt.Open(t.TempDir(), bolt.Options{})
	require.NoError(t, err)
	defer dst.Close()
	c, err := Copy(ctx, src, dst)
	require.NoError(t, err)
	assert.Equal(t, Counts{Subscribers: 2, AORs: 1, Bindings: 2, Messages: 1}, c)

	sub, err := dst.SubscriberByIMPU(ctx, "tel:+8613800000001")
	require.NoError(t, err)
	assert.Equal(t, "alice@rcs.local", sub.IMPI)
	nat, err := dst.SubscriberByIMPI(ctx, "native@rcs.local")
	require.NoError(t, err)
	assert.Equal(t, uint64(42), nat.SQN, "the AKA sequence number does not go back")
	bs, err := dst.Bindings(ctx, "sip:alice@rcs.local", time.Time{})
	require.NoError(t, err)
	assert.Equal(t, []storage.Binding{live, stale}, bs)
	ms, err := dst.PendingMessages(ctx, "sip:bob@rcs.local", 0)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	assert.Equal(t, m, ms[0])
	dup, err := dst.PutMessage(ctx, storage.Message{ID: "0002", Recipient: "sip:bob@rcs.local", DedupKeys: []string{"mid:x"}, Expires: now.Add(time.Hour)})
	require.NoError(t, err)
	assert.Equal(t, "0001", dup, "dedup keys of stored messages come along")
	due, err := dst.DueRetries(ctx, time.Now(), 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"sip:bob@rcs.local"}, due, "the target's first sweep looks at every recipient")

	_, err = Copy(ctx, src, dst)
	assert.ErrorIs(t, err, ErrNotEmpty, "never merges")
}
