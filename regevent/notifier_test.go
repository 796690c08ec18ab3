package regevent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"rcsd/registrar"
	rsip "rcsd/sip"
	"rcsd/storage"
	"rcsd/storage/memory"
)

const (
	alice      = "sip:alice@rcs.local"
	ueAddr     = "192.0.2.10:5060"
	localAddr  = "198.51.100.1:5060"
	ourContact = "sip:rcsd@198.51.100.1:5060"
)

// sent is one NOTIFY handed to the Sender.
type sent struct {
	wire string
	req  *siplib.Request
	flow rsip.Flow
}

// fakeSender records NOTIFYs and answers them with respond (200 when nil).
type fakeSender struct {
	ch      chan sent
	mu      sync.Mutex
	respond func(ctx context.Context, req *siplib.Request) (*siplib.Response, error)
}

func (f *fakeSender) Request(ctx context.Context, req *siplib.Request, flow rsip.Flow) (*siplib.Response, error) {
	f.ch <- sent{wire: req.String(), req: req, flow: flow}
	f.mu.Lock()
	respond := f.respond
	f.mu.Unlock()
	if respond != nil {
		return respond(ctx, req)
	}
	return siplib.NewResponseFromRequest(req, 200, "OK", nil), nil
}

func (f *fakeSender) answer(fn func(ctx context.Context, req *siplib.Request) (*siplib.Response, error)) {
	f.mu.Lock()
	f.respond = fn
	f.mu.Unlock()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t      *testing.T
	n      *Notifier
	store  *memory.Store
	sender *fakeSender
	clock  *clock
	logs   *observer.ObservedLogs
	stop   func()
}

func newHarness(t *testing.T, mutate ...func(*Options)) *harness {
	t.Helper()
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	c := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	core, logs := observer.New(zap.DebugLevel)
	opts := Options{MinExpires: 60, MaxExpires: 7200, DefaultExpires: 3600, Contact: ourContact, Now: c.now, SweepInterval: time.Hour}
	for _, m := range mutate {
		m(&opts)
	}
	sender := &fakeSender{ch: make(chan sent, 100)}
	h := &harness{t: t, store: store, sender: sender, clock: c, logs: logs}
	h.n = New(opts, store, sender, zap.New(core))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.n.Run(ctx); close(done) }()
	h.stop = func() { cancel(); <-done }
	t.Cleanup(h.stop)
	h.bind(alice, storage.Binding{Contact: "sip:alice@" + ueAddr, InstanceID: "urn:gsma:imei:35209900-176148-1", RegID: 1,
		Params: `+sip.instance="<urn:gsma:imei:35209900-176148-1>";reg-id=1`, Transport: "udp", Source: ueAddr, Local: localAddr,
		CallID: "reg-1", CSeq: 1, Expires: c.now().Add(time.Hour), RegisteredAt: c.now()})
	return h
}

func (h *harness) bind(aor string, bs ...storage.Binding) []storage.Binding {
	h.t.Helper()
	for i := range bs {
		bs[i].AOR = aor
	}
	got, err := h.store.UpdateBindings(context.Background(), aor, h.clock.now(), func([]storage.Binding) ([]storage.Binding, error) {
		return bs, nil
	})
	require.NoError(h.t, err)
	return got
}

// subscribeWire is a handset's initial SUBSCRIBE for its own identity,
// through two proxies.
const subscribeWire = `SUBSCRIBE sip:alice@rcs.local SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-sub1;rport
Max-Forwards: 70
From: "Alice" <sip:alice@rcs.local>;tag=ue1
To: <sip:alice@rcs.local>
Call-ID: sub-1@192.0.2.10
CSeq: 1 SUBSCRIBE
Contact: <sip:alice@192.0.2.10:5060>;+sip.instance="<urn:gsma:imei:35209900-176148-1>"
Record-Route: <sip:pcscf1.rcs.local;lr>
Record-Route: <sip:pcscf2.rcs.local;lr>
Event: reg
Accept: application/reginfo+xml
Expires: 600
Content-Length: 0

`

