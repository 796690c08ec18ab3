package storagetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
)

var messageTests = []test{
	{"PutPending", testMessagePutPending},
	{"Invalid", testMessageInvalid},
	{"Dedup", testMessageDedup},
	{"Update", testMessageUpdate},
	{"Delete", testMessageDelete},
	{"DeleteMany", testMessageDeleteMany},
	{"Expire", testMessageExpire},
	{"ExpireLimit", testMessageExpireLimit},
	{"Recipients", testMessageRecipients},
	{"NoAliasing", testMessageNoAliasing},
	{"ConcurrentPut", testMessageConcurrentPut},
	{"ConcurrentDedup", testMessageConcurrentDedup},
	{"RetrySchedule", testRetrySchedule},
	{"RetryConcurrent", testRetryConcurrent},
}

func message(recipient, id string, expires time.Time, keys ...string) storage.Message {
	return storage.Message{
		ID: id, Recipient: recipient, Sender: "sip:alice@example.net", DedupKeys: keys,
		Received: base.In(zone), Expires: expires.In(zone),
		Headers: []string{"Content-Type: message/cpim", "Conversation-ID: c1"},
		Body:    []byte("NS: imdn <urn:ietf:params:imdn>\r\n\r\nhello"),
	}
}

func putMessage(t *testing.T, s storage.Store, m storage.Message) {
	t.Helper()
	dup, err := s.PutMessage(t.Context(), m)
	require.NoError(t, err)
	require.Empty(t, dup)
}

func utcMessage(m storage.Message) storage.Message {
	m.Received, m.Expires, m.NextAttempt = m.Received.UTC(), m.Expires.UTC(), m.NextAttempt.UTC()
	return m
}

func ids(ms []storage.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func testMessagePutPending(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const bob, carol = "sip:bob@example.net", "sip:carol@example.net"
	later := base.Add(time.Hour)
	m2 := message(bob, "0002", later, "cid:x/1")
	putMessage(t, s, m2)
	m1 := message(bob, "0001", later)
	putMessage(t, s, m1)
	putMessage(t, s, message(bob, "0003", later))
	putMessage(t, s, message(carol, "0001", later))

	got, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"0001", "0002", "0003"}, ids(got), "ID order, not arrival order")
	assert.Equal(t, utcMessage(m2), got[1], "round trip, times in UTC with nanoseconds")
	got, err = s.PendingMessages(ctx, bob, 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"0001", "0002"}, ids(got))
	got, err = s.PendingMessages(ctx, "sip:nobody@example.net", 0)
	require.NoError(t, err)
	assert.Empty(t, got)
	n, err := s.CountMessages(ctx)
	require.NoError(t, err)
	assert.Equal(t, 4, n)
}

func testMessageInvalid(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.PutMessage(ctx, message("", "0001", base))
	assert.ErrorIs(t, err, storage.ErrInvalid)
	_, err = s.PutMessage(ctx, message("sip:bob@example.net", "", base))
	assert.ErrorIs(t, err, storage.ErrInvalid)
	putMessage(t, s, message("sip:bob@example.net", "0001", base))
	_, err = s.PutMessage(ctx, message("sip:bob@example.net", "0001", base))
	assert.ErrorIs(t, err, storage.ErrConflict)
	n, err := s.CountMessages(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

// A key known for the recipient makes a duplicate, before and after the
// first message's delivery, until its expiry; other recipients are not
// affected.
func testMessageDedup(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const bob = "sip:bob@example.net"
	exp := base.Add(time.Hour)
	putMessage(t, s, message(bob, "0001", exp, "cid:a/1", "mid:alice/m1"))
	dup, err := s.PutMessage(ctx, message(bob, "0002", exp, "mid:alice/m1"))
	require.NoError(t, err)
	assert.Equal(t, "0001", dup)
	putMessage(t, s, message("sip:carol@example.net", "0002", exp, "mid:alice/m1"))

	require.NoError(t, s.DeleteMessage(ctx, bob, "0001"))
	dup, err = s.PutMessage(ctx, message(bob, "0003", exp, "cid:a/1"))
	require.NoError(t, err)
	assert.Equal(t, "0001", dup, "still a duplicate after delivery")

	_, err = s.ExpireMessages(ctx, exp, 0)
	require.NoError(t, err)
	putMessage(t, s, message(bob, "0004", exp.Add(time.Hour), "cid:a/1"))
	got, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"0004"}, ids(got), "the key is forgotten after the first message's expiry")
}

func testMessageUpdate(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const bob = "sip:bob@example.net"
	m := message(bob, "0001", base.Add(time.Hour))
	putMessage(t, s, m)
	changed := m
	changed.Attempts, changed.NextAttempt = 3, base.Add(time.Minute).In(zone)
	changed.Body = []byte("other")
	require.NoError(t, s.UpdateMessage(ctx, changed))
	got, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	want := utcMessage(m)
	want.Attempts, want.NextAttempt = 3, base.Add(time.Minute).UTC()
	assert.Equal(t, want, got[0], "only Attempts and NextAttempt change")
	assert.ErrorIs(t, s.UpdateMessage(ctx, message(bob, "0009", base)), storage.ErrNotFound)
}

