// Package secagree is the security mechanism agreement of RFC 3329 as a
// native handset runs it with rcsd (seed 001 §9.1, 3GPP TS 33.203): the
// Security-Client / Security-Server / Security-Verify headers, and the
// server's side of the negotiation for the mechanisms rcsd implements.
//
// rcsd implements tls-3gpp only: the handset's TLS connection to rcsd is
// the protected channel. ipsec-3gpp would need IPsec security associations
// set up from the AKA keys, which rcsd does not do, so it is never offered.
//
// The server's answer is a pure function of the configuration, a secret
// and the client's offer, so it needs no state between the 401 and the
// second REGISTER: rcsd recomputes what it sent and compares it with the
// handset's Security-Verify.
package secagree

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	siplib "github.com/emiago/sipgo/sip"
)

// OptionTag is the option tag of RFC 3329 §2.2.
const OptionTag = "sec-agree"

// Mechanisms rcsd can agree on.
const TLS3GPP = "tls-3gpp"

// ErrMalformed is a Security-* header that cannot be parsed.
var ErrMalformed = errors.New("malformed security mechanism")

// Param is one mechanism parameter (name lower-cased, value as sent).
type Param struct{ Name, Value string }

// Mechanism is one sec-mechanism: a name and its parameters (RFC 3329 §2.2).
type Mechanism struct {
	Name   string // lower-cased
	Params []Param
}

// Get returns the value of parameter name.
func (m Mechanism) Get(name string) (string, bool) {
	for _, p := range m.Params {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// String formats the mechanism as the spec's examples do ("tls-3gpp; q=0.1; …").
func (m Mechanism) String() string {
	var b strings.Builder
	b.WriteString(m.Name)
	for _, p := range m.Params {
		b.WriteString("; ")
		b.WriteString(p.Name)
		if p.Value != "" {
			b.WriteByte('=')
			b.WriteString(p.Value)
		}
	}
	return b.String()
}

// Format joins mechanisms into one header value.
func Format(ms []Mechanism) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return strings.Join(parts, ", ")
}

// maxMechanisms bounds what one request may list.
const maxMechanisms = 16

// Parse reads the sec-mechanisms of one or more header values
// (sec-mechanism *(COMMA sec-mechanism), RFC 3329 §2.2).
func Parse(values []string) ([]Mechanism, error) {
	var out []Mechanism
	for _, v := range values {
		for _, item := range splitOutsideQuotes(v, ',') {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			fields := splitOutsideQuotes(item, ';')
			name := strings.ToLower(strings.TrimSpace(fields[0]))
			if !isToken(name) {
				return nil, fmt.Errorf("%w: mechanism name %q", ErrMalformed, fields[0])
			}
			m := Mechanism{Name: name}
			for _, f := range fields[1:] {
				k, val, _ := strings.Cut(strings.TrimSpace(f), "=")
				k = strings.ToLower(strings.TrimSpace(k))
				val = strings.TrimSpace(val)
				if !isToken(k) {
					return nil, fmt.Errorf("%w: parameter %q of %s", ErrMalformed, f, name)
				}
				if _, dup := m.Get(k); dup {
					return nil, fmt.Errorf("%w: parameter %s twice in %s", ErrMalformed, k, name)
				}
				if k == "q" {
					if q, err := strconv.ParseFloat(val, 64); err != nil || q < 0 || q > 1 {
						return nil, fmt.Errorf("%w: q=%q", ErrMalformed, val)
					}
				}
				m.Params = append(m.Params, Param{Name: k, Value: val})
			}
			out = append(out, m)
			if len(out) > maxMechanisms {
				return nil, fmt.Errorf("%w: more than %d mechanisms", ErrMalformed, maxMechanisms)
			}
		}
	}
	return out, nil
}

// Equal reports whether two lists name the same mechanisms with the same
// parameters, in the same order. Parameter order and the case of names do
// not matter; values must match exactly (q compared as numbers). This is
// the "exact copy" check of Security-Verify against Security-Server (RFC
// 3329 §2.3.1).
func Equal(a, b []Mechanism) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || len(a[i].Params) != len(b[i].Params) {
			return false
		}
		pa, pb := sortedParams(a[i]), sortedParams(b[i])
		for j := range pa {
			if pa[j].Name != pb[j].Name {
				return false
			}
			if pa[j].Name == "q" {
				qa, _ := strconv.ParseFloat(pa[j].Value, 64)
				qb, _ := strconv.ParseFloat(pb[j].Value, 64)
				if qa != qb {
					return false
				}
				continue
			}
			if pa[j].Value != pb[j].Value {
				return false
			}
		}
	}
	return true
}

