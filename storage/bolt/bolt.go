// Package bolt is the embedded, file-backed storage backend: one bbolt
// database, dir/rcsd.db, for single-node deployments that must survive a
// restart without an external database.
//
// Subscribers are provisioning data: they are read from and written to
// bbolt directly, and every PutSubscribers or DeleteSubscriber is one
// committed (fsynced) transaction, so a call that returned is durable.
//
// Bindings are soft state that changes on every REGISTER, far too often for
// an fsync each. They live in an embedded memory.Store, which is
// authoritative and serves all binding reads and updates, and are persisted
// write-behind: the AORs changed since the last flush are written in one
// bbolt transaction every Options.FlushInterval (200ms by default) by a
// background goroutine, and once more by Close. On Open every stored
// binding, expired or not, is loaded back into memory, so ExpireBindings
// still reports the ones that lapsed while rcsd was down.
//
// Crash window: a kill -9, crash or power loss loses at most the binding
// changes of the last FlushInterval (plus a flush that was in progress).
// That is acceptable for soft state: a handset whose registration was lost
// re-registers when its binding is refreshed or its connection drops, and a
// binding whose removal was lost simply expires. A clean shutdown (Close)
// loses nothing.
//
// Only one process may open a database: a second one fails after
// Options.LockTimeout with an error wrapping ErrLocked.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"rcsd/storage"
	"rcsd/storage/internal/check"
	"rcsd/storage/internal/codec"
	"rcsd/storage/memory"
)

// FileName is the database file Open creates in its directory.
const FileName = "rcsd.db"

// Defaults for Options.
const (
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultLockTimeout   = time.Second
)

// ErrLocked means another process has the database open.
var ErrLocked = errors.New("database is locked by another process")

// schemaVersion is stored in the meta bucket, so that a layout change can
// recognise (and migrate or refuse) an old file. Version 1 stored values as
// JSON; version 2 stores them in the binary encoding of
// storage/internal/codec. A file of another version is refused.
const schemaVersion = "2"

var (
	bucketMeta        = []byte("meta")
	bucketSubscribers = []byte("subscribers") // IMPI -> codec.AppendSubscriber
	bucketIMPU        = []byte("impu")        // IMPU -> IMPI
	bucketBindings    = []byte("bindings")    // AOR -> codec.AppendBindings
	keySchema         = []byte("schema")
)

// maxFlushBuf is the largest flush buffer kept for the next flush.
const maxFlushBuf = 1 << 20

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// FlushInterval is how often changed bindings are written to disk, and
	// so the most binding changes a crash can lose. Default 200ms.
	FlushInterval time.Duration
	// LockTimeout is how long Open waits for another process to release
	// the database before failing with ErrLocked. Default 1s.
	LockTimeout time.Duration
	// OnFlushError, if set, is called from the background flusher when
	// writing bindings fails (the AORs stay dirty and are retried on the
	// next tick). Ping reports the failure too until a flush succeeds.
	OnFlushError func(error)
}

