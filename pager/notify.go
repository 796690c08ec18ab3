package pager

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"rcsd/cpim"
	"rcsd/featuretag"
	"rcsd/imdn"
	"rcsd/storage"
)

// negativeDelivery sends the original sender of m a delivery notification
// "failed" (RFC 5438 §7.2.1) when m asked for negative-delivery and gave
// up (expired or refused): rcsd acts for the recipient, as RFC 5438 §8
// lets an IM server do. The NM-01 spec gives no trigger for it (timers are
// spec silent); rcsd sends it because a sender asking for negative-delivery
// would otherwise never learn the message died on the server.
//
// A notification is never answered with another one (no loops between
// two servers or with an offline auto-reply): m must be a user message.
func (p *Pager) negativeDelivery(m storage.Message) {
	req, ok := imdnRequest(m)
	if !ok || !req.wants(imdn.NegativeDelivery) || isNotification(m) {
		return
	}
	now := p.now()
	n := imdn.Failed(req.messageID, m.Recipient, now)
	xml, err := n.Encode()
	if err != nil {
		p.log.Warn("building a negative-delivery notification", zap.Error(err))
		return
	}
	c := cpim.Message{
		Headers: []cpim.Header{
			{Name: "From", Value: "<" + m.Recipient + ">"},
			{Name: "To", Value: "<" + m.Sender + ">"},
			{Name: "NS", Value: "imdn <urn:ietf:params:imdn>"},
			{Name: "imdn.Message-ID", Value: newID(now)},
			{Name: "DateTime", Value: now.UTC().Format(time.RFC3339)},
		},
		Content: []cpim.Header{
			{Name: "Content-Type", Value: imdn.ContentType},
			{Name: "Content-Disposition", Value: "notification"},
			{Name: "Content-Length", Value: "0"},
		},
		Body: xml,
	}
	out := storage.Message{
		ID: newID(now), Recipient: m.Sender, Sender: m.Recipient,
		Received: now, Expires: now.Add(p.opts.Lifetime),
		Headers: []string{
			"Content-Type: message/cpim",
			"Accept-Contact: " + featuretag.AcceptContact(featuretag.ICSIMsg),
			"P-Asserted-Service: " + featuretag.ICSIMsg,
		},
		DedupKeys: []string{"neg:" + m.Recipient + "/" + req.messageID},
		Body:      c.AppendTo(nil),
	}
	p.spawn(func() { p.deliverOrStore(p.ctx, out) })
}

// deliverOrStore is route without a request to answer: for messages rcsd
// itself originates.
func (p *Pager) deliverOrStore(ctx context.Context, m storage.Message) {
	waiting, err := p.store.PendingMessages(ctx, m.Recipient, 1)
	offline := false
	if err == nil && len(waiting) == 0 {
		dctx, cancel := context.WithTimeout(ctx, p.opts.DeliveryTimeout)
		out := p.deliver(dctx, m)
		cancel()
		if out.class != unreachable {
			return
		}
		offline = out.why == noContact
	}
	if _, err := p.store.PutMessage(ctx, m); err != nil {
		p.log.Warn("storing a notification failed", zap.String("to", m.Recipient), zap.Error(err))
		return
	}
	if !offline {
		p.scheduleRetry(ctx, m.Recipient, p.now())
	}
}

type storedIMDN struct {
	messageID string
	wanted    imdn.Disposition
}

func (r storedIMDN) wants(d imdn.Disposition) bool { return r.wanted.Has(d) }

// imdnRequest reads the IMDN request of a stored message's CPIM body.
func imdnRequest(m storage.Message) (storedIMDN, bool) {
	c := storedCPIM(m)
	if c == nil {
		return storedIMDN{}, false
	}
	r, ok := c.IMDN()
	if !ok {
		return storedIMDN{}, false
	}
	d, _ := imdn.ParseDisposition(strings.Join(r.Disposition, ","))
	return storedIMDN{messageID: r.MessageID, wanted: d}, true
}

func storedCPIM(m storage.Message) *cpim.Message {
	for _, h := range m.Headers {
		if v, ok := strings.CutPrefix(h, "Content-Type: "); ok && strings.HasPrefix(strings.ToLower(strings.TrimSpace(v)), "message/cpim") {
			c, err := cpim.Options{IgnoreContentLength: true}.Parse(m.Body)
			if err != nil {
				return nil
			}
			return c
		}
	}
	return nil
}

// isNotification reports whether m is itself an IMDN (Content-Disposition
// notification, or CPIM content message/imdn+xml).
func isNotification(m storage.Message) bool {
	for _, h := range m.Headers {
		if v, ok := strings.CutPrefix(h, "Content-Disposition: "); ok && strings.HasPrefix(strings.ToLower(v), "notification") {
			return true
		}
	}
	if c := storedCPIM(m); c != nil {
		return c.ContentType() == imdn.ContentType
	}
	return false
}
