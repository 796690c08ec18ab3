package registrar

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"rcsd/registrar/aka"
	"rcsd/registrar/digest"
	"rcsd/storage"
)

// AKA algorithm tokens (RFC 3310 §3.1; the spec writes AKAv1-SHA256, some
// handsets AKAv1-SHA-256).
const (
	AKAv1MD5    = "AKAv1-MD5"
	AKAv1SHA256 = "AKAv1-SHA256"
)

// ParseAKAAlgorithm maps a wire token to AKAv1MD5 or AKAv1SHA256.
func ParseAKAAlgorithm(s string) (string, bool) {
	switch {
	case strings.EqualFold(s, AKAv1MD5):
		return AKAv1MD5, true
	case strings.EqualFold(s, AKAv1SHA256), strings.EqualFold(s, "AKAv1-SHA-256"):
		return AKAv1SHA256, true
	}
	return "", false
}

// akaSEQShift places SEQ above a 5-bit IND (TS 33.102 Annex C.3.2): every
// vector takes SQN = (SEQ+1)‖IND=0, which a USIM accepts whatever IND array
// it keeps. The subscriber's stored SQN is SEQ.
const akaSEQShift = 5

// akaNonceLen is RAND(16) ‖ AUTN(16) ‖ server data (issued ‖ seq ‖ HMAC).
const akaNonceLen = 32 + nonceRawLen

// dummyK stands in for an unknown user's keys so that a failing unknown
// user costs the same Milenage work as a failing known one.
var dummyK = make([]byte, 16)

// AKAScheme is IMS AKA over HTTP Digest (RFC 3310, 3GPP TS 33.203) for
// native handsets with a USIM.
//
// The nonce is base64(RAND ‖ AUTN ‖ server data), the server data being
// issued-at ‖ sequence ‖ HMAC over them, RAND‖AUTN and the private identity.
// Nothing is kept per challenge: an answer is checked by recomputing RES
// from RAND with the subscriber's K (Milenage f2), the server data proves
// the nonce is ours and fresh, and the nonce table refuses its second use.
// Each challenge draws a new RAND and takes the next SQN from storage
// (storage.SubscriberStore.NextSQN), so vectors are never reused.
//
// CK and IK stay on the server unless SendIKCK is set: TS 33.203 carries them
// only on the S-CSCF→P-CSCF hop, for the P-CSCF's IPsec; nm01-core fig 5-10
// shows them because it was captured there.
type AKAScheme struct {
	Realm     string
	Algorithm string // AKAv1MD5 or AKAv1SHA256, the challenge's token
	SendIKCK  bool
	AMF       []byte // AMF of the vectors, used when the subscriber has none
	Nonces    *Nonces
	Store     storage.SubscriberStore
	Rand      io.Reader // crypto/rand.Reader when nil
}

// Name implements Scheme.
func (a *AKAScheme) Name() string { return "aka" }

// NeedsIdentity implements Scheme.
func (a *AKAScheme) NeedsIdentity() bool { return true }

// Offers implements Scheme.
func (a *AKAScheme) Offers(sub *storage.Subscriber) bool { return sub == nil || sub.HasAKA() }

// Accepts implements Scheme.
func (a *AKAScheme) Accepts(c *digest.Credentials) bool {
	_, ok := ParseAKAAlgorithm(c.Algorithm)
	return ok
}

func (a *AKAScheme) rnd() io.Reader {
	if a.Rand != nil {
		return a.Rand
	}
	return rand.Reader
}

// Challenge implements Scheme. A subscriber without AKA keys (or none at
// all) gets a nonce of the same length drawn at random: it cannot be
// answered, and it cannot be told from a real one.
func (a *AKAScheme) Challenge(ctx context.Context, now time.Time, impi string, sub *storage.Subscriber, stale bool) ([]string, error) {
	var raw [akaNonceLen]byte
	var ck, ik []byte
	if sub != nil && sub.HasAKA() {
		seq, err := a.Store.NextSQN(ctx, sub.IMPI, 0)
		if err != nil {
			return nil, fmt.Errorf("aka: next SQN of %s: %w", sub.IMPI, err)
		}
		amf := sub.AMF
		if len(amf) != 2 {
			amf = a.AMF
		}
		v, err := aka.Generate(sub.K, sub.OPc, (seq<<akaSEQShift)&aka.SQNMax, amf, a.rnd())
		if err != nil {
			return nil, fmt.Errorf("aka: vector for %s: %w", sub.IMPI, err)
		}
		copy(raw[:16], v.RAND)
		copy(raw[16:32], v.AUTN)
		ck, ik = v.CK, v.IK
	} else if _, err := io.ReadFull(a.rnd(), raw[:32]); err != nil {
		return nil, fmt.Errorf("aka: RAND: %w", err)
	}
	a.Nonces.issueRaw(now, raw[32:], raw[:32], []byte(impi))
	var b strings.Builder
	b.Grow(200)
	b.WriteString(`Digest realm="`)
	b.WriteString(a.Realm)
	b.WriteString(`", nonce="`)
	b.WriteString(base64.StdEncoding.EncodeToString(raw[:]))
	b.WriteString(`", algorithm=`)
	b.WriteString(a.Algorithm)
	if a.SendIKCK {
		if ck == nil { // same shape for the unanswerable nonce
			ck, ik = make([]byte, 16), make([]byte, 16)
			_, _ = io.ReadFull(a.rnd(), ck)
			_, _ = io.ReadFull(a.rnd(), ik)
		}
		b.WriteString(`, ik="`)
		b.WriteString(hex.EncodeToString(ik))
		b.WriteString(`", ck="`)
		b.WriteString(hex.EncodeToString(ck))
		b.WriteByte('"')
	}
	if stale {
		b.WriteString(", stale=true")
	}
	return []string{b.String()}, nil
}

