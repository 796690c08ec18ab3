package pager

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const paDomain = "as1.pa.rcs.chinamobile.com"

// A user's message to a public account goes to the platform's webhook;
// the platform's answer decides the SIP answer.
func TestPublicAccountUplink(t *testing.T) {
	var mu sync.Mutex
	var got []PAMessage
	hookStatus := http.StatusOK
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "Bearer pa-secret", r.Header.Get("Authorization"))
		var m PAMessage
		assert.NoError(t, json.NewDecoder(r.Body).Decode(&m))
		mu.Lock()
		got = append(got, m)
		code := hookStatus
		mu.Unlock()
		w.WriteHeader(code)
	}))
	defer hook.Close()
	e := start(t, nil, func(o *Options) { o.PADomain, o.PAWebhook, o.PAToken = paDomain, hook.URL, "pa-secret" })
	alice := newHandset(t)
	e.bind(t, "sip:alice@rcs.local", alice, "alice")
	srv := e.srv.Addr("udp")
	account := "sip:1256002234567891111@" + paDomain

	alice.send(srv, fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", account, alice.addr(), "z9hG4bK-pa1"))
	res := readFinal(alice)
	require.Equal(t, 202, status(res), res)
	mu.Lock()
	require.Len(t, got, 1)
	assert.Equal(t, "sip:alice@rcs.local", got[0].From)
	assert.Equal(t, []string{account}, got[0].To)
	assert.Equal(t, "W8dcb0vf", got[0].MessageID)
	assert.Equal(t, "u201403011700010003", got[0].ContributionID)
	assert.Contains(t, got[0].Body, "imdn.Message-ID: W8dcb0vf")
	hookStatus = http.StatusInternalServerError
	mu.Unlock()

	alice.send(srv, fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", account, alice.addr(), "z9hG4bK-pa2"))
	res = readFinal(alice)
	assert.Equal(t, 503, status(res), res)
	assert.Equal(t, "30", header(res, "Retry-After"))

	// Only text, image, audio, video and location go to an account.
	alice.send(srv, withBody(fixtureMessage(t, "15-pager-message-one-to-one.txt", "sip:alice@rcs.local", account, alice.addr(), "z9hG4bK-pa3"),
		func(b string) string {
			return strings.Replace(b, "Content-Type:text/plain;charset=UTF-8", "Content-Type:application/zip", 1)
		}))
	res = readFinal(alice)
	assert.Equal(t, 415, status(res), res)
}

// The platform sends an account's message to users: delivered as the
// spec's fig 5-111 form from the account, stored for an offline user.
func TestPublicAccountDownlink(t *testing.T) {
	e := start(t, nil, func(o *Options) { o.PADomain, o.PAToken = paDomain, "pa-secret" })
	bob := newHandset(t)
	e.bind(t, "sip:bob@rcs.local", bob, "bob")
	// The spec's text form (chat-group fixture 36) reduced to its media
	// type and a short text, so that the MESSAGE fits a UDP datagram (a
	// larger one goes over TCP, RFC 3261 §18.1.1, which this UDP-only test
	// handset does not listen on).
	fixture, err := os.ReadFile("testdata/36-pa-message-text.txt")
	require.NoError(t, err)
	require.Contains(t, string(fixture), "<media_type>10</media_type>")
	xml := `<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><msg_content><media_type>10</media_type><text>hi</text></msg_content></resource-lists>`
	post := func(token string, m PAMessage) (int, string) {
		raw, _ := json.Marshal(m)
		r := httptest.NewRequest("POST", "/pa/messages", bytes.NewReader(raw))
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		e.p.ServePADownlink(w, r)
		b, _ := io.ReadAll(w.Body)
		return w.Code, string(b)
	}
	account := "sip:1256002234567891111@" + paDomain
	code, body := post("pa-secret", PAMessage{From: account, To: []string{"sip:bob@rcs.local", "sip:carol@rcs.local"}, Body: xml})
	require.Equal(t, 202, code, body)

	got, _ := bob.read(5 * time.Second)
	require.NotEmpty(t, got)
	assert.True(t, strings.HasPrefix(got, "MESSAGE sip:bob@"), got)
	assert.Equal(t, "<"+account+">", header(got, "P-Asserted-Identity"))
	assert.Equal(t, "public-serv", header(got, "User-Agent"))
	assert.Equal(t, ICSIPublicMsg, header(got, "P-Asserted-Service"))
	assert.Contains(t, header(got, "Accept-Contact"), "publicmsg")
	assert.Contains(t, got, "Content-Disposition: publicmsg")
	assert.Contains(t, got, "<media_type>10</media_type>")
	bob.send(e.srv.Addr("udp"), answer(got, 200, "OK"))
	require.Eventually(t, func() bool { return e.count(t) == 1 }, 3*time.Second, 20*time.Millisecond, "carol's copy waits for her")

	code, _ = post("wrong", PAMessage{From: account, To: []string{"sip:bob@rcs.local"}, Body: xml})
	assert.Equal(t, 401, code)
	code, body = post("pa-secret", PAMessage{From: "sip:mallory@rcs.local", To: []string{"sip:bob@rcs.local"}, Body: xml})
	assert.Equal(t, 400, code, body)
	code, body = post("pa-secret", PAMessage{From: account, To: []string{"sip:bob@rcs.local"}, Body: strings.Repeat("x", 901)})
	assert.Equal(t, 413, code, body)
	assert.Contains(t, body, "large-message mode")
}
