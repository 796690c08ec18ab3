package pager

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/registrar"
	"rcsd/storage"
)

// fixtureMessage turns a spec fixture into a MESSAGE from the handset at
// local: Request-URI, Via, From, To, Call-ID replaced, line ends CRLF and
// Content-Length recomputed (the extracted fixtures' lengths are not
// those of their bodies).
func fixtureMessage(t testing.TB, name, from, to, local, branch string, edit ...func(string) string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	head, body, _ := strings.Cut(s, "\n\n")
	lines := strings.Split(head, "\n")
	lines[0] = "MESSAGE " + to + " SIP/2.0"
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "Via:"):
			lines[i] = "Via: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport"
		case strings.HasPrefix(l, "From:"):
			lines[i] = "From: <" + from + ">;tag=f" + branch
		case strings.HasPrefix(l, "To:"):
			lines[i] = "To: <" + to + ">"
		case strings.HasPrefix(l, "Call-ID:"):
			lines[i] = "Call-ID: " + branch + "@test"
		}
	}
	head = strings.Join(lines, "\n")
	for _, e := range edit {
		head = e(head)
	}
	body = strings.ReplaceAll(body, "\n", "\r\n")
	head = regexp.MustCompile(`(?m)^Content-Length:.*$`).ReplaceAllString(head, "Content-Length: "+strconv.Itoa(len(body)))
	return strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body
}

func drop(name string) func(string) string {
	return func(h string) string {
		return regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`:.*\n?`).ReplaceAllString(h, "")
	}
}

func set(name, value string) func(string) string {
	return func(h string) string {
		return regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`:.*$`).ReplaceAllLiteralString(h, name+": "+value)
	}
}

func (e *env) registered(t *testing.T, aor string, h *handset) {
	t.Helper()
	before, err := e.store.Bindings(context.Background(), aor, time.Now())
	require.NoError(t, err)
	e.bind(t, aor, h, "dev"+strconv.Itoa(len(before)))
	after, err := e.store.Bindings(context.Background(), aor, time.Now())
	require.NoError(t, err)
	e.p.RegistrationChanged(registrar.Change{AOR: aor, Before: before, After: after, At: time.Now()})
}

// aliceAndBob binds two handsets, alice and bob, and returns them with
// rcsd's UDP address.
func (e *env) aliceAndBob(t *testing.T) (alice, bob *handset, srv string) {
	t.Helper()
	alice, bob = newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	e.bind(t, "sip:bob@rcs.local", bob, "bob")
	return alice, bob, e.srv.Addr("udp")
}

// runSweeper runs the pager's sweeper until the test ends.
func (e *env) runSweeper(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.p.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
}

func (e *env) count(t *testing.T) int {
	t.Helper()
	n, err := e.store.CountMessages(context.Background())
	require.NoError(t, err)
	return n
}

// An RCS message to an offline recipient is stored before the 202, and
// delivered the moment the recipient registers; the sender's IDs and the
// body arrive unchanged, the sender asserted.
func TestStoreAndForward(t *testing.T) {
	e := start(t, nil)
	alice, bob := newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	srv := e.srv.Addr("udp")

	for i, branch := range []string{"z9hG4bK-sf1", "z9hG4bK-sf2", "z9hG4bK-sf3"} {
		msg := fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), branch,
			set("Contribution-ID", "contrib-"+strconv.Itoa(i)))
		// Each its own imdn.Message-ID (same length: Content-Length holds).
		alice.send(srv, strings.Replace(msg, "W8dcb0vf", "W8dcb0v"+strconv.Itoa(i), 1))
		res := readFinal(alice)
		require.Equal(t, 202, status(res), res)
		assert.Regexp(t, `(?m)^Server: IM-serv`, res)
		assert.Regexp(t, `(?m)^To: <sip:bob@rcs.local>;tag=\S+\r$`, res)
	}
	assert.Equal(t, 3, e.count(t), "stored before the 202")

	e.registered(t, "sip:bob@rcs.local", bob)
	for i := range 3 {
		got, _ := bob.read(5 * time.Second)
		require.NotEmpty(t, got, "stored message %d delivered on registration", i)
		assert.Equal(t, "contrib-"+strconv.Itoa(i), header(got, "Contribution-ID"), "in order")
		assert.Equal(t, "u13900010001010203", header(got, "Conversation-ID"))
		assert.Equal(t, "<sip:alice@rcs.local>", header(got, "P-Asserted-Identity"))
		assert.Equal(t, "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg", header(got, "P-Asserted-Service"))
		assert.Equal(t, "IM-serv/OMA1.0 rcsd-test", header(got, "User-Agent"))
		assert.Contains(t, got, "imdn.Message-ID: W8dcb0v"+strconv.Itoa(i))
		bob.send(srv, answer(got, 200, "OK"))
	}
	require.Eventually(t, func() bool { return e.count(t) == 0 }, 3*time.Second, 20*time.Millisecond, "removed after the 2xx")
}

