package pager

import (
	"context"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
	"rcsd/subscriber"
)

// optionsFixture is the spec's OPTIONS (chat-group fixture 33) from the
// handset at local to user to.
func optionsFixture(t *testing.T, to, local, branch string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/33-options-offline-request.txt")
	require.NoError(t, err)
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	s = regexp.MustCompile(`(?m)^OPTIONS \S+`).ReplaceAllString(s, "OPTIONS "+to)
	s = regexp.MustCompile(`(?m)^Via:.*$`).ReplaceAllString(s, "Via: SIP/2.0/UDP "+local+";branch="+branch+";rport")
	s = regexp.MustCompile(`(?m)^From:.*$`).ReplaceAllString(s, "From: <sip:alice@rcs.local>;tag=o"+branch)
	s = regexp.MustCompile(`(?m)^To:.*$`).ReplaceAllString(s, "To: <"+to+">")
	s = regexp.MustCompile(`(?m)^Call-ID:.*$`).ReplaceAllString(s, "Call-ID: "+branch)
	s = regexp.MustCompile(`(?m)^P-Asserted-Identity:.*\n`).ReplaceAllString(s, "")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// Seed 001 §5.1.3.6 (chat-group checklist 17): an offline RCS user is
// answered for by rcsd with the configured capabilities, an unknown one
// with a failure; an online user answers itself.
func TestOptionsCapabilities(t *testing.T) {
	e := start(t, nil)
	e.p.SetContact("127.0.0.1:5060")
	carol, err := subscriber.Build(subscriber.Spec{IMPUs: []string{"sip:carol@rcs.local"}, Password: "x"}, "rcs.local", "rcs.local")
	require.NoError(t, err)
	require.NoError(t, e.store.PutSubscribers(context.Background(), []storage.Subscriber{carol}))
	alice, bob := newHandset(t), newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	e.bind(t, "sip:bob@rcs.local", bob, "bob")
	srv := e.srv.Addr("udp")

	alice.send(srv, optionsFixture(t, "sip:carol@rcs.local", alice.addr(), "z9hG4bK-o1"))
	res := readFinal(alice)
	require.Equal(t, 200, status(res), res)
	want, err := os.ReadFile("testdata/34-options-offline-200ok.txt")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^Contact: <sip:127\.0\.0\.1:5060>;\+g\.3gpp\.icsi-ref="urn%3Aurn-7%3A3gpp-service\.ims\.icsi\.oma\.cpm\.msg,`, res)
	for _, svc := range []string{"cpm.msg", "cpm.largemsg", "cpm.filetransfer", "publicmsg", "gpmanage"} {
		assert.Contains(t, string(want), svc, "fixture 34 states %s", svc)
		assert.Contains(t, header(res, "Contact"), svc, "so does rcsd")
	}

	alice.send(srv, optionsFixture(t, "sip:nobody@rcs.local", alice.addr(), "z9hG4bK-o2"))
	res = readFinal(alice)
	assert.Equal(t, 404, status(res), res)

	alice.send(srv, optionsFixture(t, "sip:bob@rcs.local", alice.addr(), "z9hG4bK-o3"))
	got, _ := bob.read(5 * time.Second)
	require.True(t, strings.HasPrefix(got, "OPTIONS sip:bob@"), got)
	assert.Equal(t, "<sip:alice@rcs.local>", header(got, "P-Asserted-Identity"))
	ans := strings.Replace(answer(got, 200, "OK"), "Content-Length: 0", "Contact: <sip:bob@"+bob.addr()+`>;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"`+"\r\nContent-Length: 0", 1)
	bob.send(srv, ans)
	res = readFinal(alice)
	require.Equal(t, 200, status(res), res)
	assert.Contains(t, header(res, "Contact"), "sip:bob@"+bob.addr(), "the handset's own capabilities")
}

// A spam report (seed 001 §5.1.3.8, chat-group fixture 41 as a pager
// MESSAGE) is kept, counted and listed for the operator; a malformed one
// is refused naming what is missing.
func TestSpamReport(t *testing.T) {
	e := start(t, nil, func(o *Options) { o.SpamNumber = "+861008699999" })
	alice := newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	body := "--BY\r\nContent-Type: text/plain;charset=UTF-8\r\n\r\n" +
		"Spam-From:baduser@bj.ims.mnc000.mcc460.3gppnetwork.org\r\nSpam-To:user1@bj.ims.mnc000.mcc460.3gppnetwork.org\r\nDateTime:2014-03-15T21:22:23+08:00\r\n" +
		"--BY\r\nContent-Type: message/cpim\r\n\r\nFrom: <sip:anonymous@anonymous.invalid >\r\nTo: <sip:anonymous@anonymous.invalid >\r\nNS: imdn<urn:ietf:params:imdn>\r\nimdn.Message-ID: tBecblZU\r\n\r\nContent-Type: text/plain\r\n\r\nbuy now\r\n--BY--\r\n"
	report := func(branch, body string) string {
		return "MESSAGE tel:+861008699999 SIP/2.0\r\nVia: SIP/2.0/UDP " + alice.addr() + ";branch=" + branch + ";rport\r\nMax-Forwards: 70\r\n" +
			"From: <sip:alice@rcs.local>;tag=s\r\nTo: <tel:+861008699999>\r\nCall-ID: " + branch + "\r\nCSeq: 1 MESSAGE\r\n" +
			"Accept-Contact: *;+g.3gpp.icsi-ref=\"urn:3Aurn-7:3A3gpp-service.ims.icsi.oma.cpm.msg\"\r\nUser-Agent: RCS/1.3.0C(And)\r\n" +
			"P-Preferred-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\r\nConversation-ID:u13900010001010203\r\nContribution-ID:u201403011700010006\r\n" +
			"Content-Type: multipart/mixed;boundary=BY\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	alice.send(e.srv.Addr("udp"), report("z9hG4bK-spam1", body))
	res := readFinal(alice)
	require.Equal(t, 202, status(res), res)

	rs, err := e.p.SpamReports(context.Background(), 0)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, "sip:alice@rcs.local", rs[0].Reporter)
	assert.Equal(t, "baduser@bj.ims.mnc000.mcc460.3gppnetwork.org", rs[0].SpamFrom)
	assert.Equal(t, "2014-03-15T21:22:23+08:00", rs[0].DateTime)
	assert.Equal(t, []string{"message/cpim"}, rs[0].Parts)

	rec := httptest.NewRecorder()
	e.p.ServeSpamReports(rec, httptest.NewRequest("GET", "/admin/spam-reports", nil))
	assert.Equal(t, 200, rec.Code)
	assert.Contains(t, rec.Body.String(), `"spam_to":"user1@bj.ims.mnc000.mcc460.3gppnetwork.org"`)

	alice.send(e.srv.Addr("udp"), report("z9hG4bK-spam2", strings.Replace(body, "Spam-To:", "Spam-Whom:", 1)))
	res = readFinal(alice)
	assert.True(t, strings.HasPrefix(res, "SIP/2.0 400 Spam Report Without Spam-To\r\n"), res)

	// Reports are never delivered anywhere: the sweeper leaves them.
	e.p.sweep(context.Background())
	rs, err = e.p.SpamReports(context.Background(), 0)
	require.NoError(t, err)
	assert.Len(t, rs, 1)

	rec = httptest.NewRecorder()
	req := httptest.NewRequest("DELETE", "/admin/spam-reports/"+rs[0].ID, nil)
	req.SetPathValue("id", rs[0].ID)
	e.p.DeleteSpamReport(rec, req)
	assert.Equal(t, 204, rec.Code)
	rs, err = e.p.SpamReports(context.Background(), 0)
	require.NoError(t, err)
	assert.Empty(t, rs)
}
