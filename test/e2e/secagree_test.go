package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/registrar/aka"
	"rcsd/registrar/digest"
	"rcsd/test/rcsdproc"
)

func specFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

func withHeader(wire, name, value string) string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:.*\n`)
	if value == "" {
		return re.ReplaceAllString(wire, "")
	}
	return re.ReplaceAllLiteralString(wire, name+": "+value+"\n")
}

// TestSecAgreeOverTLS replays the spec's sec-agree registration (rcs-other
// fixtures 01-04) over a real TLS connection to rcsd with a Go USIM, then
// shows that the registration is bound to that connection: a MESSAGE from
// the same identity on another TLS connection is not believed.
func TestSecAgreeOverTLS(t *testing.T) {
	p := rcsdproc.Start(t, "--domain", "home1.net", "--auth.realm", "registrar.home1.net", "--registrar.max_expires", "600000")
	out, err := p.Run(context.Background(), "subscriber", "add", "sip:user1_public1@home1.net", "sip:user1_public2@home1.net",
		"--impi", "user1_private@home1.net", "--k", akaK, "--opc", akaOPc)
	require.NoError(t, err, out)

	c := dial(t, "TLS", p)
	// rcsd declares the option tag.
	c.send("OPTIONS sip:registrar.home1.net SIP/2.0\nVia: SIP/2.0/TLS " + c.local() + ";branch=z9hG4bKopt\nMax-Forwards: 70\n" +
		"From: <sip:user1_public1@home1.net>;tag=o\nTo: <sip:registrar.home1.net>\nCall-ID: opt-1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n")
	res, raw := c.recv()
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Regexp(t, `(?m)^Supported: path, recipient-list-message, sec-agree\r$`, raw)

	via := "Via: SIP/2.0/TLS " + c.local() + ";branch=z9hG4bKsec%d"
	first := withHeader(specFixture(t, "01-aka-register-initial.txt"), "Via", fmt.Sprintf(via, 1)[5:])
	c.send(first)
	res, raw = c.recv()
	require.Equal(t, 401, res.StatusCode, raw)
	assert.Regexp(t, `(?m)^WWW-Authenticate: Digest realm="registrar.home1.net", nonce="[A-Za-z0-9+/]{70}==", algorithm=AKAv1-SHA256\r$`, raw)
	tlsPort := strconv.Itoa(p.TLSPort)
	assert.Regexp(t, `(?m)^Security-Server: tls-3gpp; q=0\.1; alg=hmac-sha-256-96; spi-c=\d+; spi-s=\d+; port-c=`+tlsPort+`; port-s=`+tlsPort+`\r$`, raw)
	assert.Regexp(t, `(?m)^Call-ID: apb03a0s09dkjdfglkj49111\r$`, raw)
	assert.Regexp(t, `(?m)^CSeq: 1 REGISTER\r$`, raw)
	server := res.GetHeader("Security-Server").Value()
	ch := firstChallenge(t, res)

	usim := &aka.USIM{K: unhexE2E(akaK), OPc: unhexE2E(akaOPc)}
	resp, auts, err := usim.RunNonce(ch["nonce"])
	require.NoError(t, err)
	require.Nil(t, auts)
	cr := digest.Credentials{Username: "user1_private@home1.net", Realm: ch["realm"], Nonce: ch["nonce"], URI: "sip:registrar.home1.net", Algorithm: "AKAv1-SHA256"}
	cr.Response = digest.Response(digest.MD5, digest.HA1(digest.MD5, cr.Username, cr.Realm, string(resp)), "REGISTER", &cr)
	second := specFixture(t, "03-aka-register-response.txt")
	second = withHeader(second, "Via", fmt.Sprintf(via, 2)[5:])
	second = withHeader(second, "Authorization", fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", algorithm=AKAv1-SHA256, uri="sip:registrar.home1.net", response="%s"`,
		cr.Username, cr.Realm, cr.Nonce, cr.Response))

	// Security-Verify altered on the way: refused, nothing bound.
	c.send(withHeader(second, "Security-Verify", strings.Replace(server, "q=0.1", "q=0.5", 1)))
	res, raw = c.recv()
	require.Equal(t, 494, res.StatusCode, raw)
	assert.Regexp(t, `(?m)^Security-Server: `+regexp.QuoteMeta(server)+`\r$`, raw)

	// The exact copy: registered (the same nonce answers once, so a fresh one).
	c.send(withHeader(first, "Via", fmt.Sprintf(via, 3)[5:]))
	res, _ = c.recv()
	ch = firstChallenge(t, res)
	resp, _, err = usim.RunNonce(ch["nonce"])
	require.NoError(t, err)
	cr.Nonce = ch["nonce"]
	cr.Response = digest.Response(digest.MD5, digest.HA1(digest.MD5, cr.Username, cr.Realm, string(resp)), "REGISTER", &cr)
	second = withHeader(second, "Authorization", fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", algorithm=AKAv1-SHA256, uri="sip:registrar.home1.net", response="%s"`,
		cr.Username, cr.Realm, cr.Nonce, cr.Response))
	second = withHeader(second, "Via", fmt.Sprintf(via, 4)[5:])
	c.send(withHeader(second, "Security-Verify", server))
	res, raw = c.recv()
	require.Equal(t, 200, res.StatusCode, raw)
	for _, h := range []string{"Service-Route: <sip:orig@", "P-Associated-URI: <sip:user1_public1@home1.net>, <sip:user1_public2@home1.net>",
		"Contact: <sip:[5555::aaa:bbb:ccc:ddd]:1357;comp=sigcomp>;expires=600000", "Date: "} {
		assert.Contains(t, raw, "\r\n"+h, "fixture 04 header")
	}

	// Requests after registration are believed only on the registered
	// connection: another TLS connection claiming the same identity is
	// refused, the registered one is accepted (202: stored, the recipient is offline).
	message := func(cl *wireClient, branch string) (int, string) {
		cl.send("MESSAGE sip:nobody@home1.net SIP/2.0\n" +
			"Via: SIP/2.0/TLS " + cl.local() + ";branch=" + branch + "\n" +
			"Max-Forwards: 70\nFrom: <sip:user1_public1@home1.net>;tag=m1\nTo: <sip:nobody@home1.net>\n" +
			"Call-ID: " + branch + "\nCSeq: 1 MESSAGE\nSecurity-Verify: " + server + "\nRequire: sec-agree\nProxy-Require: sec-agree\n" +
			"Content-Type: text/plain\nContent-Length: 2\n\nhi")
		r, raw := cl.recv()
		return r.StatusCode, raw
	}
	other := dial(t, "TLS", p)
	code, raw := message(other, "z9hG4bKother")
	assert.Equal(t, 403, code, raw)
	code, raw = message(c, "z9hG4bKsame")
	assert.Equal(t, 202, code, raw)
}
