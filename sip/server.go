package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// Config configures the SIP layer.
type Config struct {
	Listen         []string // transport://host:port
	MaxMessageSize int
	// MaxPending bounds the transactional requests (HandleTx) over UDP
	// being handled at once; more are answered 503 + Retry-After at once
	// (overload: shed load before the socket overflows). 0: no bound.
	MaxPending int
	UDPBuffer  int // bytes; 0 keeps the system default
	UserAgent  string
	// Advertise is the host[:port] put in the Via of requests rcsd sends
	// when it sits behind NAT or a load balancer; empty: the socket's own
	// address.
	Advertise string
	TLS       *tls.Config // for tls:// and wss://
}

// Server owns the listeners and the sipgo stack.
type Server struct {
	cfg    Config
	router *Router
	log    *zap.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	parser *siplib.Parser

	mu          sync.Mutex
	udp         map[string]net.PacketConn // local address -> listener, for the stateless fast path
	retrans     *retransCache             // server transactions of HandleTx methods over UDP
	pending     atomic.Int64              // HandleTx requests over UDP being handled
	overloadLog atomic.Int64              // 503s sent for overload
	closers     []func() error
	addrs       []Listener
	inflight    sync.WaitGroup
	serveErrs   chan error
	cluster     *ClusterConfig // nil: a single node
}

// Listener is a bound listener.
type Listener struct {
	Transport string // udp, tcp, tls, ws, wss
	Addr      string // actual host:port (port 0 resolved)
}

// the methods rcsd routes through sipgo when they arrive on a
// connection-oriented transport.
var knownMethods = []siplib.RequestMethod{
	siplib.INVITE, siplib.ACK, siplib.CANCEL, siplib.BYE, siplib.REGISTER, siplib.OPTIONS,
	siplib.SUBSCRIBE, siplib.NOTIFY, siplib.REFER, siplib.INFO, siplib.MESSAGE, siplib.PRACK,
	siplib.UPDATE, siplib.PUBLISH,
}

// NewServer builds the SIP stack; Start opens the listeners.
func NewServer(cfg Config, router *Router, log *zap.Logger) (*Server, error) {
	s := &Server{cfg: cfg, router: router, log: log, udp: make(map[string]net.PacketConn), retrans: newRetransCache()}
	s.parser = siplib.NewParser()
	s.parser.MaxMessageLength = cfg.MaxMessageSize
	slogger := slog.New(zapslog.NewHandler(log.Named("sipgo").Core()))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgentParser(s.parser),
		sipgo.WithUserAgenTLSConfig(cfg.TLS),
		sipgo.WithUserAgentTransportLayerOptions(
			siplib.WithTransportLayerLogger(slogger),
			siplib.WithTransportLayerReadFilter(s.readFilter),
		),
		sipgo.WithUserAgentTransactionLayerOptions(siplib.WithTransactionLayerLogger(slogger)),
	)
	if err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	s.ua = ua
	s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(slogger))
	if err != nil {
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	clientOpts := []sipgo.ClientOption{sipgo.WithClientLogger(slogger)}
	if cfg.Advertise != "" {
		host, port, err := net.SplitHostPort(cfg.Advertise)
		if err != nil {
			host, port = cfg.Advertise, ""
		}
		clientOpts = append(clientOpts, sipgo.WithClientHostname(host))
		if p, err := strconv.Atoi(port); err == nil && p > 0 {
			clientOpts = append(clientOpts, sipgo.WithClientPort(p))
		}
	}
	s.client, err = sipgo.NewClient(ua, clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("sip: client: %w", err)
	}
	for _, m := range knownMethods {
		s.srv.OnRequest(m, s.serveTx)
	}
	s.srv.OnNoRoute(s.serveTx)
	return s, nil
}

