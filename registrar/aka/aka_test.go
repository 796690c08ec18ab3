package aka

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wmnsk/milenage"

	"rcsd/registrar/digest"
)

func h(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// 3GPP TS 35.208 §4.3 test sets 1-3 (f1, f1*, f2-f5, f5*).
var testSets = []struct {
	name                                string
	k, rand, sqn, amf, op, opc          string
	macA, macS, res, ck, ik, ak, akStar string
}{
	{"test set 1", "465b5ce8b199b49faa5f0a2ee238a6bc", "23553cbe9637a89d218ae64dae47bf35", "ff9bb4d0b607", "b9b9",
		"cdc202d5123e20f62b6d676ac72cb318", "cd63cb71954a9f4e48a5994e37a02baf",
		"4a9ffac354dfafb3", "01cfaf9ec4e871e9", "a54211d5e3ba50bf", "b40ba9a3c58b2a05bbf0d987b21bf8cb",
		"f769bcd751044604127672711c6d3441", "aa689c648370", "451e8beca43b"},
	{"test set 2", "0396eb317b6d1c36f19c1c84cd6ffd16", "c00d603103dcee52c4478119494202e8", "fd8eef40df7d", "af17",
		"ff53bade17df5d4e793073ce9d7579fa", "53c15671c60a4b731c55b4a441c0bde2",
		"5df5b31807e258b0", "a8c016e51ef4a343", "d3a628ed988620f0", "58c433ff7a7082acd424220f2b67c556",
		"21a8c1f929702adb3e738488b9f5c5da", "c47783995f72", "30f1197061c1"},
	{"test set 3", "fec86ba6eb707ed08905757b1bb44b8f", "9f7c8d021accf4db213ccff0c7f71a6a", "9d0277595ffc", "725c",
		"dbc59adcb6f9a0ef735477b7fadf8374", "1006020f0a478bf6b699f15c062e42b3",
		"9cabc3e99baf7281", "95814ba2b3044324", "8011c48c0c214ed2", "5dbdbb2954e8f3cde665b046179a5098",
		"59a92d3b476a0443487055cf88b2307b", "33484dc2136b", "deacdd848cc6"},
}

func sqnOf(s string) uint64 {
	var v uint64
	for _, b := range h(s) {
		v = v<<8 | uint64(b)
	}
	return v
}

func TestMilenageTestSets(t *testing.T) {
	for _, ts := range testSets {
		t.Run(ts.name, func(t *testing.T) {
			opc, err := OPc(h(ts.k), h(ts.op))
			require.NoError(t, err)
			assert.Equal(t, ts.opc, hex.EncodeToString(opc), "OPc")

			v, err := GenerateWithRAND(h(ts.k), opc, sqnOf(ts.sqn), h(ts.amf), h(ts.rand))
			require.NoError(t, err)
			assert.Equal(t, ts.res, hex.EncodeToString(v.XRES), "f2 RES")
			assert.Equal(t, ts.ck, hex.EncodeToString(v.CK), "f3 CK")
			assert.Equal(t, ts.ik, hex.EncodeToString(v.IK), "f4 IK")
			// AUTN = SQN ⊕ AK ‖ AMF ‖ MAC-A (f1, f5).
			sqnXorAK := make([]byte, 6)
			for i := range sqnXorAK {
				sqnXorAK[i] = h(ts.sqn)[i] ^ h(ts.ak)[i]
			}
			assert.Equal(t, hex.EncodeToString(sqnXorAK)+ts.amf+ts.macA, hex.EncodeToString(v.AUTN), "AUTN")

			// f1* and f5* through a handset-side AUTS, then back.
			m := milenage.NewWithOPc(h(ts.k), opc, h(ts.rand), sqnOf(ts.sqn), 0)
			macS, err := m.F1Star(h(ts.sqn), h(ts.amf))
			require.NoError(t, err)
			assert.Equal(t, ts.macS, hex.EncodeToString(macS), "f1*")
			aks, err := m.F5Star()
			require.NoError(t, err)
			assert.Equal(t, ts.akStar, hex.EncodeToString(aks), "f5*")
		})
	}
}

func TestNonceRoundTrip(t *testing.T) {
	ts := testSets[2]
	v, err := GenerateWithRAND(h(ts.k), h(ts.opc), sqnOf(ts.sqn), h(ts.amf), h(ts.rand))
	require.NoError(t, err)
	rand, autn, err := ParseNonce(v.Nonce())
	require.NoError(t, err)
	assert.Equal(t, v.RAND, rand)
	assert.Equal(t, v.AUTN, autn)
	_, _, err = ParseNonce("c2hvcnQ=")
	assert.ErrorIs(t, err, ErrNonce)
}

// RFC 3310 §3.3: the AKAv1-MD5 response is an MD5 Digest whose password is
// RES; a handset with the same keys computes the same answer.
func TestAKAv1Response(t *testing.T) {
	ts := testSets[0]
	v, err := GenerateWithRAND(h(ts.k), h(ts.opc), sqnOf(ts.sqn), h(ts.amf), h(ts.rand))
	require.NoError(t, err)
	c := digest.Credentials{Username: "user@ims.example", Realm: "ims.example", Nonce: v.Nonce(), URI: "sip:ims.example",
		QOP: "auth", NC: "00000001", CNonce: "c0ffee"}
	// The handset side: RES from its own Milenage run.
	m := milenage.NewWithOPc(h(ts.k), h(ts.opc), h(ts.rand), sqnOf(ts.sqn), 0xb9b9)
	res, _, _, _, err := m.F2345()
	require.NoError(t, err)
	c.Response = digest.Response(digest.MD5, digest.HA1(digest.MD5, c.Username, c.Realm, string(res)), "REGISTER", &c)
	assert.True(t, digest.Verify(digest.MD5, digest.HA1(digest.MD5, c.Username, c.Realm, v.Password()), "REGISTER", &c))
	// A wrong RES fails.
	wrong := append([]byte{}, res...)
	wrong[0] ^= 1
	c.Response = digest.Response(digest.MD5, digest.HA1(digest.MD5, c.Username, c.Realm, string(wrong)), "REGISTER", &c)
	assert.False(t, digest.Verify(digest.MD5, digest.HA1(digest.MD5, c.Username, c.Realm, v.Password()), "REGISTER", &c))
}

// A handset whose SQN is ahead answers with AUTS; the server recovers the
// handset's SQN, and a tampered AUTS is refused.
func TestResync(t *testing.T) {
	for _, ts := range testSets {
		t.Run(ts.name, func(t *testing.T) {
			handsetSQN := sqnOf(ts.sqn) + 1000
			m := milenage.NewWithOPc(h(ts.k), h(ts.opc), h(ts.rand), handsetSQN, 0)
			_, _, _, _, err := m.F2345()
			require.NoError(t, err)
			auts, err := m.GenerateAUTS()
			require.NoError(t, err)
			got, err := Resync(h(ts.k), h(ts.opc), h(ts.rand), auts)
			require.NoError(t, err)
			assert.Equal(t, handsetSQN, got)

			bad := bytes.Clone(auts)
			bad[13] ^= 0x80
			_, err = Resync(h(ts.k), h(ts.opc), h(ts.rand), bad)
			assert.ErrorIs(t, err, ErrAUTS)
			_, err = Resync(h(ts.k), h(ts.opc), h(ts.rand), auts[:10])
			assert.ErrorIs(t, err, ErrAUTSShape)
		})
	}
}

func TestBadKeys(t *testing.T) {
	_, err := GenerateWithRAND(h("00"), h("00"), 1, h("8000"), make([]byte, 16))
	assert.ErrorIs(t, err, ErrKeys)
	_, err = GenerateWithRAND(make([]byte, 16), make([]byte, 16), SQNMax+1, h("8000"), make([]byte, 16))
	assert.ErrorIs(t, err, ErrKeys)
}

func FuzzParseNonce(f *testing.F) {
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add("not base64")
	f.Fuzz(func(t *testing.T, s string) {
		rand, autn, err := ParseNonce(s)
		if err == nil && (len(rand) != 16 || len(autn) != 16) {
			t.Fatalf("accepted %q with RAND %d and AUTN %d bytes", s, len(rand), len(autn))
		}
	})
}

// The handset side accepts a fresh vector once, asks for resync with a
// verifiable AUTS when the SQN is not fresh, and refuses a vector made with
// another key.
func TestUSIM(t *testing.T) {
	ts := testSets[2]
	v, err := GenerateWithRAND(h(ts.k), h(ts.opc), 64, h(ts.amf), h(ts.rand))
	require.NoError(t, err)
	u := &USIM{K: h(ts.k), OPc: h(ts.opc)}
	res, auts, err := u.RunNonce(v.Nonce())
	require.NoError(t, err)
	assert.Nil(t, auts)
	assert.Equal(t, v.XRES, res)
	assert.Equal(t, v.CK, u.CK)
	assert.Equal(t, uint64(64), u.SQN)

	_, auts, err = u.RunNonce(v.Nonce()) // the same SQN again
	require.NoError(t, err)
	require.NotNil(t, auts)
	sqn, err := Resync(h(ts.k), h(ts.opc), h(ts.rand), auts)
	require.NoError(t, err)
	assert.Equal(t, uint64(64), sqn)

	other := &USIM{K: h(testSets[0].k), OPc: h(testSets[0].opc)}
	_, _, err = other.RunNonce(v.Nonce())
	assert.ErrorIs(t, err, ErrMAC)
}
