// Package storagetest is the conformance suite for storage backends. Every
// backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store { return memory.New() })
//	}
//
// The suite pins down the behaviour the storage interfaces only describe
// (atomicity, ordering, expiry boundaries, error kinds, copying), so that
// callers can switch backends without noticing. It never reads the clock:
// every time is derived from a fixed instant, so backends must take "now"
// only from their arguments.
package storagetest

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
)

// base is the "now" of the suite. It carries nanoseconds so that a backend
// truncating times fails the round-trip tests.
var base = time.Date(2030, time.March, 4, 5, 6, 7, 890_123_456, time.UTC)

// ancient is a "now" at which every binding of the suite is live, to see
// expired bindings that are still stored.
var ancient = base.AddDate(-100, 0, 0)

// zone is a non-UTC zone for input times: backends hand times back in UTC.
var zone = time.FixedZone("IST", 5*3600+1800)

type test struct {
	name string
	run  func(t *testing.T, s storage.Store)
}

// Run runs the conformance suite. open is called once per subtest and must
// return an empty store; the suite closes it when the subtest ends (Close
// must therefore tolerate being called twice). Subtests run sequentially,
// so open may hand out stores that share an external server.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Subscribers", []test{
			{"PutGet", testPutGet},
			{"NotFound", testSubscriberNotFound},
			{"Invalid", testSubscriberInvalid},
			{"Conflict", testSubscriberConflict},
			{"Replace", testSubscriberReplace},
			{"MoveIMPUWithinBatch", testMoveIMPUWithinBatch},
			{"EmptyBatch", testEmptyBatch},
			{"List", testList},
			{"ListCursor", testListCursor},
			{"Delete", testDelete},
			{"Count", testSubscriberCount},
			{"NoAliasing", testSubscriberNoAliasing},
			{"NextSQN", testNextSQN},
			{"NextSQNConcurrent", testNextSQNConcurrent},
			{"PutConcurrent", testPutSubscribersConcurrent},
		}},
		{"Bindings", []test{
			{"RoundTrip", testBindingRoundTrip},
			{"FirstRegisteredOrder", testFirstRegisteredOrder},
			{"ExpiryFiltering", testExpiryFiltering},
			{"UpdateDropsExpired", testUpdateDropsExpired},
			{"FnError", testFnError},
			{"RemoveAll", testRemoveAll},
			{"Invalid", testBindingInvalid},
			{"NoAliasing", testBindingNoAliasing},
			{"Expire", testExpire},
			{"ExpireLimit", testExpireLimit},
			{"ExpireNothing", testExpireNothing},
			{"Count", testBindingCount},
			{"AORs", testAORs},
			{"BindingsOf", testBindingsOf},
			{"ConcurrentSameAOR", testConcurrentSameAOR},
			{"ConcurrentMixed", testConcurrentMixed},
		}},
		{"Messages", messageTests},
		{"Cluster", clusterTests},
		{"Lifecycle", []test{
			{"Ping", testPing},
			{"Close", testClose},
		}},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					s := open(t)
					require.NotNil(t, s)
					t.Cleanup(func() { assert.NoError(t, s.Close(), "Close") })
					tc.run(t, s)
				})
			}
		})
	}
}

// RunPersistence checks that a backend keeping state on disk gets all of it
// back after Close and a new open on the same directory, including changes
// (deletes, replacements, expiries) made after a reopen. open must open the
// store kept in dir.
func RunPersistence(t *testing.T, open func(t *testing.T, dir string) storage.Store) {
	ctx := t.Context()
	dir := t.TempDir()
	reopen := func() storage.Store {
		s := open(t, dir)
		require.NotNil(t, s)
		t.Cleanup(func() { _ = s.Close() }) // in case a check fails before the explicit Close
		return s
	}

	alice := fullSubscriber("alice@ims.example.net", "sip:alice@example.net", "tel:+15550100")
	bob := subscriber("bob@ims.example.net", "sip:bob@example.net")
	carol := subscriber("carol@ims.example.net", "sip:carol@example.net")
	const aorA, aorB, aorC = "sip:alice@example.net", "sip:bob@example.net", "sip:carol@example.net"
	a1, a2 := fullBinding(aorA, 1), fullBinding(aorA, 2)
	b1 := simpleBinding(aorB, "sip:bob@192.0.2.20:5060", base) // expired at base, not purged
	c1 := simpleBinding(aorC, "sip:carol@192.0.2.30:5060", base.Add(time.Hour))

	// First life: write.
	s := reopen()
	putSubscribers(t, s, alice, bob, carol)
	for _, b := range []storage.Binding{a1, a2, b1, c1} {
		_, err := s.UpdateBindings(ctx, b.AOR, ancient, upsert(b))
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())

	// Second life: everything is back; change some of it.
	s = reopen()
	for _, want := range []storage.Subscriber{alice, bob, carol} {
		requireSubscriber(t, s, want)
	}
	requireCount(t, s, 3, 4)
	requireStored(t, s, aorA, a1, a2)
	requireStored(t, s, aorB, b1)
	requireStored(t, s, aorC, c1)

	require.NoError(t, s.DeleteSubscriber(ctx, bob.IMPI))
	alice2 := alice
	alice2.IMPUs = []string{"sip:alice@example.net", "sip:alice.smith@example.net"}
	alice2.HA1MD5 = "0123456789abcdef0123456789abcdef"
	putSubscribers(t, s, alice2)
	_, err := s.UpdateBindings(ctx, aorC, base, remove)
	require.NoError(t, err)
	expired, err := s.ExpireBindings(ctx, base, 0)
	require.NoError(t, err)
	requireBindingSet(t, []storage.Binding{b1}, expired)
	a2r := a2
	a2r.CSeq++
	a2r.Expires = base.Add(2 * time.Hour)
	_, err = s.UpdateBindings(ctx, aorA, base, upsert(a2r))
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// Third life: the changes stuck.
	s = reopen()
	requireSubscriber(t, s, alice2)
	requireSubscriber(t, s, carol)
	_, err = s.SubscriberByIMPI(ctx, bob.IMPI)
	require.ErrorIs(t, err, storage.ErrNotFound)
	for _, impu := range []string{"tel:+15550100", "sip:bob@example.net"} {
		_, err = s.SubscriberByIMPU(ctx, impu)
		require.ErrorIs(t, err, storage.ErrNotFound, impu)
	}
	requireCount(t, s, 2, 2)
	requireStored(t, s, aorA, a1, a2r)
	requireStored(t, s, aorB)
	requireStored(t, s, aorC)
	require.NoError(t, s.Close())
}

// --- subscribers -----------------------------------------------------------

func testPutGet(t *testing.T, s storage.Store) {
	subs := []storage.Subscriber{
		fullSubscriber("alice@ims.example.net", "sip:alice@example.net", "tel:+15550100", "sip:+15550100@example.net"),
		subscriber("bob@ims.example.net", "sip:bob@example.net"),
	}
	putSubscribers(t, s, subs...)
	for _, want := range subs {
		requireSubscriber(t, s, want)
	}
}

