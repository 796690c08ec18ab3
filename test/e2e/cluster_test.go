package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// startNodes runs two rcsd nodes sharing one Redis (and the secret that
// signs their flow tokens).
func startNodes(t *testing.T) (n1, n2 *rcsdproc.Proc) {
	t.Helper()
	url := startRedis(t)
	common := []string{"--storage", url, "--auth.nonce_secret", "e2e-shared-secret", "--node.ttl", "3s", "--pager.sweep_interval", "1s"}
	n1 = rcsdproc.Start(t, append(common, "--node.id", "n1")...)
	n2 = rcsdproc.Start(t, append(common, "--node.id", "n2")...)
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", n1.HTTPPort)), "\nrcsd_cluster_nodes 2\n")
	}, 5*time.Second, 100*time.Millisecond, "n1 sees n2")
	return n1, n2
}

// imdnMessage is fixture 20 (a display notification) from one handset to
// another, over c.
func imdnMessage(t *testing.T, c *wireClient, from, to, branch string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/20-imdn-ue-to-server.txt")
	require.NoError(t, err)
	head, body, _ := strings.Cut(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n")
	lines := strings.Split(head, "\n")
	lines[0] = "MESSAGE sip:" + to + "@rcs.local SIP/2.0"
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "Via:"):
			lines[i] = "Via: SIP/2.0/" + c.transport + " " + c.local() + ";branch=" + branch + ";rport"
		case strings.HasPrefix(l, "From:"):
			lines[i] = "From: <sip:" + from + "@rcs.local>;tag=" + branch
		case strings.HasPrefix(l, "To:"):
			lines[i] = "To: <sip:" + to + "@rcs.local>"
		case strings.HasPrefix(l, "Call-ID:"):
			lines[i] = "Call-ID: " + branch + "@e2e"
		case strings.HasPrefix(l, "Contact:"):
			lines[i] = "Contact: <sip:" + from + "@" + c.local() + ">"
		}
	}
	body = strings.ReplaceAll(body, "\n", "\r\n")
	head = regexp.MustCompile(`(?m)^Content-Length:.*$`).ReplaceAllString(strings.Join(lines, "\r\n"), "Content-Length: "+strconv.Itoa(len(body)))
	return head + "\r\n\r\n" + body
}

// expectRequest reads c until a request arrives, failing on anything else
// but provisional or keep-alive traffic.
func expectRequest(t *testing.T, c *wireClient) (*siplib.Request, string) {
	t.Helper()
	msg, raw := c.readAny(5 * time.Second)
	req, ok := msg.(*siplib.Request)
	require.True(t, ok, "want a request, got:\n%s", raw)
	return req, raw
}

