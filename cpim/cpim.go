package cpim

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors callers can test with errors.Is; both map to 400 (seed 001
// §5.1.1.1.2). An ErrDuplicate error also matches ErrMalformed.
var (
	ErrMalformed = errors.New("cpim: malformed")
	ErrDuplicate = fmt.Errorf("%w: duplicate header", ErrMalformed)
)

const (
	// MaxHeaders bounds each header section, so hostile input cannot make
	// Parse allocate without bound.
	MaxHeaders = 64
	// MaxLine bounds one header line, without its line end.
	MaxLine = 8 << 10

	// IMDNNamespace is the NS URN of RFC 5438 headers.
	IMDNNamespace = "urn:ietf:params:imdn"
	// Anonymous is the identity the spec puts in CPIM From/To of
	// recipient-list messages and IMDNs; the real one is in the SIP headers.
	Anonymous = "sip:anonymous@anonymous.invalid"
)

// Header is one CPIM message header as sent (RFC 3862 §3: names are
// case-sensitive). A header sent with parameters (`Subject:;lang=fr text`)
// keeps them at the start of Value (";lang=fr text"); see Param and Text.
type Header struct{ Name, Value string }

// Message is a parsed message/cpim object.
type Message struct {
	Headers []Header // CPIM message headers in order
	Content []Header // the encapsulated MIME entity's headers in order
	Body    []byte   // the content as carried (still encoded per Content-Transfer-Encoding)
}

// Options relaxes Parse. The zero value is strict.
type Options struct {
	// IgnoreContentLength accepts a content Content-Length larger than the
	// content present: the spec's examples carry such lengths (Q20) and the
	// enclosing SIP or MSRP framing already delimits the object. The bytes
	// present are the content either way.
	IgnoreContentLength bool
}

// Parse parses a message/cpim object strictly (Options{}.Parse).
func Parse(b []byte) (*Message, error) { return Options{}.Parse(b) }

// Parse parses a message/cpim object. It copies b and does not retain it.
func (o Options) Parse(b []byte) (*Message, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	// First pass: bound and locate the two header sections, so the copy and
	// the header slice are allocated once at their final size.
	nMsg, afterMsg, err := scanSection(b, 0, "message")
	if err != nil {
		return nil, err
	}
	nContent, bodyStart, err := scanSection(b, afterMsg, "content")
	if err != nil {
		return nil, err
	}

	text := string(b[:bodyStart])
	m := &Message{}
	if bodyStart < len(b) {
		m.Body = bytes.Clone(b[bodyStart:])
	}
	hs := make([]Header, nMsg+nContent)
	if err := parseSection(text[:afterMsg], hs[:nMsg], true); err != nil {
		return nil, err
	}
	if err := parseSection(text[afterMsg:], hs[nMsg:], false); err != nil {
		return nil, err
	}
	m.Headers = hs[:nMsg:nMsg]
	if nContent > 0 {
		m.Content = hs[nMsg:]
	}
	if nMsg == 0 {
		m.Headers = nil
	}
	if err := m.checkHeaders(); err != nil {
		return nil, err
	}
	if err := m.checkContent(o); err != nil {
		return nil, err
	}
	return m, nil
}

// scanSection counts the header lines starting at off and returns where the
// section ends: after its empty line, or at the end of b.
func scanSection(b []byte, off int, section string) (n, end int, err error) {
	for off < len(b) {
		line, next := nextLine(b, off)
		if len(line) == 0 {
			return n, next, nil
		}
		if len(line) > MaxLine {
			return 0, 0, fmt.Errorf("%w: %s header line longer than %d bytes", ErrMalformed, section, MaxLine)
		}
		if n++; n > MaxHeaders {
			return 0, 0, fmt.Errorf("%w: more than %d %s headers", ErrMalformed, MaxHeaders, section)
		}
		off = next
	}
	return n, len(b), nil
}

// nextLine returns the line at off without its end (LF or CRLF) and the
// offset of the following line.
func nextLine[T string | []byte](b T, off int) (line T, next int) {
	i := off
	for i < len(b) && b[i] != '\n' {
		i++
	}
	next = i
	if i < len(b) {
		next = i + 1
	}
	if i > off && b[i-1] == '\r' {
		i--
	}
	return b[off:i], next
}

// parseSection fills hs from the header lines of s (which scanSection
// measured: exactly len(hs) lines, then possibly an empty line).
func parseSection(s string, hs []Header, cpimNames bool) error {
	off := 0
	for i := range hs {
		line, next := nextLine(s, off)
		off = next
		if line[0] == ' ' || line[0] == '\t' {
			return fmt.Errorf("%w: folded header line %q (RFC 3862 has no folding)", ErrMalformed, clip(line))
		}
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return fmt.Errorf("%w: header line without colon %q", ErrMalformed, clip(line))
		}
		name := trimWS(line[:colon])
		value := trimWS(line[colon+1:])
		if cpimNames && !validCPIMName(name) || !cpimNames && !validMIMEName(name) {
			return fmt.Errorf("%w: bad header name %q", ErrMalformed, clip(name))
		}
		if value == "" {
			return fmt.Errorf("%w: %s: empty value", ErrMalformed, name)
		}
		if !utf8.ValidString(value) {
			return fmt.Errorf("%w: %s: invalid UTF-8", ErrMalformed, name)
		}
		for j := 0; j < len(value); j++ {
			if c := value[j]; c < 0x20 && c != '\t' || c == 0x7f {
				return fmt.Errorf("%w: %s: control character", ErrMalformed, name)
			}
		}
		// AppendTo writes "Name: Value"; keep that within MaxLine too, so
		// its output always parses again.
		if len(name)+2+len(value) > MaxLine {
			return fmt.Errorf("%w: %s header line longer than %d bytes", ErrMalformed, name, MaxLine)
		}
		hs[i] = Header{Name: name, Value: value}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func trimWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isNameChar is RFC 3862 §3.6 NAMECHAR.
func isNameChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// validCPIMName is RFC 3862 Header-name: [ Name-prefix "." ] Name.
func validCPIMName(s string) bool {
	prefix, local, found := strings.Cut(s, ".")
	if !found {
		return validName(s)
	}
	return validName(prefix) && validName(local)
}

// validMIMEName is an RFC 5322 field-name: printable ASCII but the colon.
func validMIMEName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// uniqueContent are the MIME content headers RFC 2045/2183/3282 define once.
func uniqueContent(name string) bool {
	if len(name) < 10 || !strings.EqualFold(name[:8], "Content-") {
		return false
	}
	for _, u := range [...]string{"Content-Type", "Content-Length", "Content-Transfer-Encoding",
		"Content-Disposition", "Content-ID", "Content-Description", "Content-Language"} {
		if strings.EqualFold(name, u) {
			return true
		}
	}
	return false
}

func duplicate(name string) error {
	return fmt.Errorf("%w: %s", ErrDuplicate, name)
}

// checkHeaders validates the CPIM message headers: values of the headers
// RFC 3862 §4 defines, and uniqueness (see the package doc). Sections hold
// at most MaxHeaders, so the quadratic scans stay small and allocation-free.
func (m *Message) checkHeaders() error {
	hs := m.Headers
	for i, h := range hs {
		switch h.Name {
		case "From", "To", "cc":
			if _, _, err := identity(h.Value, false); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrMalformed, h.Name, err)
			}
		case "DateTime":
			if _, err := ParseDateTime(h.Value); err != nil {
				return fmt.Errorf("%w: DateTime: %w", ErrMalformed, err)
			}
		case "NS":
			if _, _, ok := parseNS(h.Value); !ok {
				return fmt.Errorf("%w: NS: want [prefix] <URI>, got %q", ErrMalformed, clip(h.Value))
			}
		case "Require":
			for name := range strings.SplitSeq(h.Value, ",") {
				if !validCPIMName(trimWS(name)) {
					return fmt.Errorf("%w: Require: bad header name %q", ErrMalformed, clip(name))
				}
			}
		}
		for _, e := range hs[:i] {
			if m.sameUnique(e, h) {
				return duplicate(h.Name)
			}
		}
	}
	return nil
}

