package bolt

import (
	"fmt"
	"testing"
	"time"

	"rcsd/storage"
)

// BenchmarkSubscriberByIMPI reads one subscriber of 100 000 from the file,
// as the digest check of every REGISTER does.
func BenchmarkSubscriberByIMPI(b *testing.B) {
	subs := subscribers(100_000)
	s := open(b, b.TempDir(), Options{})
	if err := s.PutSubscribers(b.Context(), subs); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = (i + 7919) % len(subs)
		if _, err := s.SubscriberByIMPI(ctx, subs[i].IMPI); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlush1000 writes behind 1000 changed AORs of one binding each,
// one flush's worth under a heavy REGISTER load.
func BenchmarkFlush1000(b *testing.B) {
	s := open(b, b.TempDir(), Options{FlushInterval: time.Hour})
	ctx := b.Context()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	aors := make([]string, 1000)
	for i := range aors {
		aors[i] = fmt.Sprintf("sip:user%07d@example.net", i)
	}
	refresh := func(aor string, i int) func([]storage.Binding) ([]storage.Binding, error) {
		return func([]storage.Binding) ([]storage.Binding, error) {
			return []storage.Binding{{
				AOR: aor, Contact: "sip:u@192.0.2.1:5061;transport=tls;ob", InstanceID: fmt.Sprintf("urn:uuid:%d", i), RegID: 1,
				Params: `+sip.instance="<urn:uuid:1>";reg-id=1;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel"`,
				CallID: "1j9FpLxk3uxtm8tn@192.0.2.1", CSeq: uint32(i), Expires: now.Add(time.Hour), Transport: "tls",
				Source: "192.0.2.1:40000", Path: []string{"<sip:pcscf.example.net;lr>"}, UserAgent: "RCS client/8.0",
				IMPI: "user@ims.example.net", Node: "rcsd-0", RegisteredAt: now,
			}}, nil
		}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		b.StopTimer()
		for i, aor := range aors {
			if _, err := s.UpdateBindings(ctx, aor, now, refresh(aor, n+i)); err != nil {
				b.Fatal(err)
			}
		}
		n++
		b.StartTimer()
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