func testMessageDelete(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const bob = "sip:bob@example.net"
	putMessage(t, s, message(bob, "0001", base.Add(time.Hour)))
	putMessage(t, s, message(bob, "0002", base.Add(time.Hour)))
	require.NoError(t, s.DeleteMessage(ctx, bob, "0001"))
	assert.ErrorIs(t, s.DeleteMessage(ctx, bob, "0001"), storage.ErrNotFound)
	got, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"0002"}, ids(got))
	n, err := s.CountMessages(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

func testMessageDeleteMany(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const bob = "sip:bob@example.net"
	for _, id := range []string{"0001", "0002", "0003", "0004"} {
		putMessage(t, s, message(bob, id, base.Add(time.Hour), "k"+id))
	}
	require.NoError(t, s.DeleteMessages(ctx, bob, []string{"0001", "0003", "0009"}))
	got, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"0002", "0004"}, ids(got))
	dup, err := s.PutMessage(ctx, message(bob, "0005", base.Add(time.Hour), "k0001"))
	require.NoError(t, err)
	assert.Equal(t, "0001", dup, "dedup keys survive the delete")
	require.NoError(t, s.DeleteMessages(ctx, bob, nil))
	_, err = s.ExpireMessages(ctx, base.Add(2*time.Hour), 0)
	require.NoError(t, err)
	n, err := s.CountMessages(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left behind in the expiry index either")
}

func testMessageExpire(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const bob, carol = "sip:bob@example.net", "sip:carol@example.net"
	putMessage(t, s, message(bob, "0001", base.Add(-time.Second)))
	putMessage(t, s, message(bob, "0002", base)) // expires exactly now: gone
	putMessage(t, s, message(bob, "0003", base.Add(time.Nanosecond)))
	putMessage(t, s, message(carol, "0001", base.Add(-time.Hour)))
	gone, err := s.ExpireMessages(ctx, base, 0)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{bob + "/0001", bob + "/0002", carol + "/0001"}, func() []string {
		var out []string
		for _, m := range gone {
			out = append(out, m.Recipient+"/"+m.ID)
		}
		return out
	}())
	got, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"0003"}, ids(got))
	gone, err = s.ExpireMessages(ctx, base, 0)
	require.NoError(t, err)
	assert.Empty(t, gone)
	rs, err := s.PendingRecipients(ctx, "", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{bob}, rs)
}

func testMessageExpireLimit(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for i := range 5 {
		putMessage(t, s, message("sip:bob@example.net", fmt.Sprintf("%04d", i), base.Add(-time.Minute)))
	}
	gone, err := s.ExpireMessages(ctx, base, 2)
	require.NoError(t, err)
	assert.Len(t, gone, 2)
	gone, err = s.ExpireMessages(ctx, base, 0)
	require.NoError(t, err)
	assert.Len(t, gone, 3)
}

func testMessageRecipients(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, r := range []string{"sip:d@x", "sip:a@x", "sip:c@x", "sip:b@x"} {
		putMessage(t, s, message(r, "0001", base.Add(time.Hour)))
		putMessage(t, s, message(r, "0002", base.Add(time.Hour)))
	}
	rs, err := s.PendingRecipients(ctx, "", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"sip:a@x", "sip:b@x"}, rs)
	rs, err = s.PendingRecipients(ctx, "sip:b@x", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"sip:c@x", "sip:d@x"}, rs)
}

func testMessageNoAliasing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const bob = "sip:bob@example.net"
	m := message(bob, "0001", base.Add(time.Hour), "k1")
	putMessage(t, s, m)
	m.Body[0], m.Headers[0], m.DedupKeys[0] = 'X', "changed", "changed"
	got, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	got[0].Body[0], got[0].Headers[0] = 'Y', "changed too"
	again, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	assert.Equal(t, utcMessage(message(bob, "0001", base.Add(time.Hour), "k1")), again[0])
}

func testMessageConcurrentPut(t *testing.T, s storage.Store) {
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				_, err := s.PutMessage(ctx, message(fmt.Sprintf("sip:u%d@x", g%3), fmt.Sprintf("%02d-%04d", g, i), base.Add(time.Hour)))
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	n, err := s.CountMessages(ctx)
	require.NoError(t, err)
	assert.Equal(t, 400, n)
}

