package registrar

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

// nonceSlots bounds the nonce-count table: 2^18 slots of 16 bytes (4 MiB).
// A nonce whose slot was taken over by a newer one is treated as stale and
// the client simply answers a fresh challenge.
const nonceSlots = 1 << 18

// Nonces issues and checks server nonces without keeping per-challenge
// state. A nonce is base64(issued-at ‖ sequence ‖ HMAC-SHA256 truncated to
// 12 bytes), so its age and authenticity are checked from the nonce itself:
// unknown and known users get nonces that look the same, a restart or
// another node with the same secret verifies them, and memory does not grow
// with the challenge rate. Nonce-count replay protection (qop=auth) keeps a
// fixed-size table indexed by the sequence number.
type Nonces struct {
	key      []byte
	lifetime time.Duration

	macs sync.Pool // of keyed HMAC-SHA256 states: keying costs two hashes, reuse them

	mu    sync.Mutex
	seq   uint32
	slots []nonceSlot
}

type nonceSlot struct {
	seq    uint32
	nc     uint32
	branch uint64 // hash of the Via branch that used nc, to tell retransmissions from replays
}

// NonceState is the result of checking a nonce.
type NonceState int

// Nonce states.
const (
	NonceValid   NonceState = iota
	NonceStale              // issued by us but expired, or evicted from the nc table
	NonceInvalid            // not issued by us (forged, corrupted, other secret)
)

// NewNonces creates a nonce source. An empty secret draws a random one.
func NewNonces(secret string, lifetime time.Duration) *Nonces {
	key := []byte(secret)
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	var seed [4]byte
	_, _ = rand.Read(seed[:])
	n := &Nonces{key: key, lifetime: lifetime, seq: binary.BigEndian.Uint32(seed[:]), slots: make([]nonceSlot, nonceSlots)}
	n.macs.New = func() any { return hmac.New(sha256.New, n.key) }
	return n
}

const nonceRawLen = 4 + 4 + 12

// Issue returns a fresh nonce.
func (n *Nonces) Issue(now time.Time) string {
	var raw [nonceRawLen]byte
	n.issueRaw(now, raw[:], nil)
	return base64.StdEncoding.EncodeToString(raw[:])
}

// issueRaw writes issued ‖ seq ‖ HMAC(issued ‖ seq ‖ bound...) into out
// (nonceRawLen bytes). bound ties the nonce to data carried beside it (the
// AKA nonce's RAND‖AUTN and the private identity), so that data cannot be
// swapped under a valid server part.
func (n *Nonces) issueRaw(now time.Time, out []byte, bound ...[]byte) {
	n.mu.Lock()
	n.seq++
	seq := n.seq
	n.mu.Unlock()
	binary.BigEndian.PutUint32(out[0:4], uint32(now.Unix()))
	binary.BigEndian.PutUint32(out[4:8], seq)
	n.mac(out[8:nonceRawLen], out[:8], bound...)
}

func (n *Nonces) mac(out, msg []byte, bound ...[]byte) {
	m := n.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(msg)
	for _, b := range bound {
		m.Write(b)
	}
	var sum [32]byte
	copy(out, m.Sum(sum[:0]))
	n.macs.Put(m)
}

// Check verifies a nonce's authenticity and age and returns its sequence.
func (n *Nonces) Check(nonce string, now time.Time) (uint32, NonceState) {
	if base64.StdEncoding.DecodedLen(len(nonce)) < nonceRawLen || len(nonce) > 64 {
		return 0, NonceInvalid
	}
	var raw [48]byte
	l, err := base64.StdEncoding.Decode(raw[:], []byte(nonce))
	if err != nil || l != nonceRawLen {
		return 0, NonceInvalid
	}
	return n.checkRaw(raw[:nonceRawLen], now)
}

// checkRaw checks the raw server part of a nonce (see issueRaw).
func (n *Nonces) checkRaw(raw []byte, now time.Time, bound ...[]byte) (uint32, NonceState) {
	if len(raw) != nonceRawLen {
		return 0, NonceInvalid
	}
	var want [12]byte
	n.mac(want[:], raw[:8], bound...)
	if !hmac.Equal(want[:], raw[8:nonceRawLen]) {
		return 0, NonceInvalid
	}
	issued := time.Unix(int64(binary.BigEndian.Uint32(raw[0:4])), 0)
	seq := binary.BigEndian.Uint32(raw[4:8])
	if now.Sub(issued) > n.lifetime || issued.After(now.Add(time.Minute)) {
		return seq, NonceStale
	}
	return seq, NonceValid
}

// UseResult tells what a nonce-count means.
type UseResult int

// Nonce-count outcomes.
const (
	UseFresh          UseResult = iota // nc is higher than any seen: accept
	UseRetransmission                  // same nc from the same Via branch: a UDP retransmission
	UseReplay                          // nc not higher, different branch: refuse
	UseEvicted                         // the slot belongs to a newer nonce: treat as stale
)

// Use records nonce-count nc for nonce sequence seq (RFC 7616 §3.3: the
// server must refuse a repeated nc).
func (n *Nonces) Use(seq, nc uint32, branch string) UseResult {
	bh := fnv64a(branch)
	n.mu.Lock()
	defer n.mu.Unlock()
	s := &n.slots[seq&(nonceSlots-1)]
	switch {
	case s.seq == seq && s.nc != 0:
		if nc > s.nc {
			s.nc, s.branch = nc, bh
			return UseFresh
		}
		if nc == s.nc && bh == s.branch {
			return UseRetransmission
		}
		return UseReplay
	case s.nc != 0 && int32(seq-s.seq) < 0:
		return UseEvicted
	}
	*s = nonceSlot{seq: seq, nc: nc, branch: bh}
	return UseFresh
}

// fnv64a is FNV-1a over s, without hash/fnv's allocation.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
