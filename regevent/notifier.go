// Package regevent is the notifier of the registration event package (RFC
// 3680): a handset SUBSCRIBEs to "Event: reg" for its own public identity
// and learns from NOTIFYs carrying application/reginfo+xml when any of the
// identity's contacts is registered, refreshed, de-registered or expires.
//
// Choices:
//   - Authorization by flow: a SUBSCRIBE is accepted only when it arrives
//     on the flow (transport and source address, RFC 5626) of one of the
//     target identity's current bindings, so only a handset registered for
//     that identity may watch it, with no credentials of its own. A
//     handset not yet registered, or subscribing from another connection,
//     gets 403 "Not registered from this flow". Refreshes are held to the
//     same rule and move the subscription to the flow they arrive on.
//   - Subscriptions live in memory on the node that accepted them: a
//     restart drops them silently, and handsets subscribe again after
//     their next registration refresh (their refresh SUBSCRIBE gets 481).
//     On a shared store the other nodes' registration changes reach them
//     too (cluster.Changes), so the handset's REGISTERs may land anywhere.
//   - Every NOTIFY carries the full state (state="full"): no partial
//     documents to reassemble, and a NOTIFY lost or coalesced costs
//     nothing but its events.
//   - NOTIFYs of one subscription go out one at a time, in order, from a
//     worker that exists only while some are pending; a NOTIFY answered 481
//     (or 408, 489) or failing in transport ends the subscription (RFC 6665
//     §4.2.2, RFC 5057 §5.2).
package regevent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/identity"
	"rcsd/registrar"
	rsip "rcsd/sip"
	"rcsd/storage"
)

// EventPackage is the Event header value this package serves.
const EventPackage = "reg"

// Sender sends a request to a handset over its flow and waits for the
// final response; *rsip.Server is one.
type Sender interface {
	Request(ctx context.Context, req *siplib.Request, flow rsip.Flow) (*siplib.Response, error)
}

// Options configure the notifier. Zero values take the defaults noted.
type Options struct {
	// Subscription durations in seconds (RFC 6665 §4.2.1.1): shorter
	// requests are refused with 423, longer ones lowered.
	MinExpires     int // default 60
	MaxExpires     int // default 7200
	DefaultExpires int // when the SUBSCRIBE has no Expires; default 3761 (RFC 3680 §4.4)
	// Bounds, so one identity or a flood cannot hold unbounded state.
	MaxPerAOR        int // default 16
	MaxSubscriptions int // default 100000
	// Contact is our Contact URI for 200s and NOTIFYs (SetContact once the
	// listeners are bound). Empty: "sip:" plus the listener the SUBSCRIBE
	// arrived on.
	Contact string
	// NotifyTimeout bounds one NOTIFY transaction; default 32 s (RFC 3261
	// Timer F).
	NotifyTimeout time.Duration
	// SweepInterval is how often Run ends expired subscriptions; default 1 s.
	SweepInterval time.Duration
	// MaxQueue is how many NOTIFYs may wait behind one in flight before the
	// subscription is dropped as not keeping up; default 16.
	MaxQueue int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MinExpires, 60)
	def(&o.MaxExpires, 7200)
	def(&o.DefaultExpires, 3761)
	def(&o.MaxPerAOR, 16)
	def(&o.MaxSubscriptions, 100000)
	def(&o.MaxQueue, 16)
	if o.MaxExpires < o.MinExpires {
		o.MaxExpires = o.MinExpires
	}
	if o.DefaultExpires < o.MinExpires {
		o.DefaultExpires = o.MinExpires
	}
	if o.DefaultExpires > o.MaxExpires {
		o.DefaultExpires = o.MaxExpires
	}
	if o.NotifyTimeout <= 0 {
		o.NotifyTimeout = 32 * time.Second
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Subscription-State reasons (RFC 6665 §4.1.3).
const (
	reasonTimeout    = "timeout"
	reasonNoResource = "noresource"
)

// Notifier answers SUBSCRIBE for the reg event and sends the NOTIFYs. It
// observes the registrar (registrar.Observer).
type Notifier struct {
	opts    Options
	store   storage.BindingStore
	sender  Sender
	log     *zap.Logger
	contact atomic.Pointer[string]

	// ctx ends the NOTIFYs in flight when Run returns; wg counts workers.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	subs   map[dialogID]*subscription
	byAOR  map[string]map[dialogID]*subscription
}

var _ registrar.Observer = (*Notifier)(nil)

// dialogID identifies a subscription's dialog (RFC 3261 §12): Call-ID, the
// subscriber's tag (From) and ours (To of the 200).
type dialogID struct {
	callID, remoteTag, localTag string
}

// subscription is one accepted SUBSCRIBE dialog. Fields are guarded by
// Notifier.mu.
type subscription struct {
	id      dialogID
	aor     string
	eventID string             // the Event header's id parameter, echoed in NOTIFYs
	remote  *siplib.ToHeader   // the SUBSCRIBE's From: the NOTIFYs' To
	local   *siplib.FromHeader // the SUBSCRIBE's To with our tag: the NOTIFYs' From
	target  siplib.Uri         // remote target: the SUBSCRIBE's Contact
	routes  []siplib.Uri       // route set: the SUBSCRIBE's Record-Route, in order
	flow    rsip.Flow
	ourURI  string // our Contact
	subCSeq uint32 // CSeq of the last SUBSCRIBE accepted
	expires time.Time
	version uint32            // reginfo version of the next NOTIFY
	cseq    uint32            // CSeq of the last NOTIFY
	last    []storage.Binding // the active bindings last reported
	events  map[string]string // binding key -> event last reported
	queue   []notifyJob
	running bool // a worker is draining queue
	ended   bool // out of the index; the queue may still hold the final NOTIFY
}

type notifyJob struct {
	req     *siplib.Request
	flow    rsip.Flow
	version uint32
	final   bool
}

// New creates a notifier. Call Run to expire subscriptions and to stop
// the NOTIFY workers at shutdown.
func New(opts Options, store storage.BindingStore, sender Sender, log *zap.Logger) *Notifier {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{
		opts: opts, store: store, sender: sender, log: log, ctx: ctx, cancel: cancel,
		subs:  make(map[dialogID]*subscription),
		byAOR: make(map[string]map[dialogID]*subscription),
	}
	n.SetContact(opts.Contact)
	return n
}

// SetContact sets the Contact URI of 200s and NOTIFYs; it is known only
// once the listeners are bound.
func (n *Notifier) SetContact(uri string) { n.contact.Store(&uri) }

// Count returns the number of active subscriptions.
func (n *Notifier) Count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.subs)
}

