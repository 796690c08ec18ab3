package pager

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/featuretag"
	"rcsd/identity"
	rsip "rcsd/sip"
	"rcsd/storage"
)

// Public accounts (seed 001 §5.1.3.7): the accounts live on an operator's
// PA platform, which talks HTTP to rcsd —
//
//   - uplink: a user's MESSAGE to <account>@<PA domain> is POSTed as JSON
//     to the platform's webhook; its 2xx makes rcsd answer 202 (the
//     platform has it), anything else 503 + Retry-After so the handset
//     tries again (rcsd does not queue toward the platform);
//   - downlink: the platform POSTs to rcsd's /pa/messages; rcsd delivers
//     the XML as a pager MESSAGE from the account (fig 5-111 form:
//     multipart/mixed with an application/xml part, Content-Disposition
//     publicmsg) to each recipient, storing it for offline ones.
//
// Bodies above PAPagerLimit need large-message mode (INVITE + MSRP, fig
// 5-110), which comes with the MSRP relay: until then they get 413.

// ICSIPublicMsg is the public account service identifier (Table 5-2).
const ICSIPublicMsg = "urn:urn-7:3gpp-application.ims.iari.rcs.mnc000.mcc460.publicmsg"

// PAUserAgent is the User-Agent of requests from public accounts (seed 001
// §5.1.1.1.6: public accounts are "public-serv").
const PAUserAgent = "public-serv"

// PAMessage is the JSON of both directions.
type PAMessage struct {
	From           string   `json:"from"`                      // sender: a user (uplink) or the account (downlink)
	To             []string `json:"to"`                        // recipients: the account (uplink) or users (downlink)
	ContentType    string   `json:"content_type"`              // of Body
	Body           string   `json:"body"`                      // as carried: CPIM (uplink) or the PA XML (downlink)
	ConversationID string   `json:"conversation_id,omitempty"` // uplink: as the handset sent it
	ContributionID string   `json:"contribution_id,omitempty"`
	MessageID      string   `json:"message_id,omitempty"` // uplink: the CPIM imdn.Message-ID
}

// isPublicAccount reports whether a Request-URI is a public account PSI.
func (p *Pager) isPublicAccount(req *siplib.Request) bool {
	return p.opts.PADomain != "" && strings.EqualFold(req.Recipient.Host, p.opts.PADomain) && req.Recipient.User != ""
}

// paUplinkTypes are what a user may send to an account (§5.1.3.7.2: text,
// image, audio, video and location).
func paUplinkType(ct string) bool {
	mt, _, _ := mime.ParseMediaType(ct)
	for _, pre := range []string{"text/", "image/", "audio/", "video/"} {
		if strings.HasPrefix(mt, pre) {
			return true
		}
	}
	return mt == "application/vnd.gsma.rcspushlocation+xml" || mt == "application/xml"
}

// publicAccountUplink hands a user's message to the PA platform.
func (p *Pager) publicAccountUplink(ctx context.Context, req *siplib.Request, from string, body *parsedBody) *siplib.Response {
	to, err := identity.Canonical(req.Recipient.String())
	if err != nil {
		return p.refuse(req, 404, "Not Found - Invalid Request-URI", err.Error())
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	inner := ct
	if body != nil && body.cpim != nil {
		inner = body.cpim.ContentType()
	}
	if !paUplinkType(inner) {
		return p.refuse(req, 415, "Unsupported Media Type - Public Accounts Take Text, Image, Audio, Video, Location", "uplink content "+inner)
	}
	if p.opts.PAWebhook == "" {
		return p.refuse(req, 480, "Temporarily Unavailable - No Public Account Platform", "public_accounts.webhook not set")
	}
	m := PAMessage{From: from, To: []string{to}, ContentType: ct, Body: string(req.Body())}
	if h := req.GetHeader("Conversation-ID"); h != nil {
		m.ConversationID = h.Value()
	}
	if h := req.GetHeader("Contribution-ID"); h != nil {
		m.ContributionID = h.Value()
	}
	if body != nil {
		m.MessageID = body.messageID
	}
	raw, _ := json.Marshal(m)
	hctx, cancel := context.WithTimeout(ctx, p.opts.DeliveryTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(hctx, http.MethodPost, p.opts.PAWebhook, bytes.NewReader(raw))
	if err != nil {
		return p.refuse(req, 500, "Server Internal Error", err.Error())
	}
	hreq.Header.Set("Content-Type", "application/json")
	if p.opts.PAToken != "" {
		hreq.Header.Set("Authorization", "Bearer "+p.opts.PAToken)
	}
	hres, err := p.opts.HTTPClient.Do(hreq)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(hres.Body, 64<<10))
		hres.Body.Close()
	}
	if err != nil || hres.StatusCode/100 != 2 {
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			why = hres.Status
		}
		p.log.Warn("public account platform did not take an uplink message", zap.String("to", to), zap.String("why", why))
		res := rsip.NewResponse(req, 503, "Service Unavailable - Public Account Platform")
		res.AppendHeader(siplib.NewHeader("Retry-After", "30"))
		return res
	}
	p.metrics.PAUplink.Inc()
	return p.accepted(req)
}

