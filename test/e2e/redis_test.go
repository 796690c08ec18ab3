package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// startRedis runs a redis-server on a free loopback port for the test
// (make test installs it; its absence fails the test).
func startRedis(t *testing.T) string {
	t.Helper()
	r := newRedisServer(t, "--save", "", "--appendonly", "no")
	r.Start()
	return "redis://" + r.Addr + "/0"
}

// metricValue returns the value of an unlabelled metric in a /metrics page.
func metricValue(t *testing.T, page, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, l)
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// readyzIs reports whether p's /readyz answers code.
func readyzIs(p *rcsdproc.Proc, code int) bool {
	r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", p.HTTPPort))
	if err != nil {
		return false
	}
	r.Body.Close()
	return r.StatusCode == code
}

// TestRedisBackend runs rcsd on Redis: provisioning, registration, a
// message stored for an offline user, an rcsd restart (the state is in
// Redis, not the process), and the delivery when the user registers.
//
// Redis wants a password, which must not appear in rcsd's logs.
func TestRedisBackend(t *testing.T) {
	r := newRedisServer(t, "--save", "", "--appendonly", "no", "--requirepass", "e2e-redis-s3cret")
	r.Start()
	url := "redis://:e2e-redis-s3cret@" + r.Addr + "/0"
	p := rcsdproc.Start(t, "--storage", url)
	assert.Contains(t, p.Logs(), "redis://:xxxxx@"+r.Addr+"/0", "the storage URL, redacted, in the start-up log")
	provision(t, p, "rosa", "rick")
	rosa := dial(t, "UDP", p)
	login(t, rosa, "rosa")
	rosa.send(rcsMessage(rosa, "rosa", "rick", "m1redis", "kept in redis"))
	res, raw := rosa.recv()
	require.Equal(t, 202, res.StatusCode, raw)
	p.Stop()

	p = rcsdproc.Start(t, "--storage", url)
	rick := dial(t, "UDP", p)
	rick.send(fmt.Sprintf("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKr1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:rick@rcs.local>;tag=r\r\nTo: <sip:rick@rcs.local>\r\nCall-ID: rick-reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:rick@%s>\r\nContent-Length: 0\r\n\r\n", rick.local(), rick.local()))
	res, _ = rick.recv()
	ch := firstChallenge(t, res)
	rick.send(fmt.Sprintf("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKr2;rport\r\nMax-Forwards: 70\r\nFrom: <sip:rick@rcs.local>;tag=r\r\nTo: <sip:rick@rcs.local>\r\nCall-ID: rick-reg\r\nCSeq: 2 REGISTER\r\nContact: <sip:rick@%s>\r\nAuthorization: %s\r\nContent-Length: 0\r\n\r\n",
		rick.local(), rick.local(), authorize(ch, "rick@rcs.local", "rick-pw", "00000001")))
	var got *siplib.Request
	var gotRaw string
	for got == nil {
		msg, raw := rick.readAny(5 * time.Second)
		if req, ok := msg.(*siplib.Request); ok {
			got, gotRaw = req, raw
		}
	}
	assert.Contains(t, gotRaw, "P-Asserted-Identity: <sip:rosa@rcs.local>\r\n")
	assert.Contains(t, gotRaw, "kept in redis")
	rick.answer(got, 200)
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort)), "\nrcsd_messages_stored 0\n")
	}, 5*time.Second, 50*time.Millisecond)
	m := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort))
	assert.Contains(t, m, "\nrcsd_registrations_active 2\n", "rosa's binding from before the restart and rick's, both in Redis")
	assert.NotContains(t, p.Logs(), "e2e-redis-s3cret")
}