// Run ends subscriptions that were not refreshed in time until ctx ends,
// then stops: pending NOTIFYs are dropped, those in flight cancelled, and
// Run returns once every worker has. Subscriptions are not terminated
// with a NOTIFY at shutdown (see the package comment).
func (n *Notifier) Run(ctx context.Context) {
	t := time.NewTicker(n.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			n.mu.Lock()
			n.closed = true
			for _, s := range n.subs {
				s.queue = nil
			}
			n.mu.Unlock()
			n.cancel()
			n.wg.Wait()
			return
		case <-t.C:
			n.sweep(n.opts.Now())
		}
	}
}

// sweep sends the final NOTIFY (terminated;reason=timeout, RFC 6665
// §4.2.2) to subscriptions whose time ran out.
func (n *Notifier) sweep(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.subs {
		if s.expires.After(now) {
			continue
		}
		n.log.Debug("subscription expired", zap.String("aor", s.aor), zap.String("call_id", s.id.callID))
		n.notifyLocked(s, contactEvents(s.last, alive(s.last, now), false, now, s.events), now, reasonTimeout)
	}
}

func alive(bs []storage.Binding, now time.Time) []storage.Binding {
	out := make([]storage.Binding, 0, len(bs))
	for _, b := range bs {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	return out
}

// RegistrationChanged sends every subscription on c.AOR a NOTIFY with the
// new state. When no binding is left, the registration is terminated and
// the subscription ends with that NOTIFY: RFC 3680 §4.7.1 lets the
// registrar drop a terminated registration's state once the NOTIFY is
// sent, 3GPP TS 24.229 (S-CSCF, reg event) terminates the subscription
// together with the last registration, and the watcher no longer passes
// the flow check anyway. The reason is "noresource" (RFC 6665 §4.1.3: the
// watched state is gone) rather than "deactivated", which asks for an
// immediate re-SUBSCRIBE that would be refused until the handset
// registers again.
func (n *Notifier) RegistrationChanged(c registrar.Change) {
	now := c.At
	if now.IsZero() {
		now = n.opts.Now()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.byAOR[c.AOR] {
		reason := ""
		if len(c.After) == 0 {
			reason = reasonNoResource
		}
		n.notifyLocked(s, contactEvents(s.last, c.After, c.Expired, now, s.events), now, reason)
	}
}

// ServeSIP answers a SUBSCRIBE.
func (n *Notifier) ServeSIP(ctx context.Context, req *siplib.Request) *siplib.Response {
	now := n.opts.Now()
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		return n.reject(req, 400, "Missing dialog headers", "From, To, Call-ID and CSeq are required") // the router checks them too
	}
	eventID, ok := regEvent(req)
	if !ok {
		res := n.reject(req, 489, "Bad Event", "Event is not "+EventPackage)
		res.AppendHeader(siplib.NewHeader("Allow-Events", EventPackage))
		return res
	}
	if !acceptsReginfo(req) {
		res := n.reject(req, 406, "Not Acceptable", "Accept does not allow "+ContentType)
		res.AppendHeader(siplib.NewHeader("Accept", ContentType))
		return res
	}
	expires, err := n.expires(req)
	if err != nil {
		return n.reject(req, 400, "Invalid Expires header", err.Error())
	}
	if expires > 0 && expires < n.opts.MinExpires {
		res := n.reject(req, 423, "Interval Too Brief", fmt.Sprintf("Expires %d below %d", expires, n.opts.MinExpires))
		res.AppendHeader(siplib.NewHeader("Min-Expires", strconv.Itoa(n.opts.MinExpires)))
		return res
	}
	expires = min(expires, n.opts.MaxExpires)
	contact := req.Contact()
	if contact == nil || contact.Address.Wildcard || contact.Address.Host == "" {
		return n.reject(req, 400, "Missing Contact header", "no usable Contact (RFC 6665 §4.1.2.1)")
	}
	callID := string(*req.CallID())
	fromTag, _ := req.From().Params.Get("tag")
	toTag, inDialog := req.To().Params.Get("tag")

	// In a dialog the Request-URI is our Contact; the identity is the
	// subscription's.
	var aor string
	if inDialog {
		n.mu.Lock()
		s := n.subs[dialogID{callID, fromTag, toTag}]
		if s != nil {
			aor = s.aor
		}
		n.mu.Unlock()
		if s == nil {
			return n.reject(req, 481, "Subscription Does Not Exist", "no subscription for this dialog")
		}
	} else {
		aor, err = targetIdentity(req)
		if err != nil {
			return n.reject(req, 400, "Invalid target identity", err.Error())
		}
	}
	bindings, err := n.store.Bindings(ctx, aor, now)
	if err != nil {
		n.log.Error("storage failed while subscribing", zap.String("aor", aor), zap.Error(err), zap.String("call_id", callID))
		res := rsip.NewResponse(req, 503, "Storage Unavailable")
		res.AppendHeader(siplib.NewHeader("Retry-After", "5"))
		return res
	}
	if !fromRegisteredFlow(bindings, req) {
		return n.reject(req, 403, "Not registered from this flow", aor+" has no binding on "+req.Transport()+" "+req.Source())
	}
	flow := rsip.Flow{Transport: strings.ToLower(req.Transport()), Source: req.Source(), Contact: contact.Address.String()}
	flow.Local, _ = ctx.Value(rsip.LocalAddrKey{}).(string)
	ourURI := n.ourContact(flow)

	res := rsip.NewResponse(req, 200, "OK")
	localTag, _ := res.To().Params.Get("tag")
	id := dialogID{callID, fromTag, localTag}
	cseq := req.CSeq().SeqNo

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		res := rsip.NewResponse(req, 503, "Shutting Down")
		n.logReject(req, 503, "notifier stopped")
		return res
	}
	s := n.subs[id]
	switch {
	case s == nil && inDialog:
		// Ended between the look-up above and now.
		return n.reject(req, 481, "Subscription Does Not Exist", "subscription ended meanwhile")
	case s != nil && cseq == s.subCSeq:
		// A retransmission (UDP): answer again, change nothing.
	case s != nil && cseq < s.subCSeq:
		return n.reject(req, 500, "CSeq Out of Order", fmt.Sprintf("CSeq %d after %d", cseq, s.subCSeq)) // RFC 3261 §12.2.2
	case s != nil:
		// Refresh. SUBSCRIBE is a target refresh request (RFC 6665
		// §4.1.2.1), and the handset may have a new connection.
		s.subCSeq, s.target, s.flow = cseq, *contact.Address.Clone(), flow
		state := ""
		if expires == 0 {
			state = reasonTimeout // unsubscribe: final NOTIFY (RFC 6665 §4.2.1.4)
		} else {
			s.expires = now.Add(time.Duration(expires) * time.Second)
		}
		n.notifyLocked(s, contactEvents(s.last, bindings, false, now, s.events), now, state)
	default:
		if refuse := n.overLimit(req, aor); refuse != nil {
			return refuse
		}
		s = n.newSubscription(req, id, aor, eventID, contact, flow, ourURI, now, expires)
		state := ""
		if expires == 0 {
			// A fetch (RFC 6665 §4.4.3): one NOTIFY, no subscription.
			s.ended = true
			state = reasonTimeout
		} else {
			n.addLocked(s)
		}
		n.notifyLocked(s, contactEvents(nil, bindings, false, now, nil), now, state)
	}
	left := 0
	if !s.ended {
		left = int(seconds(s.expires.Sub(now)))
	}
	res.AppendHeader(siplib.NewHeader("Expires", strconv.Itoa(left)))
	res.AppendHeader(&siplib.ContactHeader{Address: parseURI(s.ourURI)})
	if !inDialog {
		// The 2xx that creates a dialog copies Record-Route (RFC 3261 §12.1.1).
		for _, h := range req.GetHeaders("Record-Route") {
			res.AppendHeader(h)
		}
	}
	return res
}

