package pager

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"strings"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/identity"
)

// RequireRecipientList is the option tag of RFC 5365 §3.
const RequireRecipientList = "recipient-list-message"

// isList reports whether req is a one-to-many send (seed 001 §5.1.1.1.1,
// fig 5-18; RFC 5365): addressed to the PSI msgas@<domain>, or requiring
// recipient-list-message. (The spec's fig 5-18 addresses a user while its
// Table 5-9 says msgas: the option tag decides as well.)
func isList(req *siplib.Request, domain string) bool {
	if strings.EqualFold(req.Recipient.User, "msgas") && strings.EqualFold(req.Recipient.Host, domain) {
		return true
	}
	for _, h := range req.GetHeaders("Require") {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), RequireRecipientList) {
				return true
			}
		}
	}
	return false
}

// resourceLists is the part of RFC 4826 a recipient list uses.
type resourceLists struct {
	XMLName xml.Name `xml:"urn:ietf:params:xml:ns:resource-lists resource-lists"`
	Lists   []struct {
		Entries []struct {
			URI string `xml:"uri,attr"`
		} `xml:"entry"`
	} `xml:"list"`
}

// parseList returns the canonical, de-duplicated recipients of a
// resource-lists document (tolerating the spec's " sip:" with a space).
func parseList(data []byte, max int) ([]string, error) {
	if bytes.Contains(data, []byte("<!DOCTYPE")) || bytes.Contains(data, []byte("<!ENTITY")) {
		return nil, bad("Malformed Recipient List", "DOCTYPE/ENTITY not allowed")
	}
	var rl resourceLists
	if err := xml.Unmarshal(data, &rl); err != nil {
		return nil, bad("Malformed Recipient List", "%v", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range rl.Lists {
		for _, e := range l.Entries {
			u, err := identity.Canonical(strings.TrimSpace(e.URI))
			if err != nil {
				return nil, bad("Invalid Recipient In List", "entry %q: %v", e.URI, err)
			}
			if seen[u] {
				continue
			}
			seen[u] = true
			out = append(out, u)
			if len(out) > max {
				return nil, &badRequest{reason: fmt.Sprintf("Too Many Recipients (max %d)", max), why: "recipient list over pager.max_recipients"}
			}
		}
	}
	if len(out) == 0 {
		return nil, bad("Empty Recipient List", "no entry")
	}
	return out, nil
}

// recipientList fans a one-to-many message out: one stored copy per
// recipient, each with its own delivery state, then 202. Every copy is
// stored before the answer (no recipient is lost if rcsd stops), and the
// copies are delivered like any stored message.
func (p *Pager) recipientList(ctx context.Context, req *siplib.Request, from string, body *parsedBody) *siplib.Response {
	if body == nil || body.list == nil || body.cpim == nil {
		return p.refuse(req, 400, "Recipient List Needs resource-lists And message/cpim Parts",
			"one-to-many MESSAGE without both parts (seed 001 §5.1.1.1.1)")
	}
	recipients, err := parseList(body.list, p.opts.MaxRecipients)
	if err != nil {
		if b, ok := err.(*badRequest); ok && strings.HasPrefix(b.reason, "Too Many") {
			return p.refuse(req, 403, b.reason, b.why)
		}
		return p.refuseBad(req, err)
	}
	cpimBody := body.cpim.AppendTo(nil)
	for _, to := range recipients {
		m := p.newMessage(req, from, to, true, body)
		m.Body = cpimBody
		for i, h := range m.Headers {
			if strings.HasPrefix(h, "Content-Type: ") {
				m.Headers[i] = "Content-Type: message/cpim"
			}
		}
		dup, err := p.store.PutMessage(ctx, m)
		if err != nil {
			return p.unavailable(req, err)
		}
		if dup == "" {
			p.metrics.Stored.Inc()
		}
		if p.reachable(ctx, to) {
			p.kick(to, false)
		}
	}
	p.log.Debug("recipient list fanned out", zap.String("from", from), zap.Int("recipients", len(recipients)))
	return p.accepted(req)
}