// TestTwoNodes: handsets on two nodes sharing Redis reach each other —
// pager messages and IMDNs both ways, each carried down the recipient's
// own TCP connection by the node holding it — and messages stored for a
// handset that went offline on one node (by either node) are delivered
// when it registers on the other.
func TestTwoNodes(t *testing.T) {
	n1, n2 := startNodes(t)
	provision(t, n1, "ann", "bob")
	ann := dial(t, "TCP", n1)
	login(t, ann, "ann")
	bob := dial(t, "TCP", n2)
	login(t, bob, "bob")

	// ann → bob: in at n1, out of n2 over bob's connection.
	ann.send(rcsMessage(ann, "ann", "bob", "m1nodes", "across nodes"))
	req, raw := expectRequest(t, bob)
	assert.Equal(t, siplib.MESSAGE, req.Method)
	assert.Equal(t, "sip:bob@"+bob.local(), req.Recipient.String(), "Request-URI is bob's contact")
	assert.Contains(t, raw, "P-Asserted-Identity: <sip:ann@rcs.local>\r\n")
	assert.Contains(t, raw, "Contribution-ID: contrib-m1nodes\r\n")
	assert.Contains(t, raw, "across nodes")
	assert.NotContains(t, raw, "Route:", "the flow token is n2's own business")
	assert.Len(t, req.GetHeaders("Via"), 1, "n2 sent it, in a transaction of its own")
	assert.Contains(t, req.Via().Host+":"+strconv.Itoa(req.Via().Port), "127.0.0.1:"+strconv.Itoa(n2.Port))
	bob.answer(req, 200)
	res, raw := ann.recv()
	require.Equal(t, 200, res.StatusCode, raw)

	// bob → ann: the display notification, the other way round.
	bob.send(imdnMessage(t, bob, "bob", "ann", "z9hG4bKimdn1"))
	req, raw = expectRequest(t, ann)
	assert.Contains(t, raw, "P-Asserted-Identity: <sip:bob@rcs.local>\r\n")
	assert.Contains(t, raw, "Content-Type: message/imdn+xml")
	assert.Contains(t, raw, "<message-id>dpecbMzb</message-id>")
	ann.answer(req, 200)
	res, raw = bob.recv()
	require.Equal(t, 200, res.StatusCode, raw)

	// A handset answering 480 through the other node: the sender's node
	// stores the message (202), as for a handset of its own.
	ann.send(rcsMessage(ann, "ann", "bob", "m2busy", "try later"))
	req, _ = expectRequest(t, bob)
	bob.answer(req, 480)
	res, raw = ann.recv()
	require.Equal(t, 202, res.StatusCode, raw)

	// bob drops off n2 (de-registers) and comes back on n1: the stored
	// message and one sent meanwhile arrive there, in order.
	res, raw = bob.register(regReq{user: "bob", callID: "e2e-bob" + bob.local(), cseq: 3, contact: "<sip:bob@" + bob.local() + ">;expires=0"})
	require.Equal(t, 401, res.StatusCode, raw)
	ch := firstChallenge(t, res)
	res, raw = bob.register(regReq{user: "bob", callID: "e2e-bob" + bob.local(), cseq: 4, contact: "<sip:bob@" + bob.local() + ">;expires=0",
		auth: authorize(ch, "bob@rcs.local", "bob-pw", "00000001")})
	require.Equal(t, 200, res.StatusCode, raw)
	// ann's second device, on n2, writes meanwhile: stored by n2.
	ann2 := dial(t, "TCP", n2)
	login(t, ann2, "ann")
	ann2.send(rcsMessage(ann2, "ann", "bob", "m3offline", "while you were away"))
	res, raw = ann2.recv()
	require.Equal(t, 202, res.StatusCode, raw)
	// The log line is written before the 202, but read from n2's stderr
	// by another goroutine: it may not be in yet.
	offline := regexp.MustCompile(`recipient offline, storing.*"to": "sip:bob@rcs.local"`)
	assert.Eventually(t, func() bool { return offline.MatchString(n2.Logs()) }, 5*time.Second, 20*time.Millisecond,
		"n2 stored it because bob was offline")

	bob1 := dial(t, "TCP", n1)
	login(t, bob1, "bob")
	for _, want := range []string{"try later", "while you were away"} {
		req, raw = expectRequest(t, bob1)
		assert.Contains(t, raw, want)
		bob1.answer(req, 200)
	}
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", n2.HTTPPort)), "\nrcsd_messages_stored 0\n")
	}, 5*time.Second, 50*time.Millisecond, "delivered messages are gone from the shared store")
}

