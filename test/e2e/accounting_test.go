package e2e

// Load-and-accounting harness for the fault tests (issue 6): a registered
// sender pushes N RCS pager MESSAGEs at an offline recipient with a
// bounded window, while a test breaks Redis or an rcsd node; then the
// recipient registers and takes everything. The accounting: every
// message answered 200/202 is delivered (none lost), nothing is delivered
// that was never sent, and duplicates (at-least-once) stay rare.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// acctN is the number of messages per scenario: 10 000 (the load)
// unless -short.
func acctN() int {
	if testing.Short() {
		return 2000
	}
	return 10000
}

const (
	acctWindow      = 50               // MESSAGEs in flight at once
	acctAnswerWait  = 15 * time.Second // a request unanswered by then is a timeout
	acctMaxAttempts = 30               // per message, the first included
	acctMaxBackoff  = 5 * time.Second  // Retry-After honoured up to this
)

// acctClient is a handset on one TCP connection whose requests are
// answered asynchronously: responses are matched to their request by
// Call-ID and CSeq, requests rcsd sends go to onRequest.
type acctClient struct {
	t         *testing.T
	conn      net.Conn
	local     string
	onRequest func(c *acctClient, req *siplib.Request)
	// onLate gets responses nobody waits for any more (their request
	// timed out): a late 2xx still acknowledges a message.
	onLate func(res *siplib.Response)

	wmu sync.Mutex // writes

	mu      sync.Mutex
	waiting map[string]chan *siplib.Response
	readErr error
	done    chan struct{} // the reader ended (readErr says why)
}

var errAcctConnLost = errors.New("connection lost")

func dialAcct(t *testing.T, port int, onRequest func(*acctClient, *siplib.Request)) *acctClient {
	t.Helper()
	c, err := dialAcctErr(t, port, onRequest)
	require.NoError(t, err)
	return c
}

// dialAcctErr is dialAcct for goroutines other than the test's.
func dialAcctErr(t *testing.T, port int, onRequest func(*acctClient, *siplib.Request)) (*acctClient, error) {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &acctClient{t: t, conn: conn, local: conn.LocalAddr().String(), onRequest: onRequest,
		waiting: map[string]chan *siplib.Response{}, done: make(chan struct{})}
	t.Cleanup(func() { conn.Close(); <-c.done })
	go c.readLoop()
	return c, nil
}

func acctKey(callID string, cseq uint32) string {
	return callID + " " + strconv.FormatUint(uint64(cseq), 10)
}

func (c *acctClient) readLoop() {
	r := bufio.NewReaderSize(c.conn, 64<<10)
	var err error
	defer func() {
		c.mu.Lock()
		c.readErr = err
		c.mu.Unlock()
		close(c.done)
	}()
	for {
		var raw []byte
		length := 0
		for {
			var line string
			if line, err = r.ReadString('\n'); err != nil {
				return
			}
			if len(raw) == 0 && strings.TrimSpace(line) == "" {
				continue // keep-alive
			}
			raw = append(raw, line...)
			if line == "\r\n" {
				break
			}
			if name, v, ok := strings.Cut(line, ":"); ok {
				if n := strings.TrimSpace(name); strings.EqualFold(n, "Content-Length") || n == "l" {
					length, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
		}
		body := make([]byte, length)
		if _, err = io.ReadFull(r, body); err != nil {
			return
		}
		raw = append(raw, body...)
		msg, perr := siplib.ParseMessage(raw)
		if perr != nil {
			err = fmt.Errorf("unparsable message from rcsd: %v\n%s", perr, raw)
			c.conn.Close()
			return
		}
		switch m := msg.(type) {
		case *siplib.Request:
			if c.onRequest != nil {
				c.onRequest(c, m)
			}
		case *siplib.Response:
			if m.StatusCode < 200 {
				continue
			}
			key := acctKey(string(*m.CallID()), m.CSeq().SeqNo)
			c.mu.Lock()
			ch := c.waiting[key]
			delete(c.waiting, key)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			} else if c.onLate != nil {
				c.onLate(m)
			}
		}
	}
}

func (c *acctClient) write(msg string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write([]byte(msg))
	return err
}

// do sends a request and waits up to d for its final response.
func (c *acctClient) do(msg, callID string, cseq uint32, d time.Duration) (*siplib.Response, error) {
	key := acctKey(callID, cseq)
	ch := make(chan *siplib.Response, 1)
	c.mu.Lock()
	if c.readErr != nil || isClosed(c.done) {
		c.mu.Unlock()
		return nil, errAcctConnLost
	}
	c.waiting[key] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.waiting, key)
		c.mu.Unlock()
	}
	if err := c.write(msg); err != nil {
		forget()
		return nil, fmt.Errorf("%w: %v", errAcctConnLost, err)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case res := <-ch:
		return res, nil
	case <-c.done:
		forget()
		return nil, errAcctConnLost
	case <-timer.C:
		forget()
		return nil, errAcctTimeout
	}
}

