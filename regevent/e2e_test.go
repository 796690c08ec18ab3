package regevent

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"rcsd/registrar"
	rsip "rcsd/sip"
	"rcsd/storage"
	"rcsd/storage/memory"
)

// handset is a sipgo user agent on a UDP loopback socket: it sends its
// SUBSCRIBE from the socket its binding's flow names and answers the
// NOTIFYs arriving there.
type handset struct {
	addr     string
	client   *sipgo.Client
	notifies chan *siplib.Request
}

func startHandset(t *testing.T) *handset {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("handset"))
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	h := &handset{notifies: make(chan *siplib.Request, 16)}
	srv.OnNotify(func(req *siplib.Request, tx siplib.ServerTransaction) {
		h.notifies <- req
		_ = tx.Respond(siplib.NewResponseFromRequest(req, 200, "OK", nil))
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	h.addr = pc.LocalAddr().String()
	go func() { _ = srv.ServeUDP(pc) }()
	h.client, err = sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(h.addr))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close(); _ = pc.Close() })
	return h
}

func (h *handset) subscribe(t *testing.T, server string) *siplib.Response {
	t.Helper()
	host, port, _ := net.SplitHostPort(h.addr)
	p, _ := strconv.Atoi(port)
	aor := siplib.Uri{Scheme: "sip", User: "alice", Host: "rcs.local"}
	req := siplib.NewRequest(siplib.SUBSCRIBE, aor)
	req.AppendHeader(&siplib.FromHeader{Address: aor, Params: siplib.HeaderParams{{K: "tag", V: "ue-e2e"}}})
	req.AppendHeader(&siplib.ToHeader{Address: aor})
	req.AppendHeader(&siplib.ContactHeader{Address: siplib.Uri{Scheme: "sip", User: "alice", Host: host, Port: p}})
	req.AppendHeader(siplib.NewHeader("Event", "reg"))
	req.AppendHeader(siplib.NewHeader("Accept", ContentType))
	req.AppendHeader(siplib.NewHeader("Expires", "600"))
	req.SetTransport("UDP")
	req.SetDestination(server)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The client finds the handset's socket once ServeUDP has pooled it;
	// until then it fails to bind the same address, so try again.
	for {
		res, err := h.client.Do(ctx, req.Clone())
		if err == nil {
			return res
		}
		select {
		case <-ctx.Done():
			require.NoError(t, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *handset) next(t *testing.T) *siplib.Request {
	t.Helper()
	select {
	case req := <-h.notifies:
		return req
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY reached the handset")
		return nil
	}
}

// A real rcsd SIP server with the notifier behind its router, and a
// sipgo handset over UDP loopback: SUBSCRIBE, first NOTIFY, then one
// NOTIFY per registration change until the last binding expires.
func TestEndToEndOverUDP(t *testing.T) {
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	router := rsip.NewRouter("rcsd-test", nil, log, prometheus.NewRegistry())
	server, err := rsip.NewServer(rsip.Config{Listen: []string{"udp://127.0.0.1:0"}, MaxMessageSize: 65535, UserAgent: "rcsd-test"}, router, log)
	require.NoError(t, err)
	n := New(Options{}, store, server, log)
	router.Handle("SUBSCRIBE", n.ServeSIP)
	require.NoError(t, server.Start(context.Background()))
	n.SetContact("sip:rcsd@" + server.Addr("udp"))
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { n.Run(ctx); close(runDone) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = server.Shutdown(sctx)
	})

	ue := startHandset(t)
	now := time.Now()
	phone := storage.Binding{AOR: alice, Contact: "sip:alice@" + ue.addr, InstanceID: "urn:uuid:p1", Params: `+sip.instance="<urn:uuid:p1>"`,
		CallID: "reg-p", CSeq: 1, Transport: "udp", Source: ue.addr, Local: server.Addr("udp"),
		Expires: now.Add(time.Hour), RegisteredAt: now}
	tablet := storage.Binding{AOR: alice, Contact: "sip:alice@192.0.2.20:5062", CallID: "reg-t", CSeq: 1, Transport: "tcp",
		Source: "192.0.2.20:40000", Expires: now.Add(time.Hour), RegisteredAt: now}
	v0, err := store.UpdateBindings(context.Background(), alice, now, func([]storage.Binding) ([]storage.Binding, error) {
		return []storage.Binding{phone, tablet}, nil
	})
	require.NoError(t, err)

	res := ue.subscribe(t, server.Addr("udp"))
	require.Equal(t, 200, res.StatusCode, res.String())
	assert.Equal(t, "600", res.GetHeader("Expires").Value())
	localTag, ok := res.To().Params.Get("tag")
	require.True(t, ok)

	type step struct {
		change   *registrar.Change
		state    string
		regState string
		events   []string // phone, tablet
	}
	refreshed := v0[0]
	refreshed.CSeq, refreshed.Expires = 2, now.Add(2*time.Hour)
	v1 := []storage.Binding{refreshed, v0[1]}
	v2 := []storage.Binding{refreshed}
	steps := []step{
		{nil, "active;expires=600", StateActive, []string{EventRegistered, EventRegistered}},
		{&registrar.Change{AOR: alice, Before: v0, After: v1}, "active;expires=", StateActive, []string{EventRefreshed, EventRegistered}},
		{&registrar.Change{AOR: alice, Before: v1, After: v2}, "active;expires=", StateActive, []string{EventRefreshed, EventUnregistered}},
		{&registrar.Change{AOR: alice, Before: v2, After: nil, Expired: true}, "terminated;reason=noresource", StateTerminated, []string{EventExpired}},
	}
	lastCSeq := uint32(0)
	for i, st := range steps {
		if st.change != nil {
			st.change.At = time.Now()
			n.RegistrationChanged(*st.change)
		}
		req := ue.next(t)
		assert.Equal(t, server.Addr("udp"), req.Source(), "NOTIFY %d leaves from the listener the handset talks to", i)
		assert.Equal(t, "UDP", req.Transport())
		assert.Equal(t, "sip:alice@"+ue.addr, req.Recipient.String())
		from, _ := req.From().Params.Get("tag")
		to, _ := req.To().Params.Get("tag")
		assert.Equal(t, localTag, from)
		assert.Equal(t, "ue-e2e", to)
		assert.Equal(t, res.CallID().Value(), req.CallID().Value())
		assert.Greater(t, req.CSeq().SeqNo, lastCSeq)
		lastCSeq = req.CSeq().SeqNo
		assert.Equal(t, "reg", req.GetHeader("Event").Value())
		assert.Contains(t, req.GetHeader("Subscription-State").Value(), st.state)
		assert.Equal(t, ContentType, req.ContentType().Value())

		doc, err := Parse(req.Body())
		require.NoError(t, err)
		assert.Equal(t, uint32(i), doc.Version)
		reg := doc.Registrations[0]
		assert.Equal(t, st.regState, reg.State)
		var events []string
		for _, c := range reg.Contacts {
			events = append(events, c.Event)
		}
		assert.Equal(t, st.events, events, "NOTIFY %d", i)
		assert.Equal(t, "sip:alice@"+ue.addr, reg.Contacts[0].URI)
	}
	assert.Equal(t, uint32(4), lastCSeq)
	assert.Eventually(t, func() bool { return n.Count() == 0 }, 5*time.Second, 10*time.Millisecond)
	select {
	case extra := <-ue.notifies:
		t.Fatalf("NOTIFY after the final one:\n%s", extra)
	case <-time.After(100 * time.Millisecond):
	}
}
