package registrar

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"rcsd/registrar/aka"
	"rcsd/registrar/digest"
	"rcsd/storage"
	"rcsd/subscriber"
)

// TS 35.208 test set 3 (no 0x5b/0x5d bytes: SIPp can use it too).
const (
	testK   = "fec86ba6eb707ed08905757b1bb44b8f"
	testOP  = "dbc59adcb6f9a0ef735477b7fadf8374"
	testOPc = "1006020f0a478bf6b699f15c062e42b3"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// usim wraps aka.USIM with test set 3's keys and the test's failure
// reporting.
type usim struct {
	aka.USIM
	res []byte
}

var errMAC = aka.ErrMAC

func newUSIM() *usim { return &usim{USIM: aka.USIM{K: unhex(testK), OPc: unhex(testOPc)}} }

func (u *usim) run(t testing.TB, nonce string) (res, auts []byte, err error) {
	t.Helper()
	res, auts, err = u.RunNonce(nonce)
	if err == nil && auts == nil {
		u.res = res
	}
	return res, auts, err
}

// akaAnswer builds the Authorization of the second REGISTER (RFC 3310
// §3.3, no qop as the spec's example); h is the Digest hash.
func akaAnswer(h digest.Algorithm, alg, realm, user, nonce string, password []byte, auts []byte) string {
	c := digest.Credentials{Username: user, Realm: realm, Nonce: nonce, URI: "sip:" + realm, Algorithm: alg}
	c.Response = digest.Response(h, digest.HA1(h, user, realm, string(password)), "REGISTER", &c)
	s := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s`,
		user, realm, nonce, c.URI, c.Response, alg)
	if auts != nil {
		s += `, auts="` + base64.StdEncoding.EncodeToString(auts) + `"`
	}
	return s
}

const nativeUser = "native@rcs.local"

// newAKAHarness is newHarness with the AKA scheme (first) and Digest, and a
// native subscriber with test set 3's keys.
func newAKAHarness(t testing.TB, schemes string, mutate ...func(*AKAScheme)) *harness {
	t.Helper()
	h := newHarness(t)
	sub, err := subscriber.Build(subscriber.Spec{IMPUs: []string{"sip:native@rcs.local", "tel:+8613900000009"}, IMPI: nativeUser,
		K: testK, OP: testOP, AMF: "8000"}, realm, "rcs.local")
	require.NoError(t, err)
	require.NoError(t, h.store.PutSubscribers(context.Background(), []storage.Subscriber{sub}))
	nonces := NewNonces("test-secret", 300*time.Second)
	as := &AKAScheme{Realm: realm, Algorithm: AKAv1SHA256, AMF: []byte{0x80, 0}, Nonces: nonces, Store: h.store}
	for _, m := range mutate {
		m(as)
	}
	ds := &DigestScheme{Realm: realm, Algorithms: []digest.Algorithm{digest.SHA256, digest.MD5}, AllowNoQop: true, Nonces: nonces}
	var list []Scheme
	for _, s := range strings.Fields(schemes) {
		switch s {
		case "aka":
			list = append(list, as)
		case "digest":
			list = append(list, ds)
		}
	}
	opts := Options{Domain: "rcs.local", Realm: realm, MinExpires: 60, MaxExpires: 7200, DefaultExpires: 3600,
		MaxContacts: 3, PathRequiresSupport: true, ServiceRoute: "<sip:orig@127.0.0.1:5060;lr>", Node: "n1"}
	h.r = New(opts, h.store, list, NewLimiter(50, time.Minute, time.Minute), NewLimiter(50, time.Minute, time.Minute), zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), NewMetrics(prometheus.NewRegistry(), nil))
	h.r.SetClock(func() time.Time { return h.now })
	return h
}

// initialAuth is the empty Authorization an IMS handset sends first.
func initialAuth(user string) string {
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="", uri="sip:%s", response=""`, user, realm, realm)
}

func (h *harness) sqn(impi string) uint64 {
	s, err := h.store.SubscriberByIMPI(context.Background(), impi)
	require.NoError(h.t, err)
	return s.SQN
}