func (n *Notifier) overLimit(req *siplib.Request, aor string) *siplib.Response {
	if len(n.subs) >= n.opts.MaxSubscriptions {
		res := rsip.NewResponse(req, 503, "Too Many Subscriptions")
		res.AppendHeader(siplib.NewHeader("Retry-After", "60"))
		n.logReject(req, 503, fmt.Sprintf("%d subscriptions, the node's limit", len(n.subs)))
		return res
	}
	if len(n.byAOR[aor]) >= n.opts.MaxPerAOR {
		res := rsip.NewResponse(req, 403, "Too Many Subscriptions For This Identity")
		n.logReject(req, 403, fmt.Sprintf("%s has %d subscriptions, the limit", aor, len(n.byAOR[aor])))
		return res
	}
	return nil
}

func (n *Notifier) newSubscription(req *siplib.Request, id dialogID, aor, eventID string, contact *siplib.ContactHeader,
	flow rsip.Flow, ourURI string, now time.Time, expires int) *subscription {
	from, to := req.From(), req.To()
	s := &subscription{
		id: id, aor: aor, eventID: eventID, flow: flow, ourURI: ourURI,
		remote:  &siplib.ToHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: from.Params.Clone()},
		local:   &siplib.FromHeader{DisplayName: to.DisplayName, Address: *to.Address.Clone(), Params: to.Params.Clone()},
		target:  *contact.Address.Clone(),
		subCSeq: req.CSeq().SeqNo,
		expires: now.Add(time.Duration(expires) * time.Second),
	}
	if !s.local.Params.Has("tag") {
		s.local.Params.Add("tag", id.localTag)
	}
	// The UAS route set is the Record-Route in request order (RFC 3261
	// §12.1.1).
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*siplib.RecordRouteHeader); ok {
			s.routes = append(s.routes, *rr.Address.Clone())
		}
	}
	return s
}