func testSubscriberNotFound(t *testing.T, s storage.Store) {
	ctx := t.Context()
	putSubscribers(t, s, subscriber("alice@ims.example.net", "sip:alice@example.net"))
	cases := []struct {
		name string
		call func() error
	}{
		{"ByIMPI unknown", func() error { _, err := s.SubscriberByIMPI(ctx, "nobody@ims.example.net"); return err }},
		{"ByIMPI given an IMPU", func() error { _, err := s.SubscriberByIMPI(ctx, "sip:alice@example.net"); return err }},
		{"ByIMPU unknown", func() error { _, err := s.SubscriberByIMPU(ctx, "sip:nobody@example.net"); return err }},
		{"ByIMPU given an IMPI", func() error { _, err := s.SubscriberByIMPU(ctx, "alice@ims.example.net"); return err }},
		{"Delete unknown", func() error { return s.DeleteSubscriber(ctx, "nobody@ims.example.net") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.call(), storage.ErrNotFound)
		})
	}
	requireCount(t, s, 1, 0)
}

func testSubscriberInvalid(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice := subscriber("alice@ims.example.net", "sip:alice@example.net")
	putSubscribers(t, s, alice)
	// Each batch starts with a valid new subscriber that must not be
	// written either.
	carol := subscriber("carol@ims.example.net", "sip:carol@example.net")
	cases := []struct {
		name string
		bad  storage.Subscriber
	}{
		{"empty IMPI", subscriber("", "sip:x@example.net")},
		{"no IMPUs", subscriber("dave@ims.example.net")},
		{"empty IMPU", subscriber("dave@ims.example.net", "sip:dave@example.net", "")},
		{"IMPU twice in one subscriber", subscriber("dave@ims.example.net", "sip:dave@example.net", "sip:dave@example.net")},
		{"IMPI twice in one batch", subscriber("carol@ims.example.net", "sip:carol2@example.net")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.PutSubscribers(ctx, []storage.Subscriber{carol, tc.bad})
			require.ErrorIs(t, err, storage.ErrInvalid)
			requireBatchNotWritten(t, s, carol.IMPI, "sip:carol@example.net")
			requireSubscriber(t, s, alice)
			requireCount(t, s, 1, 0)
		})
	}
}

func testSubscriberConflict(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice := subscriber("alice@ims.example.net", "sip:alice@example.net", "tel:+15550100")
	bob := subscriber("bob@ims.example.net", "sip:bob@example.net")
	putSubscribers(t, s, alice, bob)
	carol := subscriber("carol@ims.example.net", "sip:carol@example.net")
	cases := []struct {
		name  string
		batch []storage.Subscriber
	}{
		{"new subscriber claims an owned IMPU", []storage.Subscriber{
			carol, subscriber("dave@ims.example.net", "sip:dave@example.net", "tel:+15550100"),
		}},
		{"two subscribers of a batch claim one IMPU", []storage.Subscriber{
			carol, subscriber("dave@ims.example.net", "sip:carol@example.net"),
		}},
		{"replacement claims another subscriber's IMPU", []storage.Subscriber{
			carol, subscriber("alice@ims.example.net", "sip:alice@example.net", "sip:bob@example.net"),
		}},
		{"replacement claims an IMPU of a subscriber outside the batch", []storage.Subscriber{
			subscriber("bob@ims.example.net", "sip:bob@example.net", "tel:+15550100"), carol,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.PutSubscribers(ctx, tc.batch)
			require.ErrorIs(t, err, storage.ErrConflict)
			requireBatchNotWritten(t, s, carol.IMPI, "sip:carol@example.net")
			requireSubscriber(t, s, alice)
			requireSubscriber(t, s, bob)
			requireCount(t, s, 2, 0)
		})
	}
}

func testSubscriberReplace(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice := fullSubscriber("alice@ims.example.net", "sip:alice@example.net", "tel:+15550100")
	putSubscribers(t, s, alice)

	alice2 := subscriber("alice@ims.example.net", "sip:alice.smith@example.net", "sip:alice@example.net")
	alice2.HA1SHA256 = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
	putSubscribers(t, s, alice2)

	requireSubscriber(t, s, alice2)
	_, err := s.SubscriberByIMPU(ctx, "tel:+15550100")
	require.ErrorIs(t, err, storage.ErrNotFound, "a removed IMPU still resolves")
	requireCount(t, s, 1, 0)

	// The released IMPU is free for someone else.
	bob := subscriber("bob@ims.example.net", "sip:bob@example.net", "tel:+15550100")
	putSubscribers(t, s, bob)
	requireSubscriber(t, s, bob)
	requireSubscriber(t, s, alice2)
}

func testMoveIMPUWithinBatch(t *testing.T, s storage.Store) {
	alice := subscriber("alice@ims.example.net", "sip:alice@example.net", "sip:shared@example.net")
	bob := subscriber("bob@ims.example.net", "sip:bob@example.net")
	putSubscribers(t, s, alice, bob)

	// One batch both releases and claims the IMPU: not a conflict.
	alice2 := subscriber("alice@ims.example.net", "sip:alice@example.net")
	bob2 := subscriber("bob@ims.example.net", "sip:bob@example.net", "sip:shared@example.net")
	putSubscribers(t, s, bob2, alice2)
	requireSubscriber(t, s, alice2)
	requireSubscriber(t, s, bob2)

	// Swapping all IMPUs of two subscribers works the same way.
	alice3 := subscriber("alice@ims.example.net", "sip:bob@example.net", "sip:shared@example.net")
	bob3 := subscriber("bob@ims.example.net", "sip:alice@example.net")
	putSubscribers(t, s, alice3, bob3)
	requireSubscriber(t, s, alice3)
	requireSubscriber(t, s, bob3)
	requireCount(t, s, 2, 0)
}

func testEmptyBatch(t *testing.T, s storage.Store) {
	require.NoError(t, s.PutSubscribers(t.Context(), nil))
	require.NoError(t, s.PutSubscribers(t.Context(), []storage.Subscriber{}))
	requireCount(t, s, 0, 0)
}

func testList(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const n = 25
	var want []storage.Subscriber
	for i := range n {
		want = append(want, subscriber(fmt.Sprintf("user%02d@ims.example.net", i), fmt.Sprintf("sip:user%02d@example.net", i)))
	}
	// Provision out of order and in several batches.
	shuffled := slices.Clone(want)
	for i := range shuffled {
		j := (i*7 + 3) % n // a fixed permutation (7 and 25 are coprime)
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	}
	putSubscribers(t, s, shuffled[:10]...)
	putSubscribers(t, s, shuffled[10:11]...)
	putSubscribers(t, s, shuffled[11:]...)

	var got []storage.Subscriber
	var sizes []int
	after := ""
	for range n + 1 { // bounded: a backend ignoring the cursor must not loop forever
		page, err := s.ListSubscribers(ctx, after, 10)
		require.NoError(t, err)
		sizes = append(sizes, len(page))
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].IMPI
	}
	assert.Equal(t, []int{10, 10, 5, 0}, sizes, "page sizes")
	assert.Equal(t, want, got)
}

