package bolt

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"rcsd/storage"
	"rcsd/storage/internal/codec"
	"rcsd/storage/storagetest"
)

func open(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t, t.TempDir(), Options{}) })
}

func TestPersistence(t *testing.T) {
	storagetest.RunPersistence(t, func(t *testing.T, dir string) storage.Store { return open(t, dir, Options{}) })
	storagetest.RunMessagePersistence(t, func(t *testing.T, dir string) storage.Store { return open(t, dir, Options{}) })
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	open(t, dir, Options{})
	fi, err := os.Stat(filepath.Join(dir, FileName))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Options{})
	// flock is per open file description, so a second Open in this
	// process stands in for a second process.
	start := time.Now()
	_, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, ErrLocked)
	assert.Contains(t, err.Error(), "database is locked by another process")
	assert.Contains(t, err.Error(), filepath.Join(dir, FileName))
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestOpenRejectsOtherSchema(t *testing.T) {
	// "1" is the JSON layout of earlier builds; its values would not
	// decode, so the file is refused rather than misread.
	for _, version := range []string{"1", "99"} {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			require.NoError(t, s.Close())
			db, err := bbolt.Open(filepath.Join(dir, FileName), 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte(version)) }))
			require.NoError(t, db.Close())

			_, err = Open(dir, Options{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf(`schema version %q`, version))
			assert.Contains(t, err.Error(), `reads only schema version "2"`)
		})
	}
}

// storedBindings reads an AOR's bindings from the file, bypassing memory.
func storedBindings(t *testing.T, s *Store, aor string) []storage.Binding {
	t.Helper()
	var bs []storage.Binding
	require.NoError(t, s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketBindings).Get([]byte(aor))
		if v == nil {
			return nil
		}
		var err error
		bs, err = codec.DecodeBindings(string(v), nil)
		return err
	}))
	return bs
}

func TestBackgroundFlush(t *testing.T) {
	ctx := t.Context()
	s := open(t, t.TempDir(), Options{FlushInterval: 10 * time.Millisecond})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const aor = "sip:alice@example.net"
	b := storage.Binding{AOR: aor, Contact: "sip:alice@192.0.2.1", CallID: "c", CSeq: 1, Expires: now.Add(time.Hour), Transport: "udp", Source: "192.0.2.1:5060", RegisteredAt: now}
	_, err := s.UpdateBindings(ctx, aor, now, func(cur []storage.Binding) ([]storage.Binding, error) {
		return append(cur, b), nil
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(storedBindings(t, s, aor)) == 1 }, 5*time.Second, 5*time.Millisecond,
		"the flusher did not write the binding")
	assert.Equal(t, []storage.Binding{b}, storedBindings(t, s, aor))

	// Expiry is written behind too.
	expired, err := s.ExpireBindings(ctx, now.Add(2*time.Hour), 0)
	require.NoError(t, err)
	require.Len(t, expired, 1)
	require.Eventually(t, func() bool { return len(storedBindings(t, s, aor)) == 0 }, 5*time.Second, 5*time.Millisecond,
		"the flusher did not remove the expired binding")
	require.NoError(t, s.Ping(ctx))
}

func TestFlushOnDemand(t *testing.T) {
	ctx := t.Context()
	s := open(t, t.TempDir(), Options{FlushInterval: time.Hour})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100 {
		aor := fmt.Sprintf("sip:u%d@example.net", i)
		_, err := s.UpdateBindings(ctx, aor, now, func(cur []storage.Binding) ([]storage.Binding, error) {
			return append(cur, storage.Binding{AOR: aor, Contact: "sip:u@192.0.2.1", Expires: now.Add(time.Hour)}), nil
		})
		require.NoError(t, err)
	}
	assert.Empty(t, storedBindings(t, s, "sip:u7@example.net"), "written before the flush")
	require.NoError(t, s.Flush(ctx))
	assert.Len(t, storedBindings(t, s, "sip:u7@example.net"), 1)
	s.dirtyMu.Lock()
	assert.Empty(t, s.dirty)
	s.dirtyMu.Unlock()

	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Flush(ctx), storage.ErrClosed)
}

func subscribers(n int) []storage.Subscriber {
	subs := make([]storage.Subscriber, n)
	for i := range subs {
		subs[i] = storage.Subscriber{
			IMPI:   fmt.Sprintf("user%07d@ims.example.net", i),
			IMPUs:  []string{fmt.Sprintf("sip:user%07d@example.net", i), fmt.Sprintf("tel:+1555%07d", i)},
			Realm:  "ims.example.net",
			HA1MD5: "939e7578ed9e3c518a452acee763bce9",
			K:      []byte("0123456789abcdef"),
			OPc:    []byte("fedcba9876543210"),
		}
	}
	return subs
}

// TestPutSubscribers100k checks that bulk provisioning is one fast
// transaction. The bound is loose (the race detector slows this down
// several times); BenchmarkPutSubscribers100k gives the real figure.
func TestPutSubscribers100k(t *testing.T) {
	if testing.Short() {
		t.Skip("bulk load")
	}
	ctx := t.Context()
	subs := subscribers(100_000)
	s := open(t, t.TempDir(), Options{})
	start := time.Now()
	require.NoError(t, s.PutSubscribers(ctx, subs))
	took := time.Since(start)
	t.Logf("PutSubscribers of %d subscribers took %v", len(subs), took)
	limit := 3 * time.Second
	if raceEnabled {
		limit = 30 * time.Second
	}
	assert.Less(t, took, limit)

	n, err := s.CountSubscribers(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(subs), n)
	got, err := s.SubscriberByIMPU(ctx, "tel:+15550054321")
	require.NoError(t, err)
	assert.Equal(t, subs[54321], got)
}

func BenchmarkPutSubscribers100k(b *testing.B) {
	subs := subscribers(100_000)
	for range b.N {
		b.StopTimer()
		s := open(b, b.TempDir(), Options{})
		b.StartTimer()
		if err := s.PutSubscribers(b.Context(), subs); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = s.Close()
		b.StartTimer()
	}
}
