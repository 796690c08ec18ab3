package pager

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	siplib "github.com/emiago/sipgo/sip"

	"rcsd/featuretag"
	rsip "rcsd/sip"
	"rcsd/storage"
)

type outcomeClass int

const (
	delivered   outcomeClass = iota // a contact answered 2xx
	unreachable                     // nobody took it for now: store and retry
	rejected                        // the recipient refused it for good
)

// noContact is the outcome of a recipient without bindings: its
// registration, not a back-off, triggers the next attempt.
const noContact = "no registered contact"

type outcome struct {
	class outcomeClass
	res   *siplib.Response // the deciding final response, when there is one
	why   string
}

// retryable are the final statuses after which a message is kept for a
// later attempt (the recipient is away or busy, not refusing the message).
func retryable(code int) bool {
	switch code {
	case 408, 480, 486, 500, 502, 503, 504, 600:
		return true
	}
	return false
}

// deliver tries m once: through the S-CSCF in ims-as mode, else to every
// suitable binding of the recipient at once.
func (p *Pager) deliver(ctx context.Context, m storage.Message) outcome {
	return p.start(ctx, m)()
}

// deliverTo is deliver with the recipient's bindings already looked up.
func (p *Pager) deliverTo(ctx context.Context, m storage.Message, bindings []storage.Binding) outcome {
	bindings = selectContacts(bindings, m)
	if len(bindings) == 0 {
		return outcome{class: unreachable, why: noContact}
	}
	return p.fork(ctx, m, bindings)()
}

// start sends m (the request leaves before start returns, so messages
// started one after the other are sent in that order) and returns the
// function that waits for the outcome; it must be called once.
func (p *Pager) start(ctx context.Context, m storage.Message) func() outcome {
	if p.opts.Route != nil {
		out := p.request(m)
		if err := p.opts.Route.Prepare(out, m.Recipient); err != nil {
			return done(outcome{class: rejected, why: err.Error()})
		}
		wait, err := p.sender.Send(ctx, out, p.opts.Route.Flow)
		if err != nil {
			return done(classify(nil, err))
		}
		return func() outcome { return classify(wait()) }
	}
	bindings, err := p.recipientBindings(ctx, m.Recipient)
	if err != nil {
		return done(outcome{class: unreachable, why: "binding lookup: " + err.Error()})
	}
	bindings = selectContacts(bindings, m)
	if len(bindings) == 0 {
		return done(outcome{class: unreachable, why: noContact})
	}
	return p.fork(ctx, m, bindings)
}

func done(o outcome) func() outcome { return func() outcome { return o } }

func classify(res *siplib.Response, err error) outcome {
	switch {
	case err != nil:
		return outcome{class: unreachable, why: err.Error()}
	case res.IsSuccess():
		return outcome{class: delivered, res: res}
	case retryable(res.StatusCode):
		return outcome{class: unreachable, res: res, why: fmt.Sprintf("%d %s", res.StatusCode, res.Reason)}
	}
	return outcome{class: rejected, res: res, why: fmt.Sprintf("%d %s", res.StatusCode, res.Reason)}
}

// selectContacts applies Accept-Contact (RFC 3841) the way the spec uses
// it: an RCS message goes to the contacts that registered the messaging
// ICSI when there are any, else to all (it is a preference, not require).
func selectContacts(bs []storage.Binding, m storage.Message) []storage.Binding {
	if !isRCS(m) {
		return bs
	}
	var match []storage.Binding
	for _, b := range bs {
		if featuretag.Has(b.Params, featuretag.ICSIMsg) {
			match = append(match, b)
		}
	}
	if len(match) > 0 {
		return match
	}
	return bs
}

func isRCS(m storage.Message) bool {
	for _, h := range m.Headers {
		if strings.HasPrefix(h, "P-Asserted-Service: ") {
			return true
		}
	}
	return false
}

// recipientBindings returns the recipient's bindings, under the identity
// addressed or, failing that, under another public identity of the same
// subscriber (a tel: URI addressed, a sip: URI registered).
func (p *Pager) recipientBindings(ctx context.Context, to string) ([]storage.Binding, error) {
	aors, err := p.recipientAORs(ctx, to)
	if err != nil {
		return nil, err
	}
	all, err := storage.BindingsOf(ctx, p.store, aors, p.now())
	if err != nil {
		return nil, err
	}
	return p.pick(all), nil
}