func testListCursor(t *testing.T, s storage.Store) {
	ctx := t.Context()
	var all []string
	for i := range 8 {
		impi := fmt.Sprintf("user%d@ims.example.net", i)
		all = append(all, impi)
		putSubscribers(t, s, subscriber(impi, fmt.Sprintf("sip:user%d@example.net", i)))
	}
	cases := []struct {
		name  string
		after string
		limit int
		want  []string
	}{
		{"first page", "", 3, all[:3]},
		{"after an existing IMPI", all[3], 2, all[4:6]},
		{"after an absent IMPI", "user3@ims.example.net~", 2, all[4:6]},
		{"before everything", "a", 2, all[:2]},
		{"short last page", all[5], 10, all[6:]},
		{"after the last", all[7], 10, nil},
		{"after everything", "zzz", 10, nil},
		{"limit zero means all", "", 0, all},
		{"negative limit means all", all[1], -1, all[2:]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			page, err := s.ListSubscribers(ctx, tc.after, tc.limit)
			require.NoError(t, err)
			var got []string
			for _, sub := range page {
				got = append(got, sub.IMPI)
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func testDelete(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice := subscriber("alice@ims.example.net", "sip:alice@example.net", "tel:+15550100")
	bob := subscriber("bob@ims.example.net", "sip:bob@example.net")
	putSubscribers(t, s, alice, bob)

	require.NoError(t, s.DeleteSubscriber(ctx, alice.IMPI))
	_, err := s.SubscriberByIMPI(ctx, alice.IMPI)
	require.ErrorIs(t, err, storage.ErrNotFound)
	for _, impu := range alice.IMPUs {
		_, err := s.SubscriberByIMPU(ctx, impu)
		require.ErrorIs(t, err, storage.ErrNotFound, "IMPU %s of a deleted subscriber still resolves", impu)
	}
	require.ErrorIs(t, s.DeleteSubscriber(ctx, alice.IMPI), storage.ErrNotFound, "second delete")
	requireCount(t, s, 1, 0)
	page, err := s.ListSubscribers(ctx, "", 0)
	require.NoError(t, err)
	assert.Equal(t, []storage.Subscriber{bob}, page)
	requireSubscriber(t, s, bob)

	// The IMPUs are free again.
	carol := subscriber("carol@ims.example.net", "sip:alice@example.net")
	putSubscribers(t, s, carol)
	requireSubscriber(t, s, carol)
}

func testSubscriberCount(t *testing.T, s storage.Store) {
	ctx := t.Context()
	requireCount(t, s, 0, 0)
	putSubscribers(t, s,
		subscriber("a@ims.example.net", "sip:a@example.net"),
		subscriber("b@ims.example.net", "sip:b@example.net"),
		subscriber("c@ims.example.net", "sip:c@example.net"))
	requireCount(t, s, 3, 0)
	putSubscribers(t, s, subscriber("a@ims.example.net", "sip:a2@example.net", "sip:a3@example.net"))
	requireCount(t, s, 3, 0)
	require.NoError(t, s.DeleteSubscriber(ctx, "b@ims.example.net"))
	requireCount(t, s, 2, 0)
	require.Error(t, s.PutSubscribers(ctx, []storage.Subscriber{
		subscriber("d@ims.example.net", "sip:d@example.net"),
		subscriber("e@ims.example.net", "sip:c@example.net"),
	}))
	requireCount(t, s, 2, 0)
}

func testSubscriberNoAliasing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	want := fullSubscriber("alice@ims.example.net", "sip:alice@example.net", "tel:+15550100")
	in := cloneSubscriber(want)
	putSubscribers(t, s, in)

	// The caller keeps using its slices after the put.
	in.IMPUs[0] = "sip:mallory@example.net"
	in.K[0] ^= 0xff
	in.AMF[0] ^= 0xff
	requireSubscriber(t, s, want)

	// And scribbles on what it got back.
	got, err := s.SubscriberByIMPI(ctx, want.IMPI)
	require.NoError(t, err)
	got.IMPUs[1] = "tel:+19999999999"
	got.OP[0] ^= 0xff
	got.OPc[0] ^= 0xff
	got.K = append(got.K, 1)
	page, err := s.ListSubscribers(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, page, 1)
	page[0].IMPUs[0] = "sip:eve@example.net"
	page[0].K[1] ^= 0xff
	requireSubscriber(t, s, want)
}

// --- bindings --------------------------------------------------------------

func testBindingRoundTrip(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor = "sip:alice@example.net"
	full := fullBinding(aor, 1)
	// A second flow of the same instance (RFC 5626): a distinct binding.
	flow2 := fullBinding(aor, 1)
	flow2.RegID = 2
	flow2.Contact = "sip:alice@192.0.2.1:5062;transport=tcp"
	flow2.Path = nil
	minimal := simpleBinding(aor, "sip:alice@192.0.2.99:5060", base.Add(time.Minute))

	var got []storage.Binding
	for _, b := range []storage.Binding{full, flow2, minimal} {
		var err error
		got, err = s.UpdateBindings(ctx, aor, base, upsert(b))
		require.NoError(t, err)
	}
	want := []storage.Binding{full, flow2, minimal}
	requireBindings(t, want, got)
	live, err := s.Bindings(ctx, aor, base)
	require.NoError(t, err)
	requireBindings(t, want, live)

	other, err := s.Bindings(ctx, "sip:nobody@example.net", base)
	require.NoError(t, err)
	assert.Empty(t, other, "unknown AOR")
}

func testFirstRegisteredOrder(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor, aor2 = "sip:alice@example.net", "sip:bob@example.net"
	c := make([]storage.Binding, 6)
	for i := range c {
		// Later contacts expire earlier: order must not follow expiry.
		c[i] = simpleBinding(aor, fmt.Sprintf("sip:alice@192.0.2.%d:5060", i+1), base.Add(time.Duration(10-i)*time.Minute))
	}
	for _, b := range c[:4] {
		_, err := s.UpdateBindings(ctx, aor, base, upsert(b))
		require.NoError(t, err)
		// Interleave another AOR: it must not disturb the first.
		_, err = s.UpdateBindings(ctx, aor2, base, upsert(simpleBinding(aor2, b.Contact, base.Add(time.Hour))))
		require.NoError(t, err)
	}
	requireLive(t, s, aor, base, c[0], c[1], c[2], c[3])

	// A refresh keeps the binding's place.
	c1 := c[1]
	c1.CSeq = 99
	c1.Expires = base.Add(time.Hour)
	_, err := s.UpdateBindings(ctx, aor, base, upsert(c1))
	require.NoError(t, err)
	requireLive(t, s, aor, base, c[0], c1, c[2], c[3])

	// Removing one and adding another appends at the end.
	_, err = s.UpdateBindings(ctx, aor, base, without(c[0].Contact))
	require.NoError(t, err)
	_, err = s.UpdateBindings(ctx, aor, base, upsert(c[4]))
	require.NoError(t, err)
	requireLive(t, s, aor, base, c1, c[2], c[3], c[4])
	require.Len(t, mustBindings(t, s, aor2, base), 4)
}

func testExpiryFiltering(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor = "sip:alice@example.net"
	past := simpleBinding(aor, "sip:alice@192.0.2.1", base.Add(-time.Second))
	edge := simpleBinding(aor, "sip:alice@192.0.2.2", base) // expires == now: expired
	justLive := simpleBinding(aor, "sip:alice@192.0.2.3", base.Add(time.Nanosecond))
	live := simpleBinding(aor, "sip:alice@192.0.2.4", base.Add(time.Hour))
	all := []storage.Binding{past, edge, justLive, live}
	_, err := s.UpdateBindings(ctx, aor, ancient, func([]storage.Binding) ([]storage.Binding, error) { return all, nil })
	require.NoError(t, err)

	cases := []struct {
		name string
		now  time.Time
		want []storage.Binding
	}{
		{"before any expiry", base.Add(-2 * time.Second), all},
		{"now equals an expiry", base, []storage.Binding{justLive, live}},
		{"nanosecond later", base.Add(time.Nanosecond), []storage.Binding{live}},
		{"all expired", base.Add(time.Hour), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			requireLive(t, s, aor, tc.now, tc.want...)
			// fn sees the same set; abort so nothing changes.
			var cur []storage.Binding
			_, err := s.UpdateBindings(ctx, aor, tc.now, func(c []storage.Binding) ([]storage.Binding, error) {
				cur = slices.Clone(c)
				return nil, errAbort
			})
			require.ErrorIs(t, err, errAbort)
			requireBindings(t, tc.want, cur)
		})
	}
	requireCount(t, s, 0, 4)
}

func testUpdateDropsExpired(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor = "sip:alice@example.net"
	old := simpleBinding(aor, "sip:alice@192.0.2.1", base.Add(-time.Minute))
	live := simpleBinding(aor, "sip:alice@192.0.2.2", base.Add(time.Minute))
	_, err := s.UpdateBindings(ctx, aor, ancient, func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{old, live}, nil
	})
	require.NoError(t, err)
	requireCount(t, s, 0, 2)

	// fn only sees live bindings; what it returns replaces everything.
	got, err := s.UpdateBindings(ctx, aor, base, func(cur []storage.Binding) ([]storage.Binding, error) { return cur, nil })
	require.NoError(t, err)
	requireBindings(t, []storage.Binding{live}, got)
	requireStored(t, s, aor, live)
	requireCount(t, s, 0, 1)
}

func testFnError(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor = "sip:alice@example.net"
	b1 := fullBinding(aor, 1)
	_, err := s.UpdateBindings(ctx, aor, base, upsert(b1))
	require.NoError(t, err)

	errBoom := errors.New("boom")
	got, err := s.UpdateBindings(ctx, aor, base, func(cur []storage.Binding) ([]storage.Binding, error) {
		// Scribble on cur before failing: none of it may stick.
		cur[0].CSeq = 12345
		cur[0].Path[0] = "<sip:evil.example.net;lr>"
		return append(cur, simpleBinding(aor, "sip:alice@192.0.2.50", base.Add(time.Hour))), errBoom
	})
	assert.Equal(t, errBoom, err, "fn's error must come back as is")
	assert.Empty(t, got)
	requireStored(t, s, aor, b1)

	_, err = s.UpdateBindings(ctx, "sip:bob@example.net", base, func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{simpleBinding("sip:bob@example.net", "sip:bob@192.0.2.2", base.Add(time.Hour))}, errBoom
	})
	assert.Equal(t, errBoom, err)
	requireStored(t, s, "sip:bob@example.net")
	requireCount(t, s, 0, 1)
}

