package registrar

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/registrar/digest"
	"rcsd/secagree"
	"rcsd/storage"
	"rcsd/subscriber"
)

const home1Realm = "registrar.home1.net"

// newSecAgreeHarness is the AKA harness with the realm and subscriber of
// the spec's sec-agree flow (rcs-other fixtures 01-04) and tls-3gpp on.
func newSecAgreeHarness(t *testing.T) *harness {
	t.Helper()
	h := newAKAHarness(t, "aka digest", func(a *AKAScheme) { a.Realm = home1Realm })
	h.r.opts.Realm = home1Realm
	h.r.opts.Domain = "home1.net"
	h.r.opts.MaxExpires = 600000
	h.r.opts.SecAgree = &secagree.Server{Mechanisms: []string{secagree.TLS3GPP}, Port: func() int { return 5061 }, Secret: []byte("test-secret")}
	sub, err := subscriber.Build(subscriber.Spec{
		IMPUs: []string{"sip:user1_public1@home1.net", "sip:user1_public2@home1.net", "sip:user1_public3@home1.net", "sip:+1-212-555-1111@home1.net;user=phone"},
		IMPI:  "user1_private@home1.net", K: testK, OPc: testOPc}, home1Realm, "home1.net")
	require.NoError(t, err)
	require.NoError(t, h.store.PutSubscribers(context.Background(), []storage.Subscriber{sub}))
	return h
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// setHeader replaces (or, with an empty value, removes) a header line of
// wire text; it appends the header when absent.
func setHeader(wire, name, value string) string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:.*\n`)
	if value == "" {
		return re.ReplaceAllString(wire, "")
	}
	if re.MatchString(wire) {
		return re.ReplaceAllLiteralString(wire, name+": "+value+"\n")
	}
	return strings.Replace(wire, "Content-Length:", name+": "+value+"\nContent-Length:", 1)
}

func (h *harness) serveWire(wire, transport string) *siplib.Response {
	return h.r.ServeSIP(context.Background(), parse(h.t, wire, transport, "[5555::aaa:bbb:ccc:ddd]:1357"))
}

// secAgreeAnswer turns fixture 03 into the handset's real second REGISTER:
// the nonce of our 401, RES from the USIM, and Security-Verify.
func secAgreeAnswer(t *testing.T, nonce string, u *usim, verify string) string {
	t.Helper()
	res, auts, err := u.run(t, nonce)
	require.NoError(t, err)
	require.Nil(t, auts)
	const user = "user1_private@home1.net"
	c := digest.Credentials{Username: user, Realm: home1Realm, Nonce: nonce, URI: "sip:registrar.home1.net", Algorithm: AKAv1SHA256}
	c.Response = digest.Response(digest.MD5, digest.HA1(digest.MD5, user, home1Realm, string(res)), "REGISTER", &c)
	wire := fixture(t, "03-aka-register-response.txt")
	wire = setHeader(wire, "Authorization", fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", algorithm=AKAv1-SHA256, uri="sip:registrar.home1.net", response="%s"`,
		user, home1Realm, nonce, c.Response))
	return setHeader(wire, "Security-Verify", verify)
}

// The spec's flow (rcs-other-interfaces §9.1, fixtures 01-04) over TLS.
func TestSecAgreeSpecFlow(t *testing.T) {
	h := newSecAgreeHarness(t)
	res := h.serveWire(fixture(t, "01-aka-register-initial.txt"), "TLS")
	require.Equal(t, 401, res.StatusCode, res.Reason)
	// Every header of fixture 02 is there, shaped like it.
	want := fixture(t, "02-aka-401-challenge.txt")
	for _, line := range strings.Split(want, "\n")[1:] {
		if name, _, ok := strings.Cut(line, ":"); ok && name != "" && name != "Content-Length" { // the router adds it
			assert.NotNil(t, res.GetHeader(name), "header %s of fixture 02", name)
		}
	}
	assert.Regexp(t, `^Digest realm="registrar.home1.net", nonce="[A-Za-z0-9+/]{70}==", algorithm=AKAv1-SHA256$`, res.GetHeader("WWW-Authenticate").Value())
	server := res.GetHeader("Security-Server").Value()
	assert.Regexp(t, `^tls-3gpp; q=0\.1; alg=hmac-sha-256-96; spi-c=\d+; spi-s=\d+; port-c=5061; port-s=5061$`, server)
	nonce := challenges(t, res)[AKAv1SHA256]["nonce"]

	u := newUSIM()
	res = h.serveWire(secAgreeAnswer(t, nonce, u, server), "TLS")
	require.Equal(t, 200, res.StatusCode, res.Reason)
	for _, line := range strings.Split(fixture(t, "04-aka-200-ok.txt"), "\n")[1:] {
		name, _, ok := strings.Cut(line, ":")
		if !ok || name == "" || name == "Path" || name == "Content-Length" {
			continue // Path: the spec's came through a P-CSCF that added one
		}
		assert.NotNil(t, res.GetHeader(name), "header %s of fixture 04", name)
	}
	assert.Equal(t, "<sip:user1_public1@home1.net>, <sip:user1_public2@home1.net>, <sip:user1_public3@home1.net>, <sip:+1-212-555-1111@home1.net>",
		res.GetHeader("P-Associated-URI").Value())
	assert.Contains(t, res.GetHeader("Contact").Value(), "expires=600000")
	assert.Nil(t, res.GetHeader("Security-Server"), "Security-Server only in 401 and 494")
}

