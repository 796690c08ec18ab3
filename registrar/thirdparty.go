package registrar

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	rsip "rcsd/sip"
	"rcsd/storage"
)

// ServeThirdParty answers a third-party REGISTER from the S-CSCF (mode
// ims-as, 3GPP TS 24.229 §5.4.1.7 and §5.7.1.1): the S-CSCF has already
// authenticated the handset, and tells rcsd that the public identity in To
// is registered (Expires > 0) or not (Expires: 0). The caller has checked
// that the request comes from the trusted core.
//
// The handset's own contacts come from the body when the S-CSCF includes
// it (iFC "include register request/response"): a message/sip body, or a
// multipart/mixed one with up to two message/sip parts. The embedded 200 OK
// is the registration as the S-CSCF holds it, so its Contacts replace the
// identity's bindings; failing that, the embedded REGISTER's Contacts are
// applied like a REGISTER's. Without a body rcsd records one binding for
// the identity itself, routed through the S-CSCF, so it still knows the
// user is registered. Subscribers need not be provisioned in ims-as mode:
// the HSS owns them.
func (r *Registrar) ServeThirdParty(ctx context.Context, req *siplib.Request) *siplib.Response {
	now := r.now()
	res, result := r.thirdParty(ctx, req, now)
	r.metrics.register(result)
	return res
}

func (r *Registrar) thirdParty(ctx context.Context, req *siplib.Request, now time.Time) (*siplib.Response, string) {
	to := req.To()
	if to == nil {
		return r.reject(req, 400, "Missing To header", "bad_request", "no To header")
	}
	aor, err := aorOf(&to.Address)
	if err != nil {
		return r.reject(req, 400, "Invalid To header", "bad_request", err.Error())
	}
	expires := r.opts.DefaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || n < 0 {
			return r.reject(req, 400, "Invalid Expires header", "bad_request", "Expires "+h.Value())
		}
		expires = min(n, r.opts.MaxExpires)
	}
	embReq, embRes, err := embedded(req)
	if err != nil {
		return r.reject(req, 400, "Invalid message/sip body", "bad_request", err.Error())
	}

	var contacts []contactReq
	replace := false
	switch {
	case expires == 0:
		replace = true // de-registered: nothing left
	case embRes != nil:
		// The 200's Contacts carry their own expires (TS 24.229 §5.4.1.2.2).
		contacts, _, err = r.parseContacts(embRes.GetHeaders("Contact"), expires)
		replace = true
	case embReq != nil:
		contacts, _, err = r.parseContacts(embReq.GetHeaders("Contact"), headerExpires(embReq, expires))
	default:
		contacts = []contactReq{{uri: aor, expires: expires}}
		replace = true
	}
	if err != nil {
		return r.reject(req, 400, "Invalid Contact in message/sip body", "bad_request", err.Error())
	}
	var paths []string
	impi := ""
	if embReq != nil {
		for _, h := range embReq.GetHeaders("Path") {
			paths = append(paths, rsip.SplitList(h.Value())...)
		}
		if creds, _, err := r.credentials(embReq); err == nil && creds != nil {
			impi = creds.Username
		}
	}
	ua := ""
	if embReq != nil {
		if h := embReq.GetHeader("User-Agent"); h != nil {
			ua = h.Value()
		}
	}
	cseq := req.CSeq()
	local, _ := ctx.Value(rsip.LocalAddrKey{}).(string)
	var before []storage.Binding
	bindings, err := r.store.UpdateBindings(ctx, aor, now, func(cur []storage.Binding) ([]storage.Binding, error) {
		before = cur
		var next []storage.Binding
		if !replace {
			next = append(next, cur...)
		}
		for _, c := range contacts {
			nb := storage.Binding{
				AOR: aor, Contact: c.uri, Params: c.params, InstanceID: c.instance, RegID: c.regID, Q: c.q,
				CallID: callID(req), CSeq: cseq.SeqNo, Expires: now.Add(time.Duration(c.expires) * time.Second),
				Path: paths, UserAgent: ua, IMPI: impi,
				Transport: strings.ToLower(req.Transport()), Source: req.Source(), Local: local, Node: r.opts.Node,
				RegisteredAt: now,
			}
			i := indexOf(next, nb.Key())
			if i >= 0 {
				if c.expires == 0 {
					next = append(next[:i], next[i+1:]...)
					continue
				}
				nb.RegisteredAt = next[i].RegisteredAt
				next[i] = nb
				continue
			}
			if j := indexOf(cur, nb.Key()); j >= 0 {
				nb.RegisteredAt = cur[j].RegisteredAt
			}
			if c.expires > 0 {
				next = append(next, nb)
			}
		}
		if len(next) > r.opts.MaxContacts {
			return nil, errTooMany
		}
		return next, nil
	})
	switch {
	case errors.Is(err, errTooMany):
		return r.reject(req, 403, "Too Many Contacts", "forbidden", "more than "+strconv.Itoa(r.opts.MaxContacts)+" contacts for "+aor)
	case err != nil:
		return r.unavailable(req, err)
	}
	r.notify(Change{AOR: aor, Before: before, After: bindings, At: now})
	r.log.Debug("third-party registration", zap.String("aor", aor), zap.Int("expires", expires),
		zap.Int("contacts", len(bindings)), zap.String("source", req.Source()))
	res := rsip.NewResponse(req, 200, "OK")
	res.AppendHeader(siplib.NewHeader("Date", r.date(now)))
	if expires == 0 {
		return res, "deregistered"
	}
	return res, "ok"
}

func headerExpires(req *siplib.Request, def int) int {
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			return n
		}
	}
	return def
}

// embedded returns the REGISTER and the 200 OK carried in a third-party
// REGISTER's body (either may be nil).
func embedded(req *siplib.Request) (*siplib.Request, *siplib.Response, error) {
	body := req.Body()
	if len(body) == 0 {
		return nil, nil, nil
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, nil, errors.New("Content-Type " + ct + ": " + err.Error())
	}
	var parts [][]byte
	switch mt {
	case "message/sip":
		parts = [][]byte{body}
	case "multipart/mixed":
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, nil, errors.New("multipart body: " + err.Error())
			}
			if i >= 4 {
				return nil, nil, errors.New("multipart body: too many parts")
			}
			pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			var b bytes.Buffer
			if _, err := b.ReadFrom(p); err != nil {
				return nil, nil, errors.New("multipart body: " + err.Error())
			}
			if pt == "message/sip" {
				parts = append(parts, b.Bytes())
			}
		}
	default:
		return nil, nil, nil // another body (e.g. service info XML): no contacts in it
	}
	var embReq *siplib.Request
	var embRes *siplib.Response
	for _, p := range parts {
		msg, err := siplib.ParseMessage(normaliseCRLF(p))
		if err != nil {
			return nil, nil, errors.New("message/sip part: " + err.Error())
		}
		switch m := msg.(type) {
		case *siplib.Request:
			if m.Method == siplib.REGISTER {
				embReq = m
			}
		case *siplib.Response:
			if m.StatusCode >= 200 && m.StatusCode < 300 {
				embRes = m
			}
		}
	}
	return embReq, embRes, nil
}

// normaliseCRLF makes an embedded message's line ends CRLF (some cores
// and test tools send bare LF) and ends its headers with an empty line.
func normaliseCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.TrimLeft(b, "\n")
	if !bytes.Contains(b, []byte("\n\n")) {
		b = append(bytes.TrimRight(b, "\n"), '\n', '\n')
	}
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}