func testRemoveAll(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor = "sip:alice@example.net"
	for i := range 3 {
		_, err := s.UpdateBindings(ctx, aor, base, upsert(simpleBinding(aor, fmt.Sprintf("sip:alice@192.0.2.%d", i), base.Add(time.Hour))))
		require.NoError(t, err)
	}
	got, err := s.UpdateBindings(ctx, aor, base, remove)
	require.NoError(t, err)
	assert.Empty(t, got)
	requireStored(t, s, aor)
	requireCount(t, s, 0, 0)

	// The AOR can register again afterwards.
	b := simpleBinding(aor, "sip:alice@192.0.2.9", base.Add(time.Hour))
	_, err = s.UpdateBindings(ctx, aor, base, upsert(b))
	require.NoError(t, err)
	requireStored(t, s, aor, b)
}

func testBindingInvalid(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor = "sip:alice@example.net"
	b1 := simpleBinding(aor, "sip:alice@192.0.2.1", base.Add(time.Hour))
	_, err := s.UpdateBindings(ctx, aor, base, upsert(b1))
	require.NoError(t, err)

	inst := func(contact string, regID int) storage.Binding {
		b := simpleBinding(aor, contact, base.Add(time.Hour))
		b.InstanceID = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
		b.RegID = regID
		return b
	}
	cases := []struct {
		name string
		aor  string
		add  []storage.Binding
	}{
		{"binding of another AOR", aor, []storage.Binding{simpleBinding("sip:bob@example.net", "sip:bob@192.0.2.2", base.Add(time.Hour))}},
		{"binding without AOR", aor, []storage.Binding{simpleBinding("", "sip:alice@192.0.2.2", base.Add(time.Hour))}},
		{"binding without contact", aor, []storage.Binding{simpleBinding(aor, "", base.Add(time.Hour))}},
		{"contact twice", aor, []storage.Binding{simpleBinding(aor, "sip:alice@192.0.2.1", base.Add(2*time.Hour))}},
		{"instance and reg-id twice", aor, []storage.Binding{inst("sip:alice@192.0.2.3", 1), inst("sip:alice@192.0.2.4", 1)}},
		{"instance without reg-id twice", aor, []storage.Binding{inst("sip:alice@192.0.2.3", 0), inst("sip:alice@192.0.2.4", 0)}},
		{"empty AOR", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.UpdateBindings(ctx, tc.aor, base, func(cur []storage.Binding) ([]storage.Binding, error) {
				return append(cur, tc.add...), nil
			})
			require.ErrorIs(t, err, storage.ErrInvalid)
			requireStored(t, s, aor, b1)
			requireCount(t, s, 0, 1)
		})
	}

	// Distinct flows of one instance, and the same contact URI under two
	// instances, are distinct bindings.
	ok := []storage.Binding{inst("sip:alice@192.0.2.3", 1), inst("sip:alice@192.0.2.3", 2)}
	_, err = s.UpdateBindings(ctx, aor, base, func(cur []storage.Binding) ([]storage.Binding, error) {
		return append(cur, ok...), nil
	})
	require.NoError(t, err)
	requireStored(t, s, aor, b1, ok[0], ok[1])
}