var errAcctTimeout = errors.New("no final response")

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// reply answers a request rcsd sent.
func (c *acctClient) reply(req *siplib.Request, code int) {
	res := siplib.NewResponseFromRequest(req, code, "OK", nil)
	var b strings.Builder
	res.StringWrite(&b)
	_ = c.write(b.String()) // a lost answer is rcsd's timeout to handle
}

func (c *acctClient) registerMsg(user string, cseq uint32, auth string) string {
	msg := "REGISTER sip:rcs.local SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + c.local + ";branch=z9hG4bKacctreg" + strconv.Itoa(int(cseq)) + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + user + "@rcs.local>;tag=acct" + user + "\r\n" +
		"To: <sip:" + user + "@rcs.local>\r\n" +
		"Call-ID: acct-reg-" + user + "-" + c.local + "\r\n" +
		"CSeq: " + strconv.Itoa(int(cseq)) + " REGISTER\r\n" +
		"Contact: <sip:" + user + "@" + c.local + ";transport=tcp>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\";+sip.instance=\"<urn:gsma:imei:35209900-176148-1>\"\r\n" +
		"Supported: path\r\nUser-Agent: RCS/1.3.0(And)\r\n"
	if auth != "" {
		msg += "Authorization: " + auth + "\r\n"
	}
	return msg + "Content-Length: 0\r\n\r\n"
}

// register registers user (password user-pw) on this connection,
// retrying a 503 for up to 20s (the store may still be coming back).
func (c *acctClient) register(user string) {
	c.t.Helper()
	require.NoError(c.t, c.registerErr(user))
}