// sameUnique reports whether the earlier header e and h are the same header
// of a kind that may appear only once.
func (m *Message) sameUnique(e, h Header) bool {
	switch h.Name {
	case "From", "DateTime", "Require":
		return e.Name == h.Name
	case "Subject":
		if e.Name != h.Name {
			return false
		}
		el, _ := e.Param("lang")
		hl, _ := h.Param("lang")
		return strings.EqualFold(el, hl)
	case "NS":
		if e.Name != h.Name {
			return false
		}
		ep, _, _ := parseNS(e.Value)
		hp, _, _ := parseNS(h.Value)
		return ep == hp
	}
	hp, hl, ok := strings.Cut(h.Name, ".")
	if !ok || hl == "IMDN-Record-Route" || hl == "IMDN-Route" {
		return false
	}
	ep, el, ok := strings.Cut(e.Name, ".")
	return ok && el == hl && m.isIMDN(hp) && m.isIMDN(ep)
}

// isIMDN reports whether prefix names the IMDN namespace.
func (m *Message) isIMDN(prefix string) bool {
	urn, declared := m.namespace(prefix)
	if declared {
		return urn == IMDNNamespace
	}
	// Tolerance: clients that leave out NS still mean RFC 5438's prefix.
	return prefix == "imdn" && !m.declares(IMDNNamespace)
}