func parse(t testing.TB, wire, transport, source string) *siplib.Request {
	t.Helper()
	wire = strings.ReplaceAll(strings.ReplaceAll(wire, "\r\n", "\n"), "\n", "\r\n")
	msg, err := siplib.ParseMessage([]byte(wire))
	require.NoError(t, err)
	req := msg.(*siplib.Request)
	req.SetTransport(transport)
	req.SetSource(source)
	return req
}

// edit replaces header lines of a wire message: "Name: value" replaces
// the header, "Name:" removes it, "+Name: value" adds one.
func edit(wire string, changes ...string) string {
	head, body, _ := strings.Cut(wire, "\n\n")
	lines := strings.Split(head, "\n")
	for _, c := range changes {
		if add, ok := strings.CutPrefix(c, "+"); ok {
			lines = append(lines, add)
			continue
		}
		name, value, _ := strings.Cut(c, ":")
		out := lines[:0:0]
		for _, l := range lines {
			if n, _, _ := strings.Cut(l, ":"); strings.EqualFold(n, name) {
				if strings.TrimSpace(value) != "" {
					out = append(out, c)
				}
				continue
			}
			out = append(out, l)
		}
		lines = out
	}
	return strings.Join(lines, "\n") + "\n\n" + body
}

func (h *harness) serve(wire, transport, source string) *siplib.Response {
	h.t.Helper()
	ctx := context.WithValue(context.Background(), rsip.LocalAddrKey{}, localAddr)
	return h.n.ServeSIP(ctx, parse(h.t, wire, transport, source))
}

func (h *harness) next() sent {
	h.t.Helper()
	select {
	case s := <-h.sender.ch:
		return s
	case <-time.After(5 * time.Second):
		h.t.Fatal("no NOTIFY sent")
		return sent{}
	}
}

func (h *harness) none() {
	h.t.Helper()
	select {
	case s := <-h.sender.ch:
		h.t.Fatalf("unexpected NOTIFY:\n%s", s.wire)
	case <-time.After(100 * time.Millisecond):
	}
}

func body(t *testing.T, s sent) *Reginfo {
	t.Helper()
	doc, err := Parse(s.req.Body())
	require.NoError(t, err, s.wire)
	require.Len(t, doc.Registrations, 1)
	return doc
}

func header(t *testing.T, wire, name string) string {
	t.Helper()
	for _, l := range strings.Split(wire, "\r\n") {
		if n, v, ok := strings.Cut(l, ": "); ok && n == name {
			return v
		}
	}
	t.Fatalf("no %s header in\n%s", name, wire)
	return ""
}

