package registrar

import (
	"context"
	"strconv"
	"strings"
	"time"

	"rcsd/registrar/digest"
	"rcsd/storage"
)

// Verdict is the outcome of checking an answered challenge.
type Verdict int

// Verdicts.
const (
	VerdictOK     Verdict = iota
	VerdictStale          // the answer was right but the nonce is no longer good: challenge again with stale=true
	VerdictFail           // wrong answer, unknown user, or a scheme rule broken
	VerdictResync         // AKA re-synchronisation done: challenge again with a fresh vector
	VerdictError          // storage failed: answer 503
)

// Scheme is one authentication scheme of the registrar: SIP Digest
// (DigestScheme) and IMS AKA (AKAScheme). Schemes must treat a nil
// subscriber (unknown user) exactly like a known one that fails, in status,
// headers and work done, so users cannot be enumerated.
type Scheme interface {
	// Name is the auth.schemes token ("digest", "aka").
	Name() string
	// NeedsIdentity reports whether a challenge depends on the private
	// identity (AKA: the vector comes from the subscriber's K).
	NeedsIdentity() bool
	// Offers reports whether the scheme may challenge sub (nil: unknown).
	Offers(sub *storage.Subscriber) bool
	// Challenge returns WWW-Authenticate values for a new challenge to
	// private identity impi (sub is its record, nil when unknown).
	Challenge(ctx context.Context, now time.Time, impi string, sub *storage.Subscriber, stale bool) ([]string, error)
	// Accepts reports whether credentials answer one of this scheme's
	// challenges (by algorithm); others are challenged afresh.
	Accepts(c *digest.Credentials) bool
	// Verify checks an answer. reason explains a VerdictFail or VerdictStale
	// for the log.
	Verify(ctx context.Context, method string, c *digest.Credentials, sub *storage.Subscriber, branch string, now time.Time) (v Verdict, reason string)
}

// DigestScheme is SIP Digest (RFC 3261 §22, RFC 7616, RFC 8760) for App
// clients.
type DigestScheme struct {
	Realm      string
	Algorithms []digest.Algorithm // challenge order
	AllowNoQop bool               // accept RFC 2069 answers without qop (the spec's own example)
	Nonces     *Nonces
}

// Name implements Scheme.
func (d *DigestScheme) Name() string { return "digest" }

// NeedsIdentity implements Scheme.
func (d *DigestScheme) NeedsIdentity() bool { return false }

// Offers implements Scheme: every subscriber with a password, and unknown
// users, are challenged with Digest.
func (d *DigestScheme) Offers(sub *storage.Subscriber) bool { return sub == nil || sub.HasDigest() }

// Challenges implements Scheme: one challenge per configured algorithm, in
// order (RFC 8760 §2.4: the client takes the first it supports), each with
// its own nonce.
func (d *DigestScheme) Challenge(_ context.Context, now time.Time, _ string, _ *storage.Subscriber, stale bool) ([]string, error) {
	out := make([]string, 0, len(d.Algorithms))
	for _, a := range d.Algorithms {
		out = append(out, digest.Challenge{Realm: d.Realm, Nonce: d.Nonces.Issue(now), Algorithm: a, QOP: true, Stale: stale}.String())
	}
	return out, nil
}

// Accepts implements Scheme.
func (d *DigestScheme) Accepts(c *digest.Credentials) bool {
	a, ok := digest.ParseAlgorithm(c.Algorithm)
	if !ok {
		return false
	}
	for _, o := range d.Algorithms {
		if o == a {
			return true
		}
	}
	return false
}

func ha1For(sub *storage.Subscriber, a digest.Algorithm) string {
	if sub == nil {
		return ""
	}
	switch a {
	case digest.SHA256:
		return sub.HA1SHA256
	case digest.SHA512256:
		return sub.HA1SHA512256
	default:
		return sub.HA1MD5
	}
}

// dummyHA1 stands in for an unknown user's HA1 so a failing unknown user
// costs the same hashing as a failing known one.
const dummyHA1 = "0000000000000000000000000000000000000000000000000000000000000000"

// Verify implements Scheme.
func (d *DigestScheme) Verify(_ context.Context, method string, c *digest.Credentials, sub *storage.Subscriber, branch string, now time.Time) (Verdict, string) {
	a, _ := digest.ParseAlgorithm(c.Algorithm)
	seq, state := d.Nonces.Check(c.Nonce, now)
	ha1 := ha1For(sub, a)
	known := ha1 != ""
	if !known {
		ha1 = dummyHA1[:a.HexLen()]
	}
	if !digest.Verify(a, ha1, method, c) || !known {
		if sub == nil {
			return VerdictFail, "unknown user"
		}
		if !known {
			return VerdictFail, "no " + string(a) + " credentials provisioned"
		}
		return VerdictFail, "wrong response"
	}
	switch state {
	case NonceInvalid:
		return VerdictStale, "nonce not issued by this server"
	case NonceStale:
		return VerdictStale, "nonce expired"
	}
	switch strings.ToLower(c.QOP) {
	case "":
		if !d.AllowNoQop {
			return VerdictFail, "answer without qop refused (auth.allow_no_qop is off)"
		}
		return VerdictOK, ""
	case "auth":
		nc, err := strconv.ParseUint(c.NC, 16, 32)
		if err != nil || nc == 0 || c.CNonce == "" {
			return VerdictFail, "bad nc or cnonce"
		}
		switch d.Nonces.Use(seq, uint32(nc), branch) {
		case UseReplay:
			return VerdictStale, "nonce-count replayed"
		case UseEvicted:
			return VerdictStale, "nonce evicted"
		}
		return VerdictOK, ""
	}
	return VerdictFail, "qop " + c.QOP + " not offered"
}
