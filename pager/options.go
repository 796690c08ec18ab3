package pager

import (
	"context"
	"errors"
	"strings"
	"sync"

	siplib "github.com/emiago/sipgo/sip"

	"rcsd/identity"
	rsip "rcsd/sip"
	"rcsd/storage"
)

// DefaultCapabilities is the capability set rcsd states for an offline
// RCS user (seed 001 §5.1.3.6.2: "the full capability set, configurable"),
// in the canonical spellings of Table 5-2 (fixture chat-group 34 shows the
// same services).
var DefaultCapabilities = []string{
	`+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg,urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.largemsg,urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.filetransfer,urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session"`,
	`+g.3gpp.iari-ref="urn%3Aurn-7%3A3gpp-application.ims.iari.rcs.mnc000.mcc460.publicmsg,urn%3Aurn-7%3A3gpp-application.ims.iari.rcs.mnc000.mcc460.gpmanage"`,
}

// ServeOPTIONS answers capability discovery (seed 001 §5.1.3.6): an
// OPTIONS to a user is forwarded to the user's registered contacts, which
// answer themselves; for a user with no contact rcsd answers 200 with the
// configured capability set when the user is an RCS user, 404 otherwise
// (the spec: "failure", code unspecified). It returns nil for an OPTIONS
// addressed to rcsd itself (no user part), which the caller answers.
//
// Who is an RCS user: in standalone mode a provisioned subscriber; in
// ims-as mode anyone the S-CSCF routes here, since its filter criteria
// send only RCS subscribers' requests to the messaging AS.
func (p *Pager) ServeOPTIONS(ctx context.Context, req *siplib.Request) *siplib.Response {
	if ToServer(req) {
		return nil
	}
	from, res := p.identify(ctx, req)
	if res != nil {
		return res
	}
	to, err := identity.Canonical(req.Recipient.String())
	if err != nil {
		return p.refuse(req, 404, "Not Found - Invalid Request-URI", err.Error())
	}
	if p.opts.Route == nil {
		bs, err := p.recipientBindings(ctx, to)
		if err != nil {
			return p.unavailable(req, err)
		}
		if len(bs) > 0 {
			if res := p.forwardOptions(ctx, req, from, bs); res != nil {
				return res
			}
		}
		if _, err := p.store.SubscriberByIMPU(ctx, to); errors.Is(err, storage.ErrNotFound) {
			return rsip.NewResponse(req, 404, "Not Found")
		} else if err != nil {
			return p.unavailable(req, err)
		}
	}
	res = rsip.NewResponse(req, 200, "OK")
	host := p.opts.Domain
	if c := p.contact.Load(); c != nil {
		host = *c
	}
	contact := "<sip:" + host + ">"
	for _, c := range p.opts.Capabilities {
		contact += ";" + c
	}
	res.AppendHeader(siplib.NewHeader("Contact", contact))
	return res
}

// forwardOptions asks the user's contacts; the first 200 is relayed with
// the contact's own Contact (its capabilities). nil when none answered.
func (p *Pager) forwardOptions(ctx context.Context, req *siplib.Request, from string, bs []storage.Binding) *siplib.Response {
	ctx, cancel := context.WithTimeout(ctx, p.opts.DeliveryTimeout)
	defer cancel()
	type answer struct{ res *siplib.Response }
	answers := make(chan answer, len(bs))
	var wg sync.WaitGroup
	for _, b := range bs {
		var u siplib.Uri
		if siplib.ParseUri(b.Contact, &u) != nil {
			answers <- answer{}
			continue
		}
		out := siplib.NewRequest(siplib.OPTIONS, u)
		var fu, tu siplib.Uri
		_ = siplib.ParseUri(from, &fu)
		_ = siplib.ParseUri(b.AOR, &tu)
		out.AppendHeader(&siplib.FromHeader{Address: fu, Params: siplib.HeaderParams{{K: "tag", V: newTag()}}})
		out.AppendHeader(&siplib.ToHeader{Address: tu})
		out.AppendHeader(siplib.NewHeader("P-Asserted-Identity", "<"+from+">"))
		for _, name := range [...]string{"Accept-Contact", "Accept", "Contact"} {
			for _, h := range req.GetHeaders(name) {
				out.AppendHeader(siplib.NewHeader(name, h.Value()))
			}
		}
		for _, r := range b.Path {
			out.AppendHeader(siplib.NewHeader("Route", r))
		}
		if p.opts.UserAgent != "" {
			out.AppendHeader(siplib.NewHeader("User-Agent", p.opts.UserAgent))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.sender.Request(ctx, out, rsip.Flow{Transport: b.Transport, Source: b.Source, Local: b.Local, Contact: b.Contact, Node: b.Node})
			if err != nil {
				res = nil
			}
			answers <- answer{res}
		}()
	}
	defer wg.Wait()
	for range bs {
		a := <-answers
		if a.res != nil && a.res.IsSuccess() {
			cancel()
			res := rsip.NewResponse(req, a.res.StatusCode, a.res.Reason)
			for _, name := range [...]string{"Contact", "Allow", "Accept", "Supported"} {
				for _, h := range a.res.GetHeaders(name) {
					res.AppendHeader(siplib.NewHeader(name, h.Value()))
				}
			}
			return res
		}
	}
	return nil
}

// ToServer reports whether a request is addressed to rcsd itself (a sip:
// Request-URI without user part) rather than to a user.
func ToServer(req *siplib.Request) bool {
	return req.Recipient.User == "" && !strings.EqualFold(req.Recipient.Scheme, "tel")
}
