package aka

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wmnsk/milenage"
)

// ErrMAC means AUTN's MAC does not verify: the network is not authentic.
var ErrMAC = errors.New("aka: AUTN MAC failure")

// USIM is the handset side of AKA (TS 33.102 §6.3.3), for test clients
// and tools: it checks AUTN's MAC and the freshness of its SQN, then
// answers RES, or AUTS when the SQN is not fresh. It keeps one SQN (no
// IND array), which is what a freshness check needs against rcsd's
// IND-0 vectors.
type USIM struct {
	K, OPc []byte
	SQN    uint64 // highest SQN accepted so far
	// CK and IK of the last accepted challenge.
	CK, IK []byte
}

// Run processes the RAND and AUTN of a nonce: it returns RES on success,
// AUTS on a synchronisation failure (SQN not above the USIM's), or ErrMAC.
func (u *USIM) Run(rand, autn []byte) (res, auts []byte, err error) {
	if len(rand) != 16 || len(autn) != 16 || len(u.K) != 16 || len(u.OPc) != 16 {
		return nil, nil, ErrKeys
	}
	m := milenage.NewWithOPc(u.K, u.OPc, rand, 0, 0)
	res, ck, ik, ak, err := m.F2345()
	if err != nil {
		return nil, nil, fmt.Errorf("aka: f2-f5: %w", err)
	}
	var b [8]byte
	for i := 0; i < 6; i++ {
		b[2+i] = autn[i] ^ ak[i]
	}
	sqn := binary.BigEndian.Uint64(b[:])
	m2 := milenage.NewWithOPc(u.K, u.OPc, rand, sqn, binary.BigEndian.Uint16(autn[6:8]))
	mac, err := m2.F1()
	if err != nil {
		return nil, nil, fmt.Errorf("aka: f1: %w", err)
	}
	if subtle.ConstantTimeCompare(mac, autn[8:16]) != 1 {
		return nil, nil, ErrMAC
	}
	if sqn <= u.SQN {
		ms := milenage.NewWithOPc(u.K, u.OPc, rand, u.SQN, 0)
		if _, _, _, _, err := ms.F2345(); err != nil {
			return nil, nil, fmt.Errorf("aka: f5*: %w", err)
		}
		auts, err := ms.GenerateAUTS()
		if err != nil {
			return nil, nil, fmt.Errorf("aka: AUTS: %w", err)
		}
		return nil, auts, nil
	}
	u.SQN, u.CK, u.IK = sqn, ck, ik
	return res, nil, nil
}

// RunNonce is Run on a Digest nonce (base64 of RAND‖AUTN‖…).
func (u *USIM) RunNonce(nonce string) (res, auts []byte, err error) {
	rand, autn, err := ParseNonce(nonce)
	if err != nil {
		return nil, nil, err
	}
	return u.Run(rand, autn)
}