// registerErr is register for goroutines other than the test's.
func (c *acctClient) registerErr(user string) error {
	callID := "acct-reg-" + user + "-" + c.local
	deadline := time.Now().Add(20 * time.Second)
	var cseq uint32
	for {
		cseq++
		res, err := c.do(c.registerMsg(user, cseq, ""), callID, cseq, 5*time.Second)
		if err != nil {
			return fmt.Errorf("registering %s: %w", user, err)
		}
		h := res.GetHeader("WWW-Authenticate")
		if res.StatusCode != 401 || h == nil {
			return fmt.Errorf("registering %s: want a challenge, got %d", user, res.StatusCode)
		}
		ch := map[string]string{}
		for _, m := range paramRe.FindAllStringSubmatch(h.Value(), -1) {
			ch[m[1]] = strings.Trim(m[2], `"`)
		}
		cseq++
		res, err = c.do(c.registerMsg(user, cseq, authorize(ch, user+"@rcs.local", user+"-pw", "00000001")), callID, cseq, 5*time.Second)
		if err != nil {
			return fmt.Errorf("registering %s: %w", user, err)
		}
		switch {
		case res.StatusCode == 200:
			return nil
		case res.StatusCode != 503:
			return fmt.Errorf("registering %s: %d %s", user, res.StatusCode, res.Reason)
		case time.Now().After(deadline):
			return fmt.Errorf("registering %s: still 503 after 20s", user)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// acctMessage is an RCS pager MESSAGE carrying id as its imdn.Message-ID
// and in its text. A retry keeps the Call-ID and the imdn.Message-ID (rcsd
// recognises it: a message stored by an attempt whose answer was lost is
// not stored twice) with the next CSeq and a new branch.
func acctMessage(c *acctClient, from, to, id string, attempt int) string {
	text := "acct:" + id
	body := "From: <sip:" + from + "@rcs.local>\r\nTo: <sip:" + to + "@rcs.local>\r\nNS: imdn <urn:ietf:params:imdn>\r\n" +
		"imdn.Message-ID: " + id + "\r\nDateTime: 2026-11-25T10:00:00+08:00\r\nimdn.Disposition-Notification: positive-delivery\r\n\r\n" +
		"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: " + strconv.Itoa(len(text)) + "\r\n\r\n" + text
	return "MESSAGE sip:" + to + "@rcs.local SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + c.local + ";branch=z9hG4bK" + id + "a" + strconv.Itoa(attempt) + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + from + "@rcs.local>;tag=" + id + "\r\nTo: <sip:" + to + "@rcs.local>\r\n" +
		"Call-ID: " + id + "@acct\r\nCSeq: " + strconv.Itoa(attempt) + " MESSAGE\r\n" +
		"Accept-Contact: *;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"\r\n" +
		"User-Agent: RCS/1.3.0(And)\r\nP-Preferred-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\r\n" +
		"Conversation-ID: conv-acct-" + from + "\r\nContribution-ID: contrib-" + id + "\r\n" +
		"Content-Type: message/cpim\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

var acctIDRe = regexp.MustCompile(`acct:(\S+)`)

// acctReport is what the sender saw.
type acctReport struct {
	n                                               int
	sent, acked, unavailable, noRetryAfter, retried atomic.Int64
	timeouts, connErrs, other                       atomic.Int64
	mu                                              sync.Mutex
	sentIDs, ackedIDs                               map[string]bool
	failed                                          []string      // never acknowledged
	otherCodes                                      map[int]int   // final statuses other than 200/202/503
	firstNack, lastNack                             time.Time     // first and last not-acknowledged answer
	elapsed                                         time.Duration // of the load
}

func (r *acctReport) ack(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ackedIDs[id] {
		r.ackedIDs[id] = true
		r.acked.Add(1)
	}
}

func (r *acctReport) nack() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.firstNack.IsZero() {
		r.firstNack = now
	}
	r.lastNack = now
}

// acctLoad sends n MESSAGEs from→to through s, acctWindow at a time, each
// retried until acknowledged (200/202) or acctMaxAttempts/deadline. It
// returns when every message is acknowledged or given up.
func newAcctReport(n int) *acctReport {
	return &acctReport{n: n, sentIDs: map[string]bool{}, ackedIDs: map[string]bool{}, otherCodes: map[int]int{}}
}

// acctSender is a sender handset whose connection may be replaced: when
// it is lost (its node died), reconnect, when set, gives a new one
// (another node, registered again) for the retries.
type acctSender struct {
	rep       *acctReport
	reconnect func() (*acctClient, error)

	mu         sync.Mutex
	c          *acctClient
	reconnects int
}

func newAcctSender(c *acctClient, rep *acctReport, reconnect func() (*acctClient, error)) *acctSender {
	s := &acctSender{rep: rep, reconnect: reconnect}
	s.use(c)
	return s
}

func (s *acctSender) use(c *acctClient) {
	c.onLate = func(res *siplib.Response) {
		if res.StatusCode == 200 || res.StatusCode == 202 {
			s.rep.ack(strings.TrimSuffix(string(*res.CallID()), "@acct"))
		}
	}
	s.c = c
}

func (s *acctSender) client() *acctClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

// lost replaces c, whose connection is gone, unless another worker
// already did.
func (s *acctSender) lost(c *acctClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != c || s.reconnect == nil {
		return
	}
	n, err := s.reconnect()
	if err != nil {
		return // the next attempt tries again
	}
	s.use(n)
	s.reconnects++
}

func acctLoad(s *acctSender, from, to, run string, n int, deadline time.Time) {
	rep := s.rep
	start := time.Now()
	ids := make(chan string)
	var wg sync.WaitGroup
	for range acctWindow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				acctSendOne(s, from, to, id, deadline)
			}
		}()
	}
	for i := range n {
		id := fmt.Sprintf("%s%05d", run, i)
		rep.mu.Lock()
		rep.sentIDs[id] = true
		rep.mu.Unlock()
		ids <- id
	}
	close(ids)
	wg.Wait()
	rep.mu.Lock()
	rep.elapsed = max(rep.elapsed, time.Since(start))
	rep.mu.Unlock()
}

