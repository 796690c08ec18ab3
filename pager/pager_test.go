package pager

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"rcsd/ims"
	rsip "rcsd/sip"
	"rcsd/storage"
	"rcsd/storage/memory"
)

// handset is a raw UDP socket standing in for a phone: the test reads and
// writes the wire bytes itself.
type handset struct {
	t    *testing.T
	conn *net.UDPConn
}

func newHandset(t *testing.T) *handset {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &handset{t: t, conn: c}
}

func (h *handset) addr() string { return h.conn.LocalAddr().String() }

func (h *handset) send(to, msg string) {
	h.t.Helper()
	a, err := net.ResolveUDPAddr("udp", to)
	require.NoError(h.t, err)
	_, err = h.conn.WriteTo([]byte(msg), a)
	require.NoError(h.t, err)
}

// read returns the next datagram and its sender, "" on timeout.
func (h *handset) read(d time.Duration) (string, string) {
	buf := make([]byte, 65535)
	_ = h.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := h.conn.ReadFrom(buf)
	if err != nil {
		return "", ""
	}
	return string(buf[:n]), from.String()
}

// answer builds a response to a request read off the wire.
func answer(req string, code int, reason string) string {
	res := "SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n"
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n")[1:] {
		for _, h := range []string{"Via:", "From:", "Call-ID:", "CSeq:"} {
			if strings.HasPrefix(l, h) {
				res += l + "\r\n"
			}
		}
		if strings.HasPrefix(l, "To:") {
			res += l + ";tag=hs\r\n"
		}
	}
	return res + "Content-Length: 0\r\n\r\n"
}