func TestSubscribeRefused(t *testing.T) {
	tests := []struct {
		name      string
		wire      string
		transport string
		source    string
		status    string
		extra     []string
	}{
		{"no Event", edit(subscribeWire, "Event:"), "UDP", ueAddr, "489 Bad Event", []string{"Allow-Events: reg"}},
		{"other package", edit(subscribeWire, "Event: presence"), "UDP", ueAddr, "489 Bad Event", []string{"Allow-Events: reg"}},
		{"reg as a prefix only", edit(subscribeWire, "Event: registration"), "UDP", ueAddr, "489 Bad Event", nil},
		{"Accept without reginfo", edit(subscribeWire, "Accept: application/pidf+xml, text/plain"), "UDP", ueAddr, "406 Not Acceptable",
			[]string{"Accept: application/reginfo+xml"}},
		{"Expires too brief", edit(subscribeWire, "Expires: 59"), "UDP", ueAddr, "423 Interval Too Brief", []string{"Min-Expires: 60"}},
		{"Expires not a number", edit(subscribeWire, "Expires: soon"), "UDP", ueAddr, "400 Invalid Expires header", nil},
		{"no Contact", edit(subscribeWire, "Contact:"), "UDP", ueAddr, "400 Missing Contact header", nil},
		{"other source port", subscribeWire, "UDP", "192.0.2.10:5061", "403 Not registered from this flow", nil},
		{"other transport", subscribeWire, "TCP", ueAddr, "403 Not registered from this flow", nil},
		{"someone else's identity", edit(subscribeWire, "SUBSCRIBE sip:bob@rcs.local SIP/2.0", "To: <sip:bob@rcs.local>"), "UDP", ueAddr,
			"403 Not registered from this flow", nil},
		{"unknown dialog", edit(subscribeWire, "To: <sip:alice@rcs.local>;tag=nosuch"), "UDP", ueAddr, "481 Subscription Does Not Exist", nil},
		{"no identity at all", edit(subscribeWire, "SUBSCRIBE sip:rcs.local SIP/2.0", "To: <sip:rcs.local>"), "UDP", ueAddr,
			"400 Invalid target identity", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			res := h.serve(tt.wire, tt.transport, tt.source)
			wire := res.String()
			assert.True(t, strings.HasPrefix(wire, "SIP/2.0 "+tt.status+"\r\n"), wire)
			for _, e := range tt.extra {
				assert.Contains(t, wire, "\r\n"+e+"\r\n")
			}
			assert.Equal(t, 0, h.n.Count())
			assert.Equal(t, 1, h.logs.FilterMessage("SUBSCRIBE rejected").Len(), "every refusal is logged")
			h.none()
		})
	}
}

// A handset's SUBSCRIBE gets a 200 that creates the dialog and a NOTIFY
// within it carrying the full state.
func TestSubscribeAndFirstNotify(t *testing.T) {
	h := newHarness(t)
	res := h.serve(subscribeWire, "UDP", ueAddr)
	wire := res.String()
	require.True(t, strings.HasPrefix(wire, "SIP/2.0 200 OK\r\n"), wire)
	localTag, ok := res.To().Params.Get("tag")
	require.True(t, ok)
	assert.Contains(t, wire, "\r\nExpires: 600\r\n")
	assert.Contains(t, wire, "\r\nContact: <"+ourContact+">\r\n")
	assert.Contains(t, wire, "\r\nRecord-Route: <sip:pcscf1.rcs.local;lr>\r\nRecord-Route: <sip:pcscf2.rcs.local;lr>\r\n", "2xx copies Record-Route")
	assert.Equal(t, 1, h.n.Count())

	n := h.next()
	assert.True(t, strings.HasPrefix(n.wire, "NOTIFY sip:alice@192.0.2.10:5060 SIP/2.0\r\n"), "Request-URI is the SUBSCRIBE's Contact:\n%s", n.wire)
	assert.Contains(t, n.wire, "\r\nRoute: <sip:pcscf1.rcs.local;lr>\r\nRoute: <sip:pcscf2.rcs.local;lr>\r\n", "route set in Record-Route order")
	assert.Equal(t, "70", header(t, n.wire, "Max-Forwards"))
	assert.Equal(t, "<sip:alice@rcs.local>;tag="+localTag, header(t, n.wire, "From"))
	assert.Equal(t, `"Alice" <sip:alice@rcs.local>;tag=ue1`, header(t, n.wire, "To"))
	assert.Equal(t, "sub-1@192.0.2.10", header(t, n.wire, "Call-ID"))
	assert.Equal(t, "1 NOTIFY", header(t, n.wire, "CSeq"))
	assert.Equal(t, "<"+ourContact+">", header(t, n.wire, "Contact"))
	assert.Equal(t, "reg", header(t, n.wire, "Event"))
	assert.Equal(t, "active;expires=600", header(t, n.wire, "Subscription-State"))
	assert.Equal(t, "application/reginfo+xml", header(t, n.wire, "Content-Type"))
	assert.Equal(t, fmt.Sprint(len(n.req.Body())), header(t, n.wire, "Content-Length"))
	assert.NotContains(t, n.wire, "Via:", "the SIP client adds the Via")
	assert.Equal(t, rsip.Flow{Transport: "udp", Source: ueAddr, Local: localAddr, Contact: "sip:alice@192.0.2.10:5060"}, n.flow)

	doc := body(t, n)
	assert.Equal(t, uint32(0), doc.Version)
	assert.Equal(t, DocFull, doc.State)
	reg := doc.Registrations[0]
	assert.Equal(t, alice, reg.AOR)
	assert.Equal(t, StateActive, reg.State)
	require.Len(t, reg.Contacts, 1)
	c := reg.Contacts[0]
	assert.Equal(t, StateActive, c.State)
	assert.Equal(t, EventRegistered, c.Event)
	assert.Equal(t, "sip:alice@"+ueAddr, c.URI)
	assert.Equal(t, uint64(3600), *c.Expires)
	assert.Equal(t, []UnknownParam{{Name: "+sip.instance", Value: `"<urn:gsma:imei:35209900-176148-1>"`}, {Name: "reg-id", Value: "1"}}, c.Params)
	h.none()
}