// TestRedisOutage: while Redis is down rcsd answers what needs storage
// with 503 + Retry-After (never a 200 for what it could not store), says
// so in /readyz and rcsd_storage_up, and recovers by itself when Redis is
// back.
func TestRedisOutage(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	require.NoError(t, err, "redis-server not found: make test installs it")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir)
		require.NoError(t, cmd.Start())
		require.Eventually(t, func() bool {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err == nil
		}, 10*time.Second, 50*time.Millisecond)
		return cmd
	}
	redis := start()
	t.Cleanup(func() { _ = redis.Process.Kill(); _ = redis.Wait() })
	p := rcsdproc.Start(t, "--storage", "redis://"+addr+"/0")
	provision(t, p, "otto")
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort)
	assert.Contains(t, httpGet(t, metrics), "\nrcsd_storage_up 1\n")

	require.NoError(t, redis.Process.Kill())
	_ = redis.Wait()
	c := dial(t, "UDP", p)
	res, _ := c.register(regReq{user: "otto", callID: "otto-1", cseq: 1, contact: "<sip:otto@" + c.local() + ">"})
	ch := firstChallenge(t, res) // nonces need no storage
	res, raw := c.register(regReq{user: "otto", callID: "otto-1", cseq: 2, contact: "<sip:otto@" + c.local() + ">", auth: authorize(ch, "otto@rcs.local", "otto-pw", "00000001")})
	require.Equal(t, 503, res.StatusCode, raw)
	assert.Contains(t, raw, "Retry-After: ")
	assert.True(t, readyzIs(p, 503), "/readyz while Redis is down")
	assert.Contains(t, httpGet(t, metrics), "\nrcsd_storage_up 0\n")

	redis = start()
	require.Eventually(t, func() bool { return readyzIs(p, 200) }, 15*time.Second, 200*time.Millisecond, "reconnected by itself")
	res, raw = c.register(regReq{user: "otto", callID: "otto-1", cseq: 3, contact: "<sip:otto@" + c.local() + ">", auth: authorize(ch, "otto@rcs.local", "otto-pw", "00000002")})
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Contains(t, httpGet(t, metrics), "\nrcsd_storage_up 1\n")
}

// TestRedisStalled: a Redis that hangs without closing its connections
// (SIGSTOP; in production a long blocking command, a stuck disk) must not
// hang rcsd: what needs storage is answered 503 + Retry-After within the
// storage timeout — a MESSAGE for an offline user is never 202 — and
// /readyz says so; when Redis moves again, so does rcsd.
func TestRedisStalled(t *testing.T) {
	r := newRedisServer(t, "--save", "", "--appendonly", "no")
	r.Start()
	p := rcsdproc.Start(t, "--storage", "redis://"+r.Addr+"/0")
	provision(t, p, "sue", "sam")
	sue := dial(t, "UDP", p)
	login(t, sue, "sue")

	r.Signal(syscall.SIGSTOP)
	defer r.Signal(syscall.SIGCONT) // before the cleanup's SIGKILL too
	start := time.Now()
	sue.send(rcsMessage(sue, "sue", "sam", "m1stall", "not stored"))
	res, raw := sue.recvWithin(10 * time.Second)
	took := time.Since(start)
	require.Equal(t, 503, res.StatusCode, raw)
	assert.Contains(t, raw, "Retry-After: ")
	assert.Less(t, took, 5*time.Second, "answered within one storage timeout (3 s), not when Redis comes back")
	t.Logf("MESSAGE: 503 after %v", took.Round(10*time.Millisecond))

	// A REGISTER likewise.
	reg := dial(t, "UDP", p)
	start = time.Now()
	res, raw = reg.register(regReq{user: "sam", callID: "sam-stall", cseq: 1, contact: "<sip:sam@" + reg.local() + ">"})
	if res.StatusCode == 401 {
		ch := firstChallenge(t, res)
		res, raw = reg.register(regReq{user: "sam", callID: "sam-stall", cseq: 2, contact: "<sip:sam@" + reg.local() + ">",
			auth: authorize(ch, "sam@rcs.local", "sam-pw", "00000001")})
	}
	took = time.Since(start)
	require.Equal(t, 503, res.StatusCode, raw)
	assert.Contains(t, raw, "Retry-After: ")
	assert.Less(t, took, 5*time.Second, "answered within one storage timeout")
	t.Logf("REGISTER: 503 after %v", took.Round(10*time.Millisecond))
	require.Eventually(t, func() bool { return readyzIs(p, 503) }, 10*time.Second, 200*time.Millisecond, "/readyz reports the stalled store")
	m := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort))
	assert.Contains(t, m, "\nrcsd_storage_up 0\n")
	assert.GreaterOrEqual(t, metricValue(t, m, "rcsd_storage_ping_seconds"), 0.9, "the scrape's ping waited its 1s")

	r.Signal(syscall.SIGCONT)
	require.Eventually(t, func() bool { return readyzIs(p, 200) }, 15*time.Second, 200*time.Millisecond, "ready again")
	m = httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort))
	assert.Contains(t, m, "\nrcsd_storage_up 1\n")
	assert.Less(t, metricValue(t, m, "rcsd_storage_ping_seconds"), 0.5)
	sue.send(rcsMessage(sue, "sue", "sam", "m2stall", "stored now"))
	res, raw = sue.recvWithin(10 * time.Second)
	require.Equal(t, 202, res.StatusCode, raw)
}
