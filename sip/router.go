package sip

import (
	"context"
	"sort"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Handler answers a request with its final response. Handlers registered
// this way are answered statelessly (RFC 3261 §8.2.7): REGISTER and
// OPTIONS need no transaction state, and keeping none is what lets rcsd
// hold registration rates without memory growing per request.
type Handler func(ctx context.Context, req *siplib.Request) *siplib.Response

// Router dispatches requests by method (and, through the handlers, by
// Request-URI) after the checks every request gets.
type Router struct {
	handlers     map[string]Handler
	txMethods    map[string]bool // handled inside a server transaction (HandleTx)
	gates        []Handler       // run before every handler; a response refuses the request
	supported    []string
	serverHeader string
	log          *zap.Logger
	latency      *prometheus.HistogramVec
	rejected     *prometheus.CounterVec
	observers    map[string]prometheus.Observer // latency by method, resolved once

	// Headers every response carries, built once: responses only read
	// them when serialised, so one immutable value serves them all.
	serverHdr, zeroLength siplib.Header
}

// NewRouter creates a router; supported lists the option tags rcsd
// understands (Supported header, and the check of Require).
func NewRouter(serverHeader string, supported []string, log *zap.Logger, reg prometheus.Registerer) *Router {
	r := &Router{
		handlers:     make(map[string]Handler),
		txMethods:    make(map[string]bool),
		supported:    supported,
		serverHeader: serverHeader,
		log:          log,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rcsd_sip_transaction_duration_seconds",
			Help:    "Time from a request's arrival to its final response, by method.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"method"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rcsd_sip_rejected_total",
			Help: "Requests refused by the SIP layer before any handler, by status.",
		}, []string{"status"}),
	}
	reg.MustRegister(r.latency, r.rejected)
	r.observers = map[string]prometheus.Observer{"other": r.latency.WithLabelValues("other")}
	r.serverHdr = siplib.NewHeader("Server", serverHeader)
	r.zeroLength = siplib.NewHeader("Content-Length", "0")
	return r
}

// Handle registers h for method. Handlers are registered before serving
// starts.
func (r *Router) Handle(method string, h Handler) {
	r.handlers[method] = h
	r.observers[method] = r.latency.WithLabelValues(method)
}

// HandleTx registers h for a method whose handler waits on other parties
// (a MESSAGE relayed to its recipient): it runs inside a sipgo server
// transaction on every transport, so UDP retransmissions arriving
// meanwhile are absorbed and answered with the final response instead of
// running the handler again.
func (r *Router) HandleTx(method string, h Handler) {
	r.Handle(method, h)
	r.txMethods[method] = true
}

// Transactional reports whether method was registered with HandleTx.
func (r *Router) Transactional(method string) bool { return r.txMethods[method] }

// Gate adds a check run before every handler (after the checks every
// request gets): returning a response refuses the request with it; a gate
// may also remove headers the request must not carry further.
func (r *Router) Gate(g Handler) { r.gates = append(r.gates, g) }

// Allow is the Allow header value: the methods with a handler.
func (r *Router) Allow() string {
	ms := make([]string, 0, len(r.handlers)+1)
	for m := range r.handlers {
		ms = append(ms, m)
	}
	if _, ok := r.handlers["ACK"]; !ok {
		ms = append(ms, "ACK")
	}
	sort.Strings(ms)
	return strings.Join(ms, ", ")
}

// Serve validates req and dispatches it. It returns nil when no response
// must be sent (ACK).
func (r *Router) Serve(ctx context.Context, req *siplib.Request) *siplib.Response {
	start := time.Now()
	method := string(req.Method)
	if req.IsAck() {
		return nil
	}
	res := r.check(req)
	for _, g := range r.gates {
		if res != nil {
			break
		}
		res = g(ctx, req)
	}
	if res == nil {
		h, ok := r.handlers[method]
		if !ok {
			res = r.refuse(req, 405, "Method Not Allowed", "method "+method+" not supported")
			res.AppendHeader(siplib.NewHeader("Allow", r.Allow()))
		} else {
			res = h(ctx, req)
		}
	}
	if res == nil {
		return nil
	}
	if r.serverHeader != "" && res.GetHeader("Server") == nil {
		res.AppendHeader(r.serverHdr)
	}
	if res.StatusCode == 405 || (req.Method == siplib.OPTIONS && res.StatusCode == 200) {
		if res.GetHeader("Supported") == nil {
			res.AppendHeader(siplib.NewHeader("Supported", strings.Join(r.supported, ", ")))
		}
	}
	if res.ContentLength() == nil {
		res.AppendHeader(r.zeroLength)
	}
	elapsed := time.Since(start)
	obs, ok := r.observers[method]
	if !ok {
		obs = r.observers["other"]
	}
	obs.Observe(elapsed.Seconds())
	if ce := r.log.Check(zap.DebugLevel, "transaction"); ce != nil {
		ce.Write(zap.String("method", method), zap.Int("status", res.StatusCode),
			zap.String("source", req.Source()), zap.String("transport", req.Transport()),
			zap.Duration("elapsed", elapsed))
	}
	return res
}

// check applies the rules every request gets: mandatory headers (RFC 3261
// §8.1.1 and the spec's tables), CSeq consistency, URI scheme (416),
// Require (420).
func (r *Router) check(req *siplib.Request) *siplib.Response {
	for _, name := range [...]string{"To", "From", "Call-ID", "CSeq", "Via", "Max-Forwards"} {
		if req.GetHeader(name) == nil {
			return r.refuse(req, 400, "Missing "+name+" header", "no "+name+" header")
		}
	}
	if cseq := req.CSeq(); cseq.MethodName != req.Method {
		return r.refuse(req, 400, "CSeq method does not match", "CSeq method "+string(cseq.MethodName)+" on "+string(req.Method))
	}
	if from := req.From(); from.Address.Scheme == "" {
		return r.refuse(req, 400, "Invalid From header", "From without URI")
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel":
	default:
		return r.refuse(req, 416, "Unsupported URI Scheme", "Request-URI scheme "+req.Recipient.Scheme)
	}
	// Proxy-Require too: rcsd is the handset's first hop (RFC 3261
	// §16.3 step 3 would 420 it as a proxy).
	var unsupported []string
	for _, name := range [...]string{"Require", "Proxy-Require"} {
		for _, h := range req.GetHeaders(name) {
			for _, tag := range strings.Split(h.Value(), ",") {
				tag = strings.TrimSpace(tag)
				if tag != "" && !r.supports(tag) {
					unsupported = append(unsupported, tag)
				}
			}
		}
	}
	if len(unsupported) > 0 {
		res := r.refuse(req, 420, "Bad Extension", "Require/Proxy-Require: "+strings.Join(unsupported, ", "))
		res.AppendHeader(siplib.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
		return res
	}
	return nil
}

func (r *Router) supports(tag string) bool {
	for _, s := range r.supported {
		if strings.EqualFold(s, tag) {
			return true
		}
	}
	return false
}

func (r *Router) refuse(req *siplib.Request, code int, reason, why string) *siplib.Response {
	r.rejected.WithLabelValues(statusLabel(code)).Inc()
	r.log.Info("request rejected", zap.String("method", string(req.Method)), zap.Int("status", code),
		zap.String("reason", why), zap.String("source", req.Source()), zap.String("transport", req.Transport()))
	return NewResponse(req, code, reason)
}

func statusLabel(code int) string {
	var b [3]byte
	b[0], b[1], b[2] = byte('0'+code/100%10), byte('0'+code/10%10), byte('0'+code%10)
	return string(b[:])
}