// A UDP retransmission of the initial SUBSCRIBE gets the same 200 and
// neither a second subscription nor a second NOTIFY.
func TestRetransmittedSubscribe(t *testing.T) {
	h := newHarness(t)
	first := h.serve(subscribeWire, "UDP", ueAddr)
	require.Equal(t, 200, first.StatusCode)
	h.next()
	again := h.serve(subscribeWire, "UDP", ueAddr)
	require.Equal(t, 200, again.StatusCode)
	assert.Equal(t, first.To().Value(), again.To().Value(), "same To tag")
	assert.Equal(t, 1, h.n.Count())
	h.none()
}

// In-dialog SUBSCRIBEs refresh (with a NOTIFY, RFC 6665 §4.2.1.2), are
// ordered by CSeq, and Expires: 0 ends the subscription with a final
// NOTIFY.
func TestRefreshAndUnsubscribe(t *testing.T) {
	h := newHarness(t)
	res := h.serve(subscribeWire, "UDP", ueAddr)
	require.Equal(t, 200, res.StatusCode)
	tag, _ := res.To().Params.Get("tag")
	h.next()
	inDialog := func(cseq int, expires string) string {
		return edit(subscribeWire, "SUBSCRIBE "+ourContact+" SIP/2.0", "To: <sip:alice@rcs.local>;tag="+tag,
			fmt.Sprintf("CSeq: %d SUBSCRIBE", cseq), "Expires: "+expires, "Record-Route:")
	}

	h.clock.advance(100 * time.Second)
	res = h.serve(inDialog(2, "300"), "UDP", ueAddr)
	require.Equal(t, 200, res.StatusCode, res.String())
	assert.Equal(t, "300", res.GetHeader("Expires").Value())
	assert.Nil(t, res.GetHeader("Record-Route"), "Record-Route only in the dialog-creating 2xx")
	n := h.next()
	assert.Equal(t, "2 NOTIFY", header(t, n.wire, "CSeq"))
	assert.Equal(t, "active;expires=300", header(t, n.wire, "Subscription-State"))
	assert.Contains(t, n.wire, "\r\nRoute: <sip:pcscf1.rcs.local;lr>\r\n", "the route set stays the dialog's")
	doc := body(t, n)
	assert.Equal(t, uint32(1), doc.Version)
	assert.Equal(t, EventRegistered, doc.Registrations[0].Contacts[0].Event, "nothing changed for the contact")
	assert.Equal(t, uint64(3500), *doc.Registrations[0].Contacts[0].Expires)

	res = h.serve(inDialog(2, "300"), "UDP", ueAddr)
	assert.Equal(t, 200, res.StatusCode, "a retransmission is answered again")
	res = h.serve(inDialog(1, "300"), "UDP", ueAddr)
	assert.Equal(t, 500, res.StatusCode, "CSeq lower than the last: RFC 3261 §12.2.2")
	h.none()

	res = h.serve(inDialog(3, "0"), "UDP", ueAddr)
	require.Equal(t, 200, res.StatusCode)
	assert.Equal(t, "0", res.GetHeader("Expires").Value())
	n = h.next()
	assert.Equal(t, "3 NOTIFY", header(t, n.wire, "CSeq"))
	assert.Equal(t, "terminated;reason=timeout", header(t, n.wire, "Subscription-State"))
	assert.Equal(t, uint32(2), body(t, n).Version)
	assert.Equal(t, 0, h.n.Count())

	res = h.serve(inDialog(4, "300"), "UDP", ueAddr)
	assert.Equal(t, 481, res.StatusCode)
}

