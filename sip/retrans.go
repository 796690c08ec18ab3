package sip

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// retransWindow is how long a UDP non-INVITE request's final response is
// kept to answer its retransmissions: Timer J, 64*T1 (RFC 3261 §17.2.2).
const retransWindow = 32 * time.Second

// retransCache is the server transaction state rcsd keeps for the
// transactional methods (Router.HandleTx) over UDP, instead of sipgo's
// server transactions: per request only its key and, once answered, the
// response's bytes. sipgo keeps a whole transaction (request, response,
// timers) for the 32 s, which at thousands of MESSAGEs a second grew the
// heap by tens of megabytes a second and lengthened the tail latency
// (docs/benchmarks.md).
//
// A retransmission that arrives while the handler runs is dropped (a
// non-INVITE server transaction in the Trying state, §17.2.2); one that
// arrives after is answered with the same bytes.
type retransCache struct {
	mu      sync.Mutex
	entries map[string]*retransEntry
	fifo    []retransKey // insertion order = expiry order (one lifetime for all)
	head    int
}

type retransEntry struct {
	res []byte // nil while the handler runs
}

type retransKey struct {
	key     string
	expires time.Time
}

func newRetransCache() *retransCache {
	return &retransCache{entries: make(map[string]*retransEntry)}
}

// txKey identifies a request's server transaction (RFC 3261 §17.2.3): the
// top Via branch with the magic cookie, its sent-by and the method;
// otherwise (RFC 2543 clients) Call-ID, CSeq and From tag.
func txKey(req *siplib.Request, source string) string {
	var b strings.Builder
	b.WriteString(source)
	b.WriteByte('|')
	b.WriteString(string(req.Method))
	b.WriteByte('|')
	if v := req.Via(); v != nil {
		if br, _ := v.Params.Get("branch"); strings.HasPrefix(br, "z9hG4bK") {
			b.WriteString(br)
			b.WriteByte('|')
			b.WriteString(v.Host)
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(v.Port))
			return b.String()
		}
	}
	if c := req.CallID(); c != nil {
		b.WriteString(string(*c))
	}
	b.WriteByte('|')
	if c := req.CSeq(); c != nil {
		b.WriteString(strconv.FormatUint(uint64(c.SeqNo), 10))
	}
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		b.WriteByte('|')
		b.WriteString(tag)
	}
	return b.String()
}

// begin registers a new request; it returns the cached response of a
// retransmission (nil while the first is still being handled) and
// whether the request was seen before.
func (c *retransCache) begin(key string, now time.Time) (res []byte, seen bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if e, ok := c.entries[key]; ok {
		return e.res, true
	}
	c.entries[key] = &retransEntry{}
	c.fifo = append(c.fifo, retransKey{key: key, expires: now.Add(retransWindow)})
	return nil, false
}

// finish records the final response of key.
func (c *retransCache) finish(key string, res []byte) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		e.res = res
	}
	c.mu.Unlock()
}

// expire drops the entries past their window; c.mu is held. Entries
// expire in insertion order, so this only looks at the front.
func (c *retransCache) expire(now time.Time) {
	for c.head < len(c.fifo) && !c.fifo[c.head].expires.After(now) {
		delete(c.entries, c.fifo[c.head].key)
		c.fifo[c.head] = retransKey{}
		c.head++
	}
	if c.head > 1024 && c.head*2 > len(c.fifo) {
		n := copy(c.fifo, c.fifo[c.head:])
		c.fifo = c.fifo[:n]
		c.head = 0
	}
}

func (c *retransCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// serveUDPTx runs a transactional method's handler for a UDP request on
// its own goroutine (it waits on other parties), answering its
// retransmissions from the cache.
func (s *Server) serveUDPTx(conn net.PacketConn, local string, req *siplib.Request) {
	key := txKey(req, req.Source())
	cached, seen := s.retrans.begin(key, time.Now())
	if seen {
		if cached != nil {
			s.writeRaw(conn, req.Source(), cached)
		}
		return
	}
	if max := s.cfg.MaxPending; max > 0 && s.pending.Load() >= int64(max) {
		// Overloaded: refuse at once rather than queue (RFC 3261
		// §21.5.4), and answer the retransmissions the same way.
		res := NewResponse(req, 503, "Service Unavailable - Overloaded")
		res.AppendHeader(siplib.NewHeader("Retry-After", "1"))
		res.AppendHeader(siplib.NewHeader("Content-Length", "0"))
		var buf bytes.Buffer
		res.StringWrite(&buf)
		s.retrans.finish(key, buf.Bytes())
		s.writeRaw(conn, res.Destination(), buf.Bytes())
		s.router.rejected.WithLabelValues("503").Inc()
		if s.overloadLog.Add(1)%1000 == 1 { // one line per 1000, not one per request
			s.log.Warn("overloaded: transactional requests refused with 503", zap.Int("max_pending", max),
				zap.Int64("refused_so_far", s.overloadLog.Load()))
		}
		return
	}
	s.pending.Add(1)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		defer s.pending.Add(-1)
		ctx := context.WithValue(context.Background(), LocalAddrKey{}, local)
		res := s.router.Serve(ctx, req)
		if res == nil {
			return
		}
		var buf bytes.Buffer
		buf.Grow(512)
		res.StringWrite(&buf)
		raw := buf.Bytes()
		s.retrans.finish(key, raw)
		s.writeRaw(conn, res.Destination(), raw)
	}()
}

func (s *Server) writeRaw(conn net.PacketConn, dst string, raw []byte) {
	addr, err := net.ResolveUDPAddr("udp", dst)
	if err != nil {
		s.log.Warn("response destination unusable", zap.String("destination", dst), zap.Error(err))
		return
	}
	if _, err := conn.WriteTo(raw, addr); err != nil {
		s.log.Warn("response not sent", zap.String("destination", dst), zap.Error(err))
	}
}
