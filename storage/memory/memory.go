// Package memory is the in-process storage backend: maps guarded by
// read-write mutexes, nothing persisted. It serves single-node deployments
// and tests, and it is the live binding table of the bolt backend, so the
// binding path is built for a registrar's hot loop (10 000+ REGISTER/s):
//
//   - Bindings are spread over shards, each with its own lock, so REGISTERs
//     for different AORs do not serialise on one mutex and an expiry sweep
//     holds up only one shard at a time.
//   - Values are kept encoded (storage/internal/codec), one string per
//     subscriber and one per AOR's bindings, instead of as structs. A
//     string's bytes hold no pointers, so the garbage collector, which
//     would otherwise trace every string and slice of every stored
//     subscriber and binding on each cycle, sees one pointer per value.
//     The indexes (IMPU -> IMPI, the sorted IMPIs, the map keys) are
//     substrings of those encodings and cost no allocation of their own.
//   - Values are decoded on the way out, so callers never alias anything
//     the store could change. A decoded value's strings share the stored
//     encoding, which is immutable (an update stores a new one), so an
//     AOR's bindings cost two allocations (the bindings, and one array
//     shared by all their Path entries) and a subscriber at most two
//     (IMPUs, and one array for its key material).
//   - The AKA sequence number is kept beside a subscriber's encoding, so
//     NextSQN updates it in place.
//   - Each AOR records its earliest expiry, so ExpireBindings scans the
//     AORs (O(number of AORs)) without decoding them, instead of keeping an
//     expiry index that every REGISTER would have to maintain; a scan that
//     finds nothing expired takes only read locks and allocates nothing.
//
// Times come back in UTC. UpdateBindings runs fn while the AOR's shard is
// locked, so fn must not call back into the store.
package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"rcsd/storage"
	"rcsd/storage/internal/check"
	"rcsd/storage/internal/codec"
	"rcsd/storage/internal/lease"
)

// shardCount is a power of two well above the core counts rcsd runs on, so
// two REGISTERs rarely contend for a shard.
const shardCount = 64

// Store is an in-memory storage.Store. The zero value is not usable; call
// New.
type Store struct {
	closed atomic.Bool

	subMu sync.RWMutex
	// subs maps an IMPI to its subscriber. The key, the byIMPU entries and
	// the impis entry of a subscriber are substrings of its encoding.
	subs   map[string]subscriber
	byIMPU map[string]string // IMPU -> IMPI
	impis  []string          // sorted IMPIs, for cursor pagination

	seed      maphash.Seed
	nBindings atomic.Int64 // over all shards, so CountBindings takes no lock
	shards    [shardCount]shard

	msgs messages

	cluster *lease.Table
}

// subscriber is a stored subscriber: its encoding, and its SQN, which
// NextSQN advances without re-encoding (the encoded SQN is not used).
type subscriber struct {
	enc string
	sqn uint64
}

type shard struct {
	mu sync.RWMutex
	// aors maps an AOR to its bindings. Each key is a substring of its
	// value's encoding.
	aors map[string]aorBindings
	// Pad each shard to its own cache line(s) so that locking one shard
	// does not invalidate its neighbours in other cores' caches.
	_ [64]byte
}

// aorBindings are the bindings of one AOR, in first-registered order.
type aorBindings struct {
	enc      string    // codec.AppendBindings encoding; never empty of bindings
	earliest time.Time // the earliest Expires among them, in UTC
	n        int       // how many there are
}

// expiredAt reports whether a binding of a is expired at now.
func (a *aorBindings) expiredAt(now time.Time) bool { return !a.earliest.After(now) }

var _ storage.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	s := &Store{
		subs:   make(map[string]subscriber),
		byIMPU: make(map[string]string),
		seed:   maphash.MakeSeed(),
		msgs:   newMessages(),

		cluster: lease.New(),
	}
	for i := range s.shards {
		s.shards[i].aors = make(map[string]aorBindings)
	}
	return s
}

func (s *Store) shard(aor string) *shard {
	return &s.shards[maphash.String(s.seed, aor)%shardCount]
}

func errClosed() error { return fmt.Errorf("memory: %w", storage.ErrClosed) }