// recipientAORs lists the identities whose bindings can take a message
// to: to itself first, then the subscriber's other public identities.
func (p *Pager) recipientAORs(ctx context.Context, to string) ([]string, error) {
	impus, err := p.aliases.lookup(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("subscriber of %s: %w", to, err)
	}
	aors := make([]string, 1, 1+len(impus))
	aors[0] = to
	for _, u := range impus {
		if u != to {
			aors = append(aors, u)
		}
	}
	return aors, nil
}

// pick chooses among the bindings of recipientAORs: those of the
// identity addressed when it has live ones, else all the others'.
func (p *Pager) pick(all [][]storage.Binding) []storage.Binding {
	var bs []storage.Binding
	for i, more := range all {
		// A dead node's connections are gone: its bindings wait for the
		// handset to register again (on any node).
		bs = append(bs, slices.DeleteFunc(more, func(b storage.Binding) bool { return !p.opts.Holds(b.Node) })...)
		if i == 0 && len(bs) > 0 {
			return bs
		}
	}
	return bs
}

// request builds the delivery leg of m (seed 001 Table 5-11): the sender
// asserted, rcsd's User-Agent, the stored headers and body.
func (p *Pager) request(m storage.Message) *siplib.Request {
	var ruri, fu, tu siplib.Uri
	_ = siplib.ParseUri(m.Recipient, &ruri)
	_ = siplib.ParseUri(m.Sender, &fu)
	_ = siplib.ParseUri(m.Recipient, &tu)
	out := siplib.NewRequest(siplib.MESSAGE, ruri)
	out.AppendHeader(&siplib.FromHeader{Address: fu, Params: siplib.HeaderParams{{K: "tag", V: newTag()}}})
	out.AppendHeader(&siplib.ToHeader{Address: tu})
	out.AppendHeader(siplib.NewHeader("P-Asserted-Identity", "<"+m.Sender+">"))
	ownUA := false
	for _, h := range m.Headers {
		name, value, _ := strings.Cut(h, ": ")
		out.AppendHeader(siplib.NewHeader(name, value))
		ownUA = ownUA || name == "User-Agent"
	}
	if p.opts.UserAgent != "" && !ownUA {
		out.AppendHeader(siplib.NewHeader("User-Agent", p.opts.UserAgent))
	}
	if len(m.Body) > 0 {
		out.SetBody(append([]byte(nil), m.Body...))
	}
	return out
}

// fork sends m to every binding (RFC 3261 §16.7 response selection: the
// first 2xx wins and the others are abandoned); the returned function
// waits for the outcome.
func (p *Pager) fork(ctx context.Context, m storage.Message, bindings []storage.Binding) func() outcome {
	ctx, cancel := context.WithCancel(ctx)
	results := make(chan outcome, len(bindings))
	var waits []func() (*siplib.Response, error)
	for i := range bindings {
		b := bindings[i]
		var u siplib.Uri
		if err := siplib.ParseUri(b.Contact, &u); err != nil {
			results <- outcome{class: unreachable, why: fmt.Sprintf("contact %q: %v", b.Contact, err)}
			continue
		}
		out := p.request(m)
		out.Recipient = u
		for _, r := range b.Path {
			out.AppendHeader(siplib.NewHeader("Route", r))
		}
		wait, err := p.sender.Send(ctx, out, rsip.Flow{Transport: b.Transport, Source: b.Source, Local: b.Local, Contact: b.Contact, Node: b.Node})
		if err != nil {
			results <- classify(nil, err)
			continue
		}
		waits = append(waits, wait)
	}
	return func() outcome {
		defer cancel()
		var wg sync.WaitGroup
		for _, w := range waits {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- classify(w())
			}()
		}
		var best *outcome
		for range bindings {
			o := <-results
			if o.class == delivered {
				cancel()
				wg.Wait()
				return o
			}
			if best == nil || better(o, *best) {
				best = &o
			}
		}
		wg.Wait()
		return *best
	}
}

// better prefers, among failures, the one that keeps the message
// (unreachable) over a refusal, then the lowest status class, 6xx aside.
func better(a, b outcome) bool {
	if a.class != b.class {
		return a.class == unreachable
	}
	if a.res == nil || b.res == nil {
		return b.res == nil && a.res != nil
	}
	ac, bc := a.res.StatusCode, b.res.StatusCode
	if ac/100 == 6 {
		return bc/100 != 6
	}
	return bc/100 != 6 && ac < bc
}