func testBindingNoAliasing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor = "sip:alice@example.net"
	want := []storage.Binding{fullBinding(aor, 1), fullBinding(aor, 2)}
	in := []storage.Binding{cloneBinding(want[0]), cloneBinding(want[1])}
	in[1].Path = in[0].Path // callers share Path slices between bindings of one REGISTER
	want[1].Path = want[0].Path
	got, err := s.UpdateBindings(ctx, aor, base, func([]storage.Binding) ([]storage.Binding, error) { return in, nil })
	require.NoError(t, err)

	// The caller keeps using what fn returned, and what came back.
	in[0].Path[0] = "<sip:evil.example.net;lr>"
	in[0].Contact = "sip:evil@example.net"
	got[0].Path[1] = "<sip:evil.example.net;lr>"
	got[1].CSeq = 0
	requireStored(t, s, aor, want...)

	// And scribbles on a read, including growing a Path in place.
	live := mustBindings(t, s, aor, base)
	require.Len(t, live, 2)
	live[0].Path = append(live[0].Path, "<sip:extra.example.net;lr>")
	live[0].Path[0] = "<sip:evil.example.net;lr>"
	assert.Equal(t, want[1].Path, live[1].Path, "growing one returned Path changed another")
	live[1].Contact = "sip:evil@example.net"
	requireStored(t, s, aor, want...)

	// And on the bindings ExpireBindings hands back.
	expired, err := s.ExpireBindings(ctx, base.Add(24*time.Hour), 1)
	require.NoError(t, err)
	require.Len(t, expired, 1)
	expired[0].Path[0] = "<sip:evil.example.net;lr>"
	expired[0].Path = append(expired[0].Path, "<sip:extra.example.net;lr>")
	left := mustBindings(t, s, aor, ancient)
	require.Len(t, left, 1)
	assert.Equal(t, want[0].Path, left[0].Path)
}

func testExpire(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aorA, aorB, aorC = "sip:alice@example.net", "sip:bob@example.net", "sip:carol@example.net"
	a1 := withExpiry(fullBinding(aorA, 1), base.Add(-time.Hour))
	a2 := withExpiry(fullBinding(aorA, 2), base.Add(time.Hour))
	a3 := withExpiry(fullBinding(aorA, 3), base) // expires == now: expired
	b1 := withExpiry(fullBinding(aorB, 4), base.Add(-time.Second))
	c1 := withExpiry(fullBinding(aorC, 5), base.Add(time.Nanosecond))
	for _, b := range []storage.Binding{a1, a2, a3, b1, c1} {
		_, err := s.UpdateBindings(ctx, b.AOR, ancient, upsert(b))
		require.NoError(t, err)
	}

	expired, err := s.ExpireBindings(ctx, base, 0)
	require.NoError(t, err)
	requireBindingSet(t, []storage.Binding{a1, a3, b1}, expired)
	requireStored(t, s, aorA, a2)
	requireStored(t, s, aorB)
	requireStored(t, s, aorC, c1)
	requireCount(t, s, 0, 2)

	again, err := s.ExpireBindings(ctx, base, 0)
	require.NoError(t, err)
	assert.Empty(t, again, "expired bindings reported twice")
}

func testExpireLimit(t *testing.T, s storage.Store) {
	ctx := t.Context()
	cases := []struct {
		name         string
		aors, perAOR int // expired bindings: aors × perAOR
		limit        int
	}{
		{"limit 1", 5, 1, 1},
		{"limit divides", 30, 1, 6},
		{"limit does not divide", 30, 1, 7},
		{"limit equals", 12, 1, 12},
		{"limit above", 12, 1, 100},
		{"limit splits an AOR", 7, 3, 2},
		{"limit splits AORs unevenly", 9, 4, 5},
		{"no limit", 40, 2, 0},
		{"negative limit", 40, 1, -1},
	}
	live := 0
	for k, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Many AORs, each with expired bindings and a live one, so
			// that a partitioned backend spreads them over its
			// partitions.
			var want []storage.Binding
			for i := range tc.aors {
				aor := fmt.Sprintf("sip:user%d-%d@example.net", k, i)
				var bs []storage.Binding
				for j := range tc.perAOR {
					bs = append(bs, simpleBinding(aor, fmt.Sprintf("sip:dead%d@192.0.2.1", j), base.Add(-time.Duration(i+j+1)*time.Second)))
				}
				want = append(want, bs...)
				bs = append(bs, simpleBinding(aor, "sip:alive@192.0.2.2", base.Add(time.Hour)))
				_, err := s.UpdateBindings(ctx, aor, ancient, func([]storage.Binding) ([]storage.Binding, error) { return bs, nil })
				require.NoError(t, err)
			}
			live += tc.aors
			// A call returns limit bindings while at least that many
			// are expired, so fewer than limit means the sweep is done.
			var got []storage.Binding
			for range len(want) + 1 {
				batch, err := s.ExpireBindings(ctx, base, tc.limit)
				require.NoError(t, err)
				if tc.limit > 0 {
					require.Len(t, batch, min(tc.limit, len(want)-len(got)), "batch size")
				}
				if len(batch) == 0 {
					break
				}
				got = append(got, batch...)
			}
			requireBindingSet(t, want, got)
			requireCount(t, s, 0, live)
			for i := range tc.aors {
				aor := fmt.Sprintf("sip:user%d-%d@example.net", k, i)
				requireStored(t, s, aor, simpleBinding(aor, "sip:alive@192.0.2.2", base.Add(time.Hour)))
			}
		})
	}
}

func testExpireNothing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	got, err := s.ExpireBindings(ctx, base, 0)
	require.NoError(t, err)
	assert.Empty(t, got, "empty store")
	for i := range 20 {
		aor := fmt.Sprintf("sip:user%d@example.net", i)
		_, err := s.UpdateBindings(ctx, aor, base, upsert(simpleBinding(aor, "sip:u@192.0.2.1", base.Add(time.Second))))
		require.NoError(t, err)
	}
	got, err = s.ExpireBindings(ctx, base, 5)
	require.NoError(t, err)
	assert.Empty(t, got, "nothing expired yet")
	requireCount(t, s, 0, 20)
}