func TestSubscribeVariants(t *testing.T) {
	tests := []struct {
		name         string
		wire         string
		expires      string
		event, state string
	}{
		{"no Expires: default", edit(subscribeWire, "Expires:"), "3600", "reg", "active;expires=3600"},
		{"too long: lowered", edit(subscribeWire, "Expires: 999999"), "7200", "reg", "active;expires=7200"},
		{"no Accept", edit(subscribeWire, "Accept:"), "600", "reg", "active;expires=600"},
		{"Accept with a wildcard", edit(subscribeWire, "Accept: text/plain, application/*;q=0.5"), "600", "reg", "active;expires=600"},
		{"Event id echoed", edit(subscribeWire, "Event: reg;id=7"), "600", "reg;id=7", "active;expires=600"},
		{"compact Event", edit(subscribeWire, "Event:", "+o: reg"), "600", "reg", "active;expires=600"},
		{"To names the identity", edit(subscribeWire, "SUBSCRIBE sip:rcs.local SIP/2.0"), "600", "reg", "active;expires=600"},
		{"fetch", edit(subscribeWire, "Expires: 0"), "0", "reg", "terminated;reason=timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			res := h.serve(tt.wire, "UDP", ueAddr)
			require.Equal(t, 200, res.StatusCode, res.String())
			assert.Equal(t, tt.expires, res.GetHeader("Expires").Value())
			n := h.next()
			assert.Equal(t, tt.event, header(t, n.wire, "Event"))
			assert.Equal(t, tt.state, header(t, n.wire, "Subscription-State"))
			assert.Equal(t, alice, body(t, n).Registrations[0].AOR)
			if tt.expires == "0" {
				assert.Equal(t, 0, h.n.Count(), "a fetch keeps no subscription")
			}
		})
	}
}

func TestRegistrationChanges(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 200, h.serve(subscribeWire, "UDP", ueAddr).StatusCode)
	h.next()
	before, err := h.store.Bindings(context.Background(), alice, h.clock.now())
	require.NoError(t, err)

	// Another identity's change is not ours.
	h.n.RegistrationChanged(registrar.Change{AOR: "sip:bob@rcs.local", After: before, At: h.clock.now()})
	h.none()

	h.clock.advance(time.Minute)
	tablet := storage.Binding{AOR: alice, Contact: "sip:alice@192.0.2.20:5060;transport=tcp", Transport: "tcp", Source: "192.0.2.20:40000",
		CallID: "reg-t", CSeq: 1, Expires: h.clock.now().Add(time.Hour), RegisteredAt: h.clock.now()}
	after := append(append([]storage.Binding(nil), before...), tablet)
	h.n.RegistrationChanged(registrar.Change{AOR: alice, Before: before, After: after, At: h.clock.now()})
	n := h.next()
	assert.Equal(t, "2 NOTIFY", header(t, n.wire, "CSeq"))
	assert.Equal(t, "active;expires=540", header(t, n.wire, "Subscription-State"))
	doc := body(t, n)
	assert.Equal(t, uint32(1), doc.Version)
	cs := doc.Registrations[0].Contacts
	require.Len(t, cs, 2)
	assert.Equal(t, []string{EventRegistered, EventRegistered}, []string{cs[0].Event, cs[1].Event})
	assert.Equal(t, tablet.Contact, cs[1].URI)

	// Both go: the registration is terminated and so is the subscription.
	h.n.RegistrationChanged(registrar.Change{AOR: alice, Before: after, After: nil, At: h.clock.now()})
	n = h.next()
	assert.Equal(t, "terminated;reason=noresource", header(t, n.wire, "Subscription-State"))
	doc = body(t, n)
	assert.Equal(t, StateTerminated, doc.Registrations[0].State)
	for _, c := range doc.Registrations[0].Contacts {
		assert.Equal(t, StateTerminated, c.State)
		assert.Equal(t, EventUnregistered, c.Event)
		assert.Nil(t, c.Expires)
	}
	assert.Equal(t, 0, h.n.Count())
	h.n.RegistrationChanged(registrar.Change{AOR: alice, Before: nil, After: before, At: h.clock.now()})
	h.none()
}

