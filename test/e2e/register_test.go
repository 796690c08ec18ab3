// Package e2e runs a real rcsd process on loopback and talks to it over
// real sockets, asserting on the bytes that come back.
package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/registrar/digest"
	"rcsd/test/rcsdproc"
)

// wireClient speaks SIP as text over one socket, like a handset.
type wireClient struct {
	t         *testing.T
	conn      net.Conn
	transport string
	r         *bufio.Reader
	n         int
}

func dial(t *testing.T, transport string, p *rcsdproc.Proc) *wireClient {
	t.Helper()
	var conn net.Conn
	var err error
	switch transport {
	case "UDP":
		conn, err = net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", p.Port))
	case "TCP":
		conn, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port))
	case "TLS":
		conn, err = tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.TLSPort), &tls.Config{InsecureSkipVerify: true})
	}
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &wireClient{t: t, conn: conn, transport: transport, r: bufio.NewReader(conn)}
}

func (c *wireClient) local() string { return c.conn.LocalAddr().String() }

func (c *wireClient) send(msg string) {
	c.t.Helper()
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	_, err := c.conn.Write([]byte(msg))
	require.NoError(c.t, err)
}

func (c *wireClient) recv() (*siplib.Response, string) {
	c.t.Helper()
	return c.recvWithin(5 * time.Second)
}

// recvWithin is recv waiting up to d.
func (c *wireClient) recvWithin(d time.Duration) (*siplib.Response, string) {
	c.t.Helper()
	raw := c.readRaw(d)
	msg, err := siplib.ParseMessage([]byte(raw))
	require.NoError(c.t, err, raw)
	res, ok := msg.(*siplib.Response)
	require.True(c.t, ok, raw)
	return res, raw
}

// readRaw reads one message: a datagram, or over a stream the headers and
// Content-Length bytes of body.
func (c *wireClient) readRaw(d time.Duration) string {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(d)))
	if c.transport == "UDP" {
		buf := make([]byte, 65535)
		n, err := c.conn.Read(buf)
		require.NoError(c.t, err, "nothing arrived")
		return string(buf[:n])
	}
	var raw []byte
	length := 0
	for {
		line, err := c.r.ReadString('\n')
		require.NoError(c.t, err, "nothing arrived")
		if len(raw) == 0 && line == "\r\n" {
			continue // a keep-alive
		}
		raw = append(raw, line...)
		if line == "\r\n" {
			break
		}
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, length)
	_, err := io.ReadFull(c.r, body)
	require.NoError(c.t, err)
	return string(append(raw, body...))
}

type regReq struct {
	user, callID string
	cseq         int
	contact      string // full Contact value, default derived from the socket
	extra        string
	auth         string
	branch       string
}

func (c *wireClient) register(r regReq) (*siplib.Response, string) {
	c.t.Helper()
	c.n++
	if r.branch == "" {
		r.branch = fmt.Sprintf("z9hG4bK%s%d%d", strings.ToLower(c.transport), c.n, time.Now().UnixNano())
	}
	if r.contact == "" {
		r.contact = fmt.Sprintf(`<sip:%s@%s;transport=%s>;+g.3gpp.icsi-ref="urn%%3Aurn-7%%3A3gpp-service.ims.icsi.oma.cpm.msg";+sip.instance="<urn:gsma:imei:35209900-176148-1>"`,
			r.user, c.local(), strings.ToLower(c.transport))
	}
	msg := "REGISTER sip:rcs.local SIP/2.0\n" +
		"Via: SIP/2.0/" + c.transport + " " + c.local() + ";branch=" + r.branch + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + r.user + "@rcs.local>;tag=e2e" + r.callID + "\n" +
		"To: <sip:" + r.user + "@rcs.local>\n" +
		"Call-ID: " + r.callID + "\n" +
		"CSeq: " + strconv.Itoa(r.cseq) + " REGISTER\n" +
		"Contact: " + r.contact + "\n" +
		"Supported: path\n" +
		"User-Agent: RCS/1.3.0(And)\n"
	if r.auth != "" {
		msg += "Authorization: " + r.auth + "\n"
	}
	msg += r.extra + "Content-Length: 0\n\n"
	c.send(msg)
	return c.recv()
}

var paramRe = regexp.MustCompile(`(\w+)=("[^"]*"|[^,\s]+)`)

func firstChallenge(t *testing.T, res *siplib.Response) map[string]string {
	t.Helper()
	require.Equal(t, 401, res.StatusCode)
	h := res.GetHeader("WWW-Authenticate")
	require.NotNil(t, h)
	out := map[string]string{}
	for _, m := range paramRe.FindAllStringSubmatch(h.Value(), -1) {
		out[m[1]] = strings.Trim(m[2], `"`)
	}
	return out
}