func testBindingCount(t *testing.T, s storage.Store) {
	ctx := t.Context()
	set := func(aor string, n int, expires time.Time) {
		t.Helper()
		_, err := s.UpdateBindings(ctx, aor, ancient, func([]storage.Binding) ([]storage.Binding, error) {
			var bs []storage.Binding
			for i := range n {
				bs = append(bs, simpleBinding(aor, fmt.Sprintf("sip:c%d@192.0.2.1", i), expires))
			}
			return bs, nil
		})
		require.NoError(t, err)
	}
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"empty", func() {}, 0},
		{"first AOR", func() { set("sip:a@example.net", 3, base.Add(time.Hour)) }, 3},
		{"second AOR", func() { set("sip:b@example.net", 2, base.Add(time.Hour)) }, 5},
		{"expired but not purged counts", func() { set("sip:c@example.net", 1, base.Add(-time.Hour)) }, 6},
		{"shrink an AOR", func() { set("sip:a@example.net", 1, base.Add(time.Hour)) }, 4},
		{"remove an AOR", func() { set("sip:b@example.net", 0, base) }, 2},
		{"purge", func() {
			_, err := s.ExpireBindings(ctx, base, 0)
			require.NoError(t, err)
		}, 1},
	}
	for _, st := range steps {
		st.do()
		n, err := s.CountBindings(ctx)
		require.NoError(t, err)
		require.Equal(t, st.want, n, st.name)
	}
}

func testConcurrentSameAOR(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor, n = "sip:alice@example.net", 50
	want := make([]storage.Binding, n)
	for i := range want {
		want[i] = simpleBinding(aor, fmt.Sprintf("sip:alice@192.0.2.%d:%d", i%250, 5060+i), base.Add(time.Hour))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			got, err := s.UpdateBindings(ctx, aor, base, func(cur []storage.Binding) ([]storage.Binding, error) {
				// Yield between read and write: a backend whose
				// update is not atomic loses bindings here.
				runtime.Gosched()
				return upsert(want[i])(cur)
			})
			if assert.NoError(t, err) {
				assert.True(t, slices.ContainsFunc(got, func(b storage.Binding) bool { return b.Contact == want[i].Contact }),
					"update %d did not return its own binding", i)
			}
		})
	}
	close(start)
	wg.Wait()
	got := mustBindings(t, s, aor, base)
	requireBindingSet(t, want, got)
	requireCount(t, s, 0, n)
}

// testConcurrentMixed exercises every binding operation at once, so that
// `go test -race` sees the backend's locking; the end state must still add
// up.
func testConcurrentMixed(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const writers, aors, rounds = 8, 16, 40
	aor := func(i int) string { return fmt.Sprintf("sip:user%d@example.net", i) }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				a := aor((w*rounds + r) % aors)
				// Every third binding is born expired, for the sweeper.
				exp := base.Add(time.Duration(r%3-1) * time.Hour)
				b := simpleBinding(a, fmt.Sprintf("sip:w%d@192.0.2.%d", w, r%4), exp)
				_, err := s.UpdateBindings(ctx, a, ancient, upsert(b))
				assert.NoError(t, err)
			}
		})
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := s.Bindings(ctx, aor(i%aors), base)
			assert.NoError(t, err)
			_, err = s.CountBindings(ctx)
			assert.NoError(t, err)
		}
	})
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := s.ExpireBindings(ctx, base, 3)
			assert.NoError(t, err)
		}
	})
	readers.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			sub := subscriber(fmt.Sprintf("u%d@ims.example.net", i%5), fmt.Sprintf("sip:u%d@example.net", i%5))
			assert.NoError(t, s.PutSubscribers(ctx, []storage.Subscriber{sub}))
			_, err := s.SubscriberByIMPU(ctx, sub.IMPUs[0])
			assert.NoError(t, err)
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()

	total := 0
	for i := range aors {
		total += len(mustBindings(t, s, aor(i), ancient))
	}
	n, err := s.CountBindings(ctx)
	require.NoError(t, err)
	assert.Equal(t, total, n, "CountBindings disagrees with the bindings stored")
}

// --- lifecycle -------------------------------------------------------------

func testPing(t *testing.T, s storage.Store) {
	require.NoError(t, s.Ping(t.Context()))
}

func testClose(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const aor = "sip:alice@example.net"
	putSubscribers(t, s, subscriber("alice@ims.example.net", aor))
	_, err := s.UpdateBindings(ctx, aor, base, upsert(simpleBinding(aor, "sip:alice@192.0.2.1", base.Add(time.Hour))))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "second Close")

	cases := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return s.Ping(ctx) }},
		{"PutSubscribers", func() error {
			return s.PutSubscribers(ctx, []storage.Subscriber{subscriber("bob@ims.example.net", "sip:bob@example.net")})
		}},
		{"SubscriberByIMPI", func() error { _, err := s.SubscriberByIMPI(ctx, "alice@ims.example.net"); return err }},
		{"SubscriberByIMPU", func() error { _, err := s.SubscriberByIMPU(ctx, aor); return err }},
		{"ListSubscribers", func() error { _, err := s.ListSubscribers(ctx, "", 10); return err }},
		{"DeleteSubscriber", func() error { return s.DeleteSubscriber(ctx, "alice@ims.example.net") }},
		{"CountSubscribers", func() error { _, err := s.CountSubscribers(ctx); return err }},
		{"Bindings", func() error { _, err := s.Bindings(ctx, aor, base); return err }},
		{"UpdateBindings", func() error { _, err := s.UpdateBindings(ctx, aor, base, remove); return err }},
		{"ExpireBindings", func() error { _, err := s.ExpireBindings(ctx, base, 0); return err }},
		{"CountBindings", func() error { _, err := s.CountBindings(ctx); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.call(), storage.ErrClosed)
		})
	}
}

// --- helpers ---------------------------------------------------------------

var errAbort = errors.New("storagetest: abort")

func subscriber(impi string, impus ...string) storage.Subscriber {
	return storage.Subscriber{
		IMPI:   impi,
		IMPUs:  impus,
		Realm:  "ims.example.net",
		HA1MD5: "939e7578ed9e3c518a452acee763bce9",
	}
}

// fullSubscriber sets every field, with values that survive only an exact
// round trip (SQN above 2^53, binary key material).
func fullSubscriber(impi string, impus ...string) storage.Subscriber {
	s := subscriber(impi, impus...)
	s.HA1SHA256 = "ab1c2f0ad4b2e4a9f4a7e0d6f2c5b8e1d3c4b5a6978877665544332211009988"
	s.HA1SHA512256 = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	s.K = []byte{0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc}
	s.OP = []byte{0xcd, 0xc2, 0x02, 0xd5, 0x12, 0x3e, 0x20, 0xf6, 0x2b, 0x6d, 0x67, 0x6a, 0xc7, 0x2c, 0xb3, 0x18}
	s.OPc = []byte{0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf}
	s.AMF = []byte{0xb9, 0xb9}
	s.SQN = 1<<60 + 12345
	return s
}

func cloneSubscriber(s storage.Subscriber) storage.Subscriber {
	s.IMPUs = slices.Clone(s.IMPUs)
	s.K, s.OP, s.OPc, s.AMF = slices.Clone(s.K), slices.Clone(s.OP), slices.Clone(s.OPc), slices.Clone(s.AMF)
	return s
}