// Store is a bbolt-backed storage.Store.
type Store struct {
	db   *bbolt.DB
	mem  *memory.Store // authoritative bindings
	opts Options

	// life makes Close wait for binding updates in flight: they hold it
	// shared from the memory update until the AOR is marked dirty, so the
	// final flush sees every update that was acknowledged.
	life   sync.RWMutex
	closed atomic.Bool

	dirtyMu sync.Mutex
	dirty   map[string]struct{} // AORs changed since the last flush

	// flushMu serialises flushes: two overlapping flushes could commit an
	// older snapshot of an AOR after a newer one.
	flushMu  sync.Mutex
	spare    map[string]struct{} // the other half of the dirty double buffer; under flushMu
	flushBuf []byte              // encoding buffer of the flushes; under flushMu
	flushErr atomic.Pointer[error]

	msgCount atomic.Int64 // stored messages (CountMessages)

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if needed) the database in dir, loads the stored
// bindings into memory and starts the background flusher.
func Open(dir string, opts Options) (*Store, error) {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	// 0700: the database holds digest HA1s and AKA keys, which are
	// password equivalents.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bolt: creating data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: opts.LockTimeout,
		// The hashmap freelist stays fast as the file grows and fragments.
		FreelistType: bbolt.FreelistMapType,
		// Map 256 MiB of address space up front (not memory; outside
		// Windows the file does not grow to it): every remap while a
		// transaction grows the file copies all its dirty nodes, which
		// made loading 100 000 subscribers take 1.6s instead of 1.0s.
		InitialMmapSize: 256 << 20,
	})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: opening %s: %w (waited %v)", path, ErrLocked, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: opening %s: %w", path, err)
	}
	// Group commit for stored messages: callers arriving within 2ms share
	// one transaction and fsync (bbolt's 10ms default would add that much
	// to every 202 at low rates).
	db.MaxBatchDelay = 2 * time.Millisecond
	s := &Store{
		db:    db,
		mem:   memory.New(),
		opts:  opts,
		dirty: make(map[string]struct{}),
		spare: make(map[string]struct{}),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: opening %s: %w", path, err)
	}
	go s.flusher()
	return s, nil
}

// init creates the buckets of a new file, checks the schema of an old one
// and loads its bindings.
func (s *Store) init() error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
		case string(v) != schemaVersion:
			return fmt.Errorf("database has schema version %q, but this rcsd reads only schema version %q; it cannot use the file", v, schemaVersion)
		}
		// The message buckets came after schema 2 was set; creating them
		// when missing keeps older files of the same schema usable.
		for _, name := range [][]byte{bucketSubscribers, bucketIMPU, bucketBindings, bucketMessages, bucketMsgExpiry, bucketMsgDedupExp, bucketRetryAt, bucketRetryOf} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		s.msgCount.Store(countMessages(tx))
		ctx := context.Background()
		return tx.Bucket(bucketBindings).ForEach(func(k, v []byte) error {
			// string(v) copies out of the memory map, which the
			// decoded bindings' strings share.
			bs, err := codec.DecodeBindings(string(v), nil)
			if err != nil {
				return fmt.Errorf("decoding bindings of %q: %w", k, err)
			}
			// The zero "now" hands fn nothing and keeps expired bindings.
			_, err = s.mem.UpdateBindings(ctx, string(k), time.Time{}, func([]storage.Binding) ([]storage.Binding, error) {
				return bs, nil
			})
			if err != nil {
				return fmt.Errorf("loading bindings of %q: %w", k, err)
			}
			return nil
		})
	})
}

// dbErr wraps an error from bbolt, turning "database not open" (a call
// racing Close) into storage.ErrClosed.
func dbErr(op string, err error) error {
	if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("bolt: %s: %w", op, storage.ErrClosed)
	}
	return fmt.Errorf("bolt: %s: %w", op, err)
}

func (s *Store) ready(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	return ctx.Err()
}

// --- subscribers -----------------------------------------------------------

// bulkBatch is the PutSubscribers batch size from which pages are packed
// tightly (see there).
const bulkBatch = 1000

