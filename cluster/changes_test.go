package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"rcsd/registrar"
	"rcsd/storage"
)

// bus is an in-process storage.Broadcaster (the Redis one is tested in
// storage/redis and end to end in test/e2e).
type bus struct {
	mu   sync.Mutex
	subs []chan []byte
}

func (b *bus) Publish(_ context.Context, _ string, p []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		s <- append([]byte(nil), p...)
	}
	return nil
}

func (b *bus) Subscribe(ctx context.Context, _ string) (<-chan []byte, error) {
	in, out := make(chan []byte, 64), make(chan []byte)
	b.mu.Lock()
	b.subs = append(b.subs, in)
	b.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case p := <-in:
				select {
				case out <- p:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

type recorder struct{ got chan registrar.Change }

func (r recorder) RegistrationChanged(c registrar.Change) { r.got <- c }

// A change observed on n1 reaches n2's observers whole, and not n1's own
// a second time; garbage on the channel is dropped.
func TestChangesShared(t *testing.T) {
	b := &bus{}
	r1, r2 := recorder{make(chan registrar.Change, 8)}, recorder{make(chan registrar.Change, 8)}
	c1 := NewChanges("n1", b, zaptest.NewLogger(t), r1)
	c2 := NewChanges("n2", b, zaptest.NewLogger(t), r2)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, c := range []*Changes{c1, c2} {
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
	}
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.subs) == 2 }, 2*time.Second, 5*time.Millisecond)

	require.NoError(t, b.Publish(ctx, changesChannel, []byte("not json")))
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	bind := storage.Binding{AOR: "sip:rosa@rcs.local", Contact: "sip:rosa@10.0.0.1", Transport: "udp", Source: "10.0.0.1:5060",
		Node: "n1", Expires: at.Add(time.Hour), RegisteredAt: at, Path: []string{"<sip:kam;lr>"}}
	want := registrar.Change{AOR: "sip:rosa@rcs.local", After: []storage.Binding{bind}, At: at}
	c1.RegistrationChanged(want)
	select {
	case got := <-r2.got:
		assert.Equal(t, want, got)
	case <-time.After(2 * time.Second):
		t.Fatal("n2 did not hear of n1's change")
	}
	select {
	case got := <-r1.got:
		t.Fatalf("n1 got its own change back: %+v", got)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	wg.Wait()
}