// decodeSubscriber decodes a stored subscriber. The store wrote the
// encoding itself, so a failure is a bug in the codec.
func decodeSubscriber(e subscriber) storage.Subscriber {
	sub, err := codec.DecodeSubscriber(e.enc)
	if err != nil {
		panic(fmt.Sprintf("memory: stored subscriber does not decode: %v", err))
	}
	sub.SQN = e.sqn
	return sub
}

// decodeBindings decodes stored bindings, keeping those live at now when
// liveOnly is set. Like decodeSubscriber it cannot fail but for a bug.
func decodeBindings(enc string, now time.Time, liveOnly bool) []storage.Binding {
	var keep func(*storage.Binding) bool
	if liveOnly {
		keep = func(b *storage.Binding) bool { return b.Expires.After(now) }
	}
	bs, err := codec.DecodeBindings(enc, keep)
	if err != nil {
		panic(fmt.Sprintf("memory: stored bindings do not decode: %v", err))
	}
	return bs
}

// PutSubscribers implements storage.SubscriberStore.
func (s *Store) PutSubscribers(_ context.Context, subs []storage.Subscriber) error {
	if len(subs) == 0 {
		return nil
	}
	inBatch, err := check.Subscribers(subs)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	// Encode before locking: it is the bulk of the work for large
	// batches. The decoded copies give the index its keys: substrings of
	// the encodings.
	encs := make([]subscriber, len(subs))
	decoded := make([]storage.Subscriber, len(subs))
	var buf []byte
	for i := range subs {
		buf = codec.AppendSubscriber(buf[:0], &subs[i])
		encs[i] = subscriber{enc: string(buf), sqn: subs[i].SQN}
		decoded[i] = decodeSubscriber(encs[i])
	}

	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.closed.Load() {
		return errClosed()
	}
	// Check everything before writing anything: the batch is atomic. An
	// IMPU owned by a subscriber of this same batch is free, since that
	// subscriber's old IMPUs are all released below.
	for i := range subs {
		for _, u := range subs[i].IMPUs {
			owner, ok := s.byIMPU[u]
			if !ok || owner == subs[i].IMPI {
				continue
			}
			if _, moving := inBatch[owner]; !moving {
				return fmt.Errorf("memory: public identity %q of %q belongs to %q: %w", u, subs[i].IMPI, owner, storage.ErrConflict)
			}
		}
	}
	// Release the old IMPUs of replaced subscribers before claiming new
	// ones, so IMPUs can move between subscribers of one batch. The old
	// entries go entirely, keys included, so that nothing keeps an old
	// encoding alive.
	var added []string
	for i := range decoded {
		impi := decoded[i].IMPI
		old, ok := s.subs[impi]
		if !ok {
			added = append(added, impi)
			continue
		}
		for _, u := range decodeSubscriber(old).IMPUs {
			if s.byIMPU[u] == impi {
				delete(s.byIMPU, u)
			}
		}
		delete(s.subs, impi)
		if k, found := slices.BinarySearch(s.impis, impi); found {
			s.impis[k] = impi
		}
	}
	for i := range decoded {
		d := &decoded[i]
		s.subs[d.IMPI] = encs[i]
		for _, u := range d.IMPUs {
			s.byIMPU[u] = d.IMPI
		}
	}
	if len(added) > 0 {
		slices.Sort(added)
		s.impis = mergeSorted(s.impis, added)
	}
	return nil
}

// mergeSorted merges two sorted, disjoint slices. A merge keeps bulk
// provisioning O(n) where inserting one by one would be O(n²).
func mergeSorted(a, b []string) []string {
	if len(a) == 0 {
		return b
	}
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] < b[j] {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// NextSQN implements storage.SubscriberStore.
func (s *Store) NextSQN(_ context.Context, impi string, floor uint64) (uint64, error) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.closed.Load() {
		return 0, errClosed()
	}
	sub, ok := s.subs[impi]
	if !ok {
		return 0, fmt.Errorf("memory: subscriber %q: %w", impi, storage.ErrNotFound)
	}
	next := max(sub.sqn, floor) + 1
	if next > storage.SQNMax {
		return 0, fmt.Errorf("memory: SQN of %q past 48 bits: %w", impi, storage.ErrInvalid)
	}
	sub.sqn = next
	s.subs[impi] = sub
	return next, nil
}