func TestAKARegister(t *testing.T) {
	cases := []struct {
		name      string
		challenge string           // configured token
		answerAlg string           // token in the answer
		hash      digest.Algorithm // hash of the answer
	}{
		{"AKAv1-MD5", AKAv1MD5, "AKAv1-MD5", digest.MD5},
		{"AKAv1-SHA256 answered with SHA-256", AKAv1SHA256, "AKAv1-SHA256", digest.SHA256},
		{"AKAv1-SHA256 answered with 32 hex digits as the spec's example", AKAv1SHA256, "AKAv1-SHA256", digest.MD5},
		{"AKAv1-SHA-256 spelling", AKAv1SHA256, "AKAv1-SHA-256", digest.SHA256},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newAKAHarness(t, "digest aka", func(a *AKAScheme) { a.Algorithm = tc.challenge })
			u := newUSIM()
			r := reg{user: nativeUser, aor: "sip:native@rcs.local", cseq: 1}
			res := h.register(r, initialAuth(nativeUser))
			require.Equal(t, 401, res.StatusCode)
			ws := res.GetHeaders("WWW-Authenticate")
			require.Len(t, ws, 3, "AKA, then the Digest challenges")
			assert.Regexp(t, `^Digest realm="rcs.local", nonce="[A-Za-z0-9+/]{70}==", algorithm=`+tc.challenge+`$`, ws[0].Value())
			assert.Contains(t, ws[1].Value(), "algorithm=SHA-256")
			assert.Equal(t, uint64(1), h.sqn(nativeUser), "the challenge took SQN 1")
			nonce := challenges(t, res)[tc.challenge]["nonce"]

			pw, auts, err := u.run(t, nonce)
			require.NoError(t, err)
			require.Nil(t, auts)
			assert.Equal(t, uint64(1)<<akaSEQShift, u.SQN, "SQN = SEQ ‖ IND 0")
			r.cseq = 2
			res = h.register(r, akaAnswer(tc.hash, tc.answerAlg, realm, nativeUser, nonce, pw, nil))
			require.Equal(t, 200, res.StatusCode, res.Reason)
			assert.Equal(t, "<sip:native@rcs.local>, <tel:+8613900000009>", res.GetHeader("P-Associated-URI").Value())
			bs, err := h.store.Bindings(context.Background(), "sip:native@rcs.local", h.now)
			require.NoError(t, err)
			require.Len(t, bs, 1)
		})
	}
}

// The second use of an AKA answer is a replay: a fresh challenge with
// stale=true and a new vector. A UDP retransmission (same branch) is not.
func TestAKAReplay(t *testing.T) {
	h := newAKAHarness(t, "aka digest")
	u := newUSIM()
	r := reg{user: nativeUser, aor: "sip:native@rcs.local", cseq: 1}
	nonce := challenges(t, h.register(r, initialAuth(nativeUser)))[AKAv1SHA256]["nonce"]
	pw, _, err := u.run(t, nonce)
	require.NoError(t, err)
	auth := akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, nonce, pw, nil)
	r.cseq, r.branch = 2, "z9hG4bK-first"
	require.Equal(t, 200, h.register(r, auth).StatusCode)
	assert.Equal(t, 200, h.register(r, auth).StatusCode, "retransmission")

	r.cseq, r.branch = 3, "z9hG4bK-replay"
	res := h.register(r, auth)
	require.Equal(t, 401, res.StatusCode)
	ch := challenges(t, res)[AKAv1SHA256]
	assert.Equal(t, "true", ch["stale"])
	assert.NotEqual(t, nonce, ch["nonce"])
	assert.Equal(t, uint64(2), h.sqn(nativeUser))
}