// A registered recipient that does not answer in time: stored (202), and
// retried after the back-off by the sweeper.
func TestUnreachableThenRetried(t *testing.T) {
	e := start(t, nil, func(o *Options) { o.DeliveryTimeout = 300 * time.Millisecond })
	e.runSweeper(t)
	alice, bob, srv := e.aliceAndBob(t)

	alice.send(srv, fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-u1"))
	first, _ := bob.read(2 * time.Second)
	require.NotEmpty(t, first, "tried at once")
	res := readFinal(alice) // bob stays silent
	require.Equal(t, 202, status(res), res)
	require.Equal(t, 1, e.count(t))

	// The retry comes after RetryMin (1s); this time bob answers.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got, _ := bob.read(time.Second)
		if got != "" && header(got, "Call-ID") != header(first, "Call-ID") {
			bob.send(srv, answer(got, 200, "OK"))
			break
		}
	}
	require.Eventually(t, func() bool { return e.count(t) == 0 }, 3*time.Second, 20*time.Millisecond)
}

// A retry that fails too is tried again after the back-off (the drain
// puts the recipient back on the store's retry schedule), not sooner.
func TestRetryAfterFailedRetry(t *testing.T) {
	e := start(t, nil, func(o *Options) { o.DeliveryTimeout = 300 * time.Millisecond })
	e.runSweeper(t)
	alice, bob, srv := e.aliceAndBob(t)

	alice.send(srv, fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-r2"))
	var callIDs []string
	var times []time.Time
	deadline := time.Now().Add(8 * time.Second)
	for len(callIDs) < 3 && time.Now().Before(deadline) {
		got, _ := bob.read(200 * time.Millisecond)
		if got == "" || !strings.HasPrefix(got, "MESSAGE ") || slices.Contains(callIDs, header(got, "Call-ID")) {
			continue // nothing yet, or a retransmission
		}
		callIDs = append(callIDs, header(got, "Call-ID"))
		times = append(times, time.Now())
		if len(callIDs) == 3 {
			bob.send(srv, answer(got, 200, "OK")) // the second retry is taken
		}
	}
	require.Len(t, callIDs, 3, "direct attempt, a first retry, a second retry")
	assert.Equal(t, 2.0, testutil.ToFloat64(e.p.metrics.Retries), "two recipients taken off the schedule")
	assert.Equal(t, 202, status(readFinal(alice)))
	assert.GreaterOrEqual(t, times[2].Sub(times[1]), 900*time.Millisecond, "RetryMin (1s) after the failed retry")
	require.Eventually(t, func() bool { return e.count(t) == 0 }, 3*time.Second, 20*time.Millisecond)
}

// A copy of a stored message (same Call-ID and CSeq, or the same
// imdn.Message-ID from the same sender) is answered 202 and not stored
// again.
func TestDuplicateStoredOnce(t *testing.T) {
	e := start(t, nil)
	alice := newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	srv := e.srv.Addr("udp")
	msg := fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-d1")
	alice.send(srv, msg)
	require.Equal(t, 202, status(readFinal(alice)))
	// Same request again on a new transaction (a client resending after
	// a timeout), then a new request carrying the same imdn.Message-ID.
	alice.send(srv, strings.Replace(msg, "branch=z9hG4bK-d1", "branch=z9hG4bK-d1b", 1))
	require.Equal(t, 202, status(readFinal(alice)))
	alice.send(srv, fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-d2"))
	require.Equal(t, 202, status(readFinal(alice)))
	assert.Equal(t, 1, e.count(t))
}

// Stored messages past their lifetime are dropped and reported.
func TestExpiry(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	e := start(t, nil, func(o *Options) { o.Now = func() time.Time { return time.Unix(0, now.Load()) } })
	var failed []storage.Message
	e.p.onFailed = func(m storage.Message) { failed = append(failed, m) }
	alice := newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	alice.send(e.srv.Addr("udp"), fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-e1"))
	require.Equal(t, 202, status(readFinal(alice)))
	e.p.sweep(context.Background())
	assert.Equal(t, 1, e.count(t), "not yet")
	now.Add(int64(7*24*time.Hour + time.Second))
	e.p.sweep(context.Background())
	assert.Equal(t, 0, e.count(t))
	require.Len(t, failed, 1)
	assert.Equal(t, "sip:alice@rcs.local", failed[0].Sender)
}

func TestKeepAliveNotStored(t *testing.T) {
	e := start(t, nil)
	alice := newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	msg := fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-k1")
	msg = strings.Replace(msg, ";branch=z9hG4bK-k1", ";rkeep=600;branch=z9hG4bK-k1", 1)
	alice.send(e.srv.Addr("udp"), msg)
	assert.Equal(t, 200, status(readFinal(alice)))
	assert.Zero(t, e.count(t))
}

func TestStorageDownIsNot202(t *testing.T) {
	e := start(t, nil)
	alice := newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	require.NoError(t, e.store.Close())
	alice.send(e.srv.Addr("udp"), message("sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-x1"))
	res := readFinal(alice)
	assert.Equal(t, 503, status(res), res)
}

// One message to a recipient list reaches every listed recipient, online
// or not (seed 001 fig 5-18, fixture 16).
func TestRecipientList(t *testing.T) {
	e := start(t, nil)
	alice, user3 := newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	e.bind(t, "sip:user3@bj.ims.mnc000.mcc460.3gppnetwork.org", user3, "user3")
	alice.send(e.srv.Addr("udp"), fixtureMessage(t, "16-pager-message-recipient-list.txt", "sip:alice@rcs.local", "sip:msgas@rcs.local", alice.addr(), "z9hG4bK-l1"))
	res := readFinal(alice)
	require.Equal(t, 202, status(res), res)
	got, _ := user3.read(5 * time.Second)
	require.NotEmpty(t, got, "the online member gets it")
	assert.Equal(t, "message/cpim", header(got, "Content-Type"))
	assert.Contains(t, got, "From: <anonymous@anonymous.invalid >")
	assert.NotContains(t, got, "resource-lists")
	user3.send(e.srv.Addr("udp"), answer(got, 200, "OK"))
	require.Eventually(t, func() bool {
		ms, _ := e.store.PendingMessages(context.Background(), "sip:user4@bj.ims.mnc000.mcc460.3gppnetwork.org", 0)
		return len(ms) == 1 && e.count(t) == 1
	}, 3*time.Second, 20*time.Millisecond, "the offline member's copy stays stored")
}

// Seed 001 §5.1.1.1.1-§5.1.1.1.2: what claims to be RCS is checked, and
// every refusal names what is wrong.
func TestValidation(t *testing.T) {
	e := start(t, nil)
	alice, bob := newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	e.bind(t, "sip:bob@rcs.local", bob, "bob")
	cases := []struct {
		name, fixture string
		edit          []func(string) string
		body          func(string) string
		want          string
	}{
		{"missing Conversation-ID", "15-pager-message-one-to-one.txt", []func(string) string{drop("Conversation-ID")}, nil, "400 Missing Conversation-ID header"},
		{"missing Contribution-ID", "15-pager-message-one-to-one.txt", []func(string) string{drop("Contribution-ID")}, nil, "400 Missing Contribution-ID header"},
		{"missing Accept-Contact", "15-pager-message-one-to-one.txt", []func(string) string{drop("Accept-Contact")}, nil, "400 Missing Accept-Contact header"},
		{"empty User-Agent", "15-pager-message-one-to-one.txt", []func(string) string{set("User-Agent", "")}, nil, "400 Empty User-Agent header"},
		{"empty optional header", "15-pager-message-one-to-one.txt", []func(string) string{set("Allow", "")}, nil, "400 Empty Allow header"},
		{"wrong service", "15-pager-message-one-to-one.txt", []func(string) string{set("P-Preferred-Service", "urn:urn-7:3gpp-service.ims.icsi.mmtel"), set("Accept-Contact", `*;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"`)}, nil, "400 Wrong P-Preferred-Service"},
		{"unsupported type", "15-pager-message-one-to-one.txt", []func(string) string{set("Content-Type", "image/png")}, nil, "400 Unsupported Content-Type image/png"},
		{"boundary without multipart/mixed", "15-pager-message-one-to-one.txt", []func(string) string{set("Content-Type", "message/cpim;boundary=x")}, nil, "400 Boundary Only With multipart/mixed"},
		{"duplicate CPIM header", "15-pager-message-one-to-one.txt", nil, func(b string) string {
			return strings.Replace(b, "imdn.Message-ID: W8dcb0vf\r\n", "imdn.Message-ID: W8dcb0vf\r\nimdn.Message-ID: again\r\n", 1)
		}, "400 Duplicate CPIM Header"},
		{"report requested without Message-ID", "15-pager-message-one-to-one.txt", nil, func(b string) string {
			return strings.Replace(b, "imdn.Message-ID: W8dcb0vf\r\n", "", 1)
		}, "400 IMDN Request Without imdn.Message-ID"},
		{"report requested without DateTime", "15-pager-message-one-to-one.txt", nil, func(b string) string {
			return strings.Replace(b, "DateTime: 2012-09-01T11:46:43+08:00\r\n", "", 1)
		}, "400 IMDN Request Without DateTime"},
		{"duplicate part type", "16-pager-message-recipient-list.txt", nil, func(b string) string {
			i := strings.Index(b, "--jXfWUFcrCxZEXdN\r\nContent-Type: message/cpim")
			j := strings.LastIndex(b, "--jXfWUFcrCxZEXdN--")
			return b[:j] + b[i:j] + b[j:]
		}, "400 Duplicate message/cpim Body Part"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := fixtureMessage(t, tc.fixture, "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-v"+strconv.Itoa(i), tc.edit...)
			if tc.body != nil {
				head, body, _ := strings.Cut(msg, "\r\n\r\n")
				body = tc.body(body)
				head = regexp.MustCompile(`(?m)^Content-Length:.*$`).ReplaceAllString(head, "Content-Length: "+strconv.Itoa(len(body))+"\r")
				msg = head + "\r\n\r\n" + body
			}
			alice.send(e.srv.Addr("udp"), msg)
			res := readFinal(alice)
			assert.True(t, strings.HasPrefix(res, "SIP/2.0 "+tc.want+"\r\n"), res)
			if strings.Contains(tc.want, "Unsupported") {
				assert.Regexp(t, `(?m)^Accept: message/cpim, `, res)
			}
			got, _ := bob.read(200 * time.Millisecond)
			assert.Empty(t, got, "nothing delivered")
		})
	}
	// The spec's own payloads pass: a bare vemoticon (fixture 17, quirk Q12).
	alice.send(e.srv.Addr("udp"), fixtureMessage(t, "17-pager-message-vemoticon.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-vem"))
	got, _ := bob.read(5 * time.Second)
	require.NotEmpty(t, got)
	assert.Equal(t, "application/vemoticon+xml", header(got, "Content-Type"))
	bob.send(e.srv.Addr("udp"), answer(got, 200, "OK"))
	assert.Equal(t, 200, status(readFinal(alice)))
}

// withBody replaces a wire message's body, fixing its Content-Length.
func withBody(msg string, edit func(string) string) string {
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	body = edit(body)
	head = regexp.MustCompile(`(?m)^Content-Length:.*$`).ReplaceAllString(head, "Content-Length: "+strconv.Itoa(len(body))+"\r")
	return head + "\r\n\r\n" + body
}

// An IMDN from the recipient reaches the original sender even when the
// sender went offline meanwhile: stored (202) and delivered at the
// sender's next registration (seed 001 figs 5-24..5-27, fixtures 20-23).
func TestIMDNToOfflineSender(t *testing.T) {
	e := start(t, nil)
	bob, alice := newHandset(t), newHandset(t)
	e.bind(t, "sip:bob@rcs.local", bob, "bob")
	srv := e.srv.Addr("udp")
	bob.send(srv, fixtureMessage(t, "20-imdn-ue-to-server.txt", "sip:bob@rcs.local", "sip:alice@rcs.local", bob.addr(), "z9hG4bK-n1"))
	res := readFinal(bob)
	require.Equal(t, 202, status(res), res)
	require.Equal(t, 1, e.count(t))

	e.registered(t, "sip:alice@rcs.local", alice)
	got, _ := alice.read(5 * time.Second)
	require.NotEmpty(t, got)
	assert.Equal(t, "<sip:bob@rcs.local>", header(got, "P-Asserted-Identity"))
	assert.Contains(t, got, "Content-Type: message/imdn+xml")
	assert.Contains(t, got, "<message-id>dpecbMzb</message-id>")
	alice.send(srv, answer(got, 200, "OK"))
	require.Eventually(t, func() bool { return e.count(t) == 0 }, 3*time.Second, 20*time.Millisecond)
}

// A stored message that asked for negative-delivery and expires makes
// rcsd send its sender a "failed" delivery notification — once, and never
// a notification about a notification.
func TestExpiryNegativeDelivery(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	e := start(t, nil, func(o *Options) { o.Now = func() time.Time { return time.Unix(0, now.Load()) } })
	alice, bob := newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	e.bind(t, "sip:bob@rcs.local", bob, "bob")
	srv := e.srv.Addr("udp")
	msg := withBody(fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:carol@rcs.local", alice.addr(), "z9hG4bK-neg"),
		func(b string) string {
			return strings.Replace(b, "imdn.Disposition-Notification: display", "imdn.Disposition-Notification: positive-delivery, negative-delivery", 1)
		})
	alice.send(srv, msg)
	require.Equal(t, 202, status(readFinal(alice)))
	// An IMDN to carol (offline) expires too: no notification about it.
	bob.send(srv, fixtureMessage(t, "20-imdn-ue-to-server.txt", "sip:bob@rcs.local", "sip:carol@rcs.local", bob.addr(), "z9hG4bK-neg2"))
	require.Equal(t, 202, status(readFinal(bob)))

	now.Add(int64(7*24*time.Hour + time.Second))
	// alice is still registered a week later (a fresh binding).
	later := time.Unix(0, now.Load())
	_, err := e.store.UpdateBindings(context.Background(), "sip:alice@rcs.local", later, func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{{AOR: "sip:alice@rcs.local", Contact: "sip:alice@" + alice.addr(), CallID: "a", CSeq: 2,
			Expires: later.Add(time.Hour), Transport: "udp", Source: alice.addr(), Local: srv}}, nil
	})
	require.NoError(t, err)
	e.p.sweep(context.Background())
	got, _ := alice.read(5 * time.Second)
	require.NotEmpty(t, got, "the sender is told")
	assert.Equal(t, "<sip:carol@rcs.local>", header(got, "P-Asserted-Identity"), "on behalf of the recipient")
	assert.Contains(t, got, "Content-Disposition: notification")
	assert.Contains(t, got, "<message-id>W8dcb0vf</message-id>")
	assert.Contains(t, got, "<failed/>")
	alice.send(srv, answer(got, 200, "OK"))
	other, _ := bob.read(500 * time.Millisecond)
	assert.Empty(t, other, "no notification about an expired notification")
}

// Tolerant of the spec's spellings (chat-group checklist 20): fixture 17
// as sent, with "sip: user1@… >" in From and a bare "sip: user2@…" To,
// and its garbled Accept-Contact, is relayed.
func TestTolerantFixture(t *testing.T) {
	e := start(t, nil)
	user1, user2 := newHandset(t), newHandset(t)
	e.bind(t, "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", user1, "u1")
	e.bind(t, "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org", user2, "u2")
	b, err := os.ReadFile("testdata/17-pager-message-vemoticon.txt")
	require.NoError(t, err)
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	head, body, _ := strings.Cut(s, "\n\n")
	head = regexp.MustCompile(`(?m)^Via:.*$`).ReplaceAllString(head, "Via: SIP/2.0/UDP "+user1.addr()+";branch=z9hG4bK-tol;rport")
	body = strings.ReplaceAll(body, "\n", "\r\n")
	head = regexp.MustCompile(`(?m)^Content-Length:.*$`).ReplaceAllString(head, "Content-Length: "+strconv.Itoa(len(body)))
	user1.send(e.srv.Addr("udp"), strings.ReplaceAll(head, "\n", "\r\n")+"\r\n\r\n"+body)
	got, _ := user2.read(5 * time.Second)
	require.NotEmpty(t, got, "relayed")
	assert.Equal(t, "<sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org>", header(got, "P-Asserted-Identity"))
	user2.send(e.srv.Addr("udp"), answer(got, 200, "OK"))
	assert.Equal(t, 200, status(readFinal(user1)))
}

// Burn after reading (seed 001 checklist 14): the barCycle feature
// parameter and the burned disposition reach the recipient unchanged,
// whether delivered at once or from the store.
func TestBurnAfterReadingCarried(t *testing.T) {
	e := start(t, nil)
	alice, bob := newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	srv := e.srv.Addr("udp")
	burn := `*;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg";barCycle=10`
	msg := withBody(fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-bar", set("Accept-Contact", burn)),
		func(b string) string {
			return strings.Replace(b, "imdn.Disposition-Notification: display", "imdn.Disposition-Notification: positive-delivery, display, burned", 1)
		})
	alice.send(srv, msg)
	require.Equal(t, 202, status(readFinal(alice)), "bob is offline: stored")
	e.registered(t, "sip:bob@rcs.local", bob)
	got, _ := bob.read(5 * time.Second)
	require.NotEmpty(t, got)
	assert.Equal(t, burn, header(got, "Accept-Contact"))
	assert.Contains(t, got, "imdn.Disposition-Notification: positive-delivery, display, burned")
	bob.send(srv, answer(got, 200, "OK"))
}

// Nodes sharing a store never drain one recipient at once: while another
// node holds the drain lease (it died mid-drain, say) this node leaves
// the messages alone, and takes over once the lease has lapsed.
func TestDrainLease(t *testing.T) {
	e := start(t, nil, func(o *Options) { o.Node = "n1"; o.LeaseTTL = 600 * time.Millisecond })
	alice, bob := newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	srv := e.srv.Addr("udp")
	alice.send(srv, fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-lease"))
	require.Equal(t, 202, status(readFinal(alice)))

	ok, err := e.store.Lease(context.Background(), "drain:sip:bob@rcs.local", "n2", time.Now(), 500*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	e.registered(t, "sip:bob@rcs.local", bob)
	got, _ := bob.read(300 * time.Millisecond)
	assert.Empty(t, got, "n2 holds the lease")

	// The refused drain scheduled a look once n2's lease would have
	// lapsed: a sweep then takes over (nothing else would: bob was
	// offline when the message was stored, so no retry was scheduled).
	deadline := time.Now().Add(3 * time.Second)
	e.p.lastRescan = time.Now() // the sweeps below do not rescan
	for got == "" && time.Now().Before(deadline) {
		e.p.sweep(context.Background())
		got, _ = bob.read(100 * time.Millisecond)
	}
	require.NotEmpty(t, got)
	assert.Contains(t, got, "imdn.Message-ID: W8dcb0vf")
	bob.send(srv, answer(got, 200, "OK"))
	require.Eventually(t, func() bool { return e.count(t) == 0 }, 3*time.Second, 20*time.Millisecond)
	ok, err = e.store.Lease(context.Background(), "drain:sip:bob@rcs.local", "n2", time.Now(), time.Second)
	require.NoError(t, err)
	assert.True(t, ok, "released after the drain")
}

func TestGainsFlow(t *testing.T) {
	b := storage.Binding{AOR: "sip:bob@rcs.local", Contact: "sip:bob@10.0.0.1:5060", Transport: "tcp",
		Source: "10.0.0.1:40000", Local: "127.0.0.1:5060", Node: "n1", Path: []string{"<sip:kam;lr>"}}
	with := func(f func(*storage.Binding)) storage.Binding {
		c := b
		c.Path = slices.Clone(b.Path)
		f(&c)
		return c
	}
	tests := []struct {
		name          string
		before, after []storage.Binding
		want          bool
	}{
		{"first registration", nil, []storage.Binding{b}, true},
		{"refresh over the same flow", []storage.Binding{b}, []storage.Binding{with(func(c *storage.Binding) { c.CSeq++ })}, false},
		{"another device", []storage.Binding{b}, []storage.Binding{b, with(func(c *storage.Binding) { c.Contact = "sip:bob2@10.0.0.2" })}, true},
		{"reconnected (new source port)", []storage.Binding{b}, []storage.Binding{with(func(c *storage.Binding) { c.Source = "10.0.0.1:40001" })}, true},
		{"moved to another node", []storage.Binding{b}, []storage.Binding{with(func(c *storage.Binding) { c.Node = "n2" })}, true},
		{"another transport", []storage.Binding{b}, []storage.Binding{with(func(c *storage.Binding) { c.Transport = "tls" })}, true},
		{"another edge proxy", []storage.Binding{b}, []storage.Binding{with(func(c *storage.Binding) { c.Path = []string{"<sip:kam2;lr>"} })}, true},
		{"de-registration", []storage.Binding{b}, nil, false},
		{"one of two removed", []storage.Binding{b, with(func(c *storage.Binding) { c.Contact = "sip:bob2@10.0.0.2" })}, []storage.Binding{b}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, gainsFlow(registrar.Change{AOR: b.AOR, Before: tc.before, After: tc.after}))
		})
	}
}

// A message stored while its recipient's registration was being written
// (the sender's node saw no binding; the registration's drain read the
// queue before the message was in it) is delivered by the retry the
// registration scheduled a sweep later, not left for the rescan.
func TestMessageStoredDuringRegistration(t *testing.T) {
	e := start(t, nil)
	bob := newHandset(t)
	e.registered(t, "sip:bob@rcs.local", bob)
	time.Sleep(50 * time.Millisecond) // the registration's drain found nothing
	now := time.Now()
	_, err := e.store.PutMessage(context.Background(), storage.Message{ID: newID(now), Recipient: "sip:bob@rcs.local",
		Sender: "sip:alice@rcs.local", Received: now, Expires: now.Add(time.Hour),
		Headers: []string{"Content-Type: text/plain"}, Body: []byte("raced")})
	require.NoError(t, err)

	var got string
	e.p.lastRescan = time.Now() // the sweeps below do not rescan
	for deadline := time.Now().Add(3 * time.Second); got == "" && time.Now().Before(deadline); {
		e.p.sweep(context.Background())
		got, _ = bob.read(100 * time.Millisecond)
	}
	require.NotEmpty(t, got)
	assert.True(t, strings.HasSuffix(got, "raced"), got)
	bob.send(e.srv.Addr("udp"), answer(got, 200, "OK"))
	require.Eventually(t, func() bool { return e.count(t) == 0 }, 3*time.Second, 20*time.Millisecond)
}

// refusingSchedule is a store whose retry schedule is out of reach (a
// partial outage: the message was stored, the schedule write failed).
type refusingSchedule struct{ storage.Store }

func (refusingSchedule) ScheduleRetry(context.Context, string, time.Time) error {
	return errors.New("schedule unreachable")
}

// A retry the store could not schedule is kept by the node and started
// by its sweep.
func TestRetryKeptWhenScheduleFails(t *testing.T) {
	e := startWith(t, nil, func(s storage.Store) storage.Store { return refusingSchedule{s} },
		func(o *Options) { o.DeliveryTimeout = 300 * time.Millisecond })
	alice, bob, srv := e.aliceAndBob(t)

	alice.send(srv, fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", "sip:bob@rcs.local", alice.addr(), "z9hG4bK-ks"))
	first, _ := bob.read(2 * time.Second)
	require.NotEmpty(t, first)
	require.Equal(t, 202, status(readFinal(alice))) // bob stayed silent
	e.p.mu.Lock()
	kept, ok := e.p.later["sip:bob@rcs.local"]
	e.p.mu.Unlock()
	require.True(t, ok, "kept by the node")
	assert.False(t, kept.recheck, "a retry, not a second look")

	e.p.lastRescan = time.Now() // the sweeps below do not rescan
	var got string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		e.p.sweep(context.Background())
		got, _ = bob.read(100 * time.Millisecond)
		if got != "" && strings.HasPrefix(got, "MESSAGE ") && header(got, "Call-ID") != header(first, "Call-ID") {
			break
		}
		got = ""
	}
	require.NotEmpty(t, got, "retried from the node's own schedule")
	bob.send(srv, answer(got, 200, "OK"))
	require.Eventually(t, func() bool { return e.count(t) == 0 }, 3*time.Second, 20*time.Millisecond)
}
