package memory_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
	"rcsd/storage/memory"
)

var now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func binding(aor string, i int) storage.Binding {
	return storage.Binding{
		AOR: aor, Contact: fmt.Sprintf("sip:u@192.0.2.%d:5060", i%250), InstanceID: fmt.Sprintf("urn:uuid:%d", i),
		CallID: "c", CSeq: 1, Expires: now.Add(time.Hour), Transport: "tls", Source: "192.0.2.1:40000",
		Path: []string{"<sip:pcscf.example.net;lr>"}, RegisteredAt: now,
	}
}

// filled returns a store with n AORs of two bindings each, none expired
// at now.
func filled(t testing.TB, n int) (*memory.Store, []string) {
	s := memory.New()
	aors := make([]string, n)
	for i := range aors {
		aors[i] = fmt.Sprintf("sip:user%d@example.net", i)
		_, err := s.UpdateBindings(t.Context(), aors[i], now, func([]storage.Binding) ([]storage.Binding, error) {
			return []storage.Binding{binding(aors[i], 2*i), binding(aors[i], 2*i+1)}, nil
		})
		require.NoError(t, err)
	}
	return s, aors
}

// TestAllocations pins the per-call allocations of the hot path: only the
// returned copies (the bindings and one array for all their Paths; their
// strings share the stored encoding) and the new encoding an update
// stores.
func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	ctx := t.Context()
	s, aors := filled(t, 10_000)
	assert.Zero(t, testing.AllocsPerRun(20, func() {
		bs, _ := s.ExpireBindings(ctx, now, 0)
		if len(bs) != 0 {
			t.Fatal("expired")
		}
	}), "ExpireBindings with nothing expired")
	assert.Equal(t, 2.0, testing.AllocsPerRun(100, func() { _, _ = s.Bindings(ctx, aors[7], now) }), "Bindings")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = s.Bindings(ctx, "sip:nobody@example.net", now) }), "Bindings of an unknown AOR")
	refresh := func(cur []storage.Binding) ([]storage.Binding, error) { return cur, nil }
	// fn's copy (2), the stored encoding (1) and the returned copy (2).
	assert.Equal(t, 5.0, testing.AllocsPerRun(100, func() { _, _ = s.UpdateBindings(ctx, aors[7], now, refresh) }), "UpdateBindings")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = s.CountBindings(ctx) }), "CountBindings")
}

func BenchmarkUpdateBindingsParallel(b *testing.B) {
	s, aors := filled(b, 100_000)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := b.Context()
		for pb.Next() {
			i := int(next.Add(1)) % len(aors)
			_, err := s.UpdateBindings(ctx, aors[i], now, func(cur []storage.Binding) ([]storage.Binding, error) {
				if len(cur) > 0 {
					cur[0].CSeq++
				}
				return cur, nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBindings(b *testing.B) {
	s, aors := filled(b, 100_000)
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Bindings(ctx, aors[i%len(aors)], now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExpireBindingsNothingExpired(b *testing.B) {
	s, _ := filled(b, 100_000)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ExpireBindings(ctx, now, 1000); err != nil {
			b.Fatal(err)
		}
	}
}