// declares reports whether an NS header declares urn.
func (m *Message) declares(urn string) bool {
	for _, h := range m.Headers {
		if h.Name == "NS" {
			if _, u, ok := parseNS(h.Value); ok && u == urn {
				return true
			}
		}
	}
	return false
}

// namespace returns the URN that NS declares for prefix.
func (m *Message) namespace(prefix string) (urn string, ok bool) {
	for _, h := range m.Headers {
		if h.Name != "NS" {
			continue
		}
		if p, u, valid := parseNS(h.Value); valid && p == prefix {
			return u, true
		}
	}
	return "", false
}

// parseNS parses an NS value: [ Name-prefix ] "<" URI ">" (RFC 3862 §4.6).
// The spec writes no space before "<" (imdn<urn:ietf:params:imdn>).
func parseNS(v string) (prefix, urn string, ok bool) {
	v = trimWS(v)
	lt := strings.IndexByte(v, '<')
	if lt < 0 || !strings.HasSuffix(v, ">") {
		return "", "", false
	}
	prefix = trimWS(v[:lt])
	urn = trimWS(v[lt+1 : len(v)-1])
	if prefix != "" && !validName(prefix) || urn == "" || strings.ContainsAny(urn, "<> \t") {
		return "", "", false
	}
	return prefix, urn, true
}

// checkContent validates the content headers and the body against them.
func (m *Message) checkContent(o Options) error {
	for i, h := range m.Content {
		switch {
		case strings.EqualFold(h.Name, "Content-Type"):
			if !validMediaType(h.Value) {
				return fmt.Errorf("%w: Content-Type: want type/subtype, got %q", ErrMalformed, clip(h.Value))
			}
		case strings.EqualFold(h.Name, "Content-Transfer-Encoding"):
			switch strings.ToLower(h.Value) {
			case "7bit", "8bit", "binary", "base64", "quoted-printable":
			default:
				return fmt.Errorf("%w: unknown Content-Transfer-Encoding %q", ErrMalformed, clip(h.Value))
			}
		case strings.EqualFold(h.Name, "Content-Length"):
			n, err := strconv.ParseUint(h.Value, 10, 63)
			if err != nil {
				return fmt.Errorf("%w: Content-Length %q", ErrMalformed, clip(h.Value))
			}
			// Fewer bytes than announced is a truncated object; more is
			// trusted (the framing around the object delimits it).
			if n > uint64(len(m.Body)) && !o.IgnoreContentLength {
				return fmt.Errorf("%w: Content-Length %d but %d bytes of content", ErrMalformed, n, len(m.Body))
			}
		}
		if uniqueContent(h.Name) {
			for _, e := range m.Content[:i] {
				if strings.EqualFold(e.Name, h.Name) {
					return duplicate(h.Name)
				}
			}
		}
	}
	if m.encoding() == "" && m.isUTF8Text() && !utf8.Valid(m.Body) {
		return fmt.Errorf("%w: text content is not valid UTF-8", ErrMalformed)
	}
	return nil
}

