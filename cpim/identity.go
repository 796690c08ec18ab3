package cpim

import (
	"errors"
	"strings"
	"time"
)

// Identity parses a CPIM From/To/cc value, `"Display" <sip:a@b>` or a bare
// URI, and returns the URI and the unquoted display name. It tolerates the
// spec's quirks (Q17, nm01-msrp fixture 24): whitespace inside <>, a space
// after the scheme's colon, a missing scheme (sip: is added), and stray words
// inside <> beside the one word that is a URI. Errors are plain; Parse wraps
// them in ErrMalformed.
func Identity(v string) (uri, display string, err error) {
	return identity(v, true)
}

func identity(v string, build bool) (uri, display string, err error) {
	v = trimWS(v)
	if v == "" {
		return "", "", errors.New("empty identity")
	}
	inner, bracketed := v, false
	if lt := strings.IndexByte(v, '<'); lt >= 0 {
		gt := strings.LastIndexByte(v, '>')
		if gt < lt {
			return "", "", errors.New("'<' without '>'")
		}
		if trimWS(v[gt+1:]) != "" {
			return "", "", errors.New("text after '>'")
		}
		if display, err = formalName(trimWS(v[:lt]), build); err != nil {
			return "", "", err
		}
		inner, bracketed = v[lt+1:gt], true
	}
	uri, err = identityURI(inner, bracketed, build)
	return uri, display, err
}

// identityURI finds the URI among the words of s. Parse only validates
// (build false), which keeps it free of allocations.
func identityURI(s string, bracketed, build bool) (string, error) {
	if strings.ContainsAny(s, "<>\"") {
		return "", errors.New("'<', '>' or '\"' inside the URI")
	}
	var uri string
	found := false
	words := 0
	for rest := trimWS(s); rest != ""; {
		var w string
		w, rest = cutWord(rest)
		uriLike := false
		if n := schemeLen(w); n > 0 && n == len(w) && rest != "" {
			// "sip: user@host": the scheme and the rest split by a space.
			var next string
			next, rest = cutWord(rest)
			if build {
				w += next
			}
			uriLike = true
		} else {
			uriLike = n > 0 && n < len(w) || strings.Contains(w, "@")
		}
		words++
		if uriLike {
			if found {
				return "", errors.New("more than one URI")
			}
			uri, found = w, true
		}
	}
	if !found {
		return "", errors.New("no URI")
	}
	if words > 1 && !bracketed {
		return "", errors.New("words beside the URI outside <>")
	}
	if build && schemeLen(uri) == 0 {
		uri = "sip:" + uri
	}
	return uri, nil
}

// cutWord splits off the first whitespace-separated word of s, which is
// trimmed.
func cutWord(s string) (word, rest string) {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], trimWS(s[i:])
	}
	return s, ""
}

// schemeLen returns the length of a leading RFC 3986 scheme with its colon
// ("sip:" → 4), or 0. A user part with a colon in it ("user@host:5060")
// does not count: the scheme ends before any '@'.
func schemeLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case c == ':' && i > 0:
			return i + 1
		default:
			return 0
		}
	}
	return 0
}

// formalName unquotes a display name (RFC 3862 Formal-name: tokens or a
// quoted string).
func formalName(s string, build bool) (string, error) {
	if !strings.HasPrefix(s, `"`) {
		if strings.Contains(s, `"`) {
			return "", errors.New("stray '\"' in display name")
		}
		return s, nil
	}
	if len(s) < 2 || !strings.HasSuffix(s, `"`) {
		return "", errors.New("unterminated quoted display name")
	}
	q := s[1 : len(s)-1]
	if !build || !strings.ContainsAny(q, `\"`) {
		return q, nil
	}
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		switch c := q[i]; c {
		case '\\':
			if i++; i == len(q) {
				return "", errors.New("trailing '\\' in display name")
			}
			b.WriteByte(q[i])
		case '"':
			return "", errors.New("unescaped '\"' in display name")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// ParseDateTime parses a CPIM DateTime (RFC 3339, RFC 3862 §4.4). A
// one-digit offset hour (+8:00, Q19 of the spec's examples) is accepted.
func ParseDateTime(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err == nil {
		return t, nil
	}
	// "...+8:00": insert the missing digit and try again.
	if n := len(v); n >= 6 && v[n-3] == ':' && (v[n-5] == '+' || v[n-5] == '-') && isDigit(v[n-4]) {
		if t, err2 := time.Parse(time.RFC3339, v[:n-4]+"0"+v[n-4:]); err2 == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