func (n *Notifier) addLocked(s *subscription) {
	n.subs[s.id] = s
	m := n.byAOR[s.aor]
	if m == nil {
		m = make(map[dialogID]*subscription)
		n.byAOR[s.aor] = m
	}
	m[s.id] = s
}

func (n *Notifier) removeLocked(s *subscription) {
	s.ended = true
	if n.subs[s.id] != s {
		return
	}
	delete(n.subs, s.id)
	if m := n.byAOR[s.aor]; m != nil {
		delete(m, s.id)
		if len(m) == 0 {
			delete(n.byAOR, s.aor)
		}
	}
}

// notifyLocked queues the next NOTIFY of s, with contacts as the full
// state. A non-empty reason makes it the final one (Subscription-State:
// terminated) and ends s.
func (n *Notifier) notifyLocked(s *subscription, contacts []contactState, now time.Time, reason string) {
	if n.closed {
		return
	}
	if len(s.queue) >= n.opts.MaxQueue {
		// The handset does not answer as fast as its registration
		// changes; its next refresh gets 481 and it subscribes afresh.
		n.log.Warn("subscription dropped: NOTIFYs not answered in time", zap.String("aor", s.aor),
			zap.String("call_id", s.id.callID), zap.Int("queued", len(s.queue)))
		s.queue = nil
		n.removeLocked(s)
		return
	}
	body, err := Encode(document(s.aor, s.version, contacts, now))
	if err != nil {
		// Only strings from storage go in; nothing to retry.
		n.log.Error("reginfo not encoded", zap.String("aor", s.aor), zap.Error(err))
		return
	}
	state := "active;expires=" + strconv.FormatUint(seconds(s.expires.Sub(now)), 10)
	if reason != "" {
		state = "terminated;reason=" + reason
	}
	s.cseq++
	s.queue = append(s.queue, notifyJob{req: n.buildNotify(s, body, state), flow: s.flow, version: s.version, final: reason != ""})
	s.version++
	s.last = s.last[:0:0]
	s.events = make(map[string]string, len(contacts))
	for _, cs := range contacts {
		if cs.state == StateActive {
			s.last = append(s.last, cs.b)
			s.events[cs.b.Key()] = cs.event
		}
	}
	if reason != "" {
		n.removeLocked(s)
	}
	if !s.running {
		s.running = true
		n.wg.Add(1)
		go n.drain(s)
	}
}