func message(from, to, local, branch string, extra ...string) string {
	body := "hello bob"
	return "MESSAGE " + to + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <" + from + ">;tag=f1\r\n" +
		"To: <" + to + ">\r\n" +
		"Call-ID: " + branch + "@test\r\n" +
		"CSeq: 1 MESSAGE\r\n" +
		"Content-Type: text/plain\r\n" +
		"Conversation-ID: conv-1\r\nContribution-ID: contrib-1\r\n" +
		strings.Join(extra, "") +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

type env struct {
	srv    *rsip.Server
	store  *memory.Store
	p      *Pager
	router *rsip.Router
}

func start(t *testing.T, route *ims.Route, mutate ...func(*Options)) *env {
	t.Helper()
	return startWith(t, route, nil, mutate...)
}

// startWith is start with the pager's view of the store wrapped (faults).
func startWith(t *testing.T, route *ims.Route, wrap func(storage.Store) storage.Store, mutate ...func(*Options)) *env {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	router := rsip.NewRouter("IM-serv/OMA1.0 rcsd-test", []string{"path", RequireRecipientList}, log, prometheus.NewRegistry())
	if route == nil {
		router.Gate(ims.StripAsserted(log))
	}
	tlsCfg, _, err := rsip.LoadOrCreateCertificate("", "", "", []string{"127.0.0.1"})
	require.NoError(t, err)
	srv, err := rsip.NewServer(rsip.Config{Listen: []string{"udp://127.0.0.1:0"}, MaxMessageSize: 65535, UserAgent: "rcsd-test", TLS: tlsCfg}, router, log)
	require.NoError(t, err)
	opts := Options{Route: route, UserAgent: "IM-serv/OMA1.0 rcsd-test", Domain: "rcs.local", DeliveryTimeout: 3 * time.Second,
		RetryMin: time.Second, RetryMax: 2 * time.Second, SweepInterval: 100 * time.Millisecond}
	for _, m := range mutate {
		m(&opts)
	}
	var ps storage.Store = store
	if wrap != nil {
		ps = wrap(store)
	}
	p := New(opts, ps, srv, log, NewMetrics(prometheus.NewRegistry(), nil))
	t.Cleanup(p.Close)
	router.HandleTx("MESSAGE", p.ServeSIP)
	router.HandleTx("OPTIONS", p.ServeOPTIONS)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &env{srv: srv, store: store, p: p, router: router}
}

func (e *env) bind(t *testing.T, aor string, h *handset, key string) {
	t.Helper()
	_, err := e.store.UpdateBindings(context.Background(), aor, time.Now(), func(cur []storage.Binding) ([]storage.Binding, error) {
		return append(cur, storage.Binding{AOR: aor, Contact: "sip:" + key + "@" + h.addr(), CallID: key, CSeq: 1,
			Expires: time.Now().Add(time.Hour), Transport: "udp", Source: h.addr(), Local: e.srv.Addr("udp")}), nil
	})
	require.NoError(t, err)
}

func status(msg string) int {
	if !strings.HasPrefix(msg, "SIP/2.0 ") || len(msg) < 11 {
		return 0
	}
	n, _ := strconv.Atoi(msg[8:11])
	return n
}

func header(msg, name string) string {
	m := regexp.MustCompile(`(?mi)^` + regexp.QuoteMeta(name) + `: *(.*?)\r$`).FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	return m[1]
}

// readFinal skips provisional responses and retransmitted requests.
func readFinal(h *handset) string {
	for {
		msg, _ := h.read(5 * time.Second)
		if msg == "" || status(msg) >= 200 {
			return msg
		}
	}
}

func TestStandaloneDelivery(t *testing.T) {
	e := start(t, nil)
	alice, bob1, bob2 := newHandset(t), newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	e.bind(t, "sip:bob@rcs.local", bob1, "bob1")
	e.bind(t, "sip:bob@rcs.local", bob2, "bob2")
	srvAddr := e.srv.Addr("udp")

	// A forged P-Asserted-Identity from the handset is stripped.
	req := message("sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-m1", "P-Asserted-Identity: <sip:boss@rcs.local>\r\n")
	alice.send(srvAddr, req)
	alice.send(srvAddr, req) // a UDP retransmission while the delivery is pending

	got1, from1 := bob1.read(5 * time.Second)
	got2, _ := bob2.read(5 * time.Second)
	require.NotEmpty(t, got1, "forked to the first contact")
	require.NotEmpty(t, got2, "forked to the second contact")
	assert.Equal(t, srvAddr, from1, "sent from the listening socket the handset registered to")
	assert.True(t, strings.HasPrefix(got1, "MESSAGE sip:bob1@"+bob1.addr()+" SIP/2.0\r\n"), got1)
	assert.Equal(t, "<sip:alice@rcs.local>", header(got1, "P-Asserted-Identity"), "asserted from the registration, not the forged one")
	assert.Equal(t, "conv-1", header(got1, "Conversation-ID"))
	assert.Equal(t, "contrib-1", header(got1, "Contribution-ID"))
	assert.Equal(t, "IM-serv/OMA1.0 rcsd-test", header(got1, "User-Agent"))
	assert.True(t, strings.HasSuffix(got1, "\r\n\r\nhello bob"), "body unchanged")
	bob2.send(srvAddr, answer(got2, 480, "Temporarily Unavailable"))
	bob1.send(srvAddr, answer(got1, 200, "OK"))

	res := readFinal(alice)
	assert.Equal(t, 200, status(res), res)
	// The retransmission was absorbed by the transaction: one delivery only.
	for {
		again, _ := bob1.read(300 * time.Millisecond)
		if again == "" {
			break
		}
		assert.NotEqual(t, header(got1, "Call-ID"), "", again)
		assert.Equal(t, header(got1, "Call-ID"), header(again, "Call-ID"), "only retransmissions of the one delivery")
	}
}

func TestStandaloneRefusals(t *testing.T) {
	e := start(t, nil)
	alice, stranger, bob := newHandset(t), newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	e.bind(t, "sip:bob@rcs.local", bob, "bob")
	srvAddr := e.srv.Addr("udp")

	stranger.send(srvAddr, message("sip:alice@rcs.local", "sip:bob@rcs.local", stranger.addr(), "z9hG4bK-s1"))
	res := readFinal(stranger)
	assert.Equal(t, 403, status(res), res)
	msg, _ := bob.read(300 * time.Millisecond)
	assert.Empty(t, msg, "nothing delivered for an unproven sender")

	// The recipient refuses for good: its status reaches the sender and
	// nothing is stored.
	alice.send(srvAddr, message("sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-s3"))
	got, _ := bob.read(5 * time.Second)
	require.NotEmpty(t, got)
	bob.send(srvAddr, answer(got, 415, "Unsupported Media Type"))
	res = readFinal(alice)
	assert.Equal(t, 415, status(res), res)
	n, err := e.store.CountMessages(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestIMSASDelivery(t *testing.T) {
	scscf := newHandset(t)
	route, err := ims.ParseRoute("sip:" + scscf.addr() + ";transport=udp")
	require.NoError(t, err)
	e := start(t, &route)
	core := newHandset(t)
	srvAddr := e.srv.Addr("udp")

	core.send(srvAddr, message("sip:alice@rcs.local", "tel:+8613800000002", core.addr(), "z9hG4bK-i1", "P-Asserted-Identity: \"Alice\" <sip:alice@rcs.local>\r\n"))
	got, _ := scscf.read(5 * time.Second)
	require.NotEmpty(t, got)
	assert.True(t, strings.HasPrefix(got, "MESSAGE tel:+8613800000002 SIP/2.0\r\n"), got)
	assert.Equal(t, "<sip:"+scscf.addr()+";transport=udp;lr>", header(got, "Route"))
	assert.Equal(t, "<sip:alice@rcs.local>", header(got, "P-Asserted-Identity"))
	scscf.send(srvAddr, answer(got, 202, "Accepted"))
	res := readFinal(core)
	assert.Equal(t, 202, status(res), res)

	// No asserted identity from the core: refused, nothing sent on.
	core.send(srvAddr, message("sip:alice@rcs.local", "sip:bob@rcs.local", core.addr(), "z9hG4bK-i2"))
	res = readFinal(core)
	assert.Equal(t, 403, status(res), res)
	msg, _ := scscf.read(300 * time.Millisecond)
	assert.Empty(t, msg)
}

// A handset registered through an edge proxy (Path) reaches whichever
// node the proxy picks, over that proxy's own connection: the proxy's
// address proves the sender, not the port its REGISTER came from. Without
// Path the exact flow is required (TestStandaloneRefusals).
func TestSenderBehindEdgeProxy(t *testing.T) {
	e := start(t, nil)
	proxy, bob := newHandset(t), newHandset(t)
	e.bind(t, "sip:bob@rcs.local", bob, "bob")
	now := time.Now()
	_, err := e.store.UpdateBindings(context.Background(), "sip:carol@rcs.local", now, func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{{AOR: "sip:carol@rcs.local", Contact: "sip:carol@192.0.2.7:5060", CallID: "c", CSeq: 1,
			Expires: now.Add(time.Hour), Transport: "udp", Source: "127.0.0.1:1", Path: []string{"<sip:127.0.0.1:1;lr>"}}}, nil
	})
	require.NoError(t, err)
	proxy.send(e.srv.Addr("udp"), message("sip:carol@rcs.local", "sip:bob@rcs.local", proxy.addr(), "z9hG4bK-edge"))
	got, _ := bob.read(5 * time.Second)
	require.NotEmpty(t, got, "accepted from the proxy's host on another port")
	assert.Equal(t, "<sip:carol@rcs.local>", header(got, "P-Asserted-Identity"))
}
