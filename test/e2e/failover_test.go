package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// faultLog records when a fault's steps happened, from the goroutine
// that runs it, for the test to read after.
type faultLog struct {
	mu    sync.Mutex
	start time.Time
	steps []string
	err   error
}

func (f *faultLog) step(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.start.IsZero() {
		f.start = time.Now()
	}
	f.steps = append(f.steps, what+" +"+time.Since(f.start).Round(time.Millisecond).String())
}

func (f *faultLog) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *faultLog) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.steps, ", ")
}

// TestAccountingRedisRestart: one rcsd on one Redis (AOF, fsync always);
// mid-load Redis is killed with SIGKILL and started again a second later
// on the same port and files. During the outage the sender gets 503 +
// Retry-After; rcsd reconnects by itself; every message answered 202 is
// delivered once the recipient registers, none is lost.
func TestAccountingRedisRestart(t *testing.T) {
	t0 := time.Now()
	redis := newRedisServer(t, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	redis.Start()
	p := rcsdproc.Start(t, "--storage", "redis://"+redis.Addr+"/0")
	sender := acctStart(t, p, "acs", "acr")

	rep := newAcctReport(acctN())
	var fl faultLog
	fault := acctWhenAcked(rep, int64(rep.n/3), func() {
		fl.step("redis killed at acked=" + strconv.FormatInt(rep.acked.Load(), 10))
		redis.Kill()
		time.Sleep(time.Second)
		if err := redis.start(); err != nil {
			fl.fail(err)
			return
		}
		fl.step("redis back")
	})
	acctLoad(newAcctSender(sender, rep, nil), "acs", "acr", "rr", rep.n, time.Now().Add(90*time.Second))
	<-fault
	require.NoError(t, fl.err)
	require.NotEmpty(t, fl.String(), "the load ended before the fault")
	assert.Positive(t, rep.unavailable.Load(), "503 + Retry-After while Redis was down")
	assert.Empty(t, rep.failed, "messages never acknowledged (rcsd did not recover?)")

	inbox := newAcctInbox()
	recipient := dialAcct(t, p.Port, inbox.handler)
	recipient.register("acr")
	acctCollect(t, p, inbox, rep, 60*time.Second)
	acctVerify(t, "redis-restart", rep, inbox, " | fault: "+fl.String()+" | total "+time.Since(t0).Round(100*time.Millisecond).String())
	t.Logf("503 causes: %s", acctStoreErrors(p))
}

// TestAccountingSentinelFailover: one rcsd on a Sentinel-managed primary
// with one replica (three Sentinels, quorum 2, down after 1s), PutMessage
// waiting for the replica (wait_replicas=1). Mid-load the primary is
// killed with SIGKILL; the Sentinels promote the replica; the dead node
// is started again as a replica of the new primary (as its supervisor
// would, asking the Sentinels). No acknowledged message is lost: each was
// on the replica before its 202.
func TestAccountingSentinelFailover(t *testing.T) {
	rep, in, extra := sentinelScenario(t, "sf", acctN(), true, false)
	acctVerify(t, "sentinel-failover", rep, in, extra)
}

// TestAccountingSentinelLaggingReplica is the same with the replica cut
// off from the primary (REPLICAOF an address where nothing listens: a
// partition) for 300ms before the primary dies: what the primary took in
// that moment never reached the replica. With wait_replicas those messages were
// answered 503, not 202, and none acknowledged is lost.
func TestAccountingSentinelLaggingReplica(t *testing.T) {
	rep, in, extra := sentinelScenario(t, "sl", acctN(), true, true)
	acctVerify(t, "sentinel-lagging-replica", rep, in, extra)
}

// TestAccountingSentinelNoWaitLoses is the control of the two above: the
// lagging-replica failover without wait_replicas loses messages that were
// answered 202 — which the accounting sees. It shows both that the
// harness detects a loss and why Sentinel set-ups need wait_replicas.
// 2000 messages are enough to show it.
func TestAccountingSentinelNoWaitLoses(t *testing.T) {
	rep, in, extra := sentinelScenario(t, "sn", 2000, false, true)
	a := acctCount("sentinel-no-wait (control: losses expected)", rep, in, extra)
	t.Log(a.line)
	assert.NotEmpty(t, a.lost, "without WAIT, messages acknowledged while the replica was cut off should be lost at the failover")
	assert.Empty(t, a.unknown)
}

// sentinelScenario runs the load through a Sentinel failover: wait makes
// rcsd wait for the replica (wait_replicas=1), lag cuts the replica off
// just before the primary is killed.
func sentinelScenario(t *testing.T, run string, n int, wait, lag bool) (*acctReport, *acctInbox, string) {
	t0 := time.Now()
	opts := []string{"--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"}
	master := newRedisServer(t, opts...)
	master.Start()
	replica := newRedisServer(t, opts...)
	replica.Start("--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	waitOnlineReplicas(t, master, 1)
	var sentinels []*redisProc
	var addrs []string
	for range 3 {
		s := newRedisSentinel(t, master, 2)
		s.Start()
		sentinels = append(sentinels, s)
		addrs = append(addrs, s.Addr)
	}
	// Every Sentinel knows the replica and the other two before the
	// fault (they find each other through the primary every 2s).
	for _, s := range sentinels {
		require.Eventually(t, func() bool {
			info, err := redisCmd(s.Addr, "SENTINEL", "MASTER", "rcsd")
			return err == nil && strings.Contains(info, " num-slaves 1 ") && strings.Contains(info, " num-other-sentinels 2 ")
		}, 20*time.Second, 100*time.Millisecond, "sentinel %s did not see the replica and its peers", s.Addr)
	}

	url := "redis://" + strings.Join(addrs, ",") + "/0?master=rcsd"
	if wait {
		url += "&wait_replicas=1&wait_timeout=100ms"
	}
	p := rcsdproc.Start(t, "--storage", url)
	sender := acctStart(t, p, run+"s", run+"r")

	rep := newAcctReport(n)
	var fl faultLog
	fault := acctWhenAcked(rep, int64(rep.n/3), func() {
		if lag {
			// Cut the replica off (pointed at a port where nothing
			// listens: a partition between the two), let the primary
			// take writes alone for a moment, then kill it.
			if _, err := redisCmd(replica.Addr, "REPLICAOF", "127.0.0.1", "1"); err != nil {
				fl.fail(err)
				return
			}
			fl.step("replica cut off at acked=" + strconv.FormatInt(rep.acked.Load(), 10))
			time.Sleep(300 * time.Millisecond)
			if info, err := redisCmd(master.Addr, "INFO", "replication"); err != nil || !strings.Contains(info, "connected_slaves:0\r\n") {
				fl.fail(errorString("the replica is still connected: " + info))
				return
			}
		}
		fl.step("primary killed at acked=" + strconv.FormatInt(rep.acked.Load(), 10))
		master.Kill()
		deadline := time.Now().Add(30 * time.Second)
		for {
			addr, err := redisCmd(sentinels[0].Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "rcsd")
			if err == nil && addr == "127.0.0.1 "+strconv.Itoa(replica.Port) {
				break
			}
			if time.Now().After(deadline) {
				fl.fail(errFailover)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		fl.step("replica promoted")
		if err := master.start("--replicaof", "127.0.0.1", strconv.Itoa(replica.Port)); err != nil {
			fl.fail(err)
			return
		}
		fl.step("old primary back as replica")
		for time.Now().Before(deadline) {
			info, err := redisCmd(replica.Addr, "INFO", "replication")
			if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
				fl.step("replica in sync")
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	acctLoad(newAcctSender(sender, rep, nil), run+"s", run+"r", run, rep.n, time.Now().Add(90*time.Second))
	<-fault
	require.NoError(t, fl.err)
	require.NotEmpty(t, fl.String(), "the load ended before the fault")
	if wait {
		// The control's short load may be all answered before the kill
		// (the 300ms cut-off comes first): its point is the losses.
		assert.Positive(t, rep.unavailable.Load(), "503 + Retry-After during the failover")
	}
	assert.Empty(t, rep.failed, "messages never acknowledged (rcsd did not follow the failover?)")

	inbox := newAcctInbox()
	recipient := dialAcct(t, p.Port, inbox.handler)
	recipient.register(run + "r")
	acctCollect(t, p, inbox, rep, 60*time.Second)
	t.Logf("503 causes: %s", acctStoreErrors(p))
	return rep, inbox, " | fault: " + fl.String() + " | total " + time.Since(t0).Round(100*time.Millisecond).String()
}

var errFailover = errorString("the Sentinels did not promote the replica within 30s")

type errorString string

func (e errorString) Error() string { return string(e) }

// waitOnlineReplicas waits until a redis-server has n replicas online.
func waitOnlineReplicas(t *testing.T, r *redisProc, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		info, err := redisCmd(r.Addr, "INFO", "replication")
		return err == nil && strings.Contains(info, "connected_slaves:"+strconv.Itoa(n)+"\r\n") &&
			strings.Count(info, "state=online") == n
	}, 15*time.Second, 20*time.Millisecond, "%s: %d replicas online", r.Addr, n)
}

// TestAccountingNodeKilled: two rcsd nodes share one Redis (AOF, fsync
// always), a sender on each, both writing to one offline recipient.
// Mid-load n2 is killed with SIGKILL: its sender's MESSAGEs in flight get
// no answer (the connection is reset); it reconnects to n1, registers
// again and retries them there. Every 202 from either node is delivered
// when the recipient registers on n1.
func TestAccountingNodeKilled(t *testing.T) {
	t0 := time.Now()
	redis := newRedisServer(t, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	redis.Start()
	common := []string{"--storage", "redis://" + redis.Addr + "/0", "--auth.nonce_secret", "e2e-shared-secret",
		"--node.ttl", "3s", "--pager.sweep_interval", "1s"}
	n1 := rcsdproc.Start(t, append(common, "--node.id", "n1")...)
	n2 := rcsdproc.Start(t, append(common, "--node.id", "n2")...)
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", n1.HTTPPort)), "\nrcsd_cluster_nodes 2\n")
	}, 10*time.Second, 100*time.Millisecond, "n1 sees n2")
	provision(t, n1, "nk1", "nk2", "nkr")
	c1 := dialAcct(t, n1.Port, nil)
	c1.register("nk1")
	c2 := dialAcct(t, n2.Port, nil)
	c2.register("nk2")

	half := acctN() / 2
	rep := newAcctReport(2 * half)
	s1 := newAcctSender(c1, rep, nil)
	s2 := newAcctSender(c2, rep, func() (*acctClient, error) {
		c, err := dialAcctErr(t, n1.Port, nil)
		if err != nil {
			return nil, err
		}
		return c, c.registerErr("nk2")
	})
	var fl faultLog
	fault := acctWhenAcked(rep, int64(rep.n/3), func() {
		fl.step("n2 killed at acked=" + strconv.FormatInt(rep.acked.Load(), 10))
		n2.Kill()
		fl.step("n2 gone")
	})
	deadline := time.Now().Add(90 * time.Second)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); acctLoad(s1, "nk1", "nkr", "na", half, deadline) }()
	go func() { defer wg.Done(); acctLoad(s2, "nk2", "nkr", "nb", half, deadline) }()
	wg.Wait()
	<-fault
	require.NoError(t, fl.err)
	require.NotEmpty(t, fl.String(), "the load ended before the fault")
	assert.Positive(t, rep.connErrs.Load(), "n2's sender lost requests in flight")
	s2.mu.Lock()
	reconnects := s2.reconnects
	s2.mu.Unlock()
	assert.Equal(t, 1, reconnects, "n2's sender moved to n1 once")
	assert.Empty(t, rep.failed, "messages never acknowledged")

	inbox := newAcctInbox()
	recipient := dialAcct(t, n1.Port, inbox.handler)
	recipient.register("nkr")
	acctCollect(t, n1, inbox, rep, 60*time.Second)
	acctVerify(t, "node-killed", rep, inbox, " | fault: "+fl.String()+" | total "+time.Since(t0).Round(100*time.Millisecond).String())
}
