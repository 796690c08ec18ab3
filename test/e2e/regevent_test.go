package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/regevent"
	"rcsd/test/rcsdproc"
)

// readAny reads the next datagram (request or response) within d.
func (c *wireClient) readAny(d time.Duration) (siplib.Message, string) {
	c.t.Helper()
	raw := c.readRaw(d)
	msg, err := siplib.ParseMessage([]byte(raw))
	require.NoError(c.t, err, raw)
	return msg, raw
}

// notifyClient is a handset that answers NOTIFYs while it registers: a
// NOTIFY for a change may arrive before the REGISTER's 200.
type notifyClient struct {
	*wireClient
	pending []string // NOTIFYs read while waiting for a response
}

// register sends a REGISTER and returns its response, keeping NOTIFYs that
// arrive meanwhile for notify.
func (c *notifyClient) register(r regReq) (*siplib.Response, string) {
	c.t.Helper()
	c.n++
	r.branch = fmt.Sprintf("z9hG4bKre%d%d", c.n, time.Now().UnixNano())
	msg := "REGISTER sip:rcs.local SIP/2.0\n" +
		"Via: SIP/2.0/UDP " + c.local() + ";branch=" + r.branch + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + r.user + "@rcs.local>;tag=e2e" + r.callID + "\n" +
		"To: <sip:" + r.user + "@rcs.local>\n" +
		"Call-ID: " + r.callID + "\n" +
		fmt.Sprintf("CSeq: %d REGISTER\n", r.cseq) +
		"Contact: " + r.contact + "\n"
	if r.auth != "" {
		msg += "Authorization: " + r.auth + "\n"
	}
	c.send(msg + "Content-Length: 0\n\n")
	for {
		m, raw := c.readAny(5 * time.Second)
		if res, ok := m.(*siplib.Response); ok {
			return res, raw
		}
		c.pending = append(c.pending, raw)
	}
}

// login registers contact for user (password user+"-pw") with Digest,
// and returns the challenge for later REGISTERs (nonce count 2 onwards).
func (c *notifyClient) login(user, callID, contact string) map[string]string {
	c.t.Helper()
	res, _ := c.register(regReq{user: user, callID: callID, cseq: 1, contact: contact})
	ch := firstChallenge(c.t, res)
	res, raw := c.register(regReq{user: user, callID: callID, cseq: 2, auth: authorize(ch, user+"@rcs.local", user+"-pw", "00000001"), contact: contact})
	require.Equal(c.t, 200, res.StatusCode, raw)
	return ch
}

// notify waits for the next NOTIFY (skipping retransmissions of ones
// already answered), answers it 200 and returns it with its document.
func (c *notifyClient) notify(seen map[string]bool) (*siplib.Request, *regevent.Reginfo, string) {
	c.t.Helper()
	for {
		var msg siplib.Message
		var raw string
		if len(c.pending) > 0 {
			raw, c.pending = c.pending[0], c.pending[1:]
			var err error
			msg, err = siplib.ParseMessage([]byte(raw))
			require.NoError(c.t, err)
		} else {
			msg, raw = c.readAny(10 * time.Second)
		}
		req, ok := msg.(*siplib.Request)
		if !ok || req.Method != siplib.NOTIFY {
			continue
		}
		res := siplib.NewResponseFromRequest(req, 200, "OK", nil)
		var b strings.Builder
		res.StringWrite(&b)
		_, err := c.conn.Write([]byte(b.String()))
		require.NoError(c.t, err)
		key := req.CSeq().Value()
		if seen[key] {
			continue
		}
		seen[key] = true
		doc, err := regevent.Parse(req.Body())
		require.NoError(c.t, err, raw)
		return req, doc, raw
	}
}

func contactEvents(doc *regevent.Reginfo) map[string]string {
	out := map[string]string{}
	for _, r := range doc.Registrations {
		for _, ct := range r.Contacts {
			out[ct.URI] = ct.State + "/" + ct.Event
		}
	}
	return out
}