// validMediaType checks the type/subtype of a Content-Type value (RFC 2045
// tokens); parameters are left to the consumer.
func validMediaType(v string) bool {
	mt, _, _ := strings.Cut(v, ";")
	typ, sub, ok := strings.Cut(trimWS(mt), "/")
	return ok && validToken(typ) && validToken(sub)
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// Get returns the value of the first CPIM message header named exactly name.
func (m *Message) Get(name string) (string, bool) {
	for _, h := range m.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

// GetNS returns the value of the first header local in namespace urn, that
// is `<prefix>.<local>` for a prefix NS declares for urn (or plain local for
// a prefix-less declaration). For the IMDN namespace an undeclared "imdn"
// prefix counts too (see the package doc).
func (m *Message) GetNS(urn, local string) (string, bool) {
	declared := false
	for _, ns := range m.Headers {
		if ns.Name != "NS" {
			continue
		}
		p, u, ok := parseNS(ns.Value)
		if !ok || u != urn {
			continue
		}
		declared = true
		if v, ok := m.getPrefixed(p, local); ok {
			return v, true
		}
	}
	if !declared && urn == IMDNNamespace {
		if _, taken := m.namespace("imdn"); !taken {
			return m.getPrefixed("imdn", local)
		}
	}
	return "", false
}

func (m *Message) getPrefixed(prefix, local string) (string, bool) {
	for _, h := range m.Headers {
		if prefix == "" && h.Name == local ||
			len(h.Name) == len(prefix)+1+len(local) && strings.HasPrefix(h.Name, prefix) &&
				h.Name[len(prefix)] == '.' && strings.HasSuffix(h.Name, local) {
			return h.Value, true
		}
	}
	return "", false
}

// ContentHeader returns the first content header named name, compared
// case-insensitively as MIME names are.
func (m *Message) ContentHeader(name string) (string, bool) {
	for _, h := range m.Content {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// ContentType returns the content's media type, lower-cased and without
// parameters; "" when the content has no Content-Type.
func (m *Message) ContentType() string {
	v, ok := m.ContentHeader("Content-Type")
	if !ok {
		return ""
	}
	mt, _, _ := strings.Cut(v, ";")
	return strings.ToLower(trimWS(mt))
}

// encoding returns the lower-cased Content-Transfer-Encoding when it
// transforms the body (base64, quoted-printable), else "".
func (m *Message) encoding() string {
	v, _ := m.ContentHeader("Content-Transfer-Encoding")
	switch v = strings.ToLower(v); v {
	case "base64", "quoted-printable":
		return v
	}
	return ""
}

// isUTF8Text reports whether the content is text the spec requires to be
// UTF-8 (§5.1.1.4): text/* with no charset, or charset utf-8 / us-ascii.
func (m *Message) isUTF8Text() bool {
	v, ok := m.ContentHeader("Content-Type")
	if !ok {
		return false
	}
	mt, params, _ := strings.Cut(v, ";")
	if !strings.HasPrefix(strings.ToLower(trimWS(mt)), "text/") {
		return false
	}
	cs, ok := mediaParam(params, "charset")
	return !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii")
}

// mediaParam finds a parameter in the `;a=b;c="d"` tail of a media type.
func mediaParam(params, name string) (string, bool) {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if ok && strings.EqualFold(trimWS(k), name) {
			return strings.Trim(trimWS(v), `"`), true
		}
	}
	return "", false
}

// Param returns the value of a header parameter sent between the colon and
// the value (RFC 3862 §3.3: `Subject:;lang=fr text`).
func (h Header) Param(name string) (string, bool) {
	params, _ := h.split()
	for params != "" {
		params = params[1:] // the ';'
		p := params
		if i := strings.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i:]
		} else {
			params = ""
		}
		if k, v, ok := strings.Cut(p, "="); ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// Text returns the value without its parameters.
func (h Header) Text() string {
	_, text := h.split()
	return text
}

// split separates `;p=v;q="w x" text` into parameters and text. Quoted
// parameter values may hold spaces.
func (h Header) split() (params, text string) {
	v := h.Value
	if !strings.HasPrefix(v, ";") {
		return "", v
	}
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case (c == ' ' || c == '\t') && !quoted:
			return v[:i], trimWS(v[i:])
		}
	}
	return v, ""
}

// IMDNRequest is the delivery-report request a message carries in its CPIM
// headers (RFC 5438 §6; seed 001 Table 5-9).
type IMDNRequest struct {
	MessageID string // imdn.Message-ID
	DateTime  string // the CPIM DateTime, as sent
	// Disposition lists imdn.Disposition-Notification values as sent,
	// lower-cased: positive-delivery, negative-delivery, processing,
	// display, and the spec's burned (burn after reading).
	Disposition []string
}

// IMDN returns the message's IMDN headers; ok is false when there is no
// imdn.Message-ID.
func (m *Message) IMDN() (IMDNRequest, bool) {
	id, ok := m.GetNS(IMDNNamespace, "Message-ID")
	if !ok {
		return IMDNRequest{}, false
	}
	r := IMDNRequest{MessageID: id}
	r.DateTime, _ = m.Get("DateTime")
	if dn, ok := m.GetNS(IMDNNamespace, "Disposition-Notification"); ok {
		for d := range strings.SplitSeq(dn, ",") {
			if d = trimWS(d); d != "" {
				r.Disposition = append(r.Disposition, strings.ToLower(d))
			}
		}
	}
	return r, true
}