func simpleBinding(aor, contact string, expires time.Time) storage.Binding {
	return storage.Binding{
		AOR:          aor,
		Contact:      contact,
		CallID:       "a84b4c76e66710@" + contact,
		CSeq:         1,
		Expires:      expires,
		Transport:    "udp",
		Source:       "192.0.2.200:5060",
		RegisteredAt: base.Add(-time.Minute),
	}
}

// fullBinding sets every field; its times are in a non-UTC zone and carry
// nanoseconds.
func fullBinding(aor string, i int) storage.Binding {
	inst := fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", i)
	return storage.Binding{
		AOR:          aor,
		Contact:      fmt.Sprintf("sip:u%d@192.0.2.%d:5061;transport=tls;ob", i, i),
		Params:       fmt.Sprintf(`+sip.instance="<%s>";reg-id=1;+g.3gpp.icsi-ref="urn%%3Aurn-7%%3A3gpp-service.ims.icsi.mmtel";+sip.ice`, inst),
		InstanceID:   inst,
		RegID:        1,
		Q:            "0.7",
		CallID:       fmt.Sprintf("%d-1j9FpLxk3uxtm8tn@192.0.2.%d", i, i),
		CSeq:         4_000_000_000 + uint32(i),
		Expires:      base.Add(time.Hour + time.Duration(i)*time.Second).In(zone),
		Path:         []string{"<sip:pcscf1.example.net;lr>", fmt.Sprintf("<sip:edge%d.example.net;lr;ob>", i)},
		UserAgent:    "RCS client/8.0 (Android 15) \"quoted\" ünïcode",
		IMPI:         fmt.Sprintf("u%d@ims.example.net", i),
		Transport:    "tls",
		Source:       fmt.Sprintf("[2001:db8::%d]:41234", i),
		Local:        "[2001:db8::1]:5061",
		Node:         "rcsd-0",
		RegisteredAt: base.Add(-time.Duration(i) * time.Minute).In(zone),
	}
}

func withExpiry(b storage.Binding, t time.Time) storage.Binding {
	b.Expires = t
	return b
}

func cloneBinding(b storage.Binding) storage.Binding {
	b.Path = slices.Clone(b.Path)
	return b
}

// upsert returns an UpdateBindings callback that refreshes b in place when
// a binding with its key exists, and appends it otherwise, as a registrar
// does. It leaves cur alone, since fn may be called again.
func upsert(b storage.Binding) func([]storage.Binding) ([]storage.Binding, error) {
	return func(cur []storage.Binding) ([]storage.Binding, error) {
		next := slices.Clone(cur)
		for i := range next {
			if next[i].Key() == b.Key() {
				next[i] = b
				return next, nil
			}
		}
		return append(next, b), nil
	}
}

func without(contact string) func([]storage.Binding) ([]storage.Binding, error) {
	return func(cur []storage.Binding) ([]storage.Binding, error) {
		return slices.DeleteFunc(slices.Clone(cur), func(b storage.Binding) bool { return b.Contact == contact }), nil
	}
}

func remove([]storage.Binding) ([]storage.Binding, error) { return nil, nil }

func putSubscribers(t *testing.T, s storage.Store, subs ...storage.Subscriber) {
	t.Helper()
	require.NoError(t, s.PutSubscribers(t.Context(), subs))
}

// requireSubscriber checks that want is stored and reachable by its IMPI
// and by each of its IMPUs.
func requireSubscriber(t *testing.T, s storage.Store, want storage.Subscriber) {
	t.Helper()
	got, err := s.SubscriberByIMPI(t.Context(), want.IMPI)
	require.NoError(t, err, "SubscriberByIMPI(%q)", want.IMPI)
	require.Equal(t, want, got, "SubscriberByIMPI(%q)", want.IMPI)
	for _, impu := range want.IMPUs {
		got, err := s.SubscriberByIMPU(t.Context(), impu)
		require.NoError(t, err, "SubscriberByIMPU(%q)", impu)
		require.Equal(t, want, got, "SubscriberByIMPU(%q)", impu)
	}
}

// requireCount checks both counters; bindings < 0 skips that one.
func requireCount(t *testing.T, s storage.Store, subscribers, bindings int) {
	t.Helper()
	n, err := s.CountSubscribers(t.Context())
	require.NoError(t, err)
	require.Equal(t, subscribers, n, "CountSubscribers")
	if bindings >= 0 {
		n, err = s.CountBindings(t.Context())
		require.NoError(t, err)
		require.Equal(t, bindings, n, "CountBindings")
	}
}

func mustBindings(t *testing.T, s storage.Store, aor string, now time.Time) []storage.Binding {
	t.Helper()
	bs, err := s.Bindings(t.Context(), aor, now)
	require.NoError(t, err, "Bindings(%q)", aor)
	return bs
}

// requireLive checks the bindings of aor live at now, in order.
func requireLive(t *testing.T, s storage.Store, aor string, now time.Time, want ...storage.Binding) {
	t.Helper()
	requireBindings(t, want, mustBindings(t, s, aor, now))
}

// requireStored checks every binding stored for aor, expired or not.
func requireStored(t *testing.T, s storage.Store, aor string, want ...storage.Binding) {
	t.Helper()
	requireLive(t, s, aor, ancient, want...)
}

// requireBindings compares bindings in order, field by field. Times must
// be equal instants and come back in UTC.
func requireBindings(t *testing.T, want, got []storage.Binding) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := normal(want[i]), got[i]
		require.True(t, g.Expires.Equal(w.Expires), "binding %d Expires: want %v, got %v", i, w.Expires, g.Expires)
		require.True(t, g.RegisteredAt.Equal(w.RegisteredAt), "binding %d RegisteredAt: want %v, got %v", i, w.RegisteredAt, g.RegisteredAt)
		require.Equal(t, "UTC", g.Expires.Location().String(), "binding %d Expires location", i)
		require.Equal(t, "UTC", g.RegisteredAt.Location().String(), "binding %d RegisteredAt location", i)
		require.Equal(t, w, normal(g), "binding %d", i)
	}
}

// requireBindingSet compares bindings regardless of order.
func requireBindingSet(t *testing.T, want, got []storage.Binding) {
	t.Helper()
	w := make([]storage.Binding, len(want))
	for i := range want {
		w[i] = normal(want[i])
	}
	g := make([]storage.Binding, len(got))
	for i := range got {
		g[i] = normal(got[i])
	}
	require.ElementsMatch(t, w, g)
}

// normal puts times in UTC without a monotonic reading and empty slices to
// nil, so that equal bindings compare equal.
func normal(b storage.Binding) storage.Binding {
	b.Expires = b.Expires.UTC()
	b.RegisteredAt = b.RegisteredAt.UTC()
	if len(b.Path) == 0 {
		b.Path = nil
	}
	return b
}

