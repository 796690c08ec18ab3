// Package digest implements the server side of HTTP Digest as SIP uses it
// (RFC 3261 §22, RFC 7616, RFC 8760): parsing credentials, computing HA1 and
// the expected response for MD5, SHA-256 and SHA-512/256, and formatting
// challenges. It is pure and allocation-light: it runs on every REGISTER.
package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// Algorithm is a digest algorithm token as it appears on the wire.
type Algorithm string

// The algorithms rcsd offers. The -sess variants are not offered: SIP
// clients rarely implement them and they add nothing for REGISTER.
const (
	MD5       Algorithm = "MD5"
	SHA256    Algorithm = "SHA-256"
	SHA512256 Algorithm = "SHA-512-256"
)

// ErrMalformed is returned for credentials that cannot be parsed.
var ErrMalformed = errors.New("malformed digest credentials")

// ParseAlgorithm maps a wire token (case-insensitive; absent means MD5, RFC
// 7616 §3.3) to an Algorithm.
func ParseAlgorithm(s string) (Algorithm, bool) {
	switch {
	case s == "", strings.EqualFold(s, "MD5"):
		return MD5, true
	case strings.EqualFold(s, "SHA-256"):
		return SHA256, true
	case strings.EqualFold(s, "SHA-512-256"):
		return SHA512256, true
	}
	return "", false
}

// HexLen is the length of a hex digest for the algorithm.
func (a Algorithm) HexLen() int {
	if a == MD5 {
		return 32
	}
	return 64
}

// hashHex hashes the parts joined by ':' and returns lower-case hex.
func (a Algorithm) hashHex(parts ...string) string {
	var out [128]byte
	return string(a.appendHashHex(out[:0], parts...))
}

// appendHashHex appends hex(H(parts joined by ':')) to dst. The parts are
// gathered in a stack buffer and hashed in one call, which keeps the
// per-REGISTER digest check free of allocations in the common case.
func (a Algorithm) appendHashHex(dst []byte, parts ...string) []byte {
	var stack [512]byte
	buf := stack[:0]
	for i, p := range parts {
		if i > 0 {
			buf = append(buf, ':')
		}
		buf = append(buf, p...)
	}
	var sum []byte
	switch a {
	case SHA256:
		s := sha256.Sum256(buf)
		sum = s[:]
	case SHA512256:
		s := sha512.Sum512_256(buf)
		sum = s[:]
	default:
		s := md5.Sum(buf)
		sum = s[:]
	}
	return hex.AppendEncode(dst, sum)
}

// HA1 = H(username:realm:password), what is stored instead of the password.
func HA1(a Algorithm, username, realm, password string) string {
	return a.hashHex(username, realm, password)
}

// Credentials are the parameters of an Authorization header.
type Credentials struct {
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string
	CNonce    string
	Opaque    string
	QOP       string
	NC        string
	// AUTS and IntegrityProtected belong to IMS AKA (RFC 3310, TS 24.229).
	AUTS               string
	IntegrityProtected string
}