func acctSendOne(s *acctSender, from, to, id string, deadline time.Time) {
	rep := s.rep
	rep.sent.Add(1)
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			rep.retried.Add(1)
		}
		c := s.client()
		res, err := c.do(acctMessage(c, from, to, id, attempt), id+"@acct", uint32(attempt), acctAnswerWait)
		wait := time.Second
		switch {
		case errors.Is(err, errAcctTimeout):
			rep.timeouts.Add(1)
			rep.nack()
		case err != nil:
			rep.connErrs.Add(1)
			rep.nack()
			s.lost(c)
			wait = 100 * time.Millisecond
		case res.StatusCode == 200 || res.StatusCode == 202:
			rep.ack(id)
			return
		case res.StatusCode == 503:
			rep.unavailable.Add(1)
			rep.nack()
			h := res.GetHeader("Retry-After")
			if h == nil {
				rep.noRetryAfter.Add(1)
			} else if s, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(h.Value(), ";", 2)[0])); err == nil {
				wait = min(time.Duration(s)*time.Second, acctMaxBackoff)
			}
		default:
			rep.other.Add(1)
			rep.nack()
			rep.mu.Lock()
			rep.otherCodes[res.StatusCode]++
			rep.mu.Unlock()
		}
		rep.mu.Lock()
		acked := rep.ackedIDs[id] // a late 2xx of an earlier attempt
		rep.mu.Unlock()
		if acked {
			return
		}
		if attempt >= acctMaxAttempts || time.Now().Add(wait).After(deadline) {
			rep.mu.Lock()
			rep.failed = append(rep.failed, id)
			rep.mu.Unlock()
			return
		}
		time.Sleep(wait)
	}
}

// acctInbox is what the recipient got.
type acctInbox struct {
	mu      sync.Mutex
	count   map[string]int
	total   int
	last    time.Time
	strange []string // MESSAGEs without an id
}

func newAcctInbox() *acctInbox { return &acctInbox{count: map[string]int{}, last: time.Now()} }

// handler answers every MESSAGE 200 and records its id; other requests
// (NOTIFY, OPTIONS) get 200 too.
func (in *acctInbox) handler(c *acctClient, req *siplib.Request) {
	if req.Method == siplib.MESSAGE {
		m := acctIDRe.FindSubmatch(req.Body())
		in.mu.Lock()
		if m == nil {
			in.strange = append(in.strange, string(req.Body()))
		} else {
			in.count[string(m[1])]++
		}
		in.total++
		in.last = time.Now()
		in.mu.Unlock()
	}
	c.reply(req, 200)
}