// serveTx answers requests that came through sipgo's transaction layer
// (TCP, TLS, WS, WSS; UDP requests are answered in readFilter). Stateless
// methods get their response written directly and sipgo terminates the
// transaction when the handler returns; transactional ones (HandleTx)
// answer through the transaction.
func (s *Server) serveTx(req *siplib.Request, tx siplib.ServerTransaction) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	ctx := context.Background()
	if l := req.Laddr; l.IP != nil {
		ctx = context.WithValue(ctx, LocalAddrKey{}, net.JoinHostPort(l.IP.String(), strconv.Itoa(l.Port)))
	}
	var res *siplib.Response
	flow, relayed := s.forwarded(req)
	if relayed {
		res = s.relay(req, flow)
		if res.ContentLength() == nil {
			res.AppendHeader(siplib.NewHeader("Content-Length", "0")) // streams need it
		}
	} else {
		res = s.router.Serve(ctx, req)
	}
	if res == nil {
		return
	}
	if relayed || s.router.Transactional(string(req.Method)) {
		if err := tx.Respond(res); err != nil {
			s.log.Warn("response not sent", zap.Int("status", res.StatusCode), zap.String("destination", res.Destination()),
				zap.String("transport", res.Transport()), zap.Error(err))
		}
		return
	}
	if err := s.srv.WriteResponse(res); err != nil {
		s.log.Warn("response not sent", zap.Int("status", res.StatusCode), zap.String("destination", res.Destination()),
			zap.String("transport", res.Transport()), zap.Error(err))
	}
}

// readFilter is the UDP fast path: a datagram holding a request is parsed
// and answered right here on the read goroutine, statelessly, without
// sipgo's per-request goroutine, server transaction (kept ~32 s per UDP
// request: memory grows with the request rate) and connection lookup. Other
// datagrams (responses to rcsd's own requests) continue into sipgo.
//
// Methods registered with Router.HandleTx run on their own goroutine
// (their handlers wait on other parties), with rcsd's own compact server
// transaction state answering retransmissions (retrans.go).
func (s *Server) readFilter(info siplib.TransportReadProps, data []byte) ([]byte, error) {
	if info.Transport != "UDP" {
		return data, nil
	}
	if len(data) < 8 || bytes.HasPrefix(data, []byte("SIP/2.0 ")) {
		return data, nil
	}
	s.mu.Lock()
	conn := s.udp[info.LocalAddr.String()]
	s.mu.Unlock()
	if conn == nil {
		return data, nil // a client socket sipgo opened itself
	}
	src := info.RemoteAddr.String()
	if len(data) > s.cfg.MaxMessageSize {
		s.tooLarge(conn, info, data)
		return nil, nil
	}
	msg, err := s.parser.ParseSIP(data)
	if err != nil {
		s.log.Info("unparseable datagram dropped", zap.String("source", src), zap.Int("bytes", len(data)), zap.Error(err))
		return nil, nil
	}
	req, ok := msg.(*siplib.Request)
	if !ok {
		return data, nil
	}
	req.SetTransport("UDP")
	req.SetSource(src)
	if s.router.Transactional(string(req.Method)) {
		s.serveUDPTx(conn, info.LocalAddr.String(), req)
		return nil, nil
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	ctx := context.WithValue(context.Background(), LocalAddrKey{}, info.LocalAddr.String())
	res := s.router.Serve(ctx, req)
	if res != nil {
		s.writeUDP(conn, res)
	}
	return nil, nil
}

func (s *Server) writeUDP(conn net.PacketConn, res *siplib.Response) {
	addr, err := net.ResolveUDPAddr("udp", res.Destination())
	if err != nil {
		s.log.Warn("response destination unusable", zap.String("destination", res.Destination()), zap.Error(err))
		return
	}
	var buf bytes.Buffer
	buf.Grow(1024)
	res.StringWrite(&buf)
	if _, err := conn.WriteTo(buf.Bytes(), addr); err != nil {
		s.log.Warn("response not sent", zap.String("destination", res.Destination()), zap.Error(err))
	}
}

// tooLarge answers 513 (RFC 3261 §21.5.14) to a datagram over the size
// limit when its headers can be read, so the sender learns why.
func (s *Server) tooLarge(conn net.PacketConn, info siplib.TransportReadProps, data []byte) {
	// Logged before the answer goes out, so whoever sees the answer can
	// find the log line.
	s.log.Info("oversized datagram refused", zap.String("source", info.RemoteAddr.String()),
		zap.Int("bytes", len(data)), zap.Int("limit", s.cfg.MaxMessageSize))
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end <= 0 {
		return
	}
	var hdr bytes.Buffer
	for _, l := range bytes.Split(data[:end], []byte("\r\n")) {
		name, _, _ := bytes.Cut(l, []byte(":"))
		if n := strings.ToLower(strings.TrimSpace(string(name))); n == "content-length" || n == "l" {
			continue
		}
		hdr.Write(l)
		hdr.WriteString("\r\n")
	}
	hdr.WriteString("Content-Length: 0\r\n\r\n")
	// The headers alone may exceed the limit: parse them without it
	// (a datagram is at most 64 KiB anyway).
	if msg, err := siplib.NewParser().ParseSIP(hdr.Bytes()); err == nil {
		if req, ok := msg.(*siplib.Request); ok {
			req.SetTransport("UDP")
			req.SetSource(info.RemoteAddr.String())
			s.writeUDP(conn, NewResponse(req, 513, "Message Too Large"))
		}
	}
}

// Start opens every listener and returns once all are bound. Serving
// errors after that are logged.
func (s *Server) Start(ctx context.Context) error {
	for _, l := range s.cfg.Listen {
		tp, addr, err := splitListen(l)
		if err != nil {
			return err
		}
		if err := s.listen(ctx, tp, addr); err != nil {
			_ = s.Close()
			return fmt.Errorf("sip: listen %s: %w", l, err)
		}
	}
	return nil
}

func splitListen(l string) (string, string, error) {
	tp, addr, ok := strings.Cut(l, "://")
	if !ok {
		return "", "", fmt.Errorf("sip: listener %q: want transport://host:port", l)
	}
	return strings.ToLower(tp), addr, nil
}

func (s *Server) listen(ctx context.Context, tp, addr string) error {
	var lc net.ListenConfig
	var bound string
	switch tp {
	case "udp":
		lpc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return err
		}
		if uc, ok := lpc.(*net.UDPConn); ok && s.cfg.UDPBuffer > 0 {
			if err := uc.SetReadBuffer(s.cfg.UDPBuffer); err != nil {
				s.log.Warn("UDP receive buffer not set", zap.Int("bytes", s.cfg.UDPBuffer), zap.Error(err))
			}
			if err := uc.SetWriteBuffer(s.cfg.UDPBuffer); err != nil {
				s.log.Warn("UDP send buffer not set", zap.Int("bytes", s.cfg.UDPBuffer), zap.Error(err))
			}
		}
		pc := newRawUDPConn(lpc)
		bound = pc.LocalAddr().String()
		s.mu.Lock()
		s.udp[bound] = pc
		s.closers = append(s.closers, pc.Close)
		s.mu.Unlock()
		go s.serve(tp, bound, func() error { return s.srv.ServeUDP(pc) })
		s.awaitUDPPool(bound)
	case "tcp", "ws", "tls", "wss":
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		bound = ln.Addr().String()
		if tp == "tls" || tp == "wss" {
			if s.cfg.TLS == nil {
				ln.Close()
				return errors.New("no TLS certificate configured")
			}
			ln = tls.NewListener(ln, s.cfg.TLS)
		}
		s.mu.Lock()
		s.closers = append(s.closers, ln.Close)
		s.mu.Unlock()
		serve := map[string]func(net.Listener) error{"tcp": s.srv.ServeTCP, "tls": s.srv.ServeTLS, "ws": s.srv.ServeWS, "wss": s.srv.ServeWSS}[tp]
		go s.serve(tp, bound, func() error { return serve(ln) })
	default:
		return fmt.Errorf("transport %q not supported", tp)
	}
	s.mu.Lock()
	s.addrs = append(s.addrs, Listener{Transport: tp, Addr: bound})
	s.mu.Unlock()
	s.log.Info("listening", zap.String("transport", tp), zap.String("addr", bound))
	return nil
}