func sortedParams(m Mechanism) []Param {
	ps := append([]Param(nil), m.Params...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	return ps
}

// Required reports whether req insists on sec-agree (Require or
// Proxy-Require: rcsd is the handset's first hop).
func Required(req *siplib.Request) bool {
	for _, name := range [...]string{"Require", "Proxy-Require"} {
		for _, h := range req.GetHeaders(name) {
			for _, t := range strings.Split(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(t), OptionTag) {
					return true
				}
			}
		}
	}
	return false
}

// Values returns the values of header name in req.
func Values(req *siplib.Request, name string) []string {
	hs := req.GetHeaders(name)
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Value()
	}
	return out
}

// Server is rcsd's side of the agreement.
type Server struct {
	// Mechanisms are the ones offered, in preference order (tls-3gpp).
	Mechanisms []string
	// Port is the protected port put in port-c/port-s (the TLS listener).
	Port func() int
	// Secret keys the spi values, so the answer to one offer is the same
	// on every node sharing it and across restarts.
	Secret []byte
}

// Offer is Security-Server for a request without a usable Security-Client:
// every mechanism rcsd supports, without parameters beyond q.
func (s *Server) Offer() []Mechanism {
	out := make([]Mechanism, 0, len(s.Mechanisms))
	for i, name := range s.Mechanisms {
		out = append(out, Mechanism{Name: name, Params: []Param{{Name: "q", Value: qValue(i)}}})
	}
	return out
}

// Answer is Security-Server for the client's offer: the mechanisms both
// sides support, in rcsd's order. ok is false when there is none.
//
// For tls-3gpp the parameters protect nothing (TLS does); they follow the
// spec's example (fixture rcs-other/02): the client's alg echoed, spi-c and
// spi-s derived from the secret and the offer, port-c and port-s the TLS
// port. A client that offered a bare "tls-3gpp" gets "tls-3gpp; q=…" back.
func (s *Server) Answer(client []Mechanism) (out []Mechanism, ok bool) {
	for i, name := range s.Mechanisms {
		for _, c := range client {
			if c.Name != name {
				continue
			}
			m := Mechanism{Name: name, Params: []Param{{Name: "q", Value: qValue(i)}}}
			if alg, has := c.Get("alg"); has {
				m.Params = append(m.Params, Param{Name: "alg", Value: alg})
			}
			_, spiC := c.Get("spi-c")
			_, spiS := c.Get("spi-s")
			if spiC || spiS {
				mac := hmac.New(sha256.New, s.Secret)
				mac.Write([]byte(c.String()))
				sum := mac.Sum(nil)
				m.Params = append(m.Params,
					Param{Name: "spi-c", Value: strconv.FormatUint(uint64(binary.BigEndian.Uint32(sum[0:4])), 10)},
					Param{Name: "spi-s", Value: strconv.FormatUint(uint64(binary.BigEndian.Uint32(sum[4:8])), 10)})
			}
			_, portC := c.Get("port-c")
			_, portS := c.Get("port-s")
			if (portC || portS) && s.Port != nil {
				p := strconv.Itoa(s.Port())
				m.Params = append(m.Params, Param{Name: "port-c", Value: p}, Param{Name: "port-s", Value: p})
			}
			out = append(out, m)
			break
		}
	}
	return out, len(out) > 0
}

// qValue is the preference of the i-th mechanism (the spec's example
// gives tls-3gpp q=0.1; later ones get less).
func qValue(i int) string {
	return strconv.FormatFloat(max(0.1-0.01*float64(i), 0.01), 'f', -1, 64)
}

func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case sep:
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