// SubscriberByIMPI implements storage.SubscriberStore.
func (s *Store) SubscriberByIMPI(_ context.Context, impi string) (storage.Subscriber, error) {
	s.subMu.RLock()
	if s.closed.Load() {
		s.subMu.RUnlock()
		return storage.Subscriber{}, errClosed()
	}
	sub, ok := s.subs[impi]
	s.subMu.RUnlock()
	if !ok {
		return storage.Subscriber{}, fmt.Errorf("memory: subscriber %q: %w", impi, storage.ErrNotFound)
	}
	return decodeSubscriber(sub), nil
}

// SubscriberByIMPU implements storage.SubscriberStore.
func (s *Store) SubscriberByIMPU(_ context.Context, impu string) (storage.Subscriber, error) {
	s.subMu.RLock()
	if s.closed.Load() {
		s.subMu.RUnlock()
		return storage.Subscriber{}, errClosed()
	}
	impi, ok := s.byIMPU[impu]
	sub := s.subs[impi]
	s.subMu.RUnlock()
	if !ok {
		return storage.Subscriber{}, fmt.Errorf("memory: public identity %q: %w", impu, storage.ErrNotFound)
	}
	return decodeSubscriber(sub), nil
}

// ListSubscribers implements storage.SubscriberStore. limit <= 0 means no
// limit.
func (s *Store) ListSubscribers(_ context.Context, after string, limit int) ([]storage.Subscriber, error) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	if s.closed.Load() {
		return nil, errClosed()
	}
	i, found := slices.BinarySearch(s.impis, after)
	if found {
		i++
	}
	page := s.impis[i:]
	if limit > 0 && len(page) > limit {
		page = page[:limit]
	}
	if len(page) == 0 {
		return nil, nil
	}
	out := make([]storage.Subscriber, len(page))
	for k, impi := range page {
		out[k] = decodeSubscriber(s.subs[impi])
	}
	return out, nil
}

// DeleteSubscriber implements storage.SubscriberStore.
func (s *Store) DeleteSubscriber(_ context.Context, impi string) error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.closed.Load() {
		return errClosed()
	}
	sub, ok := s.subs[impi]
	if !ok {
		return fmt.Errorf("memory: subscriber %q: %w", impi, storage.ErrNotFound)
	}
	for _, u := range decodeSubscriber(sub).IMPUs {
		if s.byIMPU[u] == impi {
			delete(s.byIMPU, u)
		}
	}
	delete(s.subs, impi)
	if i, found := slices.BinarySearch(s.impis, impi); found {
		s.impis = slices.Delete(s.impis, i, i+1)
	}
	return nil
}

// CountSubscribers implements storage.SubscriberStore.
func (s *Store) CountSubscribers(context.Context) (int, error) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	if s.closed.Load() {
		return 0, errClosed()
	}
	return len(s.subs), nil
}

// Bindings implements storage.BindingStore.
func (s *Store) Bindings(_ context.Context, aor string, now time.Time) ([]storage.Binding, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	sh := s.shard(aor)
	sh.mu.RLock()
	a, ok := sh.aors[aor]
	sh.mu.RUnlock()
	if !ok {
		return nil, nil
	}
	// Decoded outside the lock: the encoding is never modified.
	return decodeBindings(a.enc, now, true), nil
}

// AppendEncodedBindings appends every stored binding of aor, expired ones
// included, in the encoding of storage/internal/codec (AppendBindings) to
// dst, and reports whether aor has any; it appends nothing when it has
// none. It is for the bolt backend, which persists that encoding as is.
func (s *Store) AppendEncodedBindings(dst []byte, aor string) ([]byte, bool, error) {
	if s.closed.Load() {
		return dst, false, errClosed()
	}
	sh := s.shard(aor)
	sh.mu.RLock()
	a, ok := sh.aors[aor]
	sh.mu.RUnlock()
	if !ok {
		return dst, false, nil
	}
	return append(dst, a.enc...), true, nil
}

