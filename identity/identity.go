// Package identity gives public identities (IMPUs: sip:, sips: and tel:
// URIs) and private identities (IMPIs) the one canonical form rcsd stores
// and compares, so "sip:Alice@RCS.local;user=phone" and
// "<sip:Alice@rcs.local>" name the same address of record.
package identity

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is returned for identities that cannot be canonicalised.
var ErrInvalid = errors.New("invalid identity")

// Canonical returns the canonical form of a public identity: angle brackets,
// display name, URI parameters and headers removed; sips folded into sip;
// the host lower-cased; a tel: number kept with its leading + and without
// visual separators (RFC 3966 §5.1.1).
func Canonical(uri string) (string, error) {
	s := strings.TrimSpace(uri)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return "", fmt.Errorf("%w: unbalanced <> in %q", ErrInvalid, uri)
		}
		s = s[i+1 : i+j]
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return "", fmt.Errorf("%w: no scheme in %q", ErrInvalid, uri)
	}
	scheme := strings.ToLower(s[:colon])
	rest := s[colon+1:]
	switch scheme {
	case "sip", "sips":
		if i := strings.IndexAny(rest, ";?"); i >= 0 {
			rest = rest[:i]
		}
		user, host, ok := strings.Cut(rest, "@")
		// The spec's examples put spaces after "sip:" and before ">"
		// (nm01-core quirk Q17, chat-group tolerant parsing).
		user, host = strings.TrimSpace(user), strings.TrimSpace(host)
		if !ok {
			return "", fmt.Errorf("%w: %q has no user part", ErrInvalid, uri)
		}
		if i := strings.IndexByte(user, ':'); i >= 0 { // drop a password
			user = user[:i]
		}
		if user == "" || host == "" || strings.ContainsAny(user+host, " \t<>\"") {
			return "", fmt.Errorf("%w: %q", ErrInvalid, uri)
		}
		return "sip:" + user + "@" + strings.ToLower(host), nil
	case "tel":
		if i := strings.IndexByte(rest, ';'); i >= 0 {
			rest = rest[:i]
		}
		var b strings.Builder
		for i := 0; i < len(rest); i++ {
			c := rest[i]
			switch {
			case c >= '0' && c <= '9', c == '+' && i == 0, c == '*', c == '#':
				b.WriteByte(c)
			case c == '-' || c == '.' || c == '(' || c == ')':
			default:
				return "", fmt.Errorf("%w: bad character %q in %q", ErrInvalid, c, uri)
			}
		}
		if b.Len() == 0 || b.String() == "+" {
			return "", fmt.Errorf("%w: empty number in %q", ErrInvalid, uri)
		}
		return "tel:" + b.String(), nil
	}
	return "", fmt.Errorf("%w: scheme %q is not sip, sips or tel", ErrInvalid, scheme)
}

// DefaultIMPI is the private identity a subscriber gets when none is given:
// the user@host part of its sip: public identity (spec: the IMPI defaults
// to user@domain). A tel: identity has no host, so it needs an explicit
// IMPI unless a domain is supplied.
func DefaultIMPI(impu, domain string) (string, error) {
	c, err := Canonical(impu)
	if err != nil {
		return "", err
	}
	if rest, ok := strings.CutPrefix(c, "sip:"); ok {
		return rest, nil
	}
	if domain == "" {
		return "", fmt.Errorf("%w: %q needs an explicit private identity", ErrInvalid, impu)
	}
	return strings.TrimPrefix(strings.TrimPrefix(c, "tel:"), "+") + "@" + domain, nil
}
