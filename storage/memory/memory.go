// Package memory is the in-process storage backend: maps guarded by
// read-write mutexes, nothing persisted. It serves single-node deployments
// and tests, and it is the live binding table of the bolt backend, so the
// binding path is built for a registrar's hot loop (10 000+ REGISTER/s):
//
//   - Bindings are spread over shards, each with its own lock, so REGISTERs
//     for different AORs do not serialise on one mutex and an expiry sweep
//     holds up only one shard at a time.
//   - Values are copied on the way in and out, so callers never alias the
//     store's slices, but a copy of an AOR's bindings costs at most two
//     allocations (the bindings, and one array shared by all their Path
//     entries) and a subscriber copy at most two (IMPUs, and one array for
//     its key material).
//   - ExpireBindings scans (O(number of bindings)) instead of keeping an
//     expiry index that every REGISTER would have to maintain; a scan that
//     finds nothing expired takes only read locks and allocates nothing.
//
// Times are stored in UTC. UpdateBindings runs fn while the AOR's shard is
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
)

// shardCount is a power of two well above the core counts rcsd runs on, so
// two REGISTERs rarely contend for a shard.
const shardCount = 64

// Store is an in-memory storage.Store. The zero value is not usable; call
// New.
type Store struct {
	closed atomic.Bool

	subMu  sync.RWMutex
	subs   map[string]storage.Subscriber // IMPI -> subscriber (owned copy)
	byIMPU map[string]string             // IMPU -> IMPI
	impis  []string                      // sorted IMPIs, for cursor pagination

	seed      maphash.Seed
	nBindings atomic.Int64 // over all shards, so CountBindings takes no lock
	shards    [shardCount]shard
}

type shard struct {
	mu sync.RWMutex
	// aors maps an AOR to its bindings in first-registered order. The
	// slices are owned by the store and never handed out.
	aors map[string][]storage.Binding
	// Pad each shard to its own cache line(s) so that locking one shard
	// does not invalidate its neighbours in other cores' caches.
	_ [64]byte
}

var _ storage.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	s := &Store{
		subs:   make(map[string]storage.Subscriber),
		byIMPU: make(map[string]string),
		seed:   maphash.MakeSeed(),
	}
	for i := range s.shards {
		s.shards[i].aors = make(map[string][]storage.Binding)
	}
	return s
}

func (s *Store) shard(aor string) *shard {
	return &s.shards[maphash.String(s.seed, aor)%shardCount]
}

func errClosed() error { return fmt.Errorf("memory: %w", storage.ErrClosed) }

