// Package pager is rcsd's pager-mode messaging function (RFC 3428; seed
// 001 §5.1.3.2, the spec's "IM-serv"): it takes MESSAGE requests, checks
// what claims to be RCS against the spec, delivers to the recipient's
// registered contacts, and stores what cannot be delivered yet
// (store-and-forward: 202 Accepted once the message is on disk), draining
// it in order when the recipient registers.
//
// rcsd acts as a back-to-back UA: the delivery leg is a new request with
// its own dialog identifiers, carrying the sender's identity as rcsd
// asserts it.
//
//   - standalone: the sender is who registered the flow the MESSAGE
//     arrived on (transport and source address of one of the From
//     identity's bindings); anything else is refused with 403, and a
//     P-Asserted-Identity the handset put in was already stripped. The
//     delivery goes to the recipient's bindings in parallel (forking), each
//     over its own flow.
//   - ims-as: the request came from the trusted core (the router's gate
//     checked it); the sender is its P-Asserted-Identity. The delivery goes
//     to the S-CSCF with the recipient's public identity as Request-URI.
//
// Strict with what claims to be RCS, tolerant of plain SIP: a MESSAGE
// carrying the CPM messaging ICSI (Accept-Contact or P-Preferred-Service)
// gets the spec's validation (validate.go); a plain RFC 3428 MESSAGE
// (text/plain from linphone or baresip) is relayed as it is.
package pager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/featuretag"
	"rcsd/identity"
	"rcsd/ims"
	rsip "rcsd/sip"
	"rcsd/storage"
)

// Sender sends requests over flows (*sip.Server): Request waits for the
// final response; Send returns once the request is written and gives the
// function that waits for it.
type Sender interface {
	Request(ctx context.Context, req *siplib.Request, flow rsip.Flow) (*siplib.Response, error)
	Send(ctx context.Context, req *siplib.Request, flow rsip.Flow) (func() (*siplib.Response, error), error)
}

// Options configure the messaging function.
type Options struct {
	// Route is the S-CSCF route in ims-as mode; nil in standalone mode.
	Route *ims.Route
	// UserAgent is the User-Agent of delivery requests (the spec's IM-serv).
	UserAgent string
	// Domain is the home domain: recipient lists go to msgas@Domain.
	Domain string
	// DeliveryTimeout bounds one delivery attempt; a recipient that has
	// not answered by then is treated as unreachable and the message is
	// stored. Default 8s.
	DeliveryTimeout time.Duration
	// Lifetime is how long a stored message waits for its recipient.
	// Default 7 days.
	Lifetime time.Duration
	// RetryMin/RetryMax bound the back-off between delivery attempts to a
	// registered recipient that does not take the message. Defaults 30s
	// and 1h.
	RetryMin, RetryMax time.Duration
	// SweepInterval is how often expiry and due retries (the store's
	// retry schedule) are looked at. Default 10s.
	SweepInterval time.Duration
	// RescanInterval is how often the sweep also reads every recipient
	// with stored messages, for a retry whose schedule was lost (a node
	// that crashed between storing and scheduling, a store write that
	// failed): it costs two reads per such recipient, so it is rare.
	// Default 5m.
	RescanInterval time.Duration
	// MaxRecipients bounds a recipient list. Default 100.
	MaxRecipients int
	// MaxDrains bounds the recipients drained at once. Default 64.
	MaxDrains int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Capabilities are the feature tags rcsd states for an offline RCS
	// user's OPTIONS (SetContact gives the address).
	Capabilities []string
	// SpamNumber is the report number (seed 001 §5.1.3.8); "" turns spam
	// reports off. ReportLifetime is how long a report is kept. Defaults
	// "" and 90 days.
	SpamNumber     string
	ReportLifetime time.Duration
	// Public accounts (publicaccount.go): the PSI domain ("" turns them
	// off), the platform's webhook for uplink messages, the bearer token
	// both directions use, the largest body sent in pager mode (default
	// 900 bytes, seed 001 §5.1.3.3) and the HTTP client.
	PADomain     string
	PAWebhook    string
	PAToken      string
	PAPagerLimit int
	HTTPClient   *http.Client
	// Node is this node's ID: it owns the drains it runs (a lease in the
	// store, so nodes sharing it never drain one recipient at once).
	// Default "local".
	Node string
	// LeaseTTL is how long a drain's lease lasts unless renewed (every
	// LeaseTTL/3 while the drain runs): a node that dies mid-drain holds
	// the recipient's stored messages back that long. Default 10s.
	LeaseTTL time.Duration
	// AliasTTL is how long a subscriber's other public identities are
	// remembered for finding bindings under them (aliases.go). Default
	// 30s; negative: not remembered.
	AliasTTL time.Duration
	// Holds reports whether the node a binding records can reach the
	// handset (itself or a live node); bindings of a dead node are left
	// out, as if the handset were offline. Default: every node.
	Holds func(node string) bool
}