// Verify implements Scheme, following RFC 3310 §3.4 and TS 24.229
// §5.4.1.2.3: an empty response means the handset rejected the network
// (MAC failure) and gets 403; an answer with auts is a synchronisation
// failure — AUTS is checked (MAC-S), the subscriber's SQN moves past the
// handset's and the handset is challenged again (VerdictResync).
func (a *AKAScheme) Verify(ctx context.Context, method string, c *digest.Credentials, sub *storage.Subscriber, branch string, now time.Time) (Verdict, string) {
	var raw [akaNonceLen + 3]byte
	n, err := base64.StdEncoding.Decode(raw[:], []byte(c.Nonce))
	if err != nil || n != akaNonceLen || base64.StdEncoding.EncodedLen(akaNonceLen) != len(c.Nonce) {
		// Not one of ours (another server's, or garbage): challenge afresh.
		return VerdictStale, "AKA nonce has the wrong shape"
	}
	rnd := raw[:16]
	seq, state := a.Nonces.checkRaw(raw[32:akaNonceLen], now, raw[:32], []byte(c.Username))
	if state == NonceInvalid {
		return VerdictStale, "AKA nonce not issued by this server or for another identity"
	}
	if c.Response == "" {
		if c.AUTS == "" {
			return VerdictFail, "handset rejected the network's challenge (AUTN MAC failure)"
		}
		return VerdictFail, "synchronisation failure without a response"
	}
	k, opc := dummyK, dummyK
	known := sub != nil && sub.HasAKA()
	if known {
		k, opc = sub.K, sub.OPc
	}
	res, _, _, err := aka.Answer(k, opc, rnd)
	if err != nil {
		return VerdictFail, "AKA keys unusable: " + err.Error()
	}
	password := string(res)
	if c.AUTS != "" {
		password = "" // RFC 3310 §3.4: the response to a resync uses an empty password
	}
	alg, _ := ParseAKAAlgorithm(c.Algorithm)
	h := digest.MD5
	if alg == AKAv1SHA256 && len(c.Response) == 64 {
		// The spec's own AKAv1-SHA256 example answers with 32 hex digits
		// (MD5); a 64-digit answer is SHA-256. Both are accepted.
		h = digest.SHA256
	}
	if !digest.Verify(h, digest.HA1(h, c.Username, c.Realm, password), method, c) || !known {
		if sub == nil {
			return VerdictFail, "unknown user"
		}
		if !known {
			return VerdictFail, "no AKA keys provisioned"
		}
		return VerdictFail, "wrong AKA response (RES)"
	}
	if c.AUTS != "" {
		return a.resync(ctx, sub, rnd, c.AUTS)
	}
	if state == NonceStale {
		return VerdictStale, "AKA nonce expired"
	}
	nc := uint64(1) // no qop: the nonce is good for one answer
	if c.QOP != "" {
		if !strings.EqualFold(c.QOP, "auth") {
			return VerdictFail, "qop " + c.QOP + " not offered"
		}
		nc, err = strconv.ParseUint(c.NC, 16, 32)
		if err != nil || nc == 0 || c.CNonce == "" {
			return VerdictFail, "bad nc or cnonce"
		}
	}
	switch a.Nonces.Use(seq, uint32(nc), branch) {
	case UseReplay:
		return VerdictStale, "AKA answer replayed"
	case UseEvicted:
		return VerdictStale, "AKA nonce evicted"
	}
	return VerdictOK, ""
}

// errAUTSBase64 is a malformed auts parameter.
var errAUTSBase64 = errors.New("auts is not base64 of 14 bytes")

func (a *AKAScheme) resync(ctx context.Context, sub *storage.Subscriber, rnd []byte, autsParam string) (Verdict, string) {
	auts, err := base64.StdEncoding.DecodeString(autsParam)
	if err != nil || len(auts) != 14 {
		return VerdictFail, errAUTSBase64.Error()
	}
	sqnMS, err := aka.Resync(sub.K, sub.OPc, rnd, auts)
	if err != nil {
		return VerdictFail, "AUTS rejected: " + err.Error()
	}
	if _, err := a.Store.NextSQN(ctx, sub.IMPI, sqnMS>>akaSEQShift); err != nil {
		return VerdictError, "storing the re-synchronised SQN: " + err.Error()
	}
	return VerdictResync, fmt.Sprintf("re-synchronised to the handset's SQN %d", sqnMS)
}
