// Package aka computes IMS AKA authentication vectors (3GPP TS 33.102,
// TS 33.203) with Milenage (TS 35.206, github.com/wmnsk/milenage) and the
// pieces of HTTP Digest AKA (RFC 3310) the registrar needs: the nonce
// (base64 of RAND‖AUTN), the Digest password (RES), and re-synchronisation
// from AUTS. It is the building block of the AKA scheme; it keeps no state
// (the subscriber's SQN lives in storage).
package aka

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/wmnsk/milenage"
)

// Errors callers test with errors.Is.
var (
	ErrKeys      = errors.New("aka: K and OP/OPc must be 16 bytes, AMF 2 bytes")
	ErrNonce     = errors.New("aka: nonce is not base64(RAND‖AUTN)")
	ErrAUTS      = errors.New("aka: AUTS does not verify (MAC-S mismatch)")
	ErrAUTSShape = errors.New("aka: AUTS must be 14 bytes")
)

// SQNMax is the largest 48-bit sequence number.
const SQNMax = 1<<48 - 1

// Vector is one authentication vector. XRES, CK and IK never leave the
// server (the spec's Table 5-6 lists XRES among the 401's contents; sending
// it would give the answer away).
type Vector struct {
	RAND, AUTN, XRES, CK, IK []byte
	SQN                      uint64
}

// OPc derives OPc from K and OP (TS 35.206 §4.1).
func OPc(k, op []byte) ([]byte, error) {
	if len(k) != 16 || len(op) != 16 {
		return nil, ErrKeys
	}
	opc, err := milenage.ComputeOPc(k, op)
	if err != nil {
		return nil, fmt.Errorf("aka: OPc: %w", err)
	}
	return opc, nil
}

// Generate computes the vector for sqn with a fresh RAND read from rnd
// (crypto/rand.Reader in production).
func Generate(k, opc []byte, sqn uint64, amf []byte, rnd io.Reader) (Vector, error) {
	rand := make([]byte, 16)
	if _, err := io.ReadFull(rnd, rand); err != nil {
		return Vector{}, fmt.Errorf("aka: RAND: %w", err)
	}
	return GenerateWithRAND(k, opc, sqn, amf, rand)
}

// GenerateWithRAND is Generate with a given RAND (test vectors).
func GenerateWithRAND(k, opc []byte, sqn uint64, amf, rand []byte) (Vector, error) {
	if len(k) != 16 || len(opc) != 16 || len(amf) != 2 || len(rand) != 16 || sqn > SQNMax {
		return Vector{}, ErrKeys
	}
	m := milenage.NewWithOPc(k, opc, rand, sqn, binary.BigEndian.Uint16(amf))
	if _, err := m.F1(); err != nil {
		return Vector{}, fmt.Errorf("aka: f1: %w", err)
	}
	res, ck, ik, _, err := m.F2345()
	if err != nil {
		return Vector{}, fmt.Errorf("aka: f2-f5: %w", err)
	}
	autn, err := m.GenerateAUTN()
	if err != nil {
		return Vector{}, fmt.Errorf("aka: AUTN: %w", err)
	}
	return Vector{RAND: rand, AUTN: autn, XRES: res, CK: ck, IK: ik, SQN: sqn}, nil
}

// Nonce is the Digest nonce of a vector: base64(RAND‖AUTN) (RFC 3310 §3.2).
func (v Vector) Nonce() string {
	return base64.StdEncoding.EncodeToString(append(append([]byte{}, v.RAND...), v.AUTN...))
}

// Password is the Digest password of AKAv1 (RFC 3310 §3.3): RES as octets.
func (v Vector) Password() string { return string(v.XRES) }

// ParseNonce splits a nonce into RAND and AUTN.
func ParseNonce(nonce string) (rand, autn []byte, err error) {
	raw, err := base64.StdEncoding.DecodeString(nonce)
	if err != nil || len(raw) < 32 {
		return nil, nil, ErrNonce
	}
	return raw[:16], raw[16:32], nil
}

// Resync recovers the handset's SQN from AUTS = (SQN_MS ⊕ AK*) ‖ MAC-S
// for the RAND it was computed against (TS 33.102 §6.3.5). MAC-S is checked
// with AMF = 0000 as the handset computes it; a mismatch is ErrAUTS and the
// SQN must not be changed.
func Resync(k, opc, rand, auts []byte) (uint64, error) {
	if len(auts) != 14 {
		return 0, ErrAUTSShape
	}
	if len(k) != 16 || len(opc) != 16 || len(rand) != 16 {
		return 0, ErrKeys
	}
	m := milenage.NewWithOPc(k, opc, rand, 0, 0)
	aks, err := m.F5Star()
	if err != nil {
		return 0, fmt.Errorf("aka: f5*: %w", err)
	}
	sqnMS := make([]byte, 6)
	for i := range sqnMS {
		sqnMS[i] = auts[i] ^ aks[i]
	}
	macS, err := m.F1Star(sqnMS, []byte{0, 0})
	if err != nil {
		return 0, fmt.Errorf("aka: f1*: %w", err)
	}
	if subtle.ConstantTimeCompare(macS, auts[6:14]) != 1 {
		return 0, ErrAUTS
	}
	var b [8]byte
	copy(b[2:], sqnMS)
	return binary.BigEndian.Uint64(b[:]), nil
}

// Answer computes what the handset computes from RAND: RES (the Digest
// password), CK and IK (TS 35.206 f2, f3, f4). The server uses it to check
// an answer without keeping the vector (RAND travels in the nonce).
func Answer(k, opc, rand []byte) (res, ck, ik []byte, err error) {
	if len(k) != 16 || len(opc) != 16 || len(rand) != 16 {
		return nil, nil, nil, ErrKeys
	}
	m := milenage.NewWithOPc(k, opc, rand, 0, 0)
	res, ck, ik, _, err = m.F2345()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("aka: f2-f5: %w", err)
	}
	return res, ck, ik, nil
}
