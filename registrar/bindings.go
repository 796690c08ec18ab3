package registrar

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	rsip "rcsd/sip"
	"rcsd/storage"
)

// contactReq is one Contact of a REGISTER, parsed.
type contactReq struct {
	uri, params, instance, q string
	regID                    int
	expires                  int
}

// bind applies the REGISTER's contacts to the AOR (RFC 3261 §10.3 steps
// 6-8) and answers 200 with the current bindings.
func (r *Registrar) bind(ctx context.Context, req *siplib.Request, aor string, sub *storage.Subscriber, now time.Time) (*siplib.Response, string) {
	headerExpires := -1
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || n < 0 {
			return r.reject(req, 400, "Invalid Expires header", "bad_request", "Expires "+h.Value())
		}
		headerExpires = n
	}
	contacts, wildcard, err := r.parseContacts(req.GetHeaders("Contact"), headerExpires)
	if err != nil {
		return r.reject(req, 400, "Invalid Contact header", "bad_request", err.Error())
	}
	for _, c := range contacts {
		if c.expires > 0 && c.expires < r.opts.MinExpires {
			res, result := r.reject(req, 423, "Interval Too Brief", "interval_too_brief",
				"expires "+strconv.Itoa(c.expires)+" below "+strconv.Itoa(r.opts.MinExpires))
			res.AppendHeader(siplib.NewHeader("Min-Expires", strconv.Itoa(r.opts.MinExpires)))
			return res, result
		}
	}
	var paths []string
	for _, h := range req.GetHeaders("Path") {
		paths = append(paths, rsip.SplitList(h.Value())...)
	}
	supportsPath := hasOptionTag(req, "Supported", "path")
	if len(paths) > 0 && !supportsPath && r.opts.PathRequiresSupport {
		res, result := r.reject(req, 421, "Extension Required", "bad_request", "Path without Supported: path")
		res.AppendHeader(siplib.NewHeader("Require", "path"))
		return res, result
	}

	cseq := req.CSeq()
	callID := callID(req)
	local, _ := ctx.Value(rsip.LocalAddrKey{}).(string)
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
	}
	retransmission := false
	var removed int
	var before []storage.Binding
	bindings, err := r.store.UpdateBindings(ctx, aor, now, func(cur []storage.Binding) ([]storage.Binding, error) {
		retransmission, removed = false, 0
		before = cur
		if len(contacts) == 0 && !wildcard {
			return cur, nil // a query
		}
		if wildcard {
			for _, b := range cur {
				if b.CallID == callID && b.CSeq > cseq.SeqNo {
					return nil, errOutOfOrder
				}
			}
			removed = len(cur)
			return nil, nil
		}
		next := make([]storage.Binding, len(cur), len(cur)+len(contacts))
		copy(next, cur)
		for _, c := range contacts {
			nb := storage.Binding{
				AOR: aor, Contact: c.uri, Params: c.params, InstanceID: c.instance, RegID: c.regID, Q: c.q,
				CallID: callID, CSeq: cseq.SeqNo, Expires: now.Add(time.Duration(c.expires) * time.Second),
				Path: paths, UserAgent: ua, IMPI: sub.IMPI,
				Transport: strings.ToLower(req.Transport()), Source: req.Source(), Local: local, Node: r.opts.Node,
				RegisteredAt: now,
			}
			i := indexOf(next, nb.Key())
			if i >= 0 {
				old := next[i]
				if old.CallID == callID {
					if old.CSeq == cseq.SeqNo {
						retransmission = true
						continue
					}
					if old.CSeq > cseq.SeqNo {
						return nil, errOutOfOrder
					}
				}
				if c.expires == 0 {
					next = append(next[:i], next[i+1:]...)
					removed++
					continue
				}
				nb.RegisteredAt = old.RegisteredAt
				next[i] = nb
				continue
			}
			if c.expires == 0 {
				continue
			}
			next = append(next, nb)
		}
		if len(next) > r.opts.MaxContacts {
			return nil, errTooMany
		}
		return next, nil
	})
	switch {
	case errors.Is(err, errOutOfOrder):
		return r.reject(req, 400, "Out-of-order CSeq", "bad_request", err.Error())
	case errors.Is(err, errTooMany):
		return r.reject(req, 403, "Too Many Contacts", "forbidden",
			"more than "+strconv.Itoa(r.opts.MaxContacts)+" contacts for "+aor)
	case err != nil:
		r.log.Error("binding update failed", zap.String("aor", aor), zap.Error(err))
		res := rsip.NewResponse(req, 503, "Storage Unavailable")
		res.AppendHeader(siplib.NewHeader("Retry-After", "5"))
		return res, "error"
	}
	if retransmission {
		r.log.Debug("REGISTER retransmission answered again", zap.String("aor", aor))
	}
	if len(contacts) > 0 || wildcard {
		r.notify(Change{AOR: aor, Before: before, After: bindings, At: now})
	}

	res := rsip.NewResponse(req, 200, "OK")
	for i := range bindings {
		res.AppendHeader(siplib.NewHeader("Contact", contactValue(&bindings[i], now)))
	}
	if len(paths) > 0 && supportsPath {
		for _, p := range paths {
			res.AppendHeader(siplib.NewHeader("Path", p))
		}
	}
	if sr := *r.serviceRoute.Load(); sr != "" {
		res.AppendHeader(siplib.NewHeader("Service-Route", sr))
	}
	res.AppendHeader(siplib.NewHeader("P-Associated-URI", associated(sub)))
	res.AppendHeader(acceptResourcePriority)
	res.AppendHeader(supportedPath)
	res.AppendHeader(siplib.NewHeader("Date", r.date(now)))
	if len(contacts) == 0 && !wildcard {
		return res, "query"
	}
	if removed > 0 && len(bindings) == 0 {
		return res, "deregistered"
	}
	return res, "ok"
}

