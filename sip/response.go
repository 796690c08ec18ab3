// Package sip is rcsd's signalling layer over github.com/emiago/sipgo:
// listeners for UDP, TCP, TLS, WS and WSS, one router that dispatches
// requests to the feature handlers, request validation shared by all
// methods, stateless responses and connection-reusing requests toward
// registered handsets.
package sip

import (
	"net"
	"strconv"
	"strings"

	siplib "github.com/emiago/sipgo/sip"
)

// NewResponse builds a response to req as RFC 3261 §8.2.6 says: Via, From,
// To, Call-ID and CSeq copied, a To tag added, and the top Via completed
// with received/rport (RFC 3261 §18.2.1, RFC 3581) so the response reaches a
// handset behind NAT.
//
// The To tag is derived from the request (RFC 3261 §8.2.7: a stateless UAS
// must give a retransmitted request the same tag), which also spares a
// random-number draw on the hot path.
func NewResponse(req *siplib.Request, code int, reason string) *siplib.Response {
	res := siplib.NewResponse(code, reason)
	res.SipVersion = req.SipVersion
	for _, h := range req.GetHeaders("Via") {
		if v, ok := h.(*siplib.ViaHeader); ok {
			res.AppendHeader(v.Clone())
		}
	}
	if top := res.Via(); top != nil {
		completeVia(top, req.Source())
	}
	// From, Call-ID and CSeq are copied unchanged and never modified, so
	// the response shares the request's values instead of cloning them.
	if h := req.From(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.To(); h != nil {
		to := siplib.HeaderClone(h).(*siplib.ToHeader)
		if code != 100 && !to.Params.Has("tag") {
			if to.Params == nil {
				to.Params = siplib.NewParams()
			}
			to.Params.Add("tag", statelessTag(req))
		}
		res.AppendHeader(to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(h)
	}
	res.SetTransport(req.Transport())
	res.SetDestination(responseDestination(req))
	return res
}

// completeVia adds received when the sent-by host is not the packet's source
// address, and fills an empty rport with the source port.
func completeVia(v *siplib.ViaHeader, source string) {
	host, port, err := net.SplitHostPort(source)
	if err != nil {
		return
	}
	if rp, ok := v.Params.Get("rport"); ok && rp == "" {
		v.Params.Remove("rport")
		v.Params.Add("received", host)
		v.Params.Add("rport", port)
		return
	}
	if v.Host != host && !v.Params.Has("received") {
		v.Params.Add("received", host)
	}
}

// responseDestination is where a response goes (RFC 3261 §18.2.2, RFC
// 3581 §4): over a connection-oriented transport back on the connection
// (the source address identifies it); over UDP to the source address when
// rport was asked for, else to the source IP and the sent-by port.
func responseDestination(req *siplib.Request) string {
	src := req.Source()
	if req.Transport() != "UDP" {
		return src
	}
	v := req.Via()
	if v == nil {
		return src
	}
	if v.Params.Has("rport") {
		return src
	}
	host, _, err := net.SplitHostPort(src)
	if err != nil {
		return src
	}
	port := v.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func statelessTag(req *siplib.Request) string {
	h := uint64(14695981039346656037) // FNV-1a
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
	}
	if c := req.CallID(); c != nil {
		mix(string(*c))
	}
	if f := req.From(); f != nil {
		if t, ok := f.Params.Get("tag"); ok {
			mix(t)
		}
	}
	if c := req.CSeq(); c != nil {
		h ^= uint64(c.SeqNo)
		h *= 1099511628211
	}
	return strconv.FormatUint(h, 36)
}

// LocalAddrKey is the context key under which the transport puts the local
// listener address ("host:port") a request arrived on.
type LocalAddrKey struct{}

// SplitList splits a header value on commas outside <> and quotes
// (Path, P-Asserted-Identity, P-Associated-URI lists).
func SplitList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '<':
			if !quoted {
				depth++
			}
		case '>':
			if !quoted && depth > 0 {
				depth--
			}
		case ',':
			if !quoted && depth == 0 {
				if s := strings.TrimSpace(v[start:i]); s != "" {
					out = append(out, s)
				}
				start = i + 1
			}
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}