// A subscription not refreshed in time ends with a final NOTIFY from
// Run's sweep.
func TestSubscriptionExpires(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.SweepInterval = 5 * time.Millisecond })
	require.Equal(t, 200, h.serve(subscribeWire, "UDP", ueAddr).StatusCode)
	h.next()
	h.clock.advance(599 * time.Second)
	h.none()
	h.clock.advance(time.Second)
	n := h.next()
	assert.Equal(t, "terminated;reason=timeout", header(t, n.wire, "Subscription-State"))
	doc := body(t, n)
	assert.Equal(t, uint32(1), doc.Version)
	assert.Equal(t, StateActive, doc.Registrations[0].State, "the registration itself still stands")
	assert.Equal(t, EventRegistered, doc.Registrations[0].Contacts[0].Event)
	assert.Equal(t, 0, h.n.Count())
	h.none()
}

func TestNotifyFailure(t *testing.T) {
	tests := []struct {
		name  string
		reply func(ctx context.Context, req *siplib.Request) (*siplib.Response, error)
		keeps bool
	}{
		{"481 ends it", statusReply(481), false},
		{"408 ends it", statusReply(408), false},
		{"timeout ends it", func(context.Context, *siplib.Request) (*siplib.Response, error) {
			return nil, fmt.Errorf("sip: NOTIFY: %w", siplib.ErrTransactionTimeout)
		}, false},
		{"500 keeps it", statusReply(500), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.sender.answer(tt.reply)
			require.Equal(t, 200, h.serve(subscribeWire, "UDP", ueAddr).StatusCode)
			h.next()
			if tt.keeps {
				h.none()
				assert.Equal(t, 1, h.n.Count())
				return
			}
			assert.Eventually(t, func() bool { return h.n.Count() == 0 }, 5*time.Second, 5*time.Millisecond)
			assert.Equal(t, 1, h.logs.FilterMessage("subscription ended: NOTIFY failed").Len())
			// The handset's refresh now learns it must subscribe again.
			h.n.RegistrationChanged(registrar.Change{AOR: alice, At: h.clock.now()})
			h.none()
		})
	}
}

func statusReply(code int) func(context.Context, *siplib.Request) (*siplib.Response, error) {
	return func(_ context.Context, req *siplib.Request) (*siplib.Response, error) {
		return siplib.NewResponseFromRequest(req, code, "X", nil), nil
	}
}

