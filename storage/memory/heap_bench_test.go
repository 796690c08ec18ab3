package memory_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"rcsd/storage"
	"rcsd/storage/memory"
)

// loaded returns a store holding n subscribers, each with one binding on
// its first public identity, as a registrar with n registered handsets.
func loaded(tb testing.TB, n int) (*memory.Store, []string, []string) {
	tb.Helper()
	ctx := tb.Context()
	s := memory.New()
	subs := make([]storage.Subscriber, n)
	impis := make([]string, n)
	aors := make([]string, n)
	for i := range subs {
		impis[i] = fmt.Sprintf("user%07d@ims.example.net", i)
		aors[i] = fmt.Sprintf("sip:user%07d@example.net", i)
		subs[i] = storage.Subscriber{
			IMPI:   impis[i],
			IMPUs:  []string{aors[i], fmt.Sprintf("tel:+1555%07d", i)},
			Realm:  "ims.example.net",
			HA1MD5: "939e7578ed9e3c518a452acee763bce9",
			K:      []byte("0123456789abcdef"),
			OPc:    []byte("fedcba9876543210"),
			AMF:    []byte{0x80, 0},
		}
	}
	if err := s.PutSubscribers(ctx, subs); err != nil {
		tb.Fatal(err)
	}
	for i, aor := range aors {
		b := binding(aor, i)
		b.Params = `+sip.instance="<` + b.InstanceID + `>";reg-id=1;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel"`
		b.RegID = 1
		b.CallID = fmt.Sprintf("%d-1j9FpLxk3uxtm8tn@192.0.2.1", i)
		b.UserAgent = "RCS client/8.0 (Android 15)"
		b.IMPI = impis[i]
		b.Local = "192.0.2.254:5061"
		_, err := s.UpdateBindings(ctx, aor, now, func([]storage.Binding) ([]storage.Binding, error) {
			return []storage.Binding{b}, nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return s, impis, aors
}

// heapInuse is the live heap after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkRegisterHotPath100k measures the store's share of a REGISTER
// (SubscriberByIMPI for the digest check, then UpdateBindings refreshing
// the binding) with 100 000 subscribers and 100 000 bindings live, so
// that every GC cycle the benchmark triggers has the full store to mark.
// heap-MB is the live heap (HeapInuse after runtime.GC) of the loaded
// store, gc-ms how long one forced full collection takes with it loaded.
func BenchmarkRegisterHotPath100k(b *testing.B) {
	const n = 100_000
	base := heapInuse()
	s, impis, aors := loaded(b, n)
	heap := heapInuse() - base
	// A full collection with the store loaded: mostly marking it.
	start := time.Now()
	runtime.GC()
	gc := time.Since(start)
	ctx := b.Context()
	refresh := func(cur []storage.Binding) ([]storage.Binding, error) {
		if len(cur) > 0 {
			cur[0].CSeq++
		}
		return cur, nil
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = (i + 7919) % n
		sub, err := s.SubscriberByIMPI(ctx, impis[i])
		if err != nil || sub.HA1MD5 == "" {
			b.Fatal(err)
		}
		if _, err := s.UpdateBindings(ctx, aors[i], now, refresh); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
	b.ReportMetric(float64(gc.Microseconds())/1000, "gc-ms")
	runtime.KeepAlive(s)
}