// TestNodeDies: a node killed with its handsets' connections leaves their
// bindings behind; once its heartbeat lapses they are unreachable, so a
// message for such a handset is stored (202) — not sent into the void —
// and delivered when the handset registers on a live node.
func TestNodeDies(t *testing.T) {
	n1, n2 := startNodes(t)
	provision(t, n1, "cat", "dan")
	cat := dial(t, "TCP", n1)
	login(t, cat, "cat")
	dan := dial(t, "TCP", n2)
	login(t, dan, "dan")

	n2.Kill()
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", n1.HTTPPort)), "\nrcsd_cluster_nodes 1\n")
	}, 10*time.Second, 100*time.Millisecond, "n2's heartbeat lapses")
	start := time.Now()
	cat.send(rcsMessage(cat, "cat", "dan", "m1dead", "kept for dan"))
	res, raw := cat.recv()
	require.Equal(t, 202, res.StatusCode, raw)
	assert.Less(t, time.Since(start), 2*time.Second, "answered at once")
	danOffline := regexp.MustCompile(`recipient offline, storing.*"to": "sip:dan@rcs.local"`)
	assert.Eventually(t, func() bool { return danOffline.MatchString(n1.Logs()) }, 5*time.Second, 20*time.Millisecond,
		"the dead node's binding is left out: no attempt toward it")

	dan1 := dial(t, "TCP", n1)
	login(t, dan1, "dan")
	req, raw := expectRequest(t, dan1)
	assert.Contains(t, raw, "kept for dan")
	dan1.answer(req, 200)
}

// TestRegEventAcrossNodes: a handset subscribed to its reg event on n1
// hears of its second device registering and de-registering on n2 (a
// load balancer that does not keep a user on one node): the change is
// shared between the nodes over the store (Redis Pub/Sub).
func TestRegEventAcrossNodes(t *testing.T) {
	n1, n2 := startNodes(t)
	provision(t, n1, "rosa")
	a := &notifyClient{wireClient: dial(t, "UDP", n1)}
	contactA := "<sip:rosa@" + a.local() + ">"
	a.login("rosa", "e2e-rosa-a", contactA+";expires=600")

	a.send("SUBSCRIBE sip:rosa@rcs.local SIP/2.0\n" +
		"Via: SIP/2.0/UDP " + a.local() + ";branch=z9hG4bKxsub1;rport\n" +
		"Max-Forwards: 70\nFrom: <sip:rosa@rcs.local>;tag=rosasub\nTo: <sip:rosa@rcs.local>\n" +
		"Call-ID: e2e-rosa-sub\nCSeq: 1 SUBSCRIBE\nEvent: reg\nAccept: application/reginfo+xml\n" +
		"Contact: " + contactA + "\nExpires: 600\nContent-Length: 0\n\n")
	seen := map[string]bool{}
	_, doc, _ := a.notify(seen) // the initial state (the 200 is kept aside)
	assert.Equal(t, uint32(0), doc.Version)
	require.Len(t, contactEvents(doc), 1)

	b := &notifyClient{wireClient: dial(t, "UDP", n2)}
	uriB := "sip:rosa-b@" + b.local()
	ch := b.login("rosa", "e2e-rosa-b", "<"+uriB+">;expires=600")
	req, doc, raw := a.notify(seen)
	assert.Equal(t, uint32(1), doc.Version)
	assert.Equal(t, "active/registered", contactEvents(doc)[uriB], raw)
	assert.Equal(t, "active/registered", contactEvents(doc)["sip:rosa@"+a.local()], "A is still there, unchanged")
	assert.Equal(t, "active", doc.Registrations[0].State)
	assert.Regexp(t, `^active`, req.GetHeader("Subscription-State").Value())

	res, raw := b.register(regReq{user: "rosa", callID: "e2e-rosa-b", cseq: 3, auth: authorize(ch, "rosa@rcs.local", "rosa-pw", "00000002"), contact: "<" + uriB + ">;expires=0"})
	require.Equal(t, 200, res.StatusCode, raw)
	_, doc, raw = a.notify(seen)
	assert.Equal(t, uint32(2), doc.Version)
	assert.Equal(t, "terminated/unregistered", contactEvents(doc)[uriB], raw)
	assert.Equal(t, "active", doc.Registrations[0].State, "A keeps the registration active")
}