// buildNotify makes a NOTIFY within the subscription's dialog (RFC 3261
// §12.2.1.1, RFC 6665 §4.2.1). sipgo's client adds the Via with a fresh
// branch when it sends it.
func (n *Notifier) buildNotify(s *subscription, body []byte, state string) *siplib.Request {
	req := siplib.NewRequest(siplib.NOTIFY, *s.target.Clone())
	for i := range s.routes {
		req.AppendHeader(&siplib.RouteHeader{Address: *s.routes[i].Clone()})
	}
	maxForwards := siplib.MaxForwardsHeader(70)
	req.AppendHeader(&maxForwards)
	req.AppendHeader(&siplib.FromHeader{DisplayName: s.local.DisplayName, Address: *s.local.Address.Clone(), Params: s.local.Params.Clone()})
	req.AppendHeader(&siplib.ToHeader{DisplayName: s.remote.DisplayName, Address: *s.remote.Address.Clone(), Params: s.remote.Params.Clone()})
	callID := siplib.CallIDHeader(s.id.callID)
	req.AppendHeader(&callID)
	req.AppendHeader(&siplib.CSeqHeader{SeqNo: s.cseq, MethodName: siplib.NOTIFY})
	req.AppendHeader(&siplib.ContactHeader{Address: parseURI(s.ourURI)})
	event := EventPackage
	if s.eventID != "" {
		event += ";id=" + s.eventID
	}
	req.AppendHeader(siplib.NewHeader("Event", event))
	req.AppendHeader(siplib.NewHeader("Subscription-State", state))
	contentType := siplib.ContentTypeHeader(ContentType)
	req.AppendHeader(&contentType)
	req.SetBody(body)
	return req
}

// drain sends the queued NOTIFYs of s one at a time, in order, and exits
// when the queue is empty.
func (n *Notifier) drain(s *subscription) {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		if len(s.queue) == 0 || n.closed {
			s.running = false
			n.mu.Unlock()
			return
		}
		job := s.queue[0]
		s.queue[0] = notifyJob{}
		s.queue = s.queue[1:]
		n.mu.Unlock()

		ctx, cancel := context.WithTimeout(n.ctx, n.opts.NotifyTimeout)
		res, err := n.sender.Request(ctx, job.req, job.flow)
		cancel()
		if n.ctx.Err() != nil {
			continue // shutting down: the loop exits on closed
		}
		if why := failure(res, err); why != "" && !job.final {
			n.log.Info("subscription ended: NOTIFY failed", zap.String("aor", s.aor), zap.String("call_id", s.id.callID),
				zap.Uint32("version", job.version), zap.String("reason", why))
			n.mu.Lock()
			s.queue = nil
			n.removeLocked(s)
			n.mu.Unlock()
		} else if why == "" && res != nil && res.StatusCode >= 300 {
			n.log.Info("NOTIFY refused", zap.String("aor", s.aor), zap.String("call_id", s.id.callID),
				zap.Int("status", res.StatusCode), zap.Uint32("version", job.version))
		}
	}
}

