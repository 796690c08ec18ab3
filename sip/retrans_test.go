package sip

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// A transactional method over UDP runs its handler once per transaction:
// retransmissions during the handler are absorbed, those after it get the
// same response bytes, and a new branch is a new transaction.
func TestUDPTransactionalRetransmissions(t *testing.T) {
	router := NewRouter("rcsd-test", nil, zap.NewNop(), prometheus.NewRegistry())
	var calls atomic.Int32
	release := make(chan struct{})
	router.HandleTx("MESSAGE", func(_ context.Context, req *siplib.Request) *siplib.Response {
		calls.Add(1)
		<-release
		return NewResponse(req, 202, "Accepted")
	})
	tlsCfg, _, err := LoadOrCreateCertificate("", "", "", []string{"127.0.0.1"})
	require.NoError(t, err)
	s, err := NewServer(Config{Listen: []string{"udp://127.0.0.1:0"}, MaxMessageSize: 65535, TLS: tlsCfg}, router, zap.NewNop())
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	defer s.Shutdown(context.Background())

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	dst, err := net.ResolveUDPAddr("udp", s.Addr("udp"))
	require.NoError(t, err)
	msg := func(branch string) []byte {
		return []byte(strings.Replace(request("MESSAGE", "sip:bob@rcs.local", "UDP", c.LocalAddr().String(), ""), "branch=", "branch=z9hG4bK"+branch+"x", 1))
	}
	read := func(d time.Duration) string {
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(d))
		n, err := c.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	first := msg("a")
	for range 3 {
		_, err = c.WriteTo(first, dst)
		require.NoError(t, err)
	}
	assert.Empty(t, read(200*time.Millisecond), "nothing while the handler runs")
	close(release)
	res1 := read(2 * time.Second)
	require.True(t, strings.HasPrefix(res1, "SIP/2.0 202 Accepted\r\n"), res1)
	_, err = c.WriteTo(first, dst)
	require.NoError(t, err)
	res2 := read(2 * time.Second)
	assert.Equal(t, res1, res2, "a retransmission after the answer gets the same bytes")
	assert.Equal(t, int32(1), calls.Load())

	_, err = c.WriteTo(msg("b"), dst)
	require.NoError(t, err)
	require.NotEmpty(t, read(2*time.Second))
	assert.Equal(t, int32(2), calls.Load(), "a new transaction")
}

func TestRetransCacheExpiry(t *testing.T) {
	c := newRetransCache()
	t0 := time.Now()
	_, seen := c.begin("k1", t0)
	assert.False(t, seen)
	c.finish("k1", []byte("res"))
	res, seen := c.begin("k1", t0.Add(retransWindow-time.Second))
	assert.True(t, seen)
	assert.Equal(t, "res", string(res))
	_, seen = c.begin("k2", t0.Add(time.Second))
	assert.False(t, seen)
	_, seen = c.begin("k1", t0.Add(retransWindow))
	assert.False(t, seen, "gone after Timer J")
	assert.Equal(t, 2, c.len(), "k2 and the new k1")
}

// Above MaxPending transactional requests at once, new ones are refused
// with 503 + Retry-After at once, and their retransmissions get the same.
func TestUDPTransactionalOverload(t *testing.T) {
	router := NewRouter("rcsd-test", nil, zap.NewNop(), prometheus.NewRegistry())
	release := make(chan struct{})
	router.HandleTx("MESSAGE", func(_ context.Context, req *siplib.Request) *siplib.Response {
		<-release
		return NewResponse(req, 202, "Accepted")
	})
	tlsCfg, _, err := LoadOrCreateCertificate("", "", "", []string{"127.0.0.1"})
	require.NoError(t, err)
	s, err := NewServer(Config{Listen: []string{"udp://127.0.0.1:0"}, MaxMessageSize: 65535, MaxPending: 1, TLS: tlsCfg}, router, zap.NewNop())
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	defer s.Shutdown(context.Background())
	defer close(release)

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	dst, err := net.ResolveUDPAddr("udp", s.Addr("udp"))
	require.NoError(t, err)
	msgs := map[string][]byte{}
	send := func(branch string) {
		if msgs[branch] == nil { // the same bytes again: a retransmission
			msgs[branch] = []byte(strings.Replace(request("MESSAGE", "sip:bob@rcs.local", "UDP", c.LocalAddr().String(), ""), "branch=", "branch=z9hG4bK"+branch+"x", 1))
		}
		_, err := c.WriteTo(msgs[branch], dst)
		require.NoError(t, err)
	}
	read := func() string {
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	send("busy") // takes the one slot
	time.Sleep(50 * time.Millisecond)
	send("extra")
	res := read()
	require.True(t, strings.HasPrefix(res, "SIP/2.0 503 Service Unavailable - Overloaded\r\n"), res)
	assert.Contains(t, res, "Retry-After: 1\r\n")
	send("extra")
	assert.Equal(t, res, read(), "the retransmission gets the same answer")
}
