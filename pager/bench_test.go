package pager

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"rcsd/storage"
	"rcsd/storage/bolt"
)

// BenchmarkStoreOffline is the store-and-forward path of one RCS MESSAGE
// (fixture 15) for an offline recipient on the embedded store, without the
// network: identify the sender, validate, look for waiting messages, try
// delivery (no contact), store durably (group commit), answer 202.
// Parallel, as MESSAGEs arrive concurrently, so group commit can work.
func BenchmarkStoreOffline(b *testing.B) {
	store, err := bolt.Open(b.TempDir(), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	_, err = store.UpdateBindings(ctx, "sip:alice@rcs.local", time.Now(), func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{{AOR: "sip:alice@rcs.local", Contact: "sip:alice@127.0.0.1:5070", CallID: "c", CSeq: 1,
			Expires: time.Now().Add(time.Hour), Transport: "udp", Source: "127.0.0.1:5070"}}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	p := New(Options{Domain: "rcs.local"}, store, nil, zap.NewNop(), NewMetrics(prometheus.NewRegistry(), nil))
	defer p.Close()
	tmpl := fixtureMessage(b, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", "127.0.0.1:5070", "z9hG4bK-bench")
	b.SetParallelism(64) // MESSAGEs in flight at once, as from many handsets
	b.ReportAllocs()
	b.ResetTimer()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		parser := siplib.NewParser()
		for pb.Next() {
			id := fmt.Sprintf("%06d", n.Add(1)%1000000)
			raw := strings.Replace(strings.Replace(tmpl, "W8dcb0vf", "W8"+id, 1), "Call-ID: z9hG4bK-bench@test", "Call-ID: b"+id, 1)
			msg, err := parser.ParseSIP([]byte(raw))
			if err != nil {
				b.Fatal(err)
			}
			req := msg.(*siplib.Request)
			req.SetTransport("UDP")
			req.SetSource("127.0.0.1:5070")
			if res := p.ServeSIP(ctx, req); res.StatusCode != 202 {
				b.Fatalf("status %d %s", res.StatusCode, res.Reason)
			}
		}
	})
}
