package pager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/storage"
)

// spamQueue is the internal queue the spam reports are kept in: stored
// messages whose recipient no handset can register as (the "rcsd:"
// scheme), never drained.
const spamQueue = "rcsd:spam-reports"

// internal reports whether a queue is rcsd's own rather than a user's.
func internal(recipient string) bool { return strings.HasPrefix(recipient, "rcsd:") }

// isSpamReport reports whether req is addressed to the report number
// (seed 001 §5.1.3.8, example +861008699999), as tel:, as the user part of
// a sip: URI, or bare.
func (p *Pager) isSpamReport(req *siplib.Request) bool {
	if p.opts.SpamNumber == "" {
		return false
	}
	u := req.Recipient.User
	if u == "" { // tel:+86…: sipgo keeps the number only in the URI's text
		u = req.Recipient.String()
	}
	return digits(u) != "" && digits(u) == digits(p.opts.SpamNumber)
}

func digits(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// SpamReport is one stored report, as the admin API lists it.
type SpamReport struct {
	ID       string    `json:"id"`
	Reporter string    `json:"reporter"`
	SpamFrom string    `json:"spam_from"`
	SpamTo   string    `json:"spam_to"`
	DateTime string    `json:"datetime"`
	Received time.Time `json:"received"`
	Parts    []string  `json:"parts"` // content types of the reported message's parts
}

// parseSpamReport reads a report body: multipart/mixed whose first part is
// text/plain with Spam-From, Spam-To and DateTime lines, followed by the
// reported message's parts.
func parseSpamReport(contentType string, body []byte) (SpamReport, error) {
	var r SpamReport
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return r, bad("Spam Report Must Be multipart/mixed", "Content-Type %q", contentType)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return r, bad("Malformed Spam Report", "%v", err)
		}
		pmt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if i == 0 {
			if pmt != "text/plain" {
				return r, bad("Spam Report Needs A text/plain First Part", "first part is %q", pmt)
			}
			sc := bufio.NewScanner(io.LimitReader(part, 64<<10))
			for sc.Scan() {
				k, v, ok := strings.Cut(sc.Text(), ":")
				if !ok {
					continue
				}
				v = strings.TrimSpace(v)
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "spam-from":
					r.SpamFrom = v
				case "spam-to":
					r.SpamTo = v
				case "datetime":
					r.DateTime = v
				}
			}
			continue
		}
		r.Parts = append(r.Parts, pmt)
	}
	for name, v := range map[string]string{"Spam-From": r.SpamFrom, "Spam-To": r.SpamTo, "DateTime": r.DateTime} {
		if v == "" {
			return r, bad("Spam Report Without "+name, "no %s line in the first part", name)
		}
	}
	return r, nil
}

// spamReport keeps a report (seed 001 §5.1.3.8: the platform receives it;
// what it does next is the operator's) and answers 202.
func (p *Pager) spamReport(ctx context.Context, req *siplib.Request, from string) *siplib.Response {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	if _, err := parseSpamReport(ct, req.Body()); err != nil {
		return p.refuseBad(req, err)
	}
	now := p.now()
	m := storage.Message{
		ID: newID(now), Recipient: spamQueue, Sender: from, Received: now, Expires: now.Add(p.opts.ReportLifetime),
		Headers: []string{"Content-Type: " + ct}, Body: append([]byte(nil), req.Body()...),
		DedupKeys: []string{"cid:" + from + "/" + string(*req.CallID()) + "/" + strconv.FormatUint(uint64(req.CSeq().SeqNo), 10)},
	}
	if _, err := p.store.PutMessage(ctx, m); err != nil {
		return p.unavailable(req, err)
	}
	p.metrics.SpamReports.Inc()
	p.log.Info("spam report received", zap.String("reporter", from), zap.String("id", m.ID))
	return p.accepted(req)
}

// SpamReports lists stored reports, oldest first.
func (p *Pager) SpamReports(ctx context.Context, limit int) ([]SpamReport, error) {
	ms, err := p.store.PendingMessages(ctx, spamQueue, limit)
	if err != nil {
		return nil, err
	}
	out := make([]SpamReport, 0, len(ms))
	for _, m := range ms {
		ct := strings.TrimPrefix(m.Headers[0], "Content-Type: ")
		r, _ := parseSpamReport(ct, m.Body)
		r.ID, r.Reporter, r.Received = m.ID, m.Sender, m.Received
		out = append(out, r)
	}
	return out, nil
}

// ServeSpamReports is GET /admin/spam-reports[?limit=N].
func (p *Pager) ServeSpamReports(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	rs, err := p.SpamReports(r.Context(), limit)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rs)
}

// DeleteSpamReport is DELETE /admin/spam-reports/{id}: handled reports are
// removed by the operator.
func (p *Pager) DeleteSpamReport(w http.ResponseWriter, r *http.Request) {
	err := p.store.DeleteMessage(r.Context(), spamQueue, r.PathValue("id"))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		http.Error(w, "no such report", http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