func TestAKAFailures(t *testing.T) {
	h := newAKAHarness(t, "aka digest")
	ctx := context.Background()
	r := reg{user: nativeUser, aor: "sip:native@rcs.local", cseq: 1}
	fresh := func() string {
		r.cseq++
		return challenges(t, h.register(r, initialAuth(nativeUser)))[AKAv1SHA256]["nonce"]
	}
	noBinding := func() {
		t.Helper()
		bs, err := h.store.Bindings(ctx, "sip:native@rcs.local", h.now)
		require.NoError(t, err)
		assert.Empty(t, bs, "no binding from a failed authentication")
	}

	t.Run("wrong RES", func(t *testing.T) {
		nonce := fresh()
		pw, _, err := newUSIM().run(t, nonce)
		require.NoError(t, err)
		pw[0] ^= 1
		r.cseq++
		res := h.register(r, akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, nonce, pw, nil))
		assert.Equal(t, 403, res.StatusCode)
		assert.Equal(t, "Forbidden", res.Reason)
		noBinding()
	})
	t.Run("handset rejects the network: empty response", func(t *testing.T) {
		nonce := fresh()
		r.cseq++
		res := h.register(r, fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="sip:%s", response="", algorithm=AKAv1-SHA256`, nativeUser, realm, nonce, realm))
		assert.Equal(t, 403, res.StatusCode)
		noBinding()
	})
	t.Run("AUTS that does not verify", func(t *testing.T) {
		nonce := fresh()
		u := newUSIM()
		u.SQN = 5000 << akaSEQShift
		_, auts, err := u.run(t, nonce)
		require.NoError(t, err)
		require.NotNil(t, auts)
		auts[13] ^= 0x01
		before := h.sqn(nativeUser)
		r.cseq++
		res := h.register(r, akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, nonce, nil, auts))
		assert.Equal(t, 403, res.StatusCode)
		assert.Equal(t, before, h.sqn(nativeUser), "SQN unchanged")
		noBinding()
	})
	t.Run("auts not base64", func(t *testing.T) {
		nonce := fresh()
		r.cseq++
		res := h.register(r, akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, nonce, nil, nil)+`, auts="***"`)
		assert.Equal(t, 403, res.StatusCode)
	})
	t.Run("forged nonce", func(t *testing.T) {
		nonce := fresh()
		raw, _ := base64.StdEncoding.DecodeString(nonce)
		raw[0] ^= 1 // another RAND under our server data
		forged := base64.StdEncoding.EncodeToString(raw)
		pw, _, err := newUSIM().run(t, forged)
		require.ErrorIs(t, err, errMAC, "the USIM itself refuses it")
		r.cseq++
		res := h.register(r, akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, forged, pw, nil))
		require.Equal(t, 401, res.StatusCode, "not ours: challenged afresh")
		noBinding()
	})
	t.Run("nonce issued to another identity", func(t *testing.T) {
		other := reg{user: "nobody@rcs.local", aor: "sip:native@rcs.local", cseq: 1, callID: "other"}
		nonce := challenges(t, h.register(other, initialAuth("nobody@rcs.local")))[AKAv1SHA256]["nonce"]
		r.cseq++
		res := h.register(r, akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, nonce, []byte("x"), nil))
		require.Equal(t, 401, res.StatusCode)
		noBinding()
	})
}

// A handset whose SQN is ahead answers AUTS; rcsd checks it, moves the
// subscriber's SQN past the handset's and challenges again, and the new
// vector is accepted.
func TestAKAResync(t *testing.T) {
	h := newAKAHarness(t, "aka digest")
	u := newUSIM()
	u.SQN = 7000 << akaSEQShift
	r := reg{user: nativeUser, aor: "sip:native@rcs.local", cseq: 1}
	nonce := challenges(t, h.register(r, initialAuth(nativeUser)))[AKAv1SHA256]["nonce"]
	_, auts, err := u.run(t, nonce)
	require.NoError(t, err)
	require.NotNil(t, auts, "SQN 1 is not fresh for the handset")

	r.cseq = 2
	res := h.register(r, akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, nonce, nil, auts))
	require.Equal(t, 401, res.StatusCode)
	ch := challenges(t, res)[AKAv1SHA256]
	assert.Empty(t, ch["stale"], "a resync challenge is not stale")
	assert.Equal(t, uint64(7002), h.sqn(nativeUser), "raised past the handset's SEQ 7000")

	pw, auts, err := u.run(t, ch["nonce"])
	require.NoError(t, err)
	require.Nil(t, auts)
	r.cseq = 3
	res = h.register(r, akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, ch["nonce"], pw, nil))
	assert.Equal(t, 200, res.StatusCode, res.Reason)
}

// Every challenge is a new vector: new RAND, next SQN.
func TestAKAVectorsNotReused(t *testing.T) {
	h := newAKAHarness(t, "aka digest")
	r := reg{user: nativeUser, aor: "sip:native@rcs.local", cseq: 1}
	seen := map[string]bool{}
	for i := 1; i <= 5; i++ {
		r.cseq = i
		nonce := challenges(t, h.register(r, initialAuth(nativeUser)))[AKAv1SHA256]["nonce"]
		raw, err := base64.StdEncoding.DecodeString(nonce)
		require.NoError(t, err)
		assert.False(t, seen[string(raw[:16])], "RAND reused")
		seen[string(raw[:16])] = true
		assert.Equal(t, uint64(i), h.sqn(nativeUser))
	}
}

// Which challenges a request gets depends on the request, not on whether
// the user exists or which credentials it has.
func TestAKANoEnumeration(t *testing.T) {
	h := newAKAHarness(t, "aka digest")
	shape := func(user string) string {
		res := h.register(reg{user: user, aor: "sip:" + user, cseq: 1, callID: "c-" + user}, initialAuth(user))
		var parts []string
		for _, w := range res.GetHeaders("WWW-Authenticate") {
			parts = append(parts, regexp.MustCompile(`nonce="[^"]*"`).ReplaceAllStringFunc(w.Value(), func(s string) string {
				return fmt.Sprintf("nonce=len%d", len(s))
			}))
		}
		return fmt.Sprintf("%d %s %d %v", res.StatusCode, res.Reason, len(res.Headers()), parts)
	}
	native := shape(nativeUser)
	assert.Equal(t, native, shape("mallory@rcs.local"), "unknown user")
	assert.Equal(t, native, shape("bob@rcs.local"), "Digest-only user")

	// The unknown user's answer fails like a wrong RES.
	r := reg{user: "mallory@rcs.local", aor: "sip:mallory@rcs.local", cseq: 1, callID: "m2"}
	nonce := challenges(t, h.register(r, initialAuth("mallory@rcs.local")))[AKAv1SHA256]["nonce"]
	r.cseq = 2
	res := h.register(r, akaAnswer(digest.MD5, AKAv1SHA256, realm, "mallory@rcs.local", nonce, []byte("12345678"), nil))
	assert.Equal(t, 403, res.StatusCode)
	assert.Equal(t, "Forbidden", res.Reason)

	// A Digest-only user whose client sends the empty Authorization still
	// finds its Digest challenge and registers.
	b := reg{user: "bob@rcs.local", aor: "sip:bob@rcs.local", cseq: 1, callID: "b2"}
	ch := challenges(t, h.register(b, initialAuth("bob@rcs.local")))
	b.cseq = 2
	res = h.register(b, answer(digest.SHA256, "bob@rcs.local", "bobpw", ch["SHA-256"]["nonce"], "00000001", "auth", "sip:rcs.local"))
	assert.Equal(t, 200, res.StatusCode, res.Reason)
}