// PutSubscribers implements storage.SubscriberStore. The batch is one
// transaction; bulk loads of 100 000 subscribers take well under a second.
func (s *Store) PutSubscribers(ctx context.Context, subs []storage.Subscriber) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if len(subs) == 0 {
		return nil
	}
	inBatch, err := check.Subscribers(subs)
	if err != nil {
		return fmt.Errorf("bolt: %w", err)
	}
	// Encode and sort outside the transaction, which holds the single
	// writer lock. Sorted keys make bbolt's inserts nearly sequential.
	type kv struct{ k, v []byte }
	recs := make([]kv, len(subs))
	nIMPU := 0
	for i := range subs {
		nIMPU += len(subs[i].IMPUs)
	}
	index := make([]kv, 0, nIMPU)
	// The values are carved out of 64 KiB chunks rather than allocated
	// one by one. A Put value must stay unchanged until the transaction
	// ends, and appending never changes bytes already appended (growing
	// copies them to a new array and leaves the old one as it was).
	var buf []byte
	for i := range subs {
		if cap(buf)-len(buf) < 1024 {
			buf = make([]byte, 0, 64<<10)
		}
		start := len(buf)
		buf = codec.AppendSubscriber(buf, &subs[i])
		recs[i] = kv{[]byte(subs[i].IMPI), buf[start:len(buf):len(buf)]}
		for _, u := range subs[i].IMPUs {
			index = append(index, kv{[]byte(u), recs[i].k})
		}
	}
	byKey := func(a, b kv) int { return bytes.Compare(a.k, b.k) }
	slices.SortFunc(recs, byKey)
	slices.SortFunc(index, byKey)

	err = s.db.Update(func(tx *bbolt.Tx) error {
		sb, ib := tx.Bucket(bucketSubscribers), tx.Bucket(bucketIMPU)
		if len(recs) >= bulkBatch {
			// A bulk load inserts mostly ascending keys: pack pages
			// instead of leaving them half empty, which halves the
			// bytes written and the file size.
			sb.FillPercent, ib.FillPercent = 0.9, 0.9
		}
		// Check everything before writing anything. An IMPU owned by a
		// subscriber of this batch is free: all its old IMPUs are
		// released below.
		for _, e := range index {
			owner := ib.Get(e.k)
			if owner == nil || bytes.Equal(owner, e.v) {
				continue
			}
			if _, moving := inBatch[string(owner)]; !moving {
				return fmt.Errorf("public identity %q of %q belongs to %q: %w", e.k, e.v, owner, storage.ErrConflict)
			}
		}
		// Release the old IMPUs of replaced subscribers before claiming
		// the new ones, so IMPUs can move within the batch.
		for _, r := range recs {
			old := sb.Get(r.k)
			if old == nil {
				continue
			}
			prev, err := codec.DecodeSubscriber(string(old))
			if err != nil {
				return fmt.Errorf("decoding subscriber %q: %w", r.k, err)
			}
			for _, u := range prev.IMPUs {
				if bytes.Equal(ib.Get([]byte(u)), r.k) {
					if err := ib.Delete([]byte(u)); err != nil {
						return err
					}
				}
			}
		}
		for _, r := range recs {
			if err := sb.Put(r.k, r.v); err != nil {
				return err
			}
		}
		for _, e := range index {
			if err := ib.Put(e.k, e.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return dbErr("putting subscribers", err)
	}
	return nil
}

// SubscriberByIMPI implements storage.SubscriberStore.
func (s *Store) SubscriberByIMPI(ctx context.Context, impi string) (storage.Subscriber, error) {
	if err := s.ready(ctx); err != nil {
		return storage.Subscriber{}, err
	}
	var sub storage.Subscriber
	err := s.db.View(func(tx *bbolt.Tx) error {
		return getSubscriber(tx, []byte(impi), &sub)
	})
	if err != nil {
		return storage.Subscriber{}, dbErr("subscriber by IMPI", err)
	}
	return sub, nil
}

// NextSQN implements storage.SubscriberStore: one write transaction, so
// concurrent challenges never share an SQN.
func (s *Store) NextSQN(ctx context.Context, impi string, floor uint64) (uint64, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	var next uint64
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var sub storage.Subscriber
		if err := getSubscriber(tx, []byte(impi), &sub); err != nil {
			return err
		}
		next = max(sub.SQN, floor) + 1
		if next > storage.SQNMax {
			return fmt.Errorf("SQN of %q past 48 bits: %w", impi, storage.ErrInvalid)
		}
		sub.SQN = next
		return tx.Bucket(bucketSubscribers).Put([]byte(impi), codec.AppendSubscriber(nil, &sub))
	})
	if err != nil {
		return 0, dbErr("advancing SQN", err)
	}
	return next, nil
}