// PutSubscribers implements storage.SubscriberStore.
func (s *Store) PutSubscribers(_ context.Context, subs []storage.Subscriber) error {
	if len(subs) == 0 {
		return nil
	}
	inBatch, err := check.Subscribers(subs)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	// Copy before locking: it is the bulk of the work for large batches.
	copies := make([]storage.Subscriber, len(subs))
	for i := range subs {
		copies[i] = cloneSubscriber(&subs[i])
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
	// ones, so IMPUs can move between subscribers of one batch.
	var added []string
	for i := range copies {
		old, ok := s.subs[copies[i].IMPI]
		if !ok {
			added = append(added, copies[i].IMPI)
			continue
		}
		for _, u := range old.IMPUs {
			if s.byIMPU[u] == old.IMPI {
				delete(s.byIMPU, u)
			}
		}
	}
	for i := range copies {
		c := copies[i]
		s.subs[c.IMPI] = c
		for _, u := range c.IMPUs {
			s.byIMPU[u] = c.IMPI
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

// SubscriberByIMPI implements storage.SubscriberStore.
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
	next := max(sub.SQN, floor) + 1
	if next > storage.SQNMax {
		return 0, fmt.Errorf("memory: SQN of %q past 48 bits: %w", impi, storage.ErrInvalid)
	}
	sub.SQN = next
	s.subs[impi] = sub
	return next, nil
}

func (s *Store) SubscriberByIMPI(_ context.Context, impi string) (storage.Subscriber, error) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	if s.closed.Load() {
		return storage.Subscriber{}, errClosed()
	}
	sub, ok := s.subs[impi]
	if !ok {
		return storage.Subscriber{}, fmt.Errorf("memory: subscriber %q: %w", impi, storage.ErrNotFound)
	}
	return cloneSubscriber(&sub), nil
}

// SubscriberByIMPU implements storage.SubscriberStore.
func (s *Store) SubscriberByIMPU(_ context.Context, impu string) (storage.Subscriber, error) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	if s.closed.Load() {
		return storage.Subscriber{}, errClosed()
	}
	impi, ok := s.byIMPU[impu]
	if !ok {
		return storage.Subscriber{}, fmt.Errorf("memory: public identity %q: %w", impu, storage.ErrNotFound)
	}
	sub := s.subs[impi]
	return cloneSubscriber(&sub), nil
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
		sub := s.subs[impi]
		out[k] = cloneSubscriber(&sub)
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
	for _, u := range sub.IMPUs {
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
	out := cloneBindings(sh.aors[aor], now, true)
	sh.mu.RUnlock()
	return out, nil
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
	old := sh.aors[aor]
	next, err := fn(cloneBindings(old, now, true))
	if err != nil {
		return nil, err
	}
	if err := check.Bindings(aor, next); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	stored := cloneBindings(next, time.Time{}, false)
	for i := range stored {
		// UTC also drops the monotonic reading, which means nothing once
		// stored and would make equal times compare unequal.
		stored[i].Expires = stored[i].Expires.UTC()
		stored[i].RegisteredAt = stored[i].RegisteredAt.UTC()
	}
	if len(stored) == 0 {
		delete(sh.aors, aor)
	} else {
		sh.aors[aor] = stored
	}
	s.nBindings.Add(int64(len(stored) - len(old)))
	return cloneBindings(stored, time.Time{}, false), nil
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

func shardHasExpired(aors map[string][]storage.Binding, now time.Time) bool {
	for _, bs := range aors {
		for i := range bs {
			if !bs[i].Expires.After(now) {
				return true
			}
		}
	}
	return false
}

// expire moves the shard's bindings expired at now to out, up to limit in
// total. Removed bindings are handed out without copying: nothing in the
// store refers to them any more, and each Path is capped to its own
// segment of the shared array, so the caller cannot reach a live binding
// through it.
func (sh *shard) expire(out []storage.Binding, now time.Time, limit int) []storage.Binding {
	for aor, bs := range sh.aors {
		kept := 0
		for j := range bs {
			if (limit <= 0 || len(out) < limit) && !bs[j].Expires.After(now) {
				out = append(out, bs[j])
				continue
			}
			bs[kept] = bs[j] // kept <= j: bs[kept] has been looked at already
			kept++
		}
		if kept == len(bs) {
			continue
		}
		clear(bs[kept:]) // drop references so removed bindings can be collected
		if kept == 0 {
			delete(sh.aors, aor)
		} else {
			sh.aors[aor] = bs[:kept]
		}
		if limit > 0 && len(out) >= limit {
			break
		}
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

// cloneSubscriber deep-copies sub. Empty slices come back nil, as they do
// from a backend that serialises with omitempty, so all backends agree.
func cloneSubscriber(sub *storage.Subscriber) storage.Subscriber {
	c := *sub
	c.IMPUs = nil
	if len(sub.IMPUs) > 0 {
		c.IMPUs = slices.Clone(sub.IMPUs)
	}
	n := len(sub.K) + len(sub.OP) + len(sub.OPc) + len(sub.AMF)
	if n == 0 {
		c.K, c.OP, c.OPc, c.AMF = nil, nil, nil, nil
		return c
	}
	buf := make([]byte, 0, n)
	c.K, buf = carve(buf, sub.K)
	c.OP, buf = carve(buf, sub.OP)
	c.OPc, buf = carve(buf, sub.OPc)
	c.AMF, _ = carve(buf, sub.AMF)
	return c
}

// carve appends b to buf and returns the appended segment capped at its
// length, so appending to it reallocates instead of overwriting the next
// segment. buf must have capacity for b.
func carve(buf, b []byte) (seg, rest []byte) {
	if len(b) == 0 {
		return nil, buf
	}
	start := len(buf)
	buf = append(buf, b...)
	return buf[start:len(buf):len(buf)], buf
}

// cloneBindings deep-copies src, leaving out bindings expired at now when
// liveOnly is set. It returns nil when nothing is left, and otherwise
// allocates once for the bindings and once for all their Path entries.
func cloneBindings(src []storage.Binding, now time.Time, liveOnly bool) []storage.Binding {
	n, paths := 0, 0
	for i := range src {
		if liveOnly && !src[i].Expires.After(now) {
			continue
		}
		n++
		paths += len(src[i].Path)
	}
	if n == 0 {
		return nil
	}
	out := make([]storage.Binding, 0, n)
	var arena []string
	if paths > 0 {
		arena = make([]string, paths)
	}
	for i := range src {
		if liveOnly && !src[i].Expires.After(now) {
			continue
		}
		b := src[i]
		if len(b.Path) > 0 {
			k := copy(arena, b.Path)
			b.Path = arena[:k:k]
			arena = arena[k:]
		} else {
			b.Path = nil
		}
		out = append(out, b)
	}
	return out
}