// With AKA alone, a REGISTER without Authorization is challenged with AKA
// for the subscriber owning the To identity.
func TestAKAOnlyByTo(t *testing.T) {
	h := newAKAHarness(t, "aka")
	r := reg{user: nativeUser, aor: "tel:+8613900000009", cseq: 1}
	res := h.register(r, "")
	require.Equal(t, 401, res.StatusCode)
	require.Len(t, res.GetHeaders("WWW-Authenticate"), 1)
	nonce := challenges(t, res)[AKAv1SHA256]["nonce"]
	pw, _, err := newUSIM().run(t, nonce)
	require.NoError(t, err, "a real vector for the To identity's subscriber")
	r.cseq = 2
	assert.Equal(t, 200, h.register(r, akaAnswer(digest.SHA256, AKAv1SHA256, realm, nativeUser, nonce, pw, nil)).StatusCode)
	// Unknown To: an unanswerable challenge of the same shape.
	res = h.register(reg{user: "x@rcs.local", aor: "sip:x@rcs.local", cseq: 1, callID: "x"}, "")
	require.Equal(t, 401, res.StatusCode)
	require.Len(t, res.GetHeaders("WWW-Authenticate"), 1)
	assert.Contains(t, res.GetHeader("WWW-Authenticate").Value(), "algorithm=AKAv1-SHA256")
}