// SubscriberByIMPU implements storage.SubscriberStore.
func (s *Store) SubscriberByIMPU(ctx context.Context, impu string) (storage.Subscriber, error) {
	if err := s.ready(ctx); err != nil {
		return storage.Subscriber{}, err
	}
	var sub storage.Subscriber
	err := s.db.View(func(tx *bbolt.Tx) error {
		impi := tx.Bucket(bucketIMPU).Get([]byte(impu))
		if impi == nil {
			return fmt.Errorf("public identity %q: %w", impu, storage.ErrNotFound)
		}
		return getSubscriber(tx, impi, &sub)
	})
	if err != nil {
		return storage.Subscriber{}, dbErr("subscriber by IMPU", err)
	}
	return sub, nil
}

func getSubscriber(tx *bbolt.Tx, impi []byte, sub *storage.Subscriber) error {
	v := tx.Bucket(bucketSubscribers).Get(impi)
	if v == nil {
		return fmt.Errorf("subscriber %q: %w", impi, storage.ErrNotFound)
	}
	// string(v) copies: nothing refers to bbolt's memory map after the
	// transaction.
	dec, err := codec.DecodeSubscriber(string(v))
	if err != nil {
		return fmt.Errorf("decoding subscriber %q: %w", impi, err)
	}
	*sub = dec
	return nil
}

// ListSubscribers implements storage.SubscriberStore. limit <= 0 means no
// limit.
func (s *Store) ListSubscribers(ctx context.Context, after string, limit int) ([]storage.Subscriber, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var out []storage.Subscriber
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketSubscribers).Cursor()
		var k, v []byte
		if after == "" {
			k, v = c.First()
		} else if k, v = c.Seek([]byte(after)); k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			sub, err := codec.DecodeSubscriber(string(v))
			if err != nil {
				return fmt.Errorf("decoding subscriber %q: %w", k, err)
			}
			out = append(out, sub)
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("listing subscribers", err)
	}
	return out, nil
}

// DeleteSubscriber implements storage.SubscriberStore.
func (s *Store) DeleteSubscriber(ctx context.Context, impi string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	key := []byte(impi)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		sb, ib := tx.Bucket(bucketSubscribers), tx.Bucket(bucketIMPU)
		v := sb.Get(key)
		if v == nil {
			return fmt.Errorf("subscriber %q: %w", impi, storage.ErrNotFound)
		}
		prev, err := codec.DecodeSubscriber(string(v))
		if err != nil {
			return fmt.Errorf("decoding subscriber %q: %w", impi, err)
		}
		for _, u := range prev.IMPUs {
			if bytes.Equal(ib.Get([]byte(u)), key) {
				if err := ib.Delete([]byte(u)); err != nil {
					return err
				}
			}
		}
		return sb.Delete(key)
	})
	if err != nil {
		return dbErr("deleting subscriber", err)
	}
	return nil
}

// CountSubscribers implements storage.SubscriberStore. It walks the
// bucket's pages (milliseconds for a million subscribers) rather than
// keeping a counter that could drift from the data.
func (s *Store) CountSubscribers(ctx context.Context) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	var n int
	err := s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketSubscribers).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, dbErr("counting subscribers", err)
	}
	return n, nil
}

// --- bindings --------------------------------------------------------------

// Bindings implements storage.BindingStore from memory.
func (s *Store) Bindings(ctx context.Context, aor string, now time.Time) ([]storage.Binding, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	return s.mem.Bindings(ctx, aor, now)
}