// requireBatchNotWritten checks that no part of a refused batch reached the
// store: neither the subscriber nor its IMPU index entry.
func requireBatchNotWritten(t *testing.T, s storage.Store, impi, impu string) {
	t.Helper()
	_, err := s.SubscriberByIMPI(t.Context(), impi)
	require.ErrorIs(t, err, storage.ErrNotFound, "valid part of a failed batch was written")
	_, err = s.SubscriberByIMPU(t.Context(), impu)
	require.ErrorIs(t, err, storage.ErrNotFound, "IMPU index of a failed batch was written")
}

func testNextSQN(t *testing.T, s storage.Store) {
	ctx := t.Context()
	sub := storage.Subscriber{IMPI: "usim@ims.example", IMPUs: []string{"sip:usim@ims.example"}, Realm: "ims.example",
		K: make([]byte, 16), OPc: make([]byte, 16), AMF: []byte{0x80, 0}, SQN: 5}
	require.NoError(t, s.PutSubscribers(ctx, []storage.Subscriber{sub}))
	for _, step := range []struct{ floor, want uint64 }{{0, 6}, {0, 7}, {100, 101}, {50, 102}} {
		got, err := s.NextSQN(ctx, sub.IMPI, step.floor)
		require.NoError(t, err)
		assert.Equal(t, step.want, got, "floor %d", step.floor)
	}
	stored, err := s.SubscriberByIMPI(ctx, sub.IMPI)
	require.NoError(t, err)
	assert.Equal(t, uint64(102), stored.SQN, "the SQN is stored")
	assert.Equal(t, sub.K, stored.K, "nothing else changes")

	_, err = s.NextSQN(ctx, "nobody@ims.example", 0)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.NextSQN(ctx, sub.IMPI, storage.SQNMax)
	assert.ErrorIs(t, err, storage.ErrInvalid)
}

func testNextSQNConcurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	sub := storage.Subscriber{IMPI: "usim@ims.example", IMPUs: []string{"sip:usim@ims.example"}, Realm: "ims.example",
		K: make([]byte, 16), OPc: make([]byte, 16), AMF: []byte{0x80, 0}}
	require.NoError(t, s.PutSubscribers(ctx, []storage.Subscriber{sub}))
	const n = 50
	got := make(chan uint64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.NextSQN(ctx, sub.IMPI, 0)
			assert.NoError(t, err)
			got <- v
		}()
	}
	wg.Wait()
	close(got)
	seen := map[uint64]bool{}
	for v := range got {
		assert.False(t, seen[v], "SQN %d handed out twice", v)
		seen[v] = true
	}
	assert.Len(t, seen, n)
	stored, err := s.SubscriberByIMPI(ctx, sub.IMPI)
	require.NoError(t, err)
	assert.Equal(t, uint64(n), stored.SQN)
}

// testPutSubscribersConcurrent: writers racing for one public identity
// (exactly one gets it, the others ErrConflict), and writers replacing one
// subscriber with different identities at once, leave an index where every
// identity resolves to the subscriber that lists it and back.
func testPutSubscribersConcurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			impi := fmt.Sprintf("racer%d@ims.example", i)
			errs <- s.PutSubscribers(ctx, []storage.Subscriber{{IMPI: impi, IMPUs: []string{"sip:prize@ims.example", "sip:" + impi}}})
		}()
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		if err == nil {
			won++
			continue
		}
		assert.ErrorIs(t, err, storage.ErrConflict)
	}
	assert.Equal(t, 1, won, "one writer gets the identity")
	winner, err := s.SubscriberByIMPU(ctx, "sip:prize@ims.example")
	require.NoError(t, err)
	for i := range n {
		impi := fmt.Sprintf("racer%d@ims.example", i)
		_, err := s.SubscriberByIMPU(ctx, "sip:"+impi)
		if impi == winner.IMPI {
			assert.NoError(t, err)
		} else {
			assert.ErrorIs(t, err, storage.ErrNotFound, "a loser wrote nothing: %s", impi)
		}
	}

	// One subscriber replaced concurrently with n different identity sets.
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, s.PutSubscribers(ctx, []storage.Subscriber{{IMPI: "shifty@ims.example",
				IMPUs: []string{fmt.Sprintf("sip:shifty%d@ims.example", i), fmt.Sprintf("sip:shifty%d@ims.example", i+1)}}}))
		}()
	}
	wg.Wait()
	final, err := s.SubscriberByIMPI(ctx, "shifty@ims.example")
	require.NoError(t, err)
	require.Len(t, final.IMPUs, 2)
	for i := range n + 1 {
		u := fmt.Sprintf("sip:shifty%d@ims.example", i)
		got, err := s.SubscriberByIMPU(ctx, u)
		if slices.Contains(final.IMPUs, u) {
			require.NoError(t, err, u)
			assert.Equal(t, "shifty@ims.example", got.IMPI)
		} else {
			assert.ErrorIs(t, err, storage.ErrNotFound, "%s was released by the replacement that won", u)
		}
	}
}

func testAORs(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, aor := range []string{"sip:d@x", "sip:a@x", "sip:c@x", "sip:b@x"} {
		for i := range 2 {
			b := simpleBinding(aor, fmt.Sprintf("sip:%d@192.0.2.1:5060", i), base.Add(time.Hour))
			_, err := s.UpdateBindings(ctx, aor, base, func(cur []storage.Binding) ([]storage.Binding, error) { return append(cur, b), nil })
			require.NoError(t, err)
		}
	}
	got, err := s.AORs(ctx, "", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"sip:a@x", "sip:b@x"}, got)
	got, err = s.AORs(ctx, "sip:b@x", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"sip:c@x", "sip:d@x"}, got)
	got, err = s.AORs(ctx, "sip:d@x", 0)
	require.NoError(t, err)
	assert.Empty(t, got)
}

// storage.BindingsOf (one round trip where the backend can) reads what
// Bindings reads, AOR by AOR, expired bindings left out.
func testBindingsOf(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const a, b, gone = "sip:alice@example.net", "tel:+8613900000001", "sip:old@example.net"
	for _, x := range []storage.Binding{
		fullBinding(a, 1),
		simpleBinding(b, "sip:b@192.0.2.2:5060", base.Add(time.Hour)),
		simpleBinding(b, "sip:b2@192.0.2.3:5060", base.Add(time.Minute)),
		simpleBinding(gone, "sip:old@192.0.2.4:5060", base.Add(time.Minute)),
	} {
		_, err := s.UpdateBindings(ctx, x.AOR, base, upsert(x))
		require.NoError(t, err)
	}
	now := base.Add(2 * time.Minute)
	aors := []string{b, "sip:nobody@example.net", a, gone}
	got, err := storage.BindingsOf(ctx, s, aors, now)
	require.NoError(t, err)
	require.Len(t, got, len(aors))
	for i, aor := range aors {
		want, err := s.Bindings(ctx, aor, now)
		require.NoError(t, err)
		requireBindings(t, want, got[i])
	}
	assert.Len(t, got[0], 1, "b2 expired")
	assert.Empty(t, got[1])
	assert.Len(t, got[2], 1)
	assert.Empty(t, got[3])
}