// The spec's AKA REGISTER (fixture 07) gets a 401 shaped like fixture 09
// when ik/ck are configured, and they are the handset's CK and IK; the
// answer in the form of fixture 11 (integrity-protected=yes) registers, and
// the 200 carries every header of fixture 13.
func TestAKASpecFixtures(t *testing.T) {
	const specRealm = "bj.ims.mnc000.mcc460.3gppnetwork.org"
	h := newAKAHarness(t, "aka digest", func(a *AKAScheme) { a.SendIKCK = true; a.Realm = specRealm })
	h.r.opts.Realm = specRealm
	sub, err := subscriber.Build(subscriber.Spec{IMPUs: []string{"sip:user@" + specRealm}, K: testK, OPc: testOPc}, specRealm, "")
	require.NoError(t, err)
	require.NoError(t, h.store.PutSubscribers(context.Background(), []storage.Subscriber{sub}))

	wire, err := os.ReadFile("testdata/07-register-aka-initial.txt")
	require.NoError(t, err)
	res := h.r.ServeSIP(context.Background(), parse(t, string(wire), "UDP", "183.1.28.128:11065"))
	require.Equal(t, 401, res.StatusCode)
	want, err := os.ReadFile("testdata/09-register-aka-challenge.txt")
	require.NoError(t, err)
	wantRes, err := siplib.ParseMessage([]byte(strings.ReplaceAll(strings.ReplaceAll(string(want), "\r\n", "\n"), "\n", "\r\n")))
	require.NoError(t, err)
	norm := regexp.MustCompile(`(nonce|ik|ck)="[^"]*"`)
	got := res.GetHeader("WWW-Authenticate").Value()
	assert.Equal(t, norm.ReplaceAllString(wantRes.(*siplib.Response).GetHeader("WWW-Authenticate").Value(), `$1=""`), norm.ReplaceAllString(got, `$1=""`))
	params := challenges(t, res)[AKAv1SHA256]

	u := newUSIM()
	pw, _, err := u.run(t, params["nonce"])
	require.NoError(t, err)
	assert.Equal(t, hex.EncodeToString(u.IK), params["ik"])
	assert.Equal(t, hex.EncodeToString(u.CK), params["ck"])

	user := "user@" + specRealm
	c := digest.Credentials{Username: user, Realm: specRealm, Nonce: params["nonce"], URI: "sip:" + specRealm, Algorithm: AKAv1SHA256}
	c.Response = digest.Response(digest.MD5, digest.HA1(digest.MD5, user, specRealm, string(pw)), "REGISTER", &c)
	wire2, err := os.ReadFile("testdata/11-register-aka-authorized.txt")
	require.NoError(t, err)
	authLine := fmt.Sprintf(`Authorization: Digest username="%s", realm="%s", nonce="%s", uri="sip:%s", response="%s", algorithm=AKAv1-SHA256, integrity-protected=yes`,
		user, specRealm, c.Nonce, specRealm, c.Response)
	text := regexp.MustCompile(`(?m)^Authorization: .*$`).ReplaceAllString(string(wire2), authLine)
	res = h.r.ServeSIP(context.Background(), parse(t, text, "UDP", "183.1.28.128:11065"))
	require.Equal(t, 200, res.StatusCode, res.Reason)
	assert.Contains(t, res.GetHeader("Contact").Value(), "sip.instance=urn:gsma:imei:351564060017928")
	okWire, err := os.ReadFile("testdata/13-register-aka-200-ok.txt")
	require.NoError(t, err)
	for _, line := range strings.Split(strings.ReplaceAll(string(okWire), "\r\n", "\n"), "\n")[1:] {
		name, _, ok := strings.Cut(line, ":")
		if !ok || name == "" || name == "Content-Length" || strings.HasPrefix(name, " ") {
			continue
		}
		assert.NotNil(t, res.GetHeader(name), "spec 200 OK header %s missing", name)
	}
}

// A store that fails while taking the SQN gets 503, not a challenge
// nobody could answer.
func TestAKAStorageFailure(t *testing.T) {
	h := newAKAHarness(t, "aka digest")
	require.NoError(t, h.store.Close())
	res := h.register(reg{user: nativeUser, aor: "sip:native@rcs.local", cseq: 1}, initialAuth(nativeUser))
	assert.Equal(t, 503, res.StatusCode)
}

// Every AKA challenge of a known identity costs a store write (its SQN), so
// challenges per identity are bounded like failures — for unknown
// identities alike, so the block reveals nothing.
func TestAKAChallengeRateLimit(t *testing.T) {
	for _, user := range []string{nativeUser, "mallory@rcs.local"} {
		t.Run(user, func(t *testing.T) {
			h := newAKAHarness(t, "aka digest")
			h.r.id = NewLimiter(4, time.Minute, time.Minute)
			r := reg{user: user, aor: "sip:" + user, callID: "flood"}
			for i := 1; i <= 4; i++ {
				r.cseq = i
				res := h.register(r, initialAuth(user))
				require.Equal(t, 401, res.StatusCode, "challenge %d", i)
			}
			r.cseq = 5
			res := h.register(r, initialAuth(user))
			require.Equal(t, 403, res.StatusCode)
			assert.Equal(t, "Too Many Failed Authentications", res.Reason)
			assert.Equal(t, "61", res.GetHeader("Retry-After").Value())
			if user == nativeUser {
				assert.Equal(t, uint64(4), h.sqn(user), "no vector after the block")
			}

			// Another identity is not affected; the block ends.
			o := reg{user: "other@rcs.local", aor: "sip:other@rcs.local", cseq: 1, callID: "o"}
			assert.Equal(t, 401, h.register(o, initialAuth("other@rcs.local")).StatusCode)
			h.now = h.now.Add(61 * time.Second)
			r.cseq = 6
			assert.Equal(t, 401, h.register(r, initialAuth(user)).StatusCode)
		})
	}
}
