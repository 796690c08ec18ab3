// Package pager relays pager-mode MESSAGE requests (RFC 3428; seed 001
// §5.1.3.2) from the sender to the recipient's registered contacts.
//
// This is the relay core both deployment modes share; store-and-forward,
// CPIM/IMDN validation and recipient lists build on it (see the README's
// roadmap). rcsd acts as a back-to-back UA: the delivery leg is a new
// request with its own dialog identifiers, carrying the sender's identity
// as rcsd asserts it.
//
//   - standalone: the sender is who registered the flow the MESSAGE
//     arrived on (transport and source address of one of the From
//     identity's bindings); anything else is refused with 403, and a
//     P-Asserted-Identity the handset put in was already stripped. The
//     delivery goes to every binding of the recipient in parallel (forking),
//     each over its own flow.
//   - ims-as: the request came from the trusted core (the router's gate
//     checked it); the sender is its P-Asserted-Identity. The delivery goes
//     to the S-CSCF with the recipient's public identity as Request-URI.
package pager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/identity"
	"rcsd/ims"
	rsip "rcsd/sip"
	"rcsd/storage"
)

// Sender sends a request over a flow and waits for its final response
// (*sip.Server).
type Sender interface {
	Request(ctx context.Context, req *siplib.Request, flow rsip.Flow) (*siplib.Response, error)
}

// Options configure the relay.
type Options struct {
	// Route is the S-CSCF route in ims-as mode; nil in standalone mode.
	Route *ims.Route
	// UserAgent is the User-Agent of delivery requests (the spec's IM-serv).
	UserAgent string
	// Timeout bounds one delivery attempt.
	Timeout time.Duration
}

// Pager relays MESSAGE requests.
type Pager struct {
	opts   Options
	store  storage.Store
	sender Sender
	log    *zap.Logger
	now    func() time.Time
}

// New creates the relay.
func New(opts Options, store storage.Store, sender Sender, log *zap.Logger) *Pager {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Pager{opts: opts, store: store, sender: sender, log: log, now: time.Now}
}

// passThrough are the request headers the delivery leg carries unchanged
// (seed 001 Table 5-15: Conversation-ID and Contribution-ID pass through).
var passThrough = []string{
	"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-Encoding",
	"Conversation-ID", "Contribution-ID", "InReplyTo-Contribution-ID",
	"Accept-Contact", "P-Preferred-Service", "P-Asserted-Service", "Subject", "Date", "Expires", "Priority",
}