func (s *Server) serve(tp, addr string, fn func() error) {
	if err := fn(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Error("listener stopped", zap.String("transport", tp), zap.String("addr", addr), zap.Error(err))
	}
}

// awaitUDPPool waits until sipgo has registered a UDP listener in its
// connection pool (ServeUDP does it on its own goroutine): until then a
// request sent "from the listener" would make sipgo bind a second socket
// to the same address and fail.
func (s *Server) awaitUDPPool(addr string) {
	pool := s.ua.TransportLayer().Pool("udp")
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c := pool.Get(addr); c != nil {
			c.Ref(-1) // Get took a reference
			return
		}
	}
	s.log.Warn("UDP listener not in the connection pool after 2s", zap.String("addr", addr))
}

// Listeners returns the bound listeners.
func (s *Server) Listeners() []Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Listener(nil), s.addrs...)
}

// Addr returns the bound address of the first listener of a transport.
func (s *Server) Addr(transport string) string {
	for _, l := range s.Listeners() {
		if l.Transport == transport {
			return l.Addr
		}
	}
	return ""
}

// Close stops accepting, waits for in-flight requests to be answered (or
// ctx to end) and closes the stack.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.Close()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("sip: in-flight requests at shutdown: %w", ctx.Err()))
	}
	return errors.Join(err, s.ua.Close())
}