// UpdateBindings implements storage.BindingStore. fn runs with the AOR's
// shard locked, exactly once, and must not call the store. It returns the
// bindings now stored, expired ones fn chose to keep included.
func (s *Store) UpdateBindings(_ context.Context, aor string, now time.Time, fn func(cur []storage.Binding) ([]storage.Binding, error)) ([]storage.Binding, error) {
	if aor == "" {
		return nil, fmt.Errorf("memory: empty AOR: %w", storage.ErrInvalid)
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	sh := s.shard(aor)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old, had := sh.aors[aor]
	var cur []storage.Binding
	if had {
		cur = decodeBindings(old.enc, now, true)
	}
	next, err := fn(cur)
	if err != nil {
		return nil, err
	}
	if err := check.Bindings(aor, next); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	s.nBindings.Add(int64(len(next) - old.n))
	if len(next) == 0 {
		delete(sh.aors, aor)
		return nil, nil
	}
	a := encodeBindings(next)
	sh.aors[a.key()] = a
	return decodeBindings(a.enc, time.Time{}, false), nil
}

// key returns the AOR of a as a substring of its encoding, to key the shard
// map with: assigning to an existing string key replaces the key too, so
// the map does not keep a replaced encoding alive through its key.
func (a *aorBindings) key() string {
	aor, err := codec.FirstAOR(a.enc)
	if err != nil {
		panic(fmt.Sprintf("memory: stored bindings do not decode: %v", err))
	}
	return aor
}

// encodeBindings encodes a non-empty bindings list for storing.
func encodeBindings(bs []storage.Binding) aorBindings {
	var buf [1024]byte
	a := aorBindings{enc: string(codec.AppendBindings(buf[:0], bs)), n: len(bs), earliest: bs[0].Expires}
	for i := 1; i < len(bs); i++ {
		if bs[i].Expires.Before(a.earliest) {
			a.earliest = bs[i].Expires
		}
	}
	// UTC also drops the monotonic reading and the zone pointer.
	a.earliest = a.earliest.UTC()
	return a
}

// ExpireBindings implements storage.BindingStore. Expired bindings are
// returned in no particular order.
func (s *Store) ExpireBindings(_ context.Context, now time.Time, limit int) ([]storage.Binding, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	var out []storage.Binding
	for i := range s.shards {
		if limit > 0 && len(out) >= limit {
			break
		}
		sh := &s.shards[i]
		// Look under the read lock first: most sweeps find most shards
		// with nothing to do, and should not stall their REGISTERs.
		sh.mu.RLock()
		found := shardHasExpired(sh.aors, now)
		sh.mu.RUnlock()
		if !found {
			continue
		}
		sh.mu.Lock()
		n := len(out)
		out = sh.expire(out, now, limit)
		sh.mu.Unlock()
		s.nBindings.Add(-int64(len(out) - n))
	}
	return out, nil
}

func shardHasExpired(aors map[string]aorBindings, now time.Time) bool {
	for _, a := range aors {
		if a.expiredAt(now) {
			return true
		}
	}
	return false
}

// expire moves the shard's bindings expired at now to out, up to limit in
// total. The removed bindings' strings share the replaced encoding, which
// nothing in the store refers to any more.
func (sh *shard) expire(out []storage.Binding, now time.Time, limit int) []storage.Binding {
	for aor, a := range sh.aors {
		if limit > 0 && len(out) >= limit {
			break
		}
		if !a.expiredAt(now) {
			continue
		}
		bs := decodeBindings(a.enc, time.Time{}, false)
		kept := 0
		for j := range bs {
			if (limit <= 0 || len(out) < limit) && !bs[j].Expires.After(now) {
				out = append(out, bs[j])
				continue
			}
			bs[kept] = bs[j] // kept <= j: bs[kept] has been looked at already
			kept++
		}
		if kept == 0 {
			delete(sh.aors, aor)
			continue
		}
		// Assigning to the key being visited is allowed during range.
		rest := encodeBindings(bs[:kept])
		sh.aors[rest.key()] = rest
	}
	return out
}

// CountBindings implements storage.BindingStore.
func (s *Store) CountBindings(context.Context) (int, error) {
	if s.closed.Load() {
		return 0, errClosed()
	}
	return int(s.nBindings.Load()), nil
}

// AORs implements storage.BindingStore.
func (s *Store) AORs(_ context.Context, after string, limit int) ([]string, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	var out []string
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for aor := range sh.aors {
			if aor > after {
				out = append(out, aor)
			}
		}
		sh.mu.RUnlock()
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Ping implements storage.Store.
func (s *Store) Ping(context.Context) error {
	if s.closed.Load() {
		return errClosed()
	}
	return nil
}

// Close implements storage.Store. Later calls fail with storage.ErrClosed;
// closing twice is harmless.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}