// TestRegEvent: a handset registers, subscribes to its own reg event over
// the same UDP flow, and gets a NOTIFY for the subscription and for every
// change after it — a refresh, a second contact, that contact's expiry and
// the final de-registration, which ends the subscription.
func TestRegEvent(t *testing.T) {
	p := rcsdproc.Start(t, "--registrar.min_expires", "1", "--registrar.purge_interval", "1s")
	provision(t, p, "rita")
	c := &notifyClient{wireClient: dial(t, "UDP", p)}
	contactA := "<sip:rita@" + c.local() + ">"
	ch := c.login("rita", "e2e-rita", contactA+";expires=600")

	c.send("SUBSCRIBE sip:rita@rcs.local SIP/2.0\n" +
		"Via: SIP/2.0/UDP " + c.local() + ";branch=z9hG4bKsub1;rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:rita@rcs.local>;tag=ritasub\n" +
		"To: <sip:rita@rcs.local>\n" +
		"Call-ID: e2e-rita-sub\n" +
		"CSeq: 1 SUBSCRIBE\n" +
		"Event: reg\n" +
		"Accept: application/reginfo+xml\n" +
		"Contact: " + contactA + "\n" +
		"Expires: 600\n" +
		"Content-Length: 0\n\n")
	seen := map[string]bool{}
	var first *regevent.Reginfo
	var firstRaw string
	for got200 := false; !got200 || first == nil; {
		msg, raw := c.readAny(5 * time.Second)
		switch m := msg.(type) {
		case *siplib.Response:
			require.Equal(t, 200, m.StatusCode, raw)
			assert.Regexp(t, `(?m)^To: <sip:rita@rcs.local>;tag=\S+\r$`, raw)
			assert.Regexp(t, `(?m)^Expires: 600\r$`, raw)
			got200 = true
		case *siplib.Request:
			require.Equal(t, siplib.NOTIFY, m.Method, raw)
			res := siplib.NewResponseFromRequest(m, 200, "OK", nil)
			var b strings.Builder
			res.StringWrite(&b)
			_, err := c.conn.Write([]byte(b.String()))
			require.NoError(t, err)
			seen[m.CSeq().Value()] = true
			doc, err := regevent.Parse(m.Body())
			require.NoError(t, err, raw)
			first, firstRaw = doc, raw
		}
	}
	assert.Regexp(t, `(?m)^NOTIFY sip:rita@`+regexp.QuoteMeta(c.local())+` SIP/2.0\r$`, firstRaw)
	assert.Regexp(t, `(?m)^Event: reg\r$`, firstRaw)
	assert.Regexp(t, `(?m)^Subscription-State: active;expires=\d+\r$`, firstRaw)
	assert.Regexp(t, `(?m)^Content-Type: application/reginfo\+xml\r$`, firstRaw)
	assert.Equal(t, uint32(0), first.Version)
	require.Len(t, first.Registrations, 1)
	assert.Equal(t, "sip:rita@rcs.local", first.Registrations[0].AOR)
	assert.Equal(t, "active", first.Registrations[0].State)
	uriA := "sip:rita@" + c.local()
	assert.Equal(t, "active/registered", contactEvents(first)[uriA])

	// Refresh.
	res, raw := c.register(regReq{user: "rita", callID: "e2e-rita", cseq: 3, auth: authorize(ch, "rita@rcs.local", "rita-pw", "00000002"), contact: contactA + ";expires=600"})
	require.Equal(t, 200, res.StatusCode, raw)
	_, doc, _ := c.notify(seen)
	assert.Equal(t, uint32(1), doc.Version)
	assert.Equal(t, "active/refreshed", contactEvents(doc)[uriA])

	// A second contact with a 2 s lifetime: registered, then expired.
	uriB := "sip:rita-b@" + c.local()
	res, raw = c.register(regReq{user: "rita", callID: "e2e-rita", cseq: 4, auth: authorize(ch, "rita@rcs.local", "rita-pw", "00000003"), contact: "<" + uriB + ">;expires=2"})
	require.Equal(t, 200, res.StatusCode, raw)
	_, doc, _ = c.notify(seen)
	assert.Equal(t, uint32(2), doc.Version)
	assert.Equal(t, "active/registered", contactEvents(doc)[uriB])
	_, doc, _ = c.notify(seen)
	assert.Equal(t, uint32(3), doc.Version)
	assert.Equal(t, "terminated/expired", contactEvents(doc)[uriB], "purged by the timer")
	assert.Equal(t, "active", doc.Registrations[0].State, "contact A is still there")

	// De-registration: the registration and the subscription end.
	res, raw = c.register(regReq{user: "rita", callID: "e2e-rita", cseq: 5, auth: authorize(ch, "rita@rcs.local", "rita-pw", "00000004"), contact: contactA + ";expires=0"})
	require.Equal(t, 200, res.StatusCode, raw)
	req, doc, raw := c.notify(seen)
	assert.Equal(t, uint32(4), doc.Version)
	assert.Equal(t, "terminated/unregistered", contactEvents(doc)[uriA])
	assert.Equal(t, "terminated", doc.Registrations[0].State)
	assert.True(t, strings.HasPrefix(req.GetHeader("Subscription-State").Value(), "terminated"), raw)

	// A SUBSCRIBE from a flow that registered nothing is refused.
	other := dial(t, "UDP", p)
	other.send(fmt.Sprintf("SUBSCRIBE sip:rita@rcs.local SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bKsub2;rport\nMax-Forwards: 70\nFrom: <sip:rita@rcs.local>;tag=x\nTo: <sip:rita@rcs.local>\nCall-ID: e2e-rita-sub2\nCSeq: 1 SUBSCRIBE\nEvent: reg\nContact: <sip:x@%s>\nContent-Length: 0\n\n", other.local(), other.local()))
	res, raw = other.recv()
	assert.Equal(t, 403, res.StatusCode, raw)
}
