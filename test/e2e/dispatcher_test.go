package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// TestKamailioDispatcher runs the README's "Running several nodes": one
// Redis, two rcsd nodes and Kamailio with deploy/kamailio/kamailio.cfg (the
// shipped file, ports given with -A) in front of them. Handsets register
// and exchange MESSAGEs through Kamailio while registered on different
// nodes (the nodes forward to each other); then the node of one handset
// stops, a message for it is stored, and when it registers again through
// Kamailio it lands on the other node and gets the message.
func TestKamailioDispatcher(t *testing.T) {
	_, err := exec.LookPath("kamailio") // before anything starts
	require.NoError(t, err, "kamailio not found: `make deps` (scripts/install-deps.sh) installs it")
	url := startRedis(t)
	node := func(id string) *rcsdproc.Proc {
		return rcsdproc.Start(t, "--storage", url, "--node.id", id, "--node.ttl", "3s",
			"--auth.nonce_secret", "dispatcher-e2e-shared-secret",
			"--registrar.path_requires_support", "false")
	}
	nodes := []*rcsdproc.Proc{node("n1"), node("n2")}
	for _, p := range nodes { // each knows the other alive (heartbeats every node.ttl/3)
		require.Eventually(t, func() bool {
			return strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort)), "\nrcsd_cluster_nodes 2\n")
		}, 10*time.Second, 100*time.Millisecond, "rcsd_cluster_nodes 2")
	}
	kport := startKamailio(t, nodes)
	provision(t, nodes[0], "alice", "bob")

	registered := func() [2]int { // successful REGISTERs each node answered
		var n [2]int
		for i, p := range nodes {
			res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort))
			if err != nil {
				continue // a node that is gone
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if m := regexp.MustCompile(`(?m)^rcsd_register_total\{result="ok"\} (\d+)$`).FindSubmatch(b); m != nil {
				n[i], _ = strconv.Atoi(string(m[1]))
			}
		}
		return n
	}
	onNode := func(before, after [2]int) int {
		t.Helper()
		for i := range after {
			if after[i] > before[i] {
				return i
			}
		}
		t.Fatalf("no node registered it: %v -> %v", before, after)
		return -1
	}

	// alice over UDP, bob over TCP and without "Supported: path" (which
	// rcsd would refuse with 421 but for path_requires_support=false).
	alice := dialKamailio(t, "UDP", kport)
	bob := dialKamailio(t, "TCP", kport)
	n0 := registered()
	res, raw := dsRegister(alice, "alice", 1, "", true)
	ch := firstChallenge(t, res)
	res, raw = dsRegister(alice, "alice", 2, authorize(ch, "alice@rcs.local", "alice-pw", "00000001"), true)
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Regexp(t, `(?m)^Path: <sip:127\.0\.0\.1:\d+;transport=tcp;lr;received=sip:`+regexp.QuoteMeta(alice.local())+`>\r$`, raw, "Kamailio's Path, echoed to a handset that supports it")
	n1 := registered()
	aliceNode := onNode(n0, n1)
	res, _ = dsRegister(bob, "bob", 1, "", false)
	ch = firstChallenge(t, res)
	res, raw = dsRegister(bob, "bob", 2, authorize(ch, "bob@rcs.local", "bob-pw", "00000001"), false)
	require.Equal(t, 200, res.StatusCode, raw)
	assert.NotContains(t, raw, "\r\nPath:", "not echoed to a handset that did not say it supports Path")
	bobNode := onNode(n1, registered())
	require.NotEqual(t, aliceNode, bobNode, "alice and bob must hash (From URI) onto different nodes for this test; pick other names")

	// alice -> bob: alice's node forwards to bob's, which sends it down bob's
	// TCP connection through Kamailio.
	alice.send(rcsMessage(alice, "alice", "bob", "m1ds", "hello bob across nodes"))
	req, reqRaw := dsReadRequest(bob, 10*time.Second)
	assert.Equal(t, siplib.MESSAGE, req.Method)
	assert.Contains(t, reqRaw, "P-Asserted-Identity: <sip:alice@rcs.local>\r\n")
	assert.Regexp(t, `(?m)^From: <sip:alice@rcs\.local>;tag=`, reqRaw)
	assert.Contains(t, reqRaw, "hello bob across nodes")
	bob.answer(req, 200)
	res, raw = dsReadResponse(alice, 10*time.Second)
	assert.Equal(t, 200, res.StatusCode, raw)

	// bob -> alice, the other way.
	bob.send(rcsMessage(bob, "bob", "alice", "m2ds", "hello alice across nodes"))
	req, reqRaw = dsReadRequest(alice, 10*time.Second)
	assert.Contains(t, reqRaw, "P-Asserted-Identity: <sip:bob@rcs.local>\r\n")
	assert.Regexp(t, `(?m)^From: <sip:bob@rcs\.local>;tag=`, reqRaw)
	assert.Contains(t, reqRaw, "hello alice across nodes")
	alice.answer(req, 200)
	res, raw = dsReadResponse(bob, 10*time.Second)
	assert.Equal(t, 200, res.StatusCode, raw)

	// Kamailio refuses an identity not registered over the sending flow:
	// rcsd sees one connection from Kamailio for all handsets.
	bob.send(rcsMessage(bob, "alice", "bob", "m3ds", "spoofed"))
	res, raw = dsReadResponse(bob, 10*time.Second)
	assert.Equal(t, 403, res.StatusCode, raw)

	// alice's node crashes; a message for her is stored by bob's node.
	nodes[aliceNode].Kill()     // a crash: no goodbye to the store or to Kamailio
	time.Sleep(4 * time.Second) // node.ttl: its bindings now count as unreachable
	bob.send(rcsMessage(bob, "bob", "alice", "m4ds", "kept while alice's node was down"))
	res, raw = dsReadResponse(bob, 15*time.Second)
	require.Equal(t, 202, res.StatusCode, raw)

	// alice registers again through Kamailio: she lands on the other node,
	// which delivers the stored message.
	before := registered()
	start := time.Now()
	alice.send(dsRegisterRequest(alice, "alice", 3, "", true))
	res, _ = dsReadResponse(alice, 30*time.Second)
	t.Logf("REGISTER after the crash answered in %v", time.Since(start))
	ch = firstChallenge(t, res)
	alice.send(dsRegisterRequest(alice, "alice", 4, authorize(ch, "alice@rcs.local", "alice-pw", "00000001"), true))
	var ok *siplib.Response
	req = nil
	for deadline := time.Now().Add(15 * time.Second); (ok == nil || req == nil) && time.Now().Before(deadline); {
		msg, raw := dsRead(alice, time.Until(deadline))
		switch m := msg.(type) {
		case *siplib.Response:
			require.Equal(t, 200, m.StatusCode, raw)
			ok = m
		case *siplib.Request:
			req, reqRaw = m, raw
		}
	}
	require.NotNil(t, ok, "200 to the REGISTER")
	require.NotNil(t, req, "the stored MESSAGE")
	assert.Equal(t, bobNode, onNode(before, registered()), "registered on the surviving node")
	assert.Equal(t, siplib.MESSAGE, req.Method)
	assert.Contains(t, reqRaw, "P-Asserted-Identity: <sip:bob@rcs.local>\r\n")
	assert.Contains(t, reqRaw, "kept while alice's node was down")
	alice.answer(req, 200)

	// And alice's own messages now go through the surviving node.
	alice.send(rcsMessage(alice, "alice", "bob", "m5ds", "back again"))
	req, reqRaw = dsReadRequest(bob, 10*time.Second)
	assert.Contains(t, reqRaw, "P-Asserted-Identity: <sip:alice@rcs.local>\r\n")
	assert.Contains(t, reqRaw, "back again")
	bob.answer(req, 200)
	res, raw = dsReadResponse(alice, 10*time.Second)
	assert.Equal(t, 200, res.StatusCode, raw)
}

