package cpim

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fixtureCPIM returns the message/cpim object a spec fixture carries: the
// SIP body, the message/cpim part of a multipart SIP body, or the MSRP SEND
// content without its end-line. ok is false when there is none.
func fixtureCPIM(t testing.TB, name string) (cpim []byte, ok bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	head, body, found := cutBlankLine(raw)
	if !found {
		return nil, false
	}
	if bytes.HasPrefix(raw, []byte("MSRP ")) {
		// The end-line: 7 dashes per RFC 4975, 5 in some spec examples.
		if i := bytes.LastIndex(body, []byte("\n-----")); i >= 0 {
			body = body[:i]
			body = bytes.TrimSuffix(body, []byte("\r"))
		}
		return body, isCPIM(header(head, "Content-Type"))
	}
	ct := header(head, "Content-Type")
	if isCPIM(ct) {
		return body, true
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "multipart/mixed" {
		return nil, false
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, false
		}
		require.NoError(t, err, name)
		if isCPIM(p.Header.Get("Content-Type")) {
			b, err := io.ReadAll(p)
			require.NoError(t, err, name)
			return b, true
		}
	}
}

func isCPIM(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "message/cpim")
}

// cutBlankLine splits at the first empty line (LF or CRLF line ends).
func cutBlankLine(b []byte) (head, rest []byte, ok bool) {
	for off := 0; off < len(b); {
		line, next := nextLine(b, off)
		if len(line) == 0 {
			return b[:off], b[next:], true
		}
		off = next
	}
	return b, nil, false
}

func header(head []byte, name string) string {
	for line := range strings.SplitSeq(string(head), "\n") {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// fixtures lists every fixture copied into testdata.
func fixtures(t testing.TB) []string {
	t.Helper()
	names, err := filepath.Glob("testdata/*/*.txt")
	require.NoError(t, err)
	for i, n := range names {
		names[i] = strings.TrimPrefix(filepath.ToSlash(n), "testdata/")
	}
	return names
}