func TestLimits(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxPerAOR = 2; o.MaxSubscriptions = 3 })
	h.bind("sip:bob@rcs.local", storage.Binding{Contact: "sip:bob@192.0.2.30", Transport: "udp", Source: "192.0.2.30:5060",
		CallID: "b", CSeq: 1, Expires: h.clock.now().Add(time.Hour)})
	sub := func(aor, source string, i int) *siplib.Response {
		user := strings.TrimSuffix(strings.TrimPrefix(aor, "sip:"), "@rcs.local")
		return h.serve(edit(subscribeWire, "SUBSCRIBE "+aor+" SIP/2.0", "To: <"+aor+">", fmt.Sprintf("Call-ID: %s-%d", user, i)), "UDP", source)
	}
	assert.Equal(t, 200, sub(alice, ueAddr, 1).StatusCode)
	assert.Equal(t, 200, sub(alice, ueAddr, 2).StatusCode)
	res := sub(alice, ueAddr, 3)
	assert.Equal(t, "SIP/2.0 403 Too Many Subscriptions For This Identity", strings.SplitN(res.String(), "\r\n", 2)[0])
	assert.Equal(t, 200, sub("sip:bob@rcs.local", "192.0.2.30:5060", 1).StatusCode)
	res = sub("sip:bob@rcs.local", "192.0.2.30:5060", 2)
	assert.Equal(t, "SIP/2.0 503 Too Many Subscriptions", strings.SplitN(res.String(), "\r\n", 2)[0])
	assert.Equal(t, "60", res.GetHeader("Retry-After").Value())
	assert.Equal(t, 3, h.n.Count())
	assert.Equal(t, 2, h.logs.FilterMessage("SUBSCRIBE rejected").Len())
}

// NOTIFYs of one subscription go out one at a time, in order; a handset
// that stops answering is dropped once MaxQueue NOTIFYs wait.
func TestNotifyOrderAndQueueBound(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxQueue = 3 })
	release := make(chan struct{})
	var inFlight, maxInFlight int
	var mu sync.Mutex
	h.sender.answer(func(_ context.Context, req *siplib.Request) (*siplib.Response, error) {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		return siplib.NewResponseFromRequest(req, 200, "OK", nil), nil
	})
	require.Equal(t, 200, h.serve(subscribeWire, "UDP", ueAddr).StatusCode)
	bs, err := h.store.Bindings(context.Background(), alice, h.clock.now())
	require.NoError(t, err)
	h.next() // version 0 in flight
	for i := 0; i < 3; i++ {
		h.clock.advance(time.Second)
		h.n.RegistrationChanged(registrar.Change{AOR: alice, Before: bs, After: bs, At: h.clock.now()})
	}
	assert.Equal(t, 1, h.n.Count(), "three queued behind one in flight: at the bound")
	for i := 1; i <= 3; i++ {
		release <- struct{}{}
		n := h.next()
		assert.Equal(t, fmt.Sprintf("%d NOTIFY", i+1), header(t, n.wire, "CSeq"))
		assert.Equal(t, uint32(i), body(t, n).Version)
	}
	for i := 0; i < 4; i++ {
		h.n.RegistrationChanged(registrar.Change{AOR: alice, Before: bs, After: bs, At: h.clock.now()})
	}
	assert.Equal(t, 0, h.n.Count(), "a fourth waiting NOTIFY drops the subscription")
	assert.Equal(t, 1, h.logs.FilterMessage("subscription dropped: NOTIFYs not answered in time").Len())
	close(release)
	mu.Lock()
	assert.Equal(t, 1, maxInFlight)
	mu.Unlock()
}

// Run's end cancels the NOTIFY in flight and waits for the workers; the
// notifier then refuses new subscriptions.
func TestShutdown(t *testing.T) {
	h := newHarness(t)
	cancelled := make(chan error, 1)
	h.sender.answer(func(ctx context.Context, _ *siplib.Request) (*siplib.Response, error) {
		<-ctx.Done()
		cancelled <- ctx.Err()
		return nil, ctx.Err()
	})
	require.Equal(t, 200, h.serve(subscribeWire, "UDP", ueAddr).StatusCode)
	h.next()
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	assert.True(t, errors.Is(<-cancelled, context.Canceled))
	assert.Equal(t, 503, h.serve(edit(subscribeWire, "Call-ID: other"), "UDP", ueAddr).StatusCode)
	assert.Zero(t, h.logs.FilterMessage("subscription ended: NOTIFY failed").Len(), "shutdown is not a NOTIFY failure")
}