func (o *Options) defaults() {
	if o.DeliveryTimeout <= 0 {
		o.DeliveryTimeout = 8 * time.Second
	}
	if o.Lifetime <= 0 {
		o.Lifetime = 7 * 24 * time.Hour
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 30 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Hour
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Second
	}
	if o.RescanInterval <= 0 {
		o.RescanInterval = 5 * time.Minute
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = 100
	}
	if o.MaxDrains <= 0 {
		o.MaxDrains = 64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PAPagerLimit <= 0 {
		o.PAPagerLimit = 900
	}
	if o.Node == "" {
		o.Node = "local"
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.AliasTTL == 0 {
		o.AliasTTL = 30 * time.Second
	}
	if o.Holds == nil {
		o.Holds = func(string) bool { return true }
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.ReportLifetime <= 0 {
		o.ReportLifetime = 90 * 24 * time.Hour
	}
	if o.Capabilities == nil {
		o.Capabilities = DefaultCapabilities
	}
}

// Pager is the messaging function.
type Pager struct {
	opts    Options
	store   storage.Store
	sender  Sender
	log     *zap.Logger
	metrics *Metrics
	now     func() time.Time

	// Background work (drains, generated notifications) runs under ctx
	// and is waited for on Close.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{} // MaxDrains

	contact atomic.Pointer[string] // host:port of OPTIONS answered for offline users

	// onFailed is told about messages given up (expired, refused).
	onFailed func(storage.Message)

	aliases *aliasCache

	lastRescan time.Time // by Run's goroutine only

	mu       sync.Mutex
	closed   bool            // Close was called: no new background work
	draining map[string]bool // recipients being drained
	// later holds what this node's sweep starts itself: retries the
	// store could not take (it was down), and second looks after a
	// registration.
	later map[string]later
	again map[string]bool // recipients to drain again when the current drain ends
}

// later is a drain this node's own sweep starts at a time.
type later struct {
	at      time.Time
	recheck bool // a second look after a registration: read first, force
}

// New creates the messaging function. Call Run to start its sweeper and
// Close to stop its background work.
func New(opts Options, store storage.Store, sender Sender, log *zap.Logger, m *Metrics) *Pager {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Pager{
		opts: opts, store: store, sender: sender, log: log, metrics: m, now: opts.Now,
		ctx: ctx, cancel: cancel, slots: make(chan struct{}, opts.MaxDrains),
		aliases:  newAliasCache(store, opts.AliasTTL, opts.Now),
		draining: map[string]bool{}, again: map[string]bool{}, later: map[string]later{},
	}
}

// ServeSIP handles one MESSAGE. It runs inside a server transaction
// (Router.HandleTx): delivery waits on the recipient.
func (p *Pager) ServeSIP(ctx context.Context, req *siplib.Request) *siplib.Response {
	p.metrics.Received.Inc()
	if v := req.Via(); v != nil && v.Params.Has("rkeep") {
		// A link keep-alive (seed 001 Table 5-9 row 6): answered, never
		// stored or delivered.
		return rsip.NewResponse(req, 200, "OK")
	}
	pre, err := p.prefetch(ctx, req)
	if err != nil {
		// A store that failed (or timed out) once is not asked again
		// for the same request: answer now.
		return p.unavailable(req, err)
	}
	from, res := p.identifyWith(ctx, req, pre)
	if res != nil {
		return res
	}
	rcs := claimsRCS(req)
	var body *parsedBody
	if rcs {
		var err error
		if body, err = validate(req); err != nil {
			return p.refuseBad(req, err)
		}
	}
	if p.isPublicAccount(req) {
		return p.publicAccountUplink(ctx, req, from, body)
	}
	if p.isSpamReport(req) {
		return p.spamReport(ctx, req, from)
	}
	if isList(req, p.opts.Domain) {
		return p.recipientList(ctx, req, from, body)
	}
	to, err := identity.Canonical(req.Recipient.String())
	if err != nil {
		return p.refuse(req, 404, "Not Found - Invalid Request-URI", err.Error())
	}
	m := p.newMessage(req, from, to, rcs, body)
	return p.route(ctx, req, m, pre)
}

// prefetched are the bindings a one-to-one MESSAGE needs, read together.
type prefetched struct {
	from, to string
	sender   []storage.Binding // the sender's, for the flow check
	rcpt     []storage.Binding // the recipient's, as recipientBindings
}

// prefetch reads the sender's and the recipient's bindings in one store
// call (one round trip on Redis: a stored message then costs two, the
// write included). nil when the request is not a plain one-to-one
// message in standalone mode; an error when the store failed, which the
// other path would meet again (after another timeout, were the store
// stalled).
func (p *Pager) prefetch(ctx context.Context, req *siplib.Request) (*prefetched, error) {
	if p.opts.Route != nil || isList(req, p.opts.Domain) || p.isPublicAccount(req) || p.isSpamReport(req) {
		return nil, nil
	}
	from, err1 := identity.Canonical(req.From().Address.String())
	to, err2 := identity.Canonical(req.Recipient.String())
	if err1 != nil || err2 != nil {
		return nil, nil // refused on the usual path, with the reason
	}
	aors, err := p.recipientAORs(ctx, to)
	if err != nil {
		return nil, err
	}
	all, err := storage.BindingsOf(ctx, p.store, append([]string{from}, aors...), p.now())
	if err != nil {
		return nil, fmt.Errorf("bindings of %s and %s: %w", from, to, err)
	}
	return &prefetched{from: from, to: to, sender: all[0], rcpt: p.pick(all[1:])}, nil
}

// route delivers m now if its recipient can take it, else stores it, and
// answers the sender (seed 001 Table 5-10: 202 = stored on the server).
func (p *Pager) route(ctx context.Context, req *siplib.Request, m storage.Message, pre *prefetched) *siplib.Response {
	var waiting []storage.Message
	offline := false
	if p.opts.Route == nil {
		// Bindings first: a recipient without any gets the message
		// stored at once — the common store-and-forward case costs no
		// look at the queue (each look is a round trip on Redis).
		var bs []storage.Binding
		var err error
		if pre != nil && pre.to == m.Recipient {
			bs = pre.rcpt
		} else if bs, err = p.recipientBindings(ctx, m.Recipient); err != nil {
			return p.unavailable(req, err)
		}
		offline = len(bs) == 0
		if offline {
			p.log.Debug("recipient offline, storing", zap.String("to", m.Recipient))
		} else {
			// Messages already waiting for this recipient go first: a
			// new one queues behind them rather than overtaking.
			if waiting, err = p.store.PendingMessages(ctx, m.Recipient, 1); err != nil {
				return p.unavailable(req, err)
			}
		}
		if !offline && len(waiting) == 0 {
			dctx, cancel := context.WithTimeout(ctx, p.opts.DeliveryTimeout)
			out := p.deliverTo(dctx, m, bs)
			cancel()
			if res := p.settled(req, m, out); res != nil {
				return res
			}
		}
	} else {
		var err error
		if waiting, err = p.store.PendingMessages(ctx, m.Recipient, 1); err != nil {
			return p.unavailable(req, err)
		}
		if len(waiting) == 0 {
			dctx, cancel := context.WithTimeout(ctx, p.opts.DeliveryTimeout)
			out := p.deliver(dctx, m)
			cancel()
			if res := p.settled(req, m, out); res != nil {
				return res
			}
		}
	}
	dup, err := p.store.PutMessage(ctx, m)
	if err != nil {
		return p.unavailable(req, err)
	}
	if dup != "" {
		p.metrics.Duplicates.Inc()
		p.log.Info("duplicate MESSAGE not stored again", zap.String("to", m.Recipient), zap.String("stored_as", dup))
	} else {
		p.metrics.Stored.Inc()
		switch {
		case offline:
			// Its next registration drains it: no retry to schedule.
		case len(waiting) > 0 && p.reachable(ctx, m.Recipient):
			// Older messages wait but the recipient is there: a drain
			// (which this one joins) may be due.
			p.kick(m.Recipient, false)
		default:
			// The recipient is registered but did not take it (or ims-as).
			p.scheduleRetry(ctx, m.Recipient, p.now())
		}
	}
	return p.accepted(req)
}

// settled answers the sender when a delivery attempt decided m's fate;
// nil when m must be stored.
func (p *Pager) settled(req *siplib.Request, m storage.Message, out outcome) *siplib.Response {
	switch out.class {
	case delivered:
		p.metrics.Delivered.WithLabelValues("direct").Inc()
		p.metrics.Latency.Observe(p.now().Sub(m.Received).Seconds())
		return p.relayed(req, out.res)
	case rejected:
		p.metrics.Failed.WithLabelValues("rejected").Inc()
		return p.relayed(req, out.res)
	}
	p.log.Debug("recipient unreachable, storing", zap.String("to", m.Recipient), zap.String("why", out.why))
	return nil
}

func (p *Pager) accepted(req *siplib.Request) *siplib.Response {
	return rsip.NewResponse(req, 202, "Accepted")
}

func (p *Pager) unavailable(req *siplib.Request, err error) *siplib.Response {
	// Never 202 for what could not be stored.
	p.log.Error("storage failed while handling a MESSAGE", zap.Error(err), zap.String("source", req.Source()))
	res := rsip.NewResponse(req, 503, "Service Unavailable")
	res.AppendHeader(siplib.NewHeader("Retry-After", "5"))
	return res
}

// identify establishes who sent req, or refuses it.
func (p *Pager) identify(ctx context.Context, req *siplib.Request) (string, *siplib.Response) {
	return p.identifyWith(ctx, req, nil)
}

// identifyWith is identify with the sender's bindings perhaps read already.
func (p *Pager) identifyWith(ctx context.Context, req *siplib.Request, pre *prefetched) (string, *siplib.Response) {
	if p.opts.Route != nil {
		ids, ok := ims.AssertedIdentity(req)
		if !ok {
			return "", p.refuse(req, 403, "Forbidden - P-Asserted-Identity Required", "no usable P-Asserted-Identity from the core")
		}
		return ids[0], nil
	}
	fromHdr := req.From()
	from, err := identity.Canonical(fromHdr.Address.String())
	if err != nil {
		return "", p.refuse(req, 400, "Invalid From header", err.Error())
	}
	var bs []storage.Binding
	if pre != nil && pre.from == from {
		bs = pre.sender
	} else if bs, err = p.store.Bindings(ctx, from, p.now()); err != nil {
		return "", p.unavailable(req, err)
	}
	tp := strings.ToLower(req.Transport())
	src := req.Source()
	srcHost, _, _ := net.SplitHostPort(src)
	for _, b := range bs {
		if b.Transport == tp && b.Source == src {
			return from, nil
		}
		// Registered through an edge proxy (Path, RFC 3327): the proxy
		// vouches for the handset, and reaches any node over a connection
		// of its own, so its address counts, not the connection's port.
		if len(b.Path) > 0 && b.Transport == tp && srcHost != "" {
			if h, _, _ := net.SplitHostPort(b.Source); h == srcHost {
				return from, nil
			}
		}
	}
	return "", p.refuse(req, 403, "Forbidden - Not Registered From This Address", from+" has no binding on "+tp+" "+req.Source())
}

// passThrough are the request headers the delivery leg carries unchanged
// (seed 001 Tables 5-9/5-11: Conversation-ID and Contribution-ID pass
// through end to end, never regenerated).
var passThrough = []string{
	"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-Encoding",
	"Conversation-ID", "Contribution-ID", "InReplyTo-Contribution-ID",
	"Accept-Contact", "Subject", "Date", "Expires", "Priority",
}

// newMessage captures what the delivery leg needs; it is what gets stored
// when the recipient cannot take the message now.
func (p *Pager) newMessage(req *siplib.Request, from, to string, rcs bool, body *parsedBody) storage.Message {
	now := p.now()
	m := storage.Message{
		ID: newID(now), Recipient: to, Sender: from,
		Received: now, Expires: now.Add(p.opts.Lifetime),
		Body: append([]byte(nil), req.Body()...),
	}
	for _, name := range passThrough {
		for _, h := range req.GetHeaders(name) {
			m.Headers = append(m.Headers, name+": "+h.Value())
		}
	}
	if rcs {
		// The spec's delivery leg asserts the service (Table 5-11).
		m.Headers = append(m.Headers, "P-Asserted-Service: "+featuretag.ICSIMsg)
	}
	cseq := req.CSeq()
	m.DedupKeys = append(m.DedupKeys, fmt.Sprintf("cid:%s/%s/%d", from, string(*req.CallID()), cseq.SeqNo))
	if body != nil && body.messageID != "" {
		m.DedupKeys = append(m.DedupKeys, "mid:"+from+"/"+body.messageID)
	}
	return m
}

func (p *Pager) refuse(req *siplib.Request, code int, reason, why string) *siplib.Response {
	p.metrics.Refused.WithLabelValues(fmt.Sprint(code)).Inc()
	p.log.Info("MESSAGE refused", zap.Int("status", code), zap.String("reason", why),
		zap.String("source", req.Source()), zap.String("transport", req.Transport()))
	return rsip.NewResponse(req, code, reason)
}

// refuseBad answers a validation failure: 400 with the reason naming what
// is wrong, plus Accept for an unsupported type (seed 001 L688).
func (p *Pager) refuseBad(req *siplib.Request, err error) *siplib.Response {
	var bad *badRequest
	if !errors.As(err, &bad) {
		bad = &badRequest{reason: "Bad Request", why: err.Error()}
	}
	res := p.refuse(req, 400, bad.reason, bad.why)
	if bad.accept {
		res.AppendHeader(siplib.NewHeader("Accept", strings.Join(supportedTypes, ", ")))
	}
	return res
}

// relayed answers the sender with the delivery's final status.
func (p *Pager) relayed(req *siplib.Request, dres *siplib.Response) *siplib.Response {
	if dres == nil { // refused before anything was sent (an unusable route)
		return rsip.NewResponse(req, 500, "Server Internal Error")
	}
	return rsip.NewResponse(req, dres.StatusCode, dres.Reason)
}

// newID is a unique ID that sorts by arrival time.
func newID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x", uint64(now.UnixNano())) + hex.EncodeToString(b[:])
}

func newTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SetContact sets rcsd's host:port stated in the Contact of OPTIONS it
// answers for offline users; known once the listeners are bound.
func (p *Pager) SetContact(hostport string) { p.contact.Store(&hostport) }

// Close stops the background work and waits for it.
func (p *Pager) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// spawn runs fn in the background unless the pager is closed.
func (p *Pager) spawn(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fn()
	}()
}
