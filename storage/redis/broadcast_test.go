package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What one node publishes reaches every node of the same prefix, itself
// included, in order; a deployment with another prefix hears nothing.
func TestBroadcast(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs func(t *testing.T) []string
	}{
		{"single", func(t *testing.T) []string { return []string{startServer(t).Addr} }},
		{"cluster", func(t *testing.T) []string { return startCluster(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := tc.addrs(t)
			prefix := freshPrefix()
			a := open(t, Options{Addrs: addrs, Prefix: prefix})
			b := open(t, Options{Addrs: addrs, Prefix: prefix})
			other := open(t, Options{Addrs: addrs, Prefix: freshPrefix()})
			ctx, cancel := context.WithCancel(t.Context())
			inA, err := a.Subscribe(ctx, "changes")
			require.NoError(t, err)
			inB, err := b.Subscribe(ctx, "changes")
			require.NoError(t, err)
			inOther, err := other.Subscribe(ctx, "changes")
			require.NoError(t, err)

			for _, p := range []string{"one", "two", "three"} {
				require.NoError(t, a.Publish(ctx, "changes", []byte(p)))
			}
			for name, in := range map[string]<-chan []byte{"publisher": inA, "other node": inB} {
				var got []string
				for len(got) < 3 {
					select {
					case m := <-in:
						got = append(got, string(m))
					case <-time.After(5 * time.Second):
						t.Fatalf("%s: got %q only", name, got)
					}
				}
				assert.Equal(t, []string{"one", "two", "three"}, got, name)
			}
			select {
			case m := <-inOther:
				t.Fatalf("another prefix heard %q", m)
			case <-time.After(100 * time.Millisecond):
			}
			cancel()
			for _, in := range []<-chan []byte{inA, inB, inOther} {
				for range in { // closed once ctx ends
				}
			}
		})
	}
}