// ServePADownlink is POST /pa/messages: the PA platform sends an account's
// message to users. It answers 202 with the stored or delivered message
// IDs, 400/401/413 for what it refuses.
func (p *Pager) ServePADownlink(w http.ResponseWriter, r *http.Request) {
	if p.opts.PAToken == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+p.opts.PAToken)) != 1 {
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	var m PAMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&m); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	from, err := identity.Canonical(m.From)
	if err != nil || !strings.HasSuffix(from, "@"+strings.ToLower(p.opts.PADomain)) {
		http.Error(w, fmt.Sprintf("from %q is not a public account of %s", m.From, p.opts.PADomain), http.StatusBadRequest)
		return
	}
	if len(m.To) == 0 || len(m.To) > p.opts.MaxRecipients {
		http.Error(w, fmt.Sprintf("want 1..%d recipients", p.opts.MaxRecipients), http.StatusBadRequest)
		return
	}
	if m.Body == "" {
		http.Error(w, "empty body", http.StatusBadRequest)
		return
	}
	if len(m.Body) > p.opts.PAPagerLimit {
		http.Error(w, fmt.Sprintf("body of %d bytes needs large-message mode (INVITE+MSRP, seed 001 fig 5-110), which this release does not send; pager mode takes up to %d", len(m.Body), p.opts.PAPagerLimit), http.StatusRequestEntityTooLarge)
		return
	}
	ct := m.ContentType
	if ct == "" {
		ct = "application/xml"
	}
	const boundary = "rcsd-publicmsg"
	body := "--" + boundary + "\r\nContent-Type: " + ct + "\r\nContent-Disposition: publicmsg\r\n\r\n" + m.Body + "\r\n--" + boundary + "--\r\n"
	now := p.now()
	var ids []string
	for _, t := range m.To {
		to, err := identity.Canonical(t)
		if err != nil {
			http.Error(w, fmt.Sprintf("recipient %q: %v", t, err), http.StatusBadRequest)
			return
		}
		sm := storage.Message{
			ID: newID(now), Recipient: to, Sender: from, Received: now, Expires: now.Add(p.opts.Lifetime),
			Headers: []string{
				"Content-Type: multipart/mixed;boundary=" + boundary,
				"Accept-Contact: *;" + featuretag.Tag(ICSIPublicMsg) + ";" + featuretag.Tag(featuretag.ICSIMsg),
				"P-Asserted-Service: " + ICSIPublicMsg,
				"User-Agent: " + PAUserAgent,
				"Conversation-ID: " + newID(now),
				"Contribution-ID: " + newID(now),
			},
			Body: []byte(body),
		}
		if _, err := p.store.PutMessage(r.Context(), sm); err != nil {
			http.Error(w, "storage: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		ids = append(ids, sm.ID)
		if p.reachable(r.Context(), to) {
			p.kick(to, false)
		}
	}
	p.metrics.PADownlink.Add(float64(len(ids)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]any{"ids": ids, "accepted": time.Now().UTC()})
}