// ParseCredentials parses the value of an Authorization header
// (`Digest username="…", …`). Unknown parameters are ignored; a parameter
// given twice is malformed (RFC 7616 §3.4: each at most once).
func ParseCredentials(v string) (Credentials, error) {
	var c Credentials
	v = strings.TrimLeft(v, " \t")
	if len(v) < 6 || !strings.EqualFold(v[:6], "digest") {
		return c, fmt.Errorf("%w: scheme is not Digest", ErrMalformed)
	}
	rest := v[6:]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return c, fmt.Errorf("%w: scheme is not Digest", ErrMalformed)
	}
	var seen uint32
	for {
		rest = strings.TrimLeft(rest, " \t\r\n,")
		if rest == "" {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, fmt.Errorf("%w: parameter without value", ErrMalformed)
		}
		name := strings.TrimRight(rest[:eq], " \t")
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if rest != "" && rest[0] == '"' {
			var ok bool
			val, rest, ok = quoted(rest)
			if !ok {
				return c, fmt.Errorf("%w: unterminated quoted string in %s", ErrMalformed, name)
			}
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val = strings.TrimRight(rest[:end], " \t")
			rest = rest[end:]
		}
		var dst *string
		var bit uint32
		switch strings.ToLower(name) {
		case "username":
			dst, bit = &c.Username, 1
		case "realm":
			dst, bit = &c.Realm, 2
		case "nonce":
			dst, bit = &c.Nonce, 4
		case "uri":
			dst, bit = &c.URI, 8
		case "response":
			dst, bit = &c.Response, 16
		case "algorithm":
			dst, bit = &c.Algorithm, 32
		case "cnonce":
			dst, bit = &c.CNonce, 64
		case "opaque":
			dst, bit = &c.Opaque, 128
		case "qop":
			dst, bit = &c.QOP, 256
		case "nc":
			dst, bit = &c.NC, 512
		case "auts":
			dst, bit = &c.AUTS, 1024
		case "integrity-protected":
			dst, bit = &c.IntegrityProtected, 2048
		default:
			continue
		}
		if seen&bit != 0 {
			return c, fmt.Errorf("%w: %s given twice", ErrMalformed, name)
		}
		seen |= bit
		*dst = val
	}
	if seen&1 == 0 {
		return c, fmt.Errorf("%w: username missing", ErrMalformed)
	}
	return c, nil
}

// quoted reads a quoted-string starting at s[0] == '"', undoing
// backslash escapes, and returns the value and what follows.
func quoted(s string) (val, rest string, ok bool) {
	esc := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			esc = true
			i++
		case '"':
			v := s[1:i]
			if esc {
				v = unescape(v)
			}
			return v, s[i+1:], true
		}
	}
	return "", "", false
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Response computes the expected response for credentials c sent with
// method, given the stored HA1. qop "auth" (RFC 7616) and no qop (RFC 2069,
// which the spec's own example uses) are supported; auth-int is not offered.
func Response(a Algorithm, ha1, method string, c *Credentials) string {
	var out [64]byte
	return string(a.appendResponse(out[:0], ha1, method, c))
}

func (a Algorithm) appendResponse(dst []byte, ha1, method string, c *Credentials) []byte {
	var ha2buf [64]byte
	ha2 := a.appendHashHex(ha2buf[:0], method, c.URI)
	if c.QOP == "" {
		return a.appendHashHex(dst, ha1, c.Nonce, unsafeString(ha2))
	}
	return a.appendHashHex(dst, ha1, c.Nonce, c.NC, c.CNonce, c.QOP, unsafeString(ha2))
}

// Verify reports whether c.Response is the right answer, in constant time.
func Verify(a Algorithm, ha1, method string, c *Credentials) bool {
	var out [64]byte
	want := a.appendResponse(out[:0], ha1, method, c)
	got := c.Response
	if len(got) != len(want) {
		return false
	}
	var lower [64]byte
	for i := 0; i < len(got); i++ {
		ch := got[i]
		if 'A' <= ch && ch <= 'F' {
			ch += 'a' - 'A'
		}
		lower[i] = ch
	}
	return subtle.ConstantTimeCompare(want, lower[:len(got)]) == 1
}

// unsafeString views b as a string without copying; b must not change
// while the string is in use (here: within one hash computation).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Challenge is one WWW-Authenticate value.
type Challenge struct {
	Realm     string
	Nonce     string
	Algorithm Algorithm
	QOP       bool // offer qop="auth"
	Stale     bool
	Opaque    string
}

// String formats the challenge as the header value, in the order the
// spec's example uses (realm, nonce, algorithm).
func (ch Challenge) String() string {
	var b strings.Builder
	b.Grow(128)
	b.WriteString(`Digest realm="`)
	b.WriteString(ch.Realm)
	b.WriteString(`", nonce="`)
	b.WriteString(ch.Nonce)
	b.WriteString(`", algorithm=`)
	b.WriteString(string(ch.Algorithm))
	if ch.QOP {
		b.WriteString(`, qop="auth"`)
	}
	if ch.Opaque != "" {
		b.WriteString(`, opaque="`)
		b.WriteString(ch.Opaque)
		b.WriteByte('"')
	}
	if ch.Stale {
		b.WriteString(", stale=true")
	}
	return b.String()
}
