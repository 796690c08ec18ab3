package ims

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func request(t *testing.T, transport, source string, extra ...string) *siplib.Request {
	t.Helper()
	wire := "MESSAGE sip:bob@rcs.local SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " 192.0.2.1:5060;branch=z9hG4bK-1\r\n" +
		"From: <sip:alice@rcs.local>;tag=a\r\nTo: <sip:bob@rcs.local>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n" +
		strings.Join(extra, "") + "Content-Length: 0\r\n\r\n"
	msg, err := siplib.ParseMessage([]byte(wire))
	require.NoError(t, err)
	req := msg.(*siplib.Request)
	req.SetTransport(transport)
	req.SetSource(source)
	return req
}

func TestTrustByAddress(t *testing.T) {
	tr, err := NewTrust([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"}, nil, zap.NewNop())
	require.NoError(t, err)
	for _, tc := range []struct {
		source string
		ok     bool
	}{
		{"10.1.2.3:5060", true},
		{"192.0.2.7:5060", true},
		{"192.0.2.8:5060", false},
		{"[2001:db8::1]:5060", true},
		{"[2001:db9::1]:5060", false},
		{"not-an-ip:5060", false},
	} {
		ok, why := tr.Trusted(request(t, "UDP", tc.source))
		assert.Equal(t, tc.ok, ok, "%s: %s", tc.source, why)
		if !ok {
			assert.NotEmpty(t, why)
		}
	}
	res := tr.Gate(nil, request(t, "UDP", "192.0.2.8:5060"))
	require.NotNil(t, res)
	assert.Equal(t, 403, res.StatusCode)
	assert.Nil(t, tr.Gate(nil, request(t, "UDP", "10.9.9.9:1")))
	_, err = NewTrust([]string{"10.0.0.0/33"}, nil, zap.NewNop())
	assert.Error(t, err)
}

// certs returns a CA and a leaf for name signed by it.
func certs(t *testing.T, name string) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test core CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A TLS peer is trusted by the name in its verified certificate; a peer
// without a certificate, or with one from another CA, is not.
func TestTrustByTLSName(t *testing.T) {
	pool, coreCert := certs(t, "scscf.ims.test")
	_, strangerCert := certs(t, "scscf.ims.test") // same name, other CA
	_, serverCert := certs(t, "rcsd.test")
	peers := NewPeerNames()
	srvCfg := peers.TLSConfig(&tls.Config{Certificates: []tls.Certificate{serverCert}}, pool)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); time.Sleep(200 * time.Millisecond); c.Close() }()
		}
	}()
	tr, err := NewTrust([]string{"scscf.ims.test"}, peers, zap.NewNop())
	require.NoError(t, err)
	dial := func(cert *tls.Certificate) string {
		cfg := &tls.Config{InsecureSkipVerify: true}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return ""
		}
		defer c.Close()
		require.NoError(t, c.Handshake())
		time.Sleep(50 * time.Millisecond) // the server's VerifyConnection has run
		return c.LocalAddr().String()
	}
	addr := dial(&coreCert)
	ok, why := tr.Trusted(request(t, "TLS", addr))
	assert.True(t, ok, why)
	ok, _ = tr.Trusted(request(t, "UDP", addr))
	assert.False(t, ok, "the name counts only on the TLS connection")

	addr = dial(nil)
	ok, why = tr.Trusted(request(t, "TLS", addr))
	assert.False(t, ok)
	assert.Contains(t, why, "no trusted certificate name")

	// A certificate from another CA fails verification (with TLS 1.3 the
	// client learns it only after its handshake): never trusted.
	if addr = dial(&strangerCert); addr != "" {
		ok, _ = tr.Trusted(request(t, "TLS", addr))
		assert.False(t, ok, "certificate from another CA")
	}
}

func TestAssertedIdentity(t *testing.T) {
	ids, ok := AssertedIdentity(request(t, "UDP", "10.0.0.1:5060", "P-Asserted-Identity: \"Alice\" <sip:Alice@RCS.local;user=phone>, <tel:+86-138-0000-0001>\r\n"))
	require.True(t, ok)
	assert.Equal(t, []string{"sip:Alice@rcs.local", "tel:+8613800000001"}, ids)
	_, ok = AssertedIdentity(request(t, "UDP", "10.0.0.1:5060"))
	assert.False(t, ok, "absent")
	_, ok = AssertedIdentity(request(t, "UDP", "10.0.0.1:5060", "P-Asserted-Identity: <mailto:x@y>\r\n"))
	assert.False(t, ok, "not sip/tel")
}

func TestStripAsserted(t *testing.T) {
	req := request(t, "UDP", "192.0.2.1:5060", "P-Asserted-Identity: <sip:boss@rcs.local>\r\n", "P-Asserted-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\r\n")
	assert.Nil(t, StripAsserted(zap.NewNop())(nil, req))
	assert.Nil(t, req.GetHeader("P-Asserted-Identity"))
	assert.Nil(t, req.GetHeader("P-Asserted-Service"))
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		in, uri, tp, dst string
		bad              bool
	}{
		{in: "sip:scscf.ims.test", uri: "sip:scscf.ims.test;lr", tp: "udp", dst: "scscf.ims.test:5060"},
		{in: "sip:10.0.0.9:5070;lr;transport=tcp", uri: "sip:10.0.0.9:5070;lr;transport=tcp", tp: "tcp", dst: "10.0.0.9:5070"},
		{in: "sips:scscf.ims.test;lr", uri: "sips:scscf.ims.test;lr", tp: "tls", dst: "scscf.ims.test:5061"},
		{in: "sip:[2001:db8::9]:5060;lr", uri: "sip:[2001:db8::9]:5060;lr", tp: "udp", dst: "[2001:db8::9]:5060"},
		{in: "sip:x;transport=sctp", bad: true},
		{in: "nonsense", bad: true},
	} {
		r, err := ParseRoute(tc.in)
		if tc.bad {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.uri, r.URI)
		assert.Equal(t, tc.tp, r.Flow.Transport)
		assert.Equal(t, tc.dst, r.Flow.Source)
	}
	r, err := ParseRoute("sip:scscf.ims.test:5060;lr")
	require.NoError(t, err)
	req := request(t, "UDP", "10.0.0.1:5060", "Route: <sip:old;lr>\r\n")
	require.NoError(t, r.Prepare(req, "tel:+8613800000001"))
	assert.Equal(t, "tel:+8613800000001", req.Recipient.String())
	routes := req.GetHeaders("Route")
	require.Len(t, routes, 1)
	assert.Equal(t, "<sip:scscf.ims.test:5060;lr>", routes[0].Value())
}