// Downgrades: whatever an attacker strips or alters is refused with 494
// and creates no binding.
func TestSecAgreeDowngrades(t *testing.T) {
	cases := []struct {
		name   string
		alter  func(wire, server string) string
		tp     string
		reason string
	}{
		{"Security-Verify missing", func(w, _ string) string { return setHeader(w, "Security-Verify", "") }, "TLS", "Security-Verify Missing"},
		{"Security-Verify altered", func(w, s string) string {
			return setHeader(w, "Security-Verify", strings.Replace(s, "hmac-sha-256-96", "hmac-sha-1-96", 1))
		}, "TLS", "Security-Verify Mismatch"},
		{"Security-Verify stripped of parameters", func(w, _ string) string { return setHeader(w, "Security-Verify", "tls-3gpp; q=0.1") }, "TLS", "Security-Verify Mismatch"},
		{"mechanism list differs from the first offer", func(w, s string) string {
			return setHeader(w, "Security-Client", "tls-3gpp; alg=hmac-sha-1-96; spi-c=23456789; spi-s=12345678; port-c=2468; port-s=1357")
		}, "TLS", "Security-Verify Mismatch"},
		{"answer not over TLS", func(w, _ string) string { return w }, "TCP", "TLS Required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newSecAgreeHarness(t)
			res := h.serveWire(fixture(t, "01-aka-register-initial.txt"), "TLS")
			require.Equal(t, 401, res.StatusCode)
			server := res.GetHeader("Security-Server").Value()
			nonce := challenges(t, res)[AKAv1SHA256]["nonce"]
			wire := tc.alter(secAgreeAnswer(t, nonce, newUSIM(), server), server)
			res = h.serveWire(wire, tc.tp)
			require.Equal(t, 494, res.StatusCode, res.Reason)
			assert.Contains(t, res.Reason, tc.reason)
			assert.NotNil(t, res.GetHeader("Security-Server"))
			assert.Equal(t, "sec-agree", res.GetHeader("Require").Value())
			n, err := h.store.CountBindings(context.Background())
			require.NoError(t, err)
			assert.Zero(t, n)
		})
	}
}

func TestSecAgreeRefusals(t *testing.T) {
	h := newSecAgreeHarness(t)
	initial := fixture(t, "01-aka-register-initial.txt")

	res := h.serveWire(setHeader(initial, "Security-Client", ""), "TLS")
	require.Equal(t, 494, res.StatusCode, "Require: sec-agree without Security-Client")
	assert.Equal(t, "tls-3gpp; q=0.1", res.GetHeader("Security-Server").Value())

	res = h.serveWire(setHeader(initial, "Security-Client", "ipsec-3gpp; alg=hmac-md5-96; spi-c=1; spi-s=2; port-c=3; port-s=4"), "TLS")
	require.Equal(t, 494, res.StatusCode, "ipsec-3gpp only: nothing in common")
	assert.Equal(t, "tls-3gpp; q=0.1", res.GetHeader("Security-Server").Value())

	res = h.serveWire(setHeader(initial, "Security-Client", "tls-3gpp; q=7"), "TLS")
	assert.Equal(t, 400, res.StatusCode)

	// A handset without sec-agree registers as before: no Security-Server.
	plain := setHeader(setHeader(setHeader(initial, "Security-Client", ""), "Require", ""), "Proxy-Require", "")
	res = h.serveWire(plain, "UDP")
	require.Equal(t, 401, res.StatusCode)
	assert.Nil(t, res.GetHeader("Security-Server"))
}
