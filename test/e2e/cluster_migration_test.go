package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// TestAccountingClusterSlotMigration: one rcsd on a Redis Cluster of three
// masters (AOF, fsync always). Mid-load, the slot holding the offline
// recipient's message keys (its hash tag) and the {index} slot are moved
// to other masters with the low-level resharding sequence, key by key
// (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE), so that
// for a while each slot's keys are split between two nodes: rcsd meets
// ASK redirects and TRYAGAIN on its multi-key scripts and transactions.
// A MESSAGE that could not be stored is answered 503 + Retry-After and
// retried; every one answered 202 is delivered once the recipient
// registers, none is lost, and the global index still names every stored
// message.
//
// The {index} slot is moved first, while the recipient's slot is whole:
// a MESSAGE's first step (the putMessage script) succeeds and its second
// (indexing, a MULTI on three {index} keys) meets the split. That 503 is
// right (the message is stored but not acknowledged), but the sender's
// retry is recognised as a duplicate (its imdn.Message-ID dedup key) and
// PutMessage returns at `if code == 1` before its Cluster indexing step:
// the message is acknowledged and delivered, yet never indexed in
// {index}:msgs (ExpireMessages does not see it, the stored-messages gauge
// under-counts). The last assertions catch that.
func TestAccountingClusterSlotMigration(t *testing.T) {
	t0 := time.Now()
	cl := startAcctCluster(t)
	p := rcsdproc.Start(t, "--storage", "redis://"+strings.Join(cl.addrs(), ",")+"/0")
	sender := acctStart(t, p, "cms", "cmr")

	const recipient = "sip:cmr@rcs.local"
	recipientKey := "rcsd:{" + recipient + "}:msg"
	indexKey := "rcsd:{index}:msgs"
	rSlot := cl.keySlot(t, recipientKey)
	iSlot := cl.keySlot(t, indexKey)
	require.NotEqual(t, rSlot, iSlot)

	rep := newAcctReport(acctN())
	var fl faultLog
	var moves []*slotMove
	fault := acctWhenAcked(rep, int64(rep.n/5), func() {
		fl.step("migration starts at acked=" + strconv.FormatInt(rep.acked.Load(), 10))
		var err error
		if moves, err = cl.planMoves(rSlot, iSlot); err != nil {
			fl.fail(err)
			return
		}
		if err := cl.migrate(moves, rep, &fl); err != nil {
			fl.fail(err)
			return
		}
		fl.step("migration done at acked=" + strconv.FormatInt(rep.acked.Load(), 10))
	})
	acctLoad(newAcctSender(sender, rep, nil), "cms", "cmr", "cm", rep.n, time.Now().Add(90*time.Second))
	<-fault
	require.NoError(t, fl.err, "fault: %s", fl.String())
	require.NotEmpty(t, fl.String(), "the load ended before the fault")
	require.Len(t, moves, 2)
	for _, m := range moves {
		t.Logf("slot %d (%s): %s -> %s, %d keys moved: %s", m.slot, m.what, cl.nodes[m.from].Addr, cl.nodes[m.to].Addr, len(m.keys), strings.Join(m.keys, " "))
		assert.Contains(t, m.keys, map[int]string{rSlot: recipientKey, iSlot: indexKey}[m.slot], "the key was in its slot")
		for i := range cl.nodes {
			owner, err := cl.owner(i, m.slot)
			require.NoError(t, err)
			assert.Equal(t, m.to, owner, "node %s sees slot %d on its new master", cl.nodes[i].Addr, m.slot)
		}
	}
	assert.Empty(t, rep.failed, "messages never acknowledged (rcsd did not follow the migration?)")
	assert.Positive(t, rep.unavailable.Load(), "503 + Retry-After while the slots were split")

	// Before the recipient takes them: the stored messages (its queue)
	// and the global index must agree, or the sweeps would not see some.
	stored, err := cl.query("HLEN", recipientKey)
	require.NoError(t, err)
	queued, err := cl.query("ZCARD", "rcsd:{"+recipient+"}:ids")
	require.NoError(t, err)
	indexed, err := cl.query("ZCARD", indexKey)
	require.NoError(t, err)
	inRecipients, err := cl.query("ZSCORE", "rcsd:{index}:recipients", recipient)
	require.NoError(t, err)
	metricStored := promValue(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort)), "rcsd_messages_stored")
	storeLine := fmt.Sprintf("stored=%s queued=%s indexed=%s (metric %s) recipient-indexed=%v", stored, queued, indexed, metricStored, inRecipients != "")
	t.Log("before the recipient registers: " + storeLine)
	if unindexed := cl.unindexed(t, recipient); len(unindexed) > 0 {
		t.Logf("%d stored messages not in {index}:msgs (acct ids): %s", len(unindexed), strings.Join(unindexed[:min(len(unindexed), 10)], " "))
	}
	t.Logf("503 causes: %s", acctStoreErrors(p))

	inbox := newAcctInbox()
	rc := dialAcct(t, p.Port, inbox.handler)
	rc.register("cmr")
	acctCollect(t, p, inbox, rep, 60*time.Second)
	acctVerify(t, "cluster-slot-migration", rep, inbox, " | fault: "+fl.String()+" | "+storeLine+" | total "+time.Since(t0).Round(100*time.Millisecond).String())
	assert.Equal(t, stored, queued, "the recipient's hash and queue agree")
	assert.Equal(t, stored, indexed, "every stored message is in {index}:msgs (else ExpireMessages never sees it and the stored-messages gauge is wrong)")
	assert.NotEmpty(t, inRecipients, "the recipient is in {index}:recipients")
}

