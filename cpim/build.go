package cpim

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AppendTo appends the message in wire form to dst: CRLF line ends, one
// space after each colon, and a Content-Length that matches Body whenever
// Content carries one. A message without content ends after the CPIM
// headers' empty line. Values are written as they are: a Message Parse
// returned, or one built from valid values, parses again to the same
// headers and body.
func (m *Message) AppendTo(dst []byte) []byte {
	for _, h := range m.Headers {
		dst = appendHeader(dst, h.Name, h.Value)
	}
	dst = append(dst, "\r\n"...)
	if len(m.Content) == 0 && len(m.Body) == 0 {
		return dst
	}
	for _, h := range m.Content {
		if strings.EqualFold(h.Name, "Content-Length") {
			dst = append(dst, h.Name...)
			dst = append(dst, ": "...)
			dst = strconv.AppendInt(dst, int64(len(m.Body)), 10)
			dst = append(dst, "\r\n"...)
			continue
		}
		dst = appendHeader(dst, h.Name, h.Value)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, m.Body...)
}

func appendHeader(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	// Parameters follow the colon directly (RFC 3862 §3.3: "Subject:;lang=fr").
	if strings.HasPrefix(value, ";") {
		dst = append(dst, ':')
	} else {
		dst = append(dst, ": "...)
	}
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// Decoded returns Body with its Content-Transfer-Encoding undone: base64
// (line breaks and missing padding tolerated) and quoted-printable are
// decoded; 7bit, 8bit, binary or none return Body itself. Text the spec
// requires to be UTF-8 (text/* without another charset) must decode to
// valid UTF-8. Errors wrap ErrMalformed.
func (m *Message) Decoded() ([]byte, error) {
	out := m.Body
	switch m.encoding() {
	case "base64":
		// Drop whitespace (MIME wraps base64 at 76 columns) and padding, so
		// one strict unpadded decoder covers padded and unpadded senders.
		clean := bytes.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, m.Body)
		clean = bytes.TrimRight(clean, "=")
		out = make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
		n, err := base64.RawStdEncoding.Decode(out, clean)
		if err != nil {
			return nil, fmt.Errorf("%w: base64 content: %w", ErrMalformed, err)
		}
		out = out[:n]
	case "quoted-printable":
		var err error
		out, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(m.Body)))
		if err != nil {
			return nil, fmt.Errorf("%w: quoted-printable content: %w", ErrMalformed, err)
		}
	}
	if m.isUTF8Text() && !utf8.Valid(out) {
		return nil, fmt.Errorf("%w: text content is not valid UTF-8", ErrMalformed)
	}
	return out, nil
}