// Close closes the listeners.
func (s *Server) Close() error {
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	var errs []error
	for _, c := range closers {
		if err := c(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Flow is where a registered handset can be reached: the transport and
// remote address its REGISTER came from (RFC 5626), the local listener it
// arrived on, and its Contact URI.
type Flow struct {
	Transport string // udp, tcp, tls, ws, wss
	Source    string // remote host:port
	Local     string // local listener host:port (UDP)
	Contact   string // Contact URI, used when the flow cannot carry the request
	Node      string // rcsd node holding the flow; "" or this node: here
}

// Request sends req to a handset over its flow and waits for the final
// response: over TCP/TLS/WS the connection it registered on, over UDP from
// the listening socket it registered to (so its NAT pinhole holds). A
// request too large for UDP (RFC 3261 §18.1.1) goes over TCP to the
// Contact's address instead, with the Via changed to say so; if that fails
// too the error says why.
func (s *Server) Request(ctx context.Context, req *siplib.Request, flow Flow) (*siplib.Response, error) {
	wait, err := s.Send(ctx, req, flow)
	if err != nil {
		return nil, err
	}
	return wait()
}

// Send is Request split in two: it returns once req is written (so that
// requests sent one after the other leave in that order), and wait
// returns the final response. wait must be called once.
func (s *Server) Send(ctx context.Context, req *siplib.Request, flow Flow) (wait func() (*siplib.Response, error), err error) {
	if s.remote(flow) {
		return s.sendViaNode(ctx, req, flow)
	}
	tp := strings.ToUpper(flow.Transport)
	req.SetTransport(tp)
	req.SetDestination(flow.Source)
	if tp == "UDP" && flow.Local != "" {
		if h, p, err := net.SplitHostPort(flow.Local); err == nil {
			port, _ := strconv.Atoi(p)
			req.Laddr = siplib.Addr{IP: net.ParseIP(h), Port: port}
		}
		var buf bytes.Buffer
		req.StringWrite(&buf)
		if buf.Len() > siplib.UDPMTUSize-200 {
			return s.sendOverTCP(ctx, req, flow)
		}
	}
	tx, err := s.client.TransactionRequest(ctx, req)
	if errors.Is(err, siplib.ErrUDPMTUCongestion) {
		return s.sendOverTCP(ctx, req, flow)
	}
	if err != nil {
		return nil, fmt.Errorf("sip: %s to %s over %s: %w", req.Method, flow.Source, tp, err)
	}
	return finalResponse(ctx, tx, func(err error) error {
		return fmt.Errorf("sip: %s to %s over %s: %w", req.Method, flow.Source, tp, err)
	}), nil
}

// finalResponse waits for tx's final response, skipping provisional ones.
func finalResponse(ctx context.Context, tx siplib.ClientTransaction, wrap func(error) error) func() (*siplib.Response, error) {
	return func() (*siplib.Response, error) {
		defer tx.Terminate()
		for {
			select {
			case res := <-tx.Responses():
				if res.IsProvisional() {
					continue
				}
				return res, nil
			case <-tx.Done():
				return nil, wrap(tx.Err())
			case <-ctx.Done():
				return nil, wrap(ctx.Err())
			}
		}
	}
}

func (s *Server) sendOverTCP(ctx context.Context, req *siplib.Request, flow Flow) (func() (*siplib.Response, error), error) {
	var u siplib.Uri
	if err := siplib.ParseUri(flow.Contact, &u); err != nil || u.Host == "" {
		return nil, fmt.Errorf("sip: %s too large for UDP and contact %q unusable for TCP: %w", req.Method, flow.Contact, siplib.ErrUDPMTUCongestion)
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	req.SetTransport("TCP")
	req.SetDestination(net.JoinHostPort(u.Host, strconv.Itoa(port)))
	req.Laddr = siplib.Addr{}
	if v := req.Via(); v != nil {
		v.Transport = "TCP"
	}
	wrap := func(err error) error {
		return fmt.Errorf("sip: %s too large for UDP, TCP fallback to %s failed: %w", req.Method, req.Destination(), err)
	}
	tx, err := s.client.TransactionRequest(ctx, req)
	if err != nil {
		return nil, wrap(err)
	}
	return finalResponse(ctx, tx, wrap), nil
}