// parseContacts reads the Contact headers. A Contact's own expires wins over
// the Expires header, which wins over the default; values above the maximum
// are lowered to it (RFC 3261 §10.3 step 7).
func (r *Registrar) parseContacts(hdrs []siplib.Header, headerExpires int) ([]contactReq, bool, error) {
	var out []contactReq
	wildcard := false
	for _, h := range hdrs {
		ch, ok := h.(*siplib.ContactHeader)
		if !ok {
			return nil, false, errBadContact
		}
		if ch.Address.Wildcard {
			wildcard = true
			continue
		}
		scheme := strings.ToLower(ch.Address.Scheme)
		if scheme != "sip" && scheme != "sips" {
			return nil, false, errors.New("contact scheme " + ch.Address.Scheme + " not supported")
		}
		if ch.Address.Host == "" {
			return nil, false, errors.New("contact without host")
		}
		c := contactReq{uri: ch.Address.String(), expires: -1}
		var params []string
		for _, kv := range ch.Params {
			switch strings.ToLower(kv.K) {
			case "expires":
				n, err := strconv.Atoi(kv.V)
				if err != nil || n < 0 {
					return nil, false, errors.New("contact expires " + kv.V)
				}
				c.expires = n
				continue
			case "q":
				c.q = kv.V
				continue
			case "+sip.instance", "sip.instance":
				c.instance = strings.Trim(kv.V, `"<>`)
			case "reg-id":
				n, err := strconv.Atoi(kv.V)
				if err != nil || n < 0 {
					return nil, false, errors.New("reg-id " + kv.V)
				}
				c.regID = n
			}
			if kv.V == "" {
				params = append(params, kv.K)
			} else {
				params = append(params, kv.K+"="+kv.V)
			}
		}
		c.params = strings.Join(params, ";")
		if c.expires < 0 {
			c.expires = headerExpires
		}
		if c.expires < 0 {
			c.expires = r.opts.DefaultExpires
		}
		if c.expires > r.opts.MaxExpires {
			c.expires = r.opts.MaxExpires
		}
		out = append(out, c)
	}
	if wildcard && (len(out) > 0 || headerExpires != 0) {
		return nil, false, errBadWildcard
	}
	return out, wildcard, nil
}

func contactValue(b *storage.Binding, now time.Time) string {
	left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
	if left < 0 {
		left = 0
	}
	var s strings.Builder
	s.Grow(len(b.Contact) + len(b.Params) + 32)
	s.WriteByte('<')
	s.WriteString(b.Contact)
	s.WriteString(">;expires=")
	s.WriteString(strconv.Itoa(left))
	if b.Q != "" {
		s.WriteString(";q=")
		s.WriteString(b.Q)
	}
	if b.Params != "" {
		s.WriteByte(';')
		s.WriteString(b.Params)
	}
	return s.String()
}

func associated(sub *storage.Subscriber) string {
	var s strings.Builder
	for i, u := range sub.IMPUs {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteByte('<')
		s.WriteString(u)
		s.WriteByte('>')
	}
	return s.String()
}

func indexOf(bs []storage.Binding, key string) int {
	for i := range bs {
		if bs[i].Key() == key {
			return i
		}
	}
	return -1
}

func hasOptionTag(req *siplib.Request, header, tag string) bool {
	for _, h := range req.GetHeaders(header) {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}

// date formats the Date header, once per second rather than per response.
func (r *Registrar) date(now time.Time) string {
	sec := now.Unix()
	if d := r.dateCache.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &cachedDate{sec: sec, text: now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")}
	r.dateCache.Store(d)
	return d.text
}

type cachedDate struct {
	sec  int64
	text string
}

// Constant headers of every 200, built once (responses only read them).
var (
	acceptResourcePriority = siplib.NewHeader("Accept-Resource-Priority", "wps.4")
	supportedPath          = siplib.NewHeader("Supported", "path")
)