// ServeSIP handles one MESSAGE. It runs inside a server transaction
// (Router.HandleTx): delivery waits on the recipient.
func (p *Pager) ServeSIP(ctx context.Context, req *siplib.Request) *siplib.Response {
	from, res := p.identify(ctx, req)
	if res != nil {
		return res
	}
	to, err := identity.Canonical(req.Recipient.String())
	if err != nil {
		return p.refuse(req, 404, "Not Found - Invalid Request-URI", err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	if p.opts.Route != nil {
		out := p.delivery(req, from, to)
		if err := p.opts.Route.Prepare(out, to); err != nil {
			return p.refuse(req, 500, "Server Internal Error", err.Error())
		}
		dres, err := p.sender.Request(ctx, out, p.opts.Route.Flow)
		if err != nil {
			p.log.Warn("delivery through the S-CSCF failed", zap.String("to", to), zap.Error(err))
			return rsip.NewResponse(req, 504, "Server Time-out")
		}
		return p.relayed(req, dres)
	}
	bindings, err := p.recipientBindings(ctx, to)
	if err != nil {
		p.log.Error("binding lookup failed", zap.String("to", to), zap.Error(err))
		res := rsip.NewResponse(req, 503, "Service Unavailable")
		res.AppendHeader(siplib.NewHeader("Retry-After", "5"))
		return res
	}
	if len(bindings) == 0 {
		return p.refuse(req, 480, "Temporarily Unavailable", to+" has no registered contact")
	}
	return p.fork(ctx, req, from, to, bindings)
}

// identify establishes who sent req, or refuses it.
func (p *Pager) identify(ctx context.Context, req *siplib.Request) (string, *siplib.Response) {
	if p.opts.Route != nil {
		ids, ok := ims.AssertedIdentity(req)
		if !ok {
			return "", p.refuse(req, 403, "Forbidden - P-Asserted-Identity Required", "no usable P-Asserted-Identity from the core")
		}
		return ids[0], nil
	}
	fromHdr := req.From()
	if fromHdr == nil {
		return "", p.refuse(req, 400, "Missing From header", "no From")
	}
	from, err := identity.Canonical(fromHdr.Address.String())
	if err != nil {
		return "", p.refuse(req, 400, "Invalid From header", err.Error())
	}
	bs, err := p.store.Bindings(ctx, from, p.now())
	if err != nil {
		p.log.Error("binding lookup failed", zap.String("from", from), zap.Error(err))
		res := rsip.NewResponse(req, 503, "Service Unavailable")
		res.AppendHeader(siplib.NewHeader("Retry-After", "5"))
		return "", res
	}
	tp := strings.ToLower(req.Transport())
	for _, b := range bs {
		if b.Transport == tp && b.Source == req.Source() {
			return from, nil
		}
	}
	return "", p.refuse(req, 403, "Forbidden - Not Registered From This Address", from+" has no binding on "+tp+" "+req.Source())
}

// recipientBindings returns the recipient's bindings, under the identity
// addressed or, failing that, under another public identity of the same
// subscriber (a tel: URI addressed, a sip: URI registered).
func (p *Pager) recipientBindings(ctx context.Context, to string) ([]storage.Binding, error) {
	now := p.now()
	bs, err := p.store.Bindings(ctx, to, now)
	if err != nil || len(bs) > 0 {
		return bs, err
	}
	sub, err := p.store.SubscriberByIMPU(ctx, to)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("subscriber of %s: %w", to, err)
	}
	for _, u := range sub.IMPUs {
		if u == to {
			continue
		}
		more, err := p.store.Bindings(ctx, u, now)
		if err != nil {
			return nil, err
		}
		bs = append(bs, more...)
	}
	return bs, nil
}

// delivery builds the request of the delivery leg.
func (p *Pager) delivery(req *siplib.Request, from, to string) *siplib.Request {
	var ruri siplib.Uri
	_ = siplib.ParseUri(to, &ruri)
	out := siplib.NewRequest(siplib.MESSAGE, ruri)
	var fu, tu siplib.Uri
	_ = siplib.ParseUri(from, &fu)
	_ = siplib.ParseUri(to, &tu)
	out.AppendHeader(&siplib.FromHeader{Address: fu, Params: siplib.HeaderParams{{K: "tag", V: newTag()}}})
	out.AppendHeader(&siplib.ToHeader{Address: tu})
	out.AppendHeader(siplib.NewHeader("P-Asserted-Identity", "<"+from+">"))
	for _, name := range passThrough {
		for _, h := range req.GetHeaders(name) {
			out.AppendHeader(siplib.NewHeader(name, h.Value()))
		}
	}
	if p.opts.UserAgent != "" {
		out.AppendHeader(siplib.NewHeader("User-Agent", p.opts.UserAgent))
	}
	if body := req.Body(); len(body) > 0 {
		out.SetBody(append([]byte(nil), body...))
	}
	return out
}

// fork delivers to every binding in parallel (RFC 3261 §16.7 response
// selection: the first 2xx wins; else the lowest class, 6xx aside).
func (p *Pager) fork(ctx context.Context, req *siplib.Request, from, to string, bindings []storage.Binding) *siplib.Response {
	type result struct {
		res *siplib.Response
		err error
	}
	results := make(chan result, len(bindings))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range bindings {
		b := bindings[i]
		out := p.delivery(req, from, to)
		var u siplib.Uri
		if err := siplib.ParseUri(b.Contact, &u); err != nil {
			results <- result{err: fmt.Errorf("contact %q: %w", b.Contact, err)}
			continue
		}
		out.Recipient = u
		for _, r := range b.Path {
			out.AppendHeader(siplib.NewHeader("Route", r))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.sender.Request(ctx, out, rsip.Flow{Transport: b.Transport, Source: b.Source, Local: b.Local, Contact: b.Contact})
			results <- result{res, err}
		}()
	}
	var best *siplib.Response
	for range bindings {
		r := <-results
		if r.err != nil {
			p.log.Info("delivery to a contact failed", zap.String("to", to), zap.Error(r.err))
			continue
		}
		if r.res.IsSuccess() {
			cancel()
			wg.Wait()
			return p.relayed(req, r.res)
		}
		if best == nil || better(r.res.StatusCode, best.StatusCode) {
			best = r.res
		}
	}
	wg.Wait()
	if best == nil {
		return p.refuse(req, 480, "Temporarily Unavailable", "no contact of "+to+" answered")
	}
	return p.relayed(req, best)
}

func better(a, b int) bool {
	if a/100 == 6 {
		return b/100 != 6
	}
	return b/100 != 6 && a < b
}

// relayed answers the sender with the delivery's final status.
func (p *Pager) relayed(req *siplib.Request, dres *siplib.Response) *siplib.Response {
	if dres.StatusCode == 408 || dres.StatusCode >= 500 && dres.StatusCode < 600 && dres.StatusCode != 503 {
		return rsip.NewResponse(req, 480, "Temporarily Unavailable")
	}
	return rsip.NewResponse(req, dres.StatusCode, dres.Reason)
}

func (p *Pager) refuse(req *siplib.Request, code int, reason, why string) *siplib.Response {
	p.log.Info("MESSAGE refused", zap.Int("status", code), zap.String("reason", why),
		zap.String("source", req.Source()), zap.String("transport", req.Transport()))
	return rsip.NewResponse(req, code, reason)
}

func newTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