// Racing copies of one message (a retransmission on two connections):
// exactly one is stored.
func testMessageConcurrentDedup(t *testing.T, s storage.Store) {
	ctx := t.Context()
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dup, err := s.PutMessage(ctx, message("sip:bob@x", fmt.Sprintf("%04d", g), base.Add(time.Hour), "mid:alice/same"))
			assert.NoError(t, err)
			if dup == "" {
				mu.Lock()
				stored++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, stored)
	n, err := s.CountMessages(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

// The retry schedule: earliest time kept per recipient, due ones taken in
// time order and only once, the limit honoured.
func testRetrySchedule(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const a, b, c = "sip:a@x", "sip:b@x", "sip:c@x"
	none, err := s.DueRetries(ctx, base.Add(time.Hour), 0)
	require.NoError(t, err)
	assert.Empty(t, none)

	require.NoError(t, s.ScheduleRetry(ctx, a, base.Add(2*time.Second)))
	require.NoError(t, s.ScheduleRetry(ctx, b, base.Add(time.Second)))
	require.NoError(t, s.ScheduleRetry(ctx, c, base.Add(5*time.Second)))
	require.NoError(t, s.ScheduleRetry(ctx, a, base.Add(3*time.Second)), "later: the earlier time stays")
	require.NoError(t, s.ScheduleRetry(ctx, c, base.Add(4*time.Second)), "earlier: moves it")

	got, err := s.DueRetries(ctx, base.Add(500*time.Millisecond), 0)
	require.NoError(t, err)
	assert.Empty(t, got, "nothing due yet")
	got, err = s.DueRetries(ctx, base.Add(2*time.Second), 0)
	require.NoError(t, err)
	assert.Equal(t, []string{b, a}, got, "due at or before now, earliest first")
	got, err = s.DueRetries(ctx, base.Add(2*time.Second), 0)
	require.NoError(t, err)
	assert.Empty(t, got, "taken once")

	got, err = s.DueRetries(ctx, base.Add(3500*time.Millisecond), 0)
	require.NoError(t, err)
	assert.Empty(t, got, "a's later time was not kept beside the earlier one")
	got, err = s.DueRetries(ctx, base.Add(4*time.Second), 0)
	require.NoError(t, err)
	assert.Equal(t, []string{c}, got)

	for i := range 5 {
		require.NoError(t, s.ScheduleRetry(ctx, fmt.Sprintf("sip:u%d@x", i), base.Add(time.Duration(10-i)*time.Second)))
	}
	got, err = s.DueRetries(ctx, base.Add(time.Minute), 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"sip:u4@x", "sip:u3@x"}, got, "limit")
	got, err = s.DueRetries(ctx, base.Add(time.Minute), 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"sip:u2@x", "sip:u1@x", "sip:u0@x"}, got)

	require.NoError(t, s.ScheduleRetry(ctx, a, base), "scheduled again after it was taken")
	got, err = s.DueRetries(ctx, base, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{a}, got)
	assert.ErrorIs(t, s.ScheduleRetry(ctx, "", base), storage.ErrInvalid)
}

// Nodes taking due retries at once each get a share, none the same.
func testRetryConcurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const n = 200
	for i := range n {
		require.NoError(t, s.ScheduleRetry(ctx, fmt.Sprintf("sip:r%03d@x", i), base.Add(time.Duration(i)*time.Millisecond)))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				rs, err := s.DueRetries(ctx, base.Add(time.Hour), 7)
				if !assert.NoError(t, err) || len(rs) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rs {
					seen[r]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, seen, n)
	for r, k := range seen {
		assert.Equal(t, 1, k, "%s taken %d times", r, k)
	}
}

// RunMessagePersistence checks that stored messages, their dedup keys and
// their updates survive Close and a reopen of the same directory.
func RunMessagePersistence(t *testing.T, open func(t *testing.T, dir string) storage.Store) {
	ctx := t.Context()
	dir := t.TempDir()
	const bob = "sip:bob@example.net"
	s := open(t, dir)
	m1 := message(bob, "0001", base.Add(time.Hour), "mid:alice/1")
	putMessage(t, s, m1)
	putMessage(t, s, message(bob, "0002", base.Add(time.Hour)))
	m1.Attempts, m1.NextAttempt = 2, base.Add(time.Minute)
	require.NoError(t, s.UpdateMessage(ctx, m1))
	require.NoError(t, s.DeleteMessage(ctx, bob, "0002"))
	require.NoError(t, s.ScheduleRetry(ctx, bob, base.Add(time.Minute)))
	require.NoError(t, s.Close())

	s = open(t, dir)
	defer s.Close()
	got, err := s.PendingMessages(ctx, bob, 0)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, utcMessage(m1), got[0])
	dup, err := s.PutMessage(ctx, message(bob, "0003", base.Add(time.Hour), "mid:alice/1"))
	require.NoError(t, err)
	assert.Equal(t, "0001", dup, "dedup keys persist")
	due, err := s.DueRetries(ctx, base.Add(time.Minute), 0)
	require.NoError(t, err)
	assert.Equal(t, []string{bob}, due, "the retry schedule persists")
}