// promValue is the value of an unlabelled metric in a Prometheus text
// page, "" when absent.
func promValue(page, name string) string {
	for _, l := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// acctCluster is a Redis Cluster of three masters without replicas.
type acctCluster struct {
	nodes []*redisProc
	ids   []string // node IDs, as nodes
}

func (c *acctCluster) addrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.Addr)
	}
	return out
}

// startAcctCluster starts three cluster-enabled redis-servers (AOF, fsync
// always; the cluster bus on a port of its own), joins them with
// redis-cli --cluster create and waits until every node reports
// cluster_state:ok.
func startAcctCluster(t *testing.T) *acctCluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	require.NoError(t, err, "redis-cli not found: make test installs it")
	c := &acctCluster{}
	for range 3 {
		// redis-server's default bus port is port+10000, which may be
		// taken or above 65535: give it its own (BusPort).
		r := newRedisServer(t, "--save", "", "--appendonly", "yes", "--appendfsync", "always",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		r.clusterBus = true
		r.Start()
		id, err := redisCmd(r.Addr, "CLUSTER", "MYID")
		require.NoError(t, err)
		c.nodes = append(c.nodes, r)
		c.ids = append(c.ids, id)
	}
	args := append([]string{"--cluster", "create"}, c.addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	require.NoError(t, err, "redis-cli --cluster create: %s", out)
	for _, n := range c.nodes {
		require.Eventually(t, func() bool {
			info, err := redisCmd(n.Addr, "CLUSTER", "INFO")
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3")
		}, 20*time.Second, 50*time.Millisecond, "cluster node %s not ok", n.Addr)
	}
	return c
}

func (c *acctCluster) keySlot(t *testing.T, key string) int {
	t.Helper()
	s, err := redisCmd(c.nodes[0].Addr, "CLUSTER", "KEYSLOT", key)
	require.NoError(t, err)
	n, err := strconv.Atoi(strings.TrimPrefix(s, ":"))
	require.NoError(t, err, "CLUSTER KEYSLOT: %s", s)
	return n
}

// owner is the index of the master that node i says serves slot.
func (c *acctCluster) owner(i, slot int) (int, error) {
	out, err := clusterCmd(c.nodes[i].Addr, 2*time.Second, "CLUSTER", "NODES")
	if err != nil {
		return -1, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 {
			continue
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a migration in progress
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			if a <= slot && slot <= b {
				for j, id := range c.ids {
					if id == f[0] {
						return j, nil
					}
				}
				return -1, fmt.Errorf("slot %d on unknown node %s", slot, f[0])
			}
		}
	}
	return -1, fmt.Errorf("node %s: nobody serves slot %d", c.nodes[i].Addr, slot)
}

// query sends a one-key command to the master that takes it (trying
// each until one does not answer MOVED).
func (c *acctCluster) query(args ...string) (string, error) {
	var last string
	for _, n := range c.nodes {
		out, err := clusterCmd(n.Addr, 2*time.Second, args...)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(out, "-MOVED") && !strings.HasPrefix(out, "-ASK") {
			if strings.HasPrefix(out, "-") {
				return "", errorString(out)
			}
			return strings.TrimPrefix(out, ":"), nil
		}
		last = out
	}
	return "", errorString("no node takes " + strings.Join(args, " ") + ": " + last)
}

// unindexed lists the acct ids of recipient's stored messages that
// {index}:msgs does not name.
func (c *acctCluster) unindexed(t *testing.T, recipient string) []string {
	t.Helper()
	ids, err := c.query("HKEYS", "rcsd:{"+recipient+"}:msg")
	require.NoError(t, err)
	members, err := c.query("ZRANGE", "rcsd:{index}:msgs", "0", "-1")
	require.NoError(t, err)
	indexed := map[string]bool{}
	for _, m := range strings.Fields(members) {
		if r, id, ok := strings.Cut(m, "\x00"); ok && r == recipient {
			indexed[id] = true
		}
	}
	var out []string
	for _, id := range strings.Fields(ids) {
		if indexed[id] {
			continue
		}
		v, err := c.query("HGET", "rcsd:{"+recipient+"}:msg", id)
		require.NoError(t, err)
		if m := acctIDRe.FindStringSubmatch(v); m != nil {
			id = m[1]
		}
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// slotMove is one slot's migration.
type slotMove struct {
	slot     int
	what     string
	from, to int      // node indexes
	keys     []string // moved, in order
}

// planMoves moves the recipient's slot to the master after its owner and
// the index slot to the master before its owner, so that the two never
// share their new master when they shared their old one.
func (c *acctCluster) planMoves(rSlot, iSlot int) ([]*slotMove, error) {
	rFrom, err := c.owner(0, rSlot)
	if err != nil {
		return nil, err
	}
	iFrom, err := c.owner(0, iSlot)
	if err != nil {
		return nil, err
	}
	// {index} first: while it is split, the recipient's slot is whole
	// and the messages' first step (the script) succeeds; the second
	// (indexing) meets the split.
	return []*slotMove{
		{slot: iSlot, what: "{index}", from: iFrom, to: (iFrom + 2) % 3},
		{slot: rSlot, what: "recipient", from: rFrom, to: (rFrom + 1) % 3},
	}, nil
}

// migrate moves the slots one after the other the way redis-cli
// --cluster reshard does (IMPORTING on the target, MIGRATING on the
// source, MIGRATE until the source has no key left in the slot, SETSLOT
// NODE on the target, the source and the third master), but one key per
// MIGRATE, and after each step it waits until the load went through the
// state that step made: acknowledgements, or 503s where the slot's keys
// are split between two masters (TRYAGAIN). Then it waits until every
// node agrees on the new owner.
func (c *acctCluster) migrate(moves []*slotMove, rep *acctReport, fl *faultLog) error {
	do := func(i int, args ...string) (string, error) {
		out, err := clusterCmd(c.nodes[i].Addr, 10*time.Second, args...)
		if err == nil && strings.HasPrefix(out, "-") {
			err = errorString(c.nodes[i].Addr + ": " + strings.Join(args, " ") + ": " + out)
		}
		return out, err
	}
	// traffic waits (at most 8s: longer than a Retry-After) until the
	// load got 20 more acknowledgements or a 503 and says which.
	traffic := func() string {
		acked, nacked := rep.acked.Load(), rep.unavailable.Load()
		deadline := time.Now().Add(8 * time.Second)
		for time.Now().Before(deadline) {
			if n := rep.unavailable.Load(); n > nacked {
				time.Sleep(50 * time.Millisecond) // the rest of the wave
				return fmt.Sprintf("503×%d", rep.unavailable.Load()-nacked)
			}
			if rep.acked.Load() >= acked+20 {
				return "acks"
			}
			time.Sleep(2 * time.Millisecond)
		}
		return "no traffic"
	}
	for _, m := range moves {
		s := strconv.Itoa(m.slot)
		if _, err := do(m.to, "CLUSTER", "SETSLOT", s, "IMPORTING", c.ids[m.from]); err != nil {
			return err
		}
		if _, err := do(m.from, "CLUSTER", "SETSLOT", s, "MIGRATING", c.ids[m.to]); err != nil {
			return err
		}
		fl.step(m.what + " migrating: " + traffic())
		deadline := time.Now().Add(30 * time.Second)
		for {
			if time.Now().After(deadline) {
				return errorString("the migration of " + m.what + " did not end within 30s")
			}
			keys, err := do(m.from, "CLUSTER", "GETKEYSINSLOT", s, "1")
			if err != nil {
				return err
			}
			if keys == "" {
				break
			}
			out, err := do(m.from, "MIGRATE", "127.0.0.1", strconv.Itoa(c.nodes[m.to].Port), "", "0", "5000", "KEYS", keys)
			if err != nil {
				return err
			}
			if out != "+OK" {
				continue // +NOKEY: it expired or was deleted meanwhile
			}
			m.keys = append(m.keys, keys)
			name := keys[strings.LastIndexByte(keys, ':')+1:]
			fl.step(m.what + " " + name + " moved: " + traffic())
		}
		for _, i := range []int{m.to, m.from, 3 - m.from - m.to} {
			if _, err := do(i, "CLUSTER", "SETSLOT", s, "NODE", c.ids[m.to]); err != nil {
				return err
			}
		}
		for {
			agreed := true
			for i := range c.nodes {
				if o, err := c.owner(i, m.slot); err != nil || o != m.to {
					agreed = false
				}
			}
			if agreed {
				break
			}
			if time.Now().After(deadline) {
				return errorString("the nodes do not agree on the new owner of " + m.what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		fl.step(m.what + " assigned: " + traffic())
	}
	return nil
}

// clusterCmd is redisCmd with a deadline of its own (MIGRATE of a large
// key may take more than redisCmd's 2s under load).
func clusterCmd(addr string, d time.Duration, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readRESP(bufio.NewReader(c))
}
