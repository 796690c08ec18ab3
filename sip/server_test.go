package sip

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

type testServer struct {
	*Server
	logs *observer.ObservedLogs
}

func startServer(t *testing.T, maxSize int) *testServer {
	t.Helper()
	return startServerAdvertising(t, maxSize, "")
}

func startServerAdvertising(t *testing.T, maxSize int, advertise string) *testServer {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	router := NewRouter("rcsd-test", []string{"path"}, log, prometheus.NewRegistry())
	router.Handle("OPTIONS", func(_ context.Context, req *siplib.Request) *siplib.Response {
		return NewResponse(req, 200, "OK")
	})
	router.Handle("REGISTER", func(_ context.Context, req *siplib.Request) *siplib.Response {
		return NewResponse(req, 200, "OK")
	})
	tlsCfg, _, err := LoadOrCreateCertificate("", "", "", []string{"127.0.0.1"})
	require.NoError(t, err)
	s, err := NewServer(Config{
		Listen:         []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0", "tls://127.0.0.1:0"},
		MaxMessageSize: maxSize, UserAgent: "rcsd-test", TLS: tlsCfg, Advertise: advertise,
	}, router, log)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return &testServer{Server: s, logs: logs}
}

func request(method, ruri, transport, local, extra string) string {
	return method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + local + ";branch=z9hG4bK" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@rcs.local>;tag=a1\r\n" +
		"To: <sip:bob@rcs.local>\r\n" +
		"Call-ID: " + strconv.FormatInt(time.Now().UnixNano(), 36) + "@test\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}

func udpExchange(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer c.Close()
	msg = strings.ReplaceAll(msg, "LOCAL", c.LocalAddr().String())
	_, err = c.Write([]byte(msg))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

func readResponse(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := readHeaders(r)
	require.NoError(t, err)
	return s
}

// readHeaders reads up to the blank line; safe to call from goroutines.
func readHeaders(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		b.WriteString(line)
		if line == "\r\n" {
			return b.String(), nil
		}
	}
}

func TestRequestChecks(t *testing.T) {
	s := startServer(t, 65535)
	addr := s.Addr("udp")
	tests := []struct {
		name  string
		msg   string
		want  string
		extra []string
	}{
		{"ok", request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", ""), "SIP/2.0 200 OK", nil},
		{"unknown method", request("PUBLISH", "sip:rcs.local", "UDP", "LOCAL", ""), "SIP/2.0 405 Method Not Allowed",
			[]string{"Allow: ACK, OPTIONS, REGISTER\r\n", "Supported: path\r\n"}},
		{"unsupported scheme", request("OPTIONS", "mailto:bob@rcs.local", "UDP", "LOCAL", ""), "SIP/2.0 416 Unsupported URI Scheme", nil},
		{"require unknown", request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", "Require: foo, path\r\n"), "SIP/2.0 420 Bad Extension",
			[]string{"Unsupported: foo\r\n"}},
		{"proxy-require unknown (rcsd is the first hop)", request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", "Proxy-Require: sec-agree\r\n"), "SIP/2.0 420 Bad Extension",
			[]string{"Unsupported: sec-agree\r\n"}},
		{"missing max-forwards", strings.Replace(request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", ""), "Max-Forwards: 70\r\n", "", 1),
			"SIP/2.0 400 Missing Max-Forwards header", nil},
		{"missing from", strings.Replace(request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", ""), "From: <sip:alice@rcs.local>;tag=a1\r\n", "", 1),
			"SIP/2.0 400 Missing From header", nil},
		{"cseq method mismatch", strings.Replace(request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", ""), "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1),
			"SIP/2.0 400 CSeq method does not match", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := udpExchange(t, addr, tt.msg)
			assert.True(t, strings.HasPrefix(got, tt.want+"\r\n"), got)
			assert.Contains(t, got, "Server: rcsd-test\r\n")
			assert.Regexp(t, `;received=127\.0\.0\.1;rport=\d+`, got)
			for _, e := range tt.extra {
				assert.Contains(t, got, e)
			}
		})
	}
	assert.NotZero(t, s.logs.FilterMessage("request rejected").Len(), "every rejection is logged")
}

func TestOversizedDatagram(t *testing.T) {
	s := startServer(t, 2048)
	msg := request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", "X-Pad: "+strings.Repeat("x", 3000)+"\r\n")
	got := udpExchange(t, s.Addr("udp"), msg)
	assert.True(t, strings.HasPrefix(got, "SIP/2.0 513 Message Too Large\r\n"), got)
	assert.Equal(t, 1, s.logs.FilterMessage("oversized datagram refused").Len())
}

// Garbage on a TCP connection closes that connection, logs why, and
// leaves the server serving others.
func TestGarbageOnTCPAndBadTLS(t *testing.T) {
	s := startServer(t, 65535)
	c, err := net.Dial("tcp", s.Addr("tcp"))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("\x16\x03\x01 this is not SIP at all\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
	_, err = io.ReadAll(c)
	assert.NoError(t, err, "connection closed by the server (EOF)")

	// A plain-text client on the TLS port fails the handshake and is closed.
	p, err := net.Dial("tcp", s.Addr("tls"))
	require.NoError(t, err)
	defer p.Close()
	_, _ = p.Write([]byte(request("OPTIONS", "sip:rcs.local", "TCP", p.LocalAddr().String(), "")))
	require.NoError(t, p.SetReadDeadline(time.Now().Add(3*time.Second)))
	data, _ := io.ReadAll(p)
	assert.NotContains(t, string(data), "SIP/2.0")

	// Still serving.
	got := udpExchange(t, s.Addr("udp"), request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", ""))
	assert.True(t, strings.HasPrefix(got, "SIP/2.0 200 OK"), got)
	tc, err := tls.Dial("tcp", s.Addr("tls"), &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, err)
	defer tc.Close()
	_, err = tc.Write([]byte(request("OPTIONS", "sip:rcs.local", "TLS", tc.LocalAddr().String(), "")))
	require.NoError(t, err)
	require.NoError(t, tc.SetReadDeadline(time.Now().Add(3*time.Second)))
	assert.True(t, strings.HasPrefix(readResponse(t, bufio.NewReader(tc)), "SIP/2.0 200 OK"))
}

// A request rcsd originates toward a handset that registered over TCP
// travels down that same connection (RFC 5626 flow), not a new one.
func TestRequestReusesHandsetConnection(t *testing.T) {
	for _, tp := range []string{"tcp", "tls"} {
		t.Run(tp, func(t *testing.T) {
			s := startServerAdvertising(t, 65535, "sbc.rcs.example:5999")
			var c net.Conn
			var err error
			if tp == "tls" {
				c, err = tls.Dial("tcp", s.Addr("tls"), &tls.Config{InsecureSkipVerify: true})
			} else {
				c, err = net.Dial("tcp", s.Addr("tcp"))
			}
			require.NoError(t, err)
			defer c.Close()
			r := bufio.NewReader(c)
			_, err = c.Write([]byte(request("REGISTER", "sip:rcs.local", strings.ToUpper(tp), c.LocalAddr().String(), "")))
			require.NoError(t, err)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
			require.True(t, strings.HasPrefix(readResponse(t, r), "SIP/2.0 200 OK"))

			// The handset answers whatever arrives on its connection.
			got := make(chan string, 1)
			go func() {
				msg, err := readHeaders(r)
				got <- msg
				if err != nil {
					return
				}
				res := "SIP/2.0 200 OK\r\n"
				for _, l := range strings.Split(msg, "\r\n")[1:] {
					for _, h := range []string{"Via:", "From:", "To:", "Call-ID:", "CSeq:"} {
						if strings.HasPrefix(l, h) {
							res += l + "\r\n"
						}
					}
				}
				_, _ = c.Write([]byte(res + "Content-Length: 0\r\n\r\n"))
			}()
			req := siplib.NewRequest(siplib.OPTIONS, siplib.Uri{Scheme: "sip", User: "alice", Host: "192.0.2.1", Port: 5060})
			req.AppendHeader(&siplib.FromHeader{Address: siplib.Uri{Scheme: "sip", Host: "rcs.local"}, Params: siplib.HeaderParams{{K: "tag", V: "srv"}}})
			req.AppendHeader(&siplib.ToHeader{Address: siplib.Uri{Scheme: "sip", User: "alice", Host: "rcs.local"}})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := s.Request(ctx, req, Flow{Transport: tp, Source: c.LocalAddr().String(), Contact: "sip:alice@192.0.2.1:5060"})
			require.NoError(t, err)
			assert.Equal(t, 200, res.StatusCode)
			msg := <-got
			assert.True(t, strings.HasPrefix(msg, "OPTIONS sip:alice@192.0.2.1:5060 SIP/2.0\r\n"), msg)
			assert.Regexp(t, `(?m)^Via: SIP/2.0/`+strings.ToUpper(tp)+` sbc\.rcs\.example:5999;branch=z9hG4bK`, msg, "sip.advertise in the Via")
		})
	}
}

// Over UDP the request leaves from the listening socket (so the handset's
// NAT pinhole holds); one too large for UDP goes over TCP to the contact.
func TestRequestOverUDPAndFallback(t *testing.T) {
	s := startServer(t, 65535)
	hs, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer hs.Close()
	tcpHs, err := net.Listen("tcp", hs.LocalAddr().String())
	require.NoError(t, err)
	defer tcpHs.Close()

	answer := func(msg string) string {
		res := "SIP/2.0 200 OK\r\n"
		for _, l := range strings.Split(msg, "\r\n")[1:] {
			for _, h := range []string{"Via:", "From:", "To:", "Call-ID:", "CSeq:"} {
				if strings.HasPrefix(l, h) {
					res += l + "\r\n"
				}
			}
		}
		return res + "Content-Length: 0\r\n\r\n"
	}
	send := func(body string) (*siplib.Response, error) {
		req := siplib.NewRequest(siplib.MESSAGE, siplib.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: hs.LocalAddr().(*net.UDPAddr).Port})
		req.AppendHeader(&siplib.FromHeader{Address: siplib.Uri{Scheme: "sip", Host: "rcs.local"}, Params: siplib.HeaderParams{{K: "tag", V: "srv"}}})
		req.AppendHeader(&siplib.ToHeader{Address: siplib.Uri{Scheme: "sip", User: "alice", Host: "rcs.local"}})
		req.AppendHeader(siplib.NewHeader("Content-Type", "text/plain"))
		req.SetBody([]byte(body))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.Request(ctx, req, Flow{Transport: "udp", Source: hs.LocalAddr().String(), Local: s.Addr("udp"),
			Contact: fmt.Sprintf("sip:alice@%s", hs.LocalAddr().String())})
	}

	// The handset has talked to the listener first (it registered).
	_, err = hs.WriteTo([]byte(request("OPTIONS", "sip:rcs.local", "UDP", hs.LocalAddr().String(), "")), mustUDPAddr(t, s.Addr("udp")))
	require.NoError(t, err)
	buf := make([]byte, 65535)
	require.NoError(t, hs.SetReadDeadline(time.Now().Add(3*time.Second)))
	_, _, err = hs.ReadFrom(buf)
	require.NoError(t, err)

	// Small: UDP from the listener's port.
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 65535)
		_ = hs.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := hs.ReadFrom(buf)
		if err != nil {
			done <- err
			return
		}
		if from.String() != s.Addr("udp") {
			done <- fmt.Errorf("request came from %s, not the listener %s", from, s.Addr("udp"))
			return
		}
		_, err = hs.WriteTo([]byte(answer(string(buf[:n]))), from)
		done <- err
	}()
	res, err := send("hello")
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	require.NoError(t, <-done)

	// Large: TCP to the contact, Via says TCP.
	go func() {
		c, err := tcpHs.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		hdr, err := readHeaders(r)
		if err != nil {
			done <- err
			return
		}
		if !strings.Contains(hdr, "Via: SIP/2.0/TCP ") {
			done <- fmt.Errorf("Via not switched to TCP:\n%s", hdr)
			return
		}
		_, _ = io.CopyN(io.Discard, r, 3000)
		_, err = c.Write([]byte(answer(hdr)))
		done <- err
	}()
	res, err = send(strings.Repeat("x", 3000))
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	require.NoError(t, <-done)
}

func mustUDPAddr(t *testing.T, s string) *net.UDPAddr {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", s)
	require.NoError(t, err)
	return a
}

// WebSocket clients (RFC 7118) register like the others, over ws:// and
// wss://.
func TestWebSocketListeners(t *testing.T) {
	core, _ := observer.New(zap.InfoLevel)
	log := zap.New(core)
	router := NewRouter("rcsd-test", []string{"path"}, log, prometheus.NewRegistry())
	router.Handle("REGISTER", func(_ context.Context, req *siplib.Request) *siplib.Response {
		return NewResponse(req, 200, "OK")
	})
	tlsCfg, _, err := LoadOrCreateCertificate("", "", "", []string{"127.0.0.1"})
	require.NoError(t, err)
	s, err := NewServer(Config{Listen: []string{"ws://127.0.0.1:0", "wss://127.0.0.1:0"}, MaxMessageSize: 65535, UserAgent: "t", TLS: tlsCfg}, router, log)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	defer s.Shutdown(context.Background())

	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			d := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: &tls.Config{InsecureSkipVerify: true}}
			conn, _, _, err := d.Dial(context.Background(), scheme+"://"+s.Addr(scheme))
			require.NoError(t, err)
			defer conn.Close()
			// Several requests on one connection: refreshes use the same flow.
			for i := 0; i < 3; i++ {
				require.NoError(t, wsutil.WriteClientText(conn, []byte(request("REGISTER", "sip:rcs.local", strings.ToUpper(scheme), "df7jal23ls0d.invalid", ""))))
				require.NoError(t, conn.SetReadDeadline(time.Now().Add(3*time.Second)))
				data, err := wsutil.ReadServerText(conn)
				require.NoError(t, err)
				assert.True(t, strings.HasPrefix(string(data), "SIP/2.0 200 OK\r\n"), string(data))
			}
		})
	}
}

// A message over the size limit on a connection closes it (there is no
// message boundary to answer on), and the server keeps serving.
func TestOversizedOnTCPClosesConnection(t *testing.T) {
	s := startServer(t, 2048)
	c, err := net.Dial("tcp", s.Addr("tcp"))
	require.NoError(t, err)
	defer c.Close()
	msg := request("OPTIONS", "sip:rcs.local", "TCP", c.LocalAddr().String(), "X-Pad: "+strings.Repeat("x", 4000)+"\r\n")
	_, _ = c.Write([]byte(msg))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
	data, err := io.ReadAll(c)
	assert.NoError(t, err, "closed by the server")
	assert.NotContains(t, string(data), "200 OK")
	got := udpExchange(t, s.Addr("udp"), request("OPTIONS", "sip:rcs.local", "UDP", "LOCAL", ""))
	assert.True(t, strings.HasPrefix(got, "SIP/2.0 200 OK"), got)
}