func authorize(ch map[string]string, user, password, nc string) string {
	alg, _ := digest.ParseAlgorithm(ch["algorithm"])
	c := digest.Credentials{Username: user, Realm: ch["realm"], Nonce: ch["nonce"], URI: "sip:rcs.local",
		Algorithm: string(alg), QOP: "auth", NC: nc, CNonce: "e2ecnonce"}
	c.Response = digest.Response(alg, digest.HA1(alg, user, ch["realm"], password), "REGISTER", &c)
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, qop=auth, nc=%s, cnonce="%s"`,
		c.Username, c.Realm, c.Nonce, c.URI, c.Response, c.Algorithm, c.NC, c.CNonce)
}

func provision(t *testing.T, p *rcsdproc.Proc, users ...string) {
	t.Helper()
	for _, u := range users {
		out, err := p.Run(context.Background(), "subscriber", "add", "sip:"+u+"@rcs.local", "--password", u+"-pw")
		require.NoError(t, err, out)
		require.Contains(t, out, "added "+u+"@rcs.local")
	}
}

func TestRegisterOverEveryTransport(t *testing.T) {
	p := rcsdproc.Start(t, "--auth.nonce_lifetime", "10s")
	provision(t, p, "udpuser", "tcpuser", "tlsuser")
	for _, tp := range []string{"UDP", "TCP", "TLS"} {
		t.Run(tp, func(t *testing.T) {
			user := strings.ToLower(tp) + "user"
			impi := user + "@rcs.local"
			c := dial(t, tp, p)
			callID := "e2e-" + user

			// 1. challenge
			res, raw := c.register(regReq{user: user, callID: callID, cseq: 1})
			ch := firstChallenge(t, res)
			assert.Equal(t, "SHA-256", ch["algorithm"], "SHA-256 offered first")
			assert.Len(t, res.GetHeaders("WWW-Authenticate"), 2, raw)
			assert.Regexp(t, `(?m)^To: <sip:`+user+`@rcs.local>;tag=\S+\r$`, raw)
			assert.Regexp(t, `(?m)^Via: SIP/2.0/`+tp+` .*;received=127.0.0.1;rport=\d+\r$`, raw)
			assert.Regexp(t, `(?m)^Server: IM-serv/OMA1.0 rcsd/`, raw)

			// 2. answer → 200 with the spec's headers
			res, raw = c.register(regReq{user: user, callID: callID, cseq: 2, auth: authorize(ch, impi, user+"-pw", "00000001"),
				extra: "Path: <sip:edge.rcs.local;lr>\n"})
			require.Equal(t, 200, res.StatusCode, raw)
			assert.Regexp(t, `(?m)^Contact: <sip:`+user+`@`+regexp.QuoteMeta(c.local())+`;transport=`+strings.ToLower(tp)+`>;expires=3600;\+g\.3gpp\.icsi-ref="urn%3Aurn-7%3A3gpp-service\.ims\.icsi\.oma\.cpm\.msg";\+sip\.instance="<urn:gsma:imei:35209900-176148-1>"\r$`, raw)
			assert.Contains(t, raw, "P-Associated-URI: <sip:"+user+"@rcs.local>\r\n")
			assert.Regexp(t, `(?m)^Service-Route: <sip:orig@127\.0\.0\.1:\d+;lr>\r$`, raw)
			assert.Contains(t, raw, "Path: <sip:edge.rcs.local;lr>\r\n")
			assert.Contains(t, raw, "Supported: path\r\n")
			assert.Contains(t, raw, "Content-Length: 0\r\n")

			// 3. refresh on the same nonce with nc=2 and a shorter expiry
			res, raw = c.register(regReq{user: user, callID: callID, cseq: 3, auth: authorize(ch, impi, user+"-pw", "00000002"),
				extra: "Expires: 120\n", contact: "<sip:" + user + "@" + c.local() + ";transport=" + strings.ToLower(tp) + ">"})
			require.Equal(t, 200, res.StatusCode, raw)
			assert.Regexp(t, `(?m)^Contact: <.*>;expires=120\r$`, raw)

			// 4. replay of nc=2 from another transaction → challenged again, stale
			res, raw = c.register(regReq{user: user, callID: callID, cseq: 4, auth: authorize(ch, impi, user+"-pw", "00000002")})
			assert.Equal(t, "true", firstChallenge(t, res)["stale"], raw)

			// 5. wrong password → 403, binding untouched
			res, _ = c.register(regReq{user: user, callID: callID, cseq: 5, auth: authorize(ch, impi, "wrong", "00000003")})
			assert.Equal(t, 403, res.StatusCode)

			// 6. de-register
			res, raw = c.register(regReq{user: user, callID: callID, cseq: 6, auth: authorize(ch, impi, user+"-pw", "00000004"),
				extra: "Expires: 0\n", contact: "*"})
			require.Equal(t, 200, res.StatusCode, raw)
			assert.NotContains(t, raw, "\r\nContact:")
		})
	}

	// Expired nonce: after auth.nonce_lifetime the right answer gets stale=true.
	t.Run("expired nonce", func(t *testing.T) {
		c := dial(t, "UDP", p)
		res, _ := c.register(regReq{user: "udpuser", callID: "e2e-stale", cseq: 1})
		ch := firstChallenge(t, res)
		time.Sleep(11500 * time.Millisecond)
		res, raw := c.register(regReq{user: "udpuser", callID: "e2e-stale", cseq: 2, auth: authorize(ch, "udpuser@rcs.local", "udpuser-pw", "00000001")})
		assert.Equal(t, "true", firstChallenge(t, res)["stale"], raw)
	})
}

// An independent Digest client (sipgo with github.com/icholy/digest) must
// register, over TCP, taking the first challenge as clients do.
func TestSipgoClientRegisters(t *testing.T) {
	p := rcsdproc.Start(t, "--auth.digest_algorithms", "MD5,SHA-256")
	provision(t, p, "carol")
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("carol"))
	require.NoError(t, err)
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(t, err)
	req := siplib.NewRequest(siplib.REGISTER, siplib.Uri{Scheme: "sip", Host: "rcs.local"})
	req.SetDestination(fmt.Sprintf("127.0.0.1:%d", p.Port))
	req.SetTransport("TCP")
	req.AppendHeader(&siplib.FromHeader{Address: siplib.Uri{Scheme: "sip", User: "carol", Host: "rcs.local"}, Params: siplib.HeaderParams{{K: "tag", V: "c1"}}})
	req.AppendHeader(&siplib.ToHeader{Address: siplib.Uri{Scheme: "sip", User: "carol", Host: "rcs.local"}})
	req.AppendHeader(&siplib.ContactHeader{Address: siplib.Uri{Scheme: "sip", User: "carol", Host: "127.0.0.1", Port: 5099}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 401, res.StatusCode)
	res, err = client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "carol@rcs.local", Password: "carol-pw"})
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode, res.String())
	assert.Contains(t, res.GetHeader("Contact").Value(), "<sip:carol@127.0.0.1:5099>;expires=3600")
}

// Bindings survive a restart on the embedded store; metrics and health
// endpoints answer.
func TestRestartKeepsBindingsAndMetrics(t *testing.T) {
	p := rcsdproc.Start(t)
	provision(t, p, "dave")
	c := dial(t, "UDP", p)
	res, _ := c.register(regReq{user: "dave", callID: "e2e-dave", cseq: 1})
	ch := firstChallenge(t, res)
	res, raw := c.register(regReq{user: "dave", callID: "e2e-dave", cseq: 2, auth: authorize(ch, "dave@rcs.local", "dave-pw", "00000001")})
	require.Equal(t, 200, res.StatusCode, raw)

	body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort))
	assert.Regexp(t, `(?m)^rcsd_registrations_active 1$`, body)
	assert.Regexp(t, `(?m)^rcsd_register_total\{result="ok"\} 1$`, body)
	assert.Regexp(t, `(?m)^rcsd_register_total\{result="challenge"\} 1$`, body)
	assert.Contains(t, body, "rcsd_sip_transaction_duration_seconds_bucket")
	assert.Equal(t, "ok\n", httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", p.HTTPPort)))

	p.Stop()
	assert.Contains(t, p.Logs(), "stopped")
	p2 := rcsdproc.StartIn(t, p.Dir)
	body = httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p2.HTTPPort))
	assert.Regexp(t, `(?m)^rcsd_registrations_active 1$`, body, "binding restored from the embedded store")
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

// A binding that is not refreshed expires and is purged by the timer.
func TestBindingExpiresAndIsPurged(t *testing.T) {
	p := rcsdproc.Start(t, "--registrar.min_expires", "1", "--registrar.purge_interval", "1s")
	provision(t, p, "hank")
	c := dial(t, "UDP", p)
	res, _ := c.register(regReq{user: "hank", callID: "e2e-hank", cseq: 1})
	ch := firstChallenge(t, res)
	res, raw := c.register(regReq{user: "hank", callID: "e2e-hank", cseq: 2, auth: authorize(ch, "hank@rcs.local", "hank-pw", "00000001"),
		contact: "<sip:hank@" + c.local() + ">;expires=2"})
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Contains(t, raw, ";expires=2\r\n")
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort)
	assert.Regexp(t, `(?m)^rcsd_registrations_active 1$`, httpGet(t, metrics))
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`(?m)^rcsd_registrations_active 0$`).MatchString(httpGet(t, metrics))
	}, 6*time.Second, 200*time.Millisecond, "expired binding purged")
}
