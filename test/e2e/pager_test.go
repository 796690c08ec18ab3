package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// rcsMessage is an RCS pager MESSAGE (seed 001 fig 5-17 shape) from the
// client's socket.
func rcsMessage(c *wireClient, from, to, msgID, text string) string {
	body := "From: <sip:" + from + "@rcs.local>\r\nTo: <sip:" + to + "@rcs.local>\r\nNS: imdn <urn:ietf:params:imdn>\r\n" +
		"imdn.Message-ID: " + msgID + "\r\nDateTime: 2026-11-25T10:00:00+08:00\r\nimdn.Disposition-Notification: positive-delivery, display\r\n\r\n" +
		"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: " + strconv.Itoa(len(text)) + "\r\n\r\n" + text
	return "MESSAGE sip:" + to + "@rcs.local SIP/2.0\r\n" +
		"Via: SIP/2.0/" + c.transport + " " + c.local() + ";branch=z9hG4bK" + msgID + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + from + "@rcs.local>;tag=" + msgID + "\r\nTo: <sip:" + to + "@rcs.local>\r\n" +
		"Call-ID: " + msgID + "@e2e\r\nCSeq: 1 MESSAGE\r\n" +
		"Accept-Contact: *;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"\r\n" +
		"User-Agent: RCS/1.3.0(And)\r\nP-Preferred-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\r\n" +
		"Conversation-ID: conv-" + from + "-" + to + "\r\nContribution-ID: contrib-" + msgID + "\r\n" +
		"Content-Type: message/cpim\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// readRequest reads the next request off a UDP client, skipping responses.
func (c *wireClient) readRequest(d time.Duration) (*siplib.Request, string) {
	c.t.Helper()
	for {
		msg, raw := c.readAny(d)
		if req, ok := msg.(*siplib.Request); ok {
			return req, raw
		}
	}
}

func (c *wireClient) answer(req *siplib.Request, code int) {
	c.t.Helper()
	res := siplib.NewResponseFromRequest(req, code, "OK", nil)
	var b strings.Builder
	res.StringWrite(&b)
	_, err := c.conn.Write([]byte(b.String()))
	require.NoError(c.t, err)
}

func login(t *testing.T, c *wireClient, user string) {
	t.Helper()
	res, _ := c.register(regReq{user: user, callID: "e2e-" + user + c.local(), cseq: 1, contact: "<sip:" + user + "@" + c.local() + ">"})
	ch := firstChallenge(t, res)
	res, raw := c.register(regReq{user: user, callID: "e2e-" + user + c.local(), cseq: 2, contact: "<sip:" + user + "@" + c.local() + ">",
		auth: authorize(ch, user+"@rcs.local", user+"-pw", "00000001")})
	require.Equal(t, 200, res.StatusCode, raw)
}

// TestStoredMessageSurvivesRestart: a message to an offline user is
// answered 202 once it is on disk, survives an rcsd restart, and is
// delivered the moment the user registers.
func TestStoredMessageSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	p := rcsdproc.StartIn(t, dir)
	provision(t, p, "amy", "ben")
	amy := dial(t, "UDP", p)
	login(t, amy, "amy")
	amy.send(rcsMessage(amy, "amy", "ben", "m1restart", "survives a restart"))
	res, raw := amy.recv()
	require.Equal(t, 202, res.StatusCode, raw)
	assert.Regexp(t, `(?m)^Server: IM-serv`, raw)
	p.Stop()

	p = rcsdproc.StartIn(t, dir)
	ben := dial(t, "UDP", p)
	ben.send(fmt.Sprintf("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKb1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:ben@rcs.local>;tag=b\r\nTo: <sip:ben@rcs.local>\r\nCall-ID: ben-reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:ben@%s>\r\nContent-Length: 0\r\n\r\n", ben.local(), ben.local()))
	res, _ = ben.recv()
	ch := firstChallenge(t, res)
	ben.send(fmt.Sprintf("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKb2;rport\r\nMax-Forwards: 70\r\nFrom: <sip:ben@rcs.local>;tag=b\r\nTo: <sip:ben@rcs.local>\r\nCall-ID: ben-reg\r\nCSeq: 2 REGISTER\r\nContact: <sip:ben@%s>\r\nAuthorization: %s\r\nContent-Length: 0\r\n\r\n",
		ben.local(), ben.local(), authorize(ch, "ben@rcs.local", "ben-pw", "00000001")))
	// The 200 and the stored MESSAGE may come in either order.
	var got *siplib.Request
	var gotRaw string
	for got == nil || res == nil {
		msg, raw := ben.readAny(5 * time.Second)
		switch m := msg.(type) {
		case *siplib.Response:
			if m.StatusCode == 200 {
				res = m
			}
		case *siplib.Request:
			got, gotRaw = m, raw
		}
		if res != nil && res.StatusCode != 200 {
			res = nil
		}
	}
	assert.Equal(t, siplib.MESSAGE, got.Method)
	assert.Contains(t, gotRaw, "P-Asserted-Identity: <sip:amy@rcs.local>\r\n")
	assert.Contains(t, gotRaw, "Contribution-ID: contrib-m1restart\r\n")
	assert.Contains(t, gotRaw, "survives a restart")
	ben.answer(got, 200)
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort)), "\nrcsd_messages_stored 0\n")
	}, 5*time.Second, 50*time.Millisecond, "removed once delivered")
}
