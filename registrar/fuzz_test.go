package registrar

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
)

// FuzzRegister feeds arbitrary REGISTER text through the parser and the
// handler: whatever arrives, the registrar answers with a final status and
// never panics, and a refused request never leaves a binding behind.
func FuzzRegister(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err == nil && strings.HasPrefix(string(data), "REGISTER") {
			f.Add(strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n", "\r\n"))
		}
	}
	f.Add("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:bob@rcs.local>;tag=1\r\nTo: <sip:bob@rcs.local>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\nAuthorization: Digest username=\"bob@rcs.local\", realm=\"rcs.local\", nonce=\"AAAA\", uri=\"sip:rcs.local\", response=\"00\", qop=auth, nc=zz\r\nContent-Length: 0\r\n\r\n")
	f.Add("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nMax-Forwards: 70\r\nFrom: <sip:native@rcs.local>;tag=1\r\nTo: <sip:native@rcs.local>\r\nCall-ID: y\r\nCSeq: 1 REGISTER\r\nContact: <sip:n@h>\r\nAuthorization: Digest username=\"native@rcs.local\", realm=\"rcs.local\", nonce=\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\", uri=\"sip:rcs.local\", response=\"00\", algorithm=AKAv1-MD5, auts=\"AAAAAAAAAAAAAAAAAAA=\"\r\nContent-Length: 0\r\n\r\n")
	// Both schemes, and a subscriber with AKA keys.
	h := newAKAHarness(f, "aka digest")
	f.Fuzz(func(t *testing.T, wire string) {
		msg, err := siplib.ParseMessage([]byte(wire))
		if err != nil {
			return
		}
		req, ok := msg.(*siplib.Request)
		if !ok || req.Method != siplib.REGISTER || req.CSeq() == nil || req.Via() == nil || req.CallID() == nil || req.From() == nil {
			return // the router refuses these before the registrar sees them
		}
		req.SetTransport("UDP")
		req.SetSource("198.51.100.7:40000")
		res := h.r.ServeSIP(context.Background(), req)
		if res == nil || res.StatusCode < 200 || res.StatusCode > 699 {
			t.Fatalf("no final response for %q", wire)
		}
		if res.StatusCode != 200 && res.StatusCode != 401 && res.StatusCode != 400 && res.StatusCode != 403 &&
			res.StatusCode != 416 && res.StatusCode != 421 && res.StatusCode != 423 {
			t.Fatalf("unexpected status %d for %q", res.StatusCode, wire)
		}
	})
}

// FuzzThirdParty feeds arbitrary bodies to the third-party REGISTER
// handler (ims-as mode): message/sip and multipart/mixed parsing never
// panic, and a refused request leaves no binding.
func FuzzThirdParty(f *testing.F) {
	f.Add("message/sip", embeddedOK)
	f.Add("multipart/mixed;boundary=bnd", multipartBody(embeddedRegister, embeddedOK))
	f.Add("multipart/mixed;boundary=bnd", "--bnd\r\nContent-Type: message/sip\r\n\r\nSIP/2.0 200 OK\r\nContact: *\r\n--bnd--")
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, contentType, body string) {
		if strings.ContainsAny(contentType, "\r\n") {
			return
		}
		ctx := context.Background()
		_, err := h.store.UpdateBindings(ctx, "sip:bob@rcs.local", h.now, func([]storage.Binding) ([]storage.Binding, error) { return nil, nil })
		require.NoError(t, err)
		wire := strings.ReplaceAll(thirdPartyWire("3600", contentType, ""), "\n", "\r\n")
		wire = strings.Replace(wire, "Content-Length: 0\r\n", "Content-Length: "+strconv.Itoa(len(body))+"\r\n", 1) + body
		msg, err := siplib.ParseMessage([]byte(wire))
		if err != nil {
			return
		}
		req, ok := msg.(*siplib.Request)
		if !ok {
			return
		}
		req.SetTransport("UDP")
		req.SetSource("10.0.0.5:5060")
		code := h.r.ServeThirdParty(ctx, req).StatusCode
		switch code {
		case 200:
		case 400, 403:
			n, err := h.store.CountBindings(context.Background())
			require.NoError(t, err)
			require.Zero(t, n, "a refused third-party REGISTER left a binding")
		default:
			t.Fatalf("unexpected status %d", code)
		}
	})
}