// startKamailio runs kamailio -DD -E with deploy/kamailio/kamailio.cfg on a
// free loopback port in front of the given nodes, and returns the port.
func startKamailio(t *testing.T, nodes []*rcsdproc.Proc) int {
	t.Helper()
	bin, err := exec.LookPath("kamailio")
	require.NoError(t, err, "kamailio not found: `make deps` (scripts/install-deps.sh) installs it")
	_, file, _, _ := runtime.Caller(0)
	cfg := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "kamailio", "kamailio.cfg")
	dir := t.TempDir()
	var list strings.Builder
	for _, p := range nodes {
		fmt.Fprintf(&list, "1 sip:127.0.0.1:%d;transport=tcp\n", p.Port)
	}
	dsList := filepath.Join(dir, "dispatcher.list")
	require.NoError(t, os.WriteFile(dsList, []byte(list.String()), 0o644))
	port := rcsdproc.FreePort(t)
	cmd := exec.Command(bin, "-DD", "-E", "-f", cfg, "-Y", dir, "-w", dir,
		"-A", fmt.Sprintf("LISTEN_UDP=udp:127.0.0.1:%d", port),
		"-A", fmt.Sprintf("LISTEN_TCP=tcp:127.0.0.1:%d", port),
		"-A", fmt.Sprintf("DISPATCHER_LIST=%q", dsList),
		"-A", "PING_INTERVAL=1")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its children with it
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("kamailio logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("kamailio exited:\n%s", logs.String())
		default:
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return port
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("kamailio did not listen on %d:\n%s", port, logs.String())
	return 0
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dialKamailio is a handset whose outbound proxy is Kamailio.
func dialKamailio(t *testing.T, transport string, port int) *wireClient {
	t.Helper()
	conn, err := net.Dial(strings.ToLower(transport), fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &wireClient{t: t, conn: conn, transport: transport, r: bufio.NewReader(conn)}
}

// dsRegisterRequest is a REGISTER from c for user; supportsPath says
// whether it carries "Supported: path".
func dsRegisterRequest(c *wireClient, user string, cseq int, auth string, supportsPath bool) string {
	msg := "REGISTER sip:rcs.local SIP/2.0\r\n" +
		"Via: SIP/2.0/" + c.transport + " " + c.local() + ";branch=z9hG4bKds" + user + strconv.Itoa(cseq) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + user + "@rcs.local>;tag=ds" + user + "\r\n" +
		"To: <sip:" + user + "@rcs.local>\r\n" +
		"Call-ID: ds-" + user + "-" + c.local() + "\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
		"Contact: <sip:" + user + "@" + c.local() + ";transport=" + strings.ToLower(c.transport) + `>;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"` + "\r\n" +
		"User-Agent: RCS/1.3.0(And)\r\n"
	if supportsPath {
		msg += "Supported: path\r\n"
	}
	if auth != "" {
		msg += "Authorization: " + auth + "\r\n"
	}
	return msg + "Content-Length: 0\r\n\r\n"
}

func dsRegister(c *wireClient, user string, cseq int, auth string, supportsPath bool) (*siplib.Response, string) {
	c.t.Helper()
	c.send(dsRegisterRequest(c, user, cseq, auth, supportsPath))
	return dsReadResponse(c, 10*time.Second)
}

// dsRead reads the next message, request or response, over UDP or TCP.
func dsRead(c *wireClient, d time.Duration) (siplib.Message, string) {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(d)))
	var raw []byte
	if c.transport == "UDP" {
		buf := make([]byte, 65535)
		n, err := c.conn.Read(buf)
		require.NoError(c.t, err, "nothing arrived")
		raw = buf[:n]
	} else {
		length := 0
		for {
			line, err := c.r.ReadString('\n')
			require.NoError(c.t, err, "nothing arrived")
			if len(raw) == 0 && line == "\r\n" { // keep-alive
				continue
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
		raw = append(raw, body...)
	}
	msg, err := siplib.ParseMessage(raw)
	require.NoError(c.t, err, string(raw))
	return msg, string(raw)
}

// dsReadResponse reads the next final response, skipping provisional ones.
func dsReadResponse(c *wireClient, d time.Duration) (*siplib.Response, string) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg, raw := dsRead(c, time.Until(deadline))
		res, ok := msg.(*siplib.Response)
		require.True(c.t, ok, "expected a response, got:\n%s", raw)
		if !res.IsProvisional() {
			return res, raw
		}
	}
}

// dsReadRequest reads the next request.
func dsReadRequest(c *wireClient, d time.Duration) (*siplib.Request, string) {
	c.t.Helper()
	msg, raw := dsRead(c, d)
	req, ok := msg.(*siplib.Request)
	require.True(c.t, ok, "expected a request, got:\n%s", raw)
	return req, raw
}