// UpdateBindings implements storage.BindingStore: the change is made in
// memory and written to disk by the next flush.
func (s *Store) UpdateBindings(ctx context.Context, aor string, now time.Time, fn func(cur []storage.Binding) ([]storage.Binding, error)) ([]storage.Binding, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed.Load() {
		return nil, fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	bs, err := s.mem.UpdateBindings(ctx, aor, now, fn)
	if err != nil {
		return nil, err
	}
	// Marked after the change: a flush that took the dirty set in between
	// already sees the change, and this mark makes the next one write it
	// again, which is harmless.
	s.markDirty(aor)
	return bs, nil
}

// ExpireBindings implements storage.BindingStore.
func (s *Store) ExpireBindings(ctx context.Context, now time.Time, limit int) ([]storage.Binding, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed.Load() {
		return nil, fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	bs, err := s.mem.ExpireBindings(ctx, now, limit)
	if err != nil {
		return nil, err
	}
	if len(bs) > 0 {
		s.dirtyMu.Lock()
		for i := range bs {
			s.dirty[bs[i].AOR] = struct{}{}
		}
		s.dirtyMu.Unlock()
	}
	return bs, nil
}

// CountBindings implements storage.BindingStore.
func (s *Store) CountBindings(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	return s.mem.CountBindings(ctx)
}

// AORs implements storage.BindingStore (from the live table, which holds
// every binding).
func (s *Store) AORs(ctx context.Context, after string, limit int) ([]string, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	return s.mem.AORs(ctx, after, limit)
}

func (s *Store) markDirty(aor string) {
	s.dirtyMu.Lock()
	s.dirty[aor] = struct{}{}
	s.dirtyMu.Unlock()
}

// Flush writes the binding changes not yet on disk now, instead of at the
// next tick. The background flusher and Close call it too.
func (s *Store) Flush(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	return s.flush()
}

func (s *Store) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()

	s.dirtyMu.Lock()
	batch := s.dirty
	s.dirty, s.spare = s.spare, nil
	s.dirtyMu.Unlock()
	if len(batch) == 0 {
		s.spare = batch
		s.flushErr.Store(nil)
		return nil
	}

	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketBindings)
		// Memory holds the bindings in the file's encoding, so a flush
		// copies them, every stored binding, expired ones included:
		// the file mirrors memory. The copies share one growing buffer
		// (see PutSubscribers).
		buf := s.flushBuf[:0]
		// Sorted AORs turn the writes into a sequential walk of the tree.
		for _, aor := range slices.Sorted(maps.Keys(batch)) {
			start := len(buf)
			var ok bool
			var err error
			buf, ok, err = s.mem.AppendEncodedBindings(buf, aor)
			if err != nil {
				return err
			}
			if !ok {
				if err := b.Delete([]byte(aor)); err != nil {
					return err
				}
				continue
			}
			if err := b.Put([]byte(aor), buf[start:len(buf):len(buf)]); err != nil {
				return err
			}
		}
		// Reused by the next flush (under flushMu) unless it grew
		// large, so that a burst does not pin its memory.
		if cap(buf) <= maxFlushBuf {
			s.flushBuf = buf[:0]
		}
		return nil
	})
	if err != nil {
		// Keep the AORs dirty so that the next flush retries them.
		s.dirtyMu.Lock()
		for aor := range batch {
			s.dirty[aor] = struct{}{}
		}
		s.dirtyMu.Unlock()
		err = dbErr(fmt.Sprintf("flushing bindings of %d AORs", len(batch)), err)
		s.flushErr.Store(&err)
	} else {
		s.flushErr.Store(nil)
	}
	clear(batch)
	s.spare = batch
	return err
}

func (s *Store) flusher() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.flush(); err != nil && s.opts.OnFlushError != nil {
				s.opts.OnFlushError(err)
			}
		}
	}
}

// --- lifecycle -------------------------------------------------------------

// Ping implements storage.Store: it fails when the database is closed or
// the last binding flush failed (bindings are then not being persisted).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if err := s.db.View(func(*bbolt.Tx) error { return nil }); err != nil {
		return dbErr("ping", err)
	}
	if p := s.flushErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Close implements storage.Store: it stops the flusher, writes the pending
// binding changes and closes the database. Later calls return the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) close() error {
	// Taking life exclusively waits for binding updates in flight; after
	// it, every update fails with ErrClosed, so the final flush is final.
	s.life.Lock()
	s.closed.Store(true)
	s.life.Unlock()

	close(s.stop)
	<-s.done
	flushErr := s.flush()
	_ = s.mem.Close()
	var closeErr error
	if err := s.db.Close(); err != nil {
		closeErr = fmt.Errorf("bolt: closing: %w", err)
	}
	return errors.Join(flushErr, closeErr)
}