// acctCollect waits until the inbox holds every acknowledged message and
// rcsd's store is empty, then a quiet second more for late duplicates; or,
// when some never come, until the store is empty and nothing arrived for
// 3s (nothing is left to deliver then: the missing ones are lost).
func acctCollect(t *testing.T, p *rcsdproc.Proc, in *acctInbox, rep *acctReport, within time.Duration) {
	t.Helper()
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort)
	deadline := time.Now().Add(within)
	rep.mu.Lock()
	acked := make([]string, 0, len(rep.ackedIDs))
	for id := range rep.ackedIDs {
		acked = append(acked, id)
	}
	rep.mu.Unlock()
	for time.Now().Before(deadline) {
		in.mu.Lock()
		missing := 0
		for _, id := range acked {
			if in.count[id] == 0 {
				missing++
			}
		}
		quiet := time.Since(in.last)
		in.mu.Unlock()
		if (missing == 0 && quiet > time.Second || quiet > 3*time.Second) &&
			strings.Contains(httpGet(t, metrics), "\nrcsd_messages_stored 0\n") {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("deliveries still coming or stored after %v", within)
}

// acctTally is the accounting of one run.
type acctTally struct {
	lost, unknown    []string // acknowledged and not delivered; delivered and never sent
	dups             int      // deliveries beyond the first of an id
	unackedDelivered int      // delivered, never acknowledged (allowed)
	line             string   // the one-line summary
}

func acctCount(name string, rep *acctReport, in *acctInbox, extra string) acctTally {
	in.mu.Lock()
	defer in.mu.Unlock()
	rep.mu.Lock()
	defer rep.mu.Unlock()
	var a acctTally
	for id := range rep.ackedIDs {
		if in.count[id] == 0 {
			a.lost = append(a.lost, id)
		}
	}
	for id, n := range in.count {
		if !rep.sentIDs[id] {
			a.unknown = append(a.unknown, id)
		}
		if n > 1 {
			a.dups += n - 1
		}
		if !rep.ackedIDs[id] {
			a.unackedDelivered++
		}
	}
	sort.Strings(a.lost)
	sort.Strings(a.unknown)
	window := "none"
	if !rep.firstNack.IsZero() {
		window = rep.lastNack.Sub(rep.firstNack).Round(10 * time.Millisecond).String()
	}
	a.line = fmt.Sprintf("ACCOUNTING %s: sent=%d acked=%d 503=%d retried=%d timeouts=%d connerr=%d other=%v failed=%d delivered=%d (distinct %d) duplicates=%d lost=%d delivered-unacked=%d | load %v, nack window %s%s",
		name, rep.sent.Load(), rep.acked.Load(), rep.unavailable.Load(), rep.retried.Load(), rep.timeouts.Load(), rep.connErrs.Load(),
		rep.otherCodes, len(rep.failed), in.total, len(in.count), a.dups, len(a.lost), a.unackedDelivered,
		rep.elapsed.Round(10*time.Millisecond), window, extra)
	return a
}

// acctVerify checks the accounting and logs its one-line summary: none
// lost, nothing unknown, duplicates at most 1%, every 503 with
// Retry-After.
func acctVerify(t *testing.T, name string, rep *acctReport, in *acctInbox, extra string) {
	t.Helper()
	a := acctCount(name, rep, in, extra)
	t.Log(a.line)
	assert.Empty(t, a.lost, "acknowledged but never delivered (%d), first ones: %v", len(a.lost), a.lost[:min(len(a.lost), 20)])
	assert.Empty(t, a.unknown, "delivered but never sent (%d): %v", len(a.unknown), a.unknown[:min(len(a.unknown), 20)])
	in.mu.Lock()
	assert.Empty(t, in.strange, "MESSAGEs without an id")
	in.mu.Unlock()
	assert.LessOrEqual(t, a.dups, rep.n/100, "duplicates beyond 1%% of %d", rep.n)
	assert.Zero(t, rep.noRetryAfter.Load(), "503 without Retry-After")
	assert.Equal(t, int64(rep.n), rep.sent.Load())
}

// redisProc is a redis-server (or redis-sentinel) the test can kill -9
// and start again on the same port and directory.
type redisProc struct {
	t       *testing.T
	bin     string
	argv    func(r *redisProc) []string
	Port    int
	Addr    string
	Dir     string
	mu      sync.Mutex
	cmd     *exec.Cmd
	gone    chan struct{}
	started bool // by the test's goroutine: Start succeeded once
	// clusterBus gives a Cluster node BusPort as its bus port (the
	// default, Port+10000, may be taken or above 65535).
	clusterBus bool
	BusPort    int
}

// newRedisServer is a redis-server on a free loopback port with its
// files in a directory of its own; args are more options.
func newRedisServer(t *testing.T, args ...string) *redisProc {
	return newRedisProc(t, "redis-server", func(r *redisProc) []string {
		argv := append([]string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--dir", r.Dir,
			"--logfile", filepath.Join(r.Dir, "redis.log"), "--daemonize", "no"}, args...)
		if r.clusterBus {
			argv = append(argv, "--cluster-port", strconv.Itoa(r.BusPort))
		}
		return argv
	})
}

// newRedisSentinel is a redis-sentinel monitoring master as "rcsd" with
// the given quorum and a failure detection of about a second.
func newRedisSentinel(t *testing.T, master *redisProc, quorum int) *redisProc {
	return newRedisProc(t, "redis-sentinel", func(r *redisProc) []string {
		conf := filepath.Join(r.Dir, "sentinel.conf")
		require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor rcsd 127.0.0.1 %d %d\nsentinel down-after-milliseconds rcsd 1000\n"+
			"sentinel failover-timeout rcsd 5000\nsentinel parallel-syncs rcsd 1\n",
			r.Port, r.Dir, filepath.Join(r.Dir, "sentinel.log"), master.Port, quorum)), 0o600))
		return []string{conf}
	})
}

