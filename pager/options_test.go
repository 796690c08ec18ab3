package pager

import (
	"context"
	"os"
	"regexp"
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