// TestRecipientListAcrossNodes: one MESSAGE to a recipient list (seed 001
// fig 5-18) reaching n1 fans out to members held by either node — each
// copy down the member's own connection, by the node holding it — and
// the offline member's copy, stored in the shared store, is delivered
// when that member registers on the other node.
func TestRecipientListAcrossNodes(t *testing.T) {
	n1, n2 := startNodes(t)
	provision(t, n1, "lia", "max", "ned", "ola")
	lia := dial(t, "TCP", n1)
	login(t, lia, "lia")
	maxOn2 := dial(t, "TCP", n2)
	login(t, maxOn2, "max")
	nedOn1 := dial(t, "TCP", n1)
	login(t, nedOn1, "ned")
	// ola is provisioned but offline.

	list := "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n" +
		"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\" xmlns:cp=\"urn:ietf:params:xml:ns:capacity\">\r\n<list>\r\n" +
		"<entry uri=\"sip:max@rcs.local\" cp:capacity=\"to\"/>\r\n<entry uri=\"sip:ned@rcs.local\" cp:capacity=\"to\"/>\r\n" +
		"<entry uri=\"sip:ola@rcs.local\" cp:capacity=\"to\"/>\r\n</list>\r\n</resource-lists>\r\n"
	text := "to all three"
	cpimBody := "From: <sip:lia@rcs.local>\r\nTo: <sip:anonymous@anonymous.invalid>\r\nNS: imdn <urn:ietf:params:imdn>\r\n" +
		"imdn.Message-ID: mlist1\r\nDateTime: 2026-12-07T10:00:00+08:00\r\n\r\n" +
		"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: " + strconv.Itoa(len(text)) + "\r\n\r\n" + text
	body := "--b1\r\nContent-Type: application/resource-lists+xml\r\nContent-Disposition: recipient-list\r\n\r\n" + list +
		"\r\n--b1\r\nContent-Type: message/cpim\r\n\r\n" + cpimBody + "\r\n--b1--\r\n"
	lia.send("MESSAGE sip:msgas@rcs.local SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + lia.local() + ";branch=z9hG4bKmlist1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:lia@rcs.local>;tag=mlist1\r\nTo: <sip:msgas@rcs.local>\r\n" +
		"Call-ID: mlist1@e2e\r\nCSeq: 1 MESSAGE\r\nRequire: recipient-list-message\r\n" +
		"Accept-Contact: *;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"\r\n" +
		"User-Agent: RCS/1.3.0(And)\r\nP-Preferred-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\r\n" +
		"Conversation-ID: conv-list\r\nContribution-ID: contrib-mlist1\r\n" +
		"Content-Type: multipart/mixed;boundary=b1\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	res, raw := lia.recv()
	require.Equal(t, 202, res.StatusCode, raw)

	for name, c := range map[string]*wireClient{"max (n2)": maxOn2, "ned (n1)": nedOn1} {
		req, raw := expectRequest(t, c)
		assert.Equal(t, siplib.MESSAGE, req.Method, name)
		assert.Equal(t, "sip:"+strings.SplitN(name, " ", 2)[0]+"@"+c.local(), req.Recipient.String(), name)
		assert.Contains(t, raw, "P-Asserted-Identity: <sip:lia@rcs.local>\r\n", name)
		assert.Contains(t, raw, "Content-Type: message/cpim\r\n", name)
		assert.Contains(t, raw, text, name)
		assert.NotContains(t, raw, "resource-lists", name)
		c.answer(req, 200)
	}

	// ola registers on n2: her copy, stored by n1, comes from there.
	olaOn2 := dial(t, "TCP", n2)
	login(t, olaOn2, "ola")
	req, raw := expectRequest(t, olaOn2)
	assert.Contains(t, raw, text)
	assert.Contains(t, raw, "P-Asserted-Identity: <sip:lia@rcs.local>\r\n")
	olaOn2.answer(req, 200)
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", n1.HTTPPort)), "\nrcsd_messages_stored 0\n")
	}, 5*time.Second, 50*time.Millisecond, "every copy delivered and gone from the shared store")
}