// failure says why a NOTIFY outcome ends the subscription, "" if it does
// not: a transport failure or timeout, or a response that ends the dialog
// usage (RFC 6665 §4.2.2; RFC 5057 §5.2 for 408 and 489).
func failure(res *siplib.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	switch res.StatusCode {
	case 481, 408, 489:
		return strconv.Itoa(res.StatusCode) + " " + res.Reason
	}
	return ""
}

func (n *Notifier) reject(req *siplib.Request, code int, reason, why string) *siplib.Response {
	n.logReject(req, code, why)
	return rsip.NewResponse(req, code, reason)
}

func (n *Notifier) logReject(req *siplib.Request, code int, why string) {
	callID := ""
	if c := req.CallID(); c != nil {
		callID = string(*c)
	}
	n.log.Info("SUBSCRIBE rejected", zap.Int("status", code), zap.String("reason", why),
		zap.String("source", req.Source()), zap.String("transport", req.Transport()), zap.String("call_id", callID))
}

var errBadExpires = errors.New("not a number of seconds")

func (n *Notifier) expires(req *siplib.Request) (int, error) {
	h := req.GetHeader("Expires")
	if h == nil {
		return n.opts.DefaultExpires, nil
	}
	v, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", errBadExpires, h.Value())
	}
	return int(min(v, 1<<31-1)), nil
}

// ourContact is our Contact URI: the configured one, else the listener
// the SUBSCRIBE arrived on.
func (n *Notifier) ourContact(flow rsip.Flow) string {
	if c := *n.contact.Load(); c != "" {
		return c
	}
	host := flow.Local
	if host == "" {
		host = "invalid"
	}
	uri := "sip:" + host
	if flow.Transport != "" && flow.Transport != "udp" {
		uri += ";transport=" + flow.Transport
	}
	return uri
}

func parseURI(s string) siplib.Uri {
	var u siplib.Uri
	if err := siplib.ParseUri(strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">"), &u); err != nil {
		return siplib.Uri{Scheme: "sip", Host: "invalid"}
	}
	return u
}

// regEvent reports whether the Event header names this package, and its id
// parameter (RFC 6665 §8.2.1: package names compare case-sensitively, but
// handsets are lenient and so are we).
func regEvent(req *siplib.Request) (id string, ok bool) {
	h := req.GetHeader("Event")
	if h == nil {
		h = req.GetHeader("o") // compact form
	}
	if h == nil {
		return "", false
	}
	parts := strings.Split(h.Value(), ";")
	if !strings.EqualFold(strings.TrimSpace(parts[0]), EventPackage) {
		return "", false
	}
	for _, p := range parts[1:] {
		if k, v, _ := strings.Cut(p, "="); strings.EqualFold(strings.TrimSpace(k), "id") {
			id = strings.TrimSpace(v)
		}
	}
	return id, true
}

// acceptsReginfo: without Accept the package's default type is implied
// (RFC 6665 §4.1.2.1); with one, it must allow application/reginfo+xml.
func acceptsReginfo(req *siplib.Request) bool {
	hs := req.GetHeaders("Accept")
	if len(hs) == 0 {
		return true
	}
	for _, h := range hs {
		for _, r := range strings.Split(h.Value(), ",") {
			mt, _, _ := strings.Cut(r, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case ContentType, "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

// targetIdentity is the watched identity: the Request-URI, or the To URI
// when the Request-URI does not name one.
func targetIdentity(req *siplib.Request) (string, error) {
	aor, err := identity.Canonical(req.Recipient.String())
	if err == nil {
		return aor, nil
	}
	aor, err2 := identity.Canonical(req.To().Address.String())
	if err2 != nil {
		return "", fmt.Errorf("request-URI: %w; To: %w", err, err2)
	}
	return aor, nil
}

// fromRegisteredFlow reports whether req arrived on the flow of one of
// the bindings.
func fromRegisteredFlow(bindings []storage.Binding, req *siplib.Request) bool {
	src := req.Source()
	for i := range bindings {
		if strings.EqualFold(bindings[i].Transport, req.Transport()) && sameAddr(bindings[i].Source, src) {
			return true
		}
	}
	return false
}

// sameAddr compares host:port pairs, tolerating IPv6 spellings.
func sameAddr(a, b string) bool {
	if a == b {
		return true
	}
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	ai, bi := net.ParseIP(ah), net.ParseIP(bh)
	return ai != nil && ai.Equal(bi)
}