func newRedisProc(t *testing.T, bin string, argv func(*redisProc) []string) *redisProc {
	t.Helper()
	path, err := exec.LookPath(bin)
	require.NoError(t, err, "%s not found: make test installs it", bin)
	ports := rcsdproc.FreePorts(t, 2)
	r := &redisProc{t: t, bin: path, argv: argv, Port: ports[0], BusPort: ports[1], Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), Dir: t.TempDir()}
	t.Cleanup(r.Kill)
	return r
}

// Start starts the process with more arguments and waits until it
// answers PING. The first start moves to another port when the chosen one
// (or, in Cluster, its bus port +10000) was taken meanwhile by another
// test package; later starts keep the port, which is the point of them.
func (r *redisProc) Start(extra ...string) {
	r.t.Helper()
	for attempt := 1; ; attempt++ {
		err := r.start(extra...)
		if err == nil || r.started || attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			require.NoError(r.t, err)
			r.started = true
			return
		}
		r.t.Logf("%s start %d: port taken meanwhile; trying another", r.bin, attempt)
		r.Kill()
		entries, _ := os.ReadDir(r.Dir)
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(r.Dir, e.Name()))
		}
		ports := rcsdproc.FreePorts(r.t, 2)
		r.Port, r.BusPort = ports[0], ports[1]
		r.Addr = fmt.Sprintf("127.0.0.1:%d", r.Port)
	}
}

// start is Start for goroutines other than the test's.
func (r *redisProc) start(extra ...string) error {
	r.mu.Lock()
	r.cmd = exec.Command(r.bin, append(r.argv(r), extra...)...)
	if err := r.cmd.Start(); err != nil {
		r.cmd = nil
		r.mu.Unlock()
		return err
	}
	gone := make(chan struct{})
	r.gone = gone
	cmd := r.cmd
	go func() { _ = cmd.Wait(); close(gone) }()
	r.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := redisCmd(r.Addr, "PING")
		if err == nil && (reply == "+PONG" || strings.HasPrefix(reply, "-NOAUTH")) { // NOAUTH: up, with requirepass
			return nil
		}
		if isClosed(gone) || time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
			return fmt.Errorf("%s on %s did not start (%v): %s", r.bin, r.Addr, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (r *redisProc) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.gone
	r.cmd = nil
}

// Signal sends sig to the running process (SIGSTOP: a Redis that hangs
// without closing its connections).
func (r *redisProc) Signal(sig os.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotNil(r.t, r.cmd, "not running")
	require.NoError(r.t, r.cmd.Process.Signal(sig))
}

// redisCmd sends one inline command and returns the first line of the
// reply (RESP), or for a bulk/array reply all of it joined by spaces.
func redisCmd(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	return readRESP(r)
}

func readRESP(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var parts []string
		for range n {
			s, err := readRESP(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " "), nil
	}
	return line, nil
}

// acctStart provisions the two handsets, registers the sender over TCP
// and returns it.
func acctStart(t *testing.T, p *rcsdproc.Proc, sender, recipient string) *acctClient {
	t.Helper()
	provision(t, p, sender, recipient)
	s := dialAcct(t, p.Port, nil)
	s.register(sender)
	return s
}

// acctWhenAcked calls fault once the load has acked at least n messages,
// in its own goroutine; the returned channel closes when fault returned
// (or the load never got there within a minute).
func acctWhenAcked(rep *acctReport, n int64, fault func()) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if rep.acked.Load() >= n {
				fault()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return done
}

var (
	acctStoreErrRe = regexp.MustCompile(`storage failed while handling a MESSAGE\s+\{"error": "((?:[^"\\]|\\.)*)"`)
	acctNoiseRe    = regexp.MustCompile(`[0-9a-f]{20,}|sip:\S+ |\d+\.\d+\.\d+\.\d+:\d+|\d+ms`)
)

// acctStoreErrors summarises why rcsd answered 503: its "storage failed"
// log lines, grouped by error with IDs and addresses blanked.
func acctStoreErrors(p *rcsdproc.Proc) string {
	counts := map[string]int{}
	for _, m := range acctStoreErrRe.FindAllStringSubmatch(p.Logs(), -1) {
		counts[acctNoiseRe.ReplaceAllString(m[1], "…")]++
	}
	var out []string
	for k, n := range counts {
		out = append(out, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
