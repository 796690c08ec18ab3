package e2e

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/registrar/aka"
	"rcsd/registrar/digest"
	"rcsd/test/rcsdproc"
)

// TS 35.208 test set 3.
const (
	akaK   = "fec86ba6eb707ed08905757b1bb44b8f"
	akaOPc = "1006020f0a478bf6b699f15c062e42b3"
)

func akaAuthorization(user, realm, nonce string, password []byte, auts []byte) string {
	c := digest.Credentials{Username: user, Realm: realm, Nonce: nonce, URI: "sip:rcs.local", Algorithm: "AKAv1-SHA256"}
	c.Response = digest.Response(digest.SHA256, digest.HA1(digest.SHA256, user, realm, string(password)), "REGISTER", &c)
	s := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="sip:rcs.local", response="%s", algorithm=AKAv1-SHA256, integrity-protected=no`,
		user, realm, nonce, c.Response)
	if auts != nil {
		s += `, auts="` + base64.StdEncoding.EncodeToString(auts) + `"`
	}
	return s
}

// TestRegisterAKA registers a native handset (a Go USIM) with IMS AKA
// against a real rcsd over UDP and TCP: challenge, a synchronisation
// failure answered with AUTS and the new challenge, the right RES, then a
// wrong RES refused with 403 — asserting the wire bytes.
func TestRegisterAKA(t *testing.T) {
	p := rcsdproc.Start(t)
	out, err := p.Run(context.Background(), "subscriber", "add", "sip:native@rcs.local", "--k", akaK, "--opc", akaOPc)
	require.NoError(t, err, out)
	for i, tp := range []string{"UDP", "TCP"} {
		t.Run(tp, func(t *testing.T) {
			c := dial(t, tp, p)
			k, opc := unhexE2E(akaK), unhexE2E(akaOPc)
			usim := &aka.USIM{K: k, OPc: opc, SQN: uint64(1000+i*1000) << 5} // ahead of rcsd: a resync first
			r := regReq{user: "native", callID: "aka-" + tp, cseq: 1,
				auth: `Digest username="native@rcs.local", realm="rcs.local", nonce="", uri="sip:rcs.local", response=""`}
			res, raw := c.register(r)
			require.Equal(t, 401, res.StatusCode, raw)
			assert.Regexp(t, `(?m)^WWW-Authenticate: Digest realm="rcs.local", nonce="[A-Za-z0-9+/]{70}==", algorithm=AKAv1-SHA256\r$`, raw)
			// A parameter, not the tail of a base64 nonce ("…PJik=").
			assert.NotRegexp(t, `[\s,](ik|ck)=`, raw, "CK/IK stay on the server by default")
			ch := firstChallenge(t, res)

			_, auts, err := usim.RunNonce(ch["nonce"])
			require.NoError(t, err)
			require.NotNil(t, auts, "the USIM is ahead: synchronisation failure")
			r.cseq, r.auth = 2, akaAuthorization("native@rcs.local", "rcs.local", ch["nonce"], nil, auts)
			res, raw = c.register(r)
			require.Equal(t, 401, res.StatusCode, raw)
			ch = firstChallenge(t, res)
			assert.Empty(t, ch["stale"])

			resp, auts, err := usim.RunNonce(ch["nonce"])
			require.NoError(t, err)
			require.Nil(t, auts, "the new vector is fresh for the USIM")
			r.cseq, r.auth = 3, akaAuthorization("native@rcs.local", "rcs.local", ch["nonce"], resp, nil)
			res, raw = c.register(r)
			require.Equal(t, 200, res.StatusCode, raw)
			assert.Contains(t, raw, "P-Associated-URI: <sip:native@rcs.local>")

			// A wrong RES for a fresh challenge: 403.
			r.cseq, r.auth = 4, `Digest username="native@rcs.local", realm="rcs.local", nonce="", uri="sip:rcs.local", response=""`
			res, _ = c.register(r)
			ch = firstChallenge(t, res)
			resp, _, err = usim.RunNonce(ch["nonce"])
			require.NoError(t, err)
			resp[0] ^= 0xff
			r.cseq, r.auth = 5, akaAuthorization("native@rcs.local", "rcs.local", ch["nonce"], resp, nil)
			res, raw = c.register(r)
			require.Equal(t, 403, res.StatusCode, raw)
		})
	}
	out, err = p.Run(context.Background(), "subscriber", "show", "native@rcs.local")
	require.NoError(t, err, out)
	// SEQ 2000 (the second USIM) + 1 raised by its AUTS, +1 per challenge after it.
	assert.Contains(t, out, `"sqn": 2003`)
}

func unhexE2E(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
