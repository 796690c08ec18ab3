package codec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
)

var zone = time.FixedZone("UTC+5:30", 5*3600+1800)

func fullSubscriber() storage.Subscriber {
	return storage.Subscriber{
		IMPI:         "alice@ims.example.net",
		IMPUs:        []string{"sip:alice@example.net", "tel:+15550001", "sip:ünïcode@example.net"},
		Realm:        "ims.example.net",
		HA1MD5:       "939e7578ed9e3c518a452acee763bce9",
		HA1SHA256:    strings.Repeat("ab", 32),
		HA1SHA512256: strings.Repeat("cd", 32),
		K:            []byte("0123456789abcdef"),
		OP:           []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		OPc:          []byte("fedcba9876543210"),
		AMF:          []byte{0x80, 0},
		SQN:          storage.SQNMax,
	}
}

func fullBinding(i int) storage.Binding {
	return storage.Binding{
		AOR:          "sip:alice@example.net",
		Contact:      "sip:alice@192.0.2.1:5061;transport=tls;ob",
		Params:       `+sip.instance="<urn:uuid:1>";reg-id=1;+sip.ice`,
		InstanceID:   "urn:uuid:1",
		RegID:        -3 + i,
		Q:            "0.7",
		CallID:       "1j9FpLxk3uxtm8tn@192.0.2.1",
		CSeq:         4_000_000_000 + uint32(i),
		Expires:      time.Date(2030, 3, 4, 5, 6, 7, 890_123_456, zone).Add(time.Duration(i) * time.Second),
		Path:         []string{"<sip:pcscf1.example.net;lr>", "<sip:edge.example.net;lr;ob>"},
		UserAgent:    `RCS client/8.0 "quoted" ünïcode`,
		IMPI:         "alice@ims.example.net",
		Transport:    "tls",
		Source:       "[2001:db8::1]:41234",
		Local:        "[2001:db8::2]:5061",
		Node:         "rcsd-0",
		RegisteredAt: time.Date(1969, 12, 31, 23, 59, 59, 1, time.UTC), // before the epoch
	}
}

func roundTripSubscriber(t *testing.T, sub storage.Subscriber) storage.Subscriber {
	t.Helper()
	enc := AppendSubscriber([]byte("prefix"), &sub)
	require.Equal(t, "prefix", string(enc[:6]), "appends")
	got, err := DecodeSubscriber(string(enc[6:]))
	require.NoError(t, err)
	impi, err := SubscriberIMPI(string(enc[6:]))
	require.NoError(t, err)
	assert.Equal(t, sub.IMPI, impi)
	return got
}

func TestSubscriberRoundTrip(t *testing.T) {
	full := fullSubscriber()
	assert.Equal(t, full, roundTripSubscriber(t, full))

	// Empty slices come back nil, as from JSON with omitempty.
	min := storage.Subscriber{IMPI: "x", IMPUs: []string{}, K: []byte{}, OP: []byte{}, AMF: []byte{}}
	assert.Equal(t, storage.Subscriber{IMPI: "x"}, roundTripSubscriber(t, min))
	assert.Equal(t, storage.Subscriber{}, roundTripSubscriber(t, storage.Subscriber{}))

	// Key material is copied out, each slice capped so that appending to
	// one cannot overwrite the next.
	got := roundTripSubscriber(t, full)
	assert.Equal(t, len(got.K), cap(got.K))
	got.K = append(got.K, 'x')
	assert.Equal(t, full.OP, got.OP)
}

func TestSubscriberAllocations(t *testing.T) {
	full := fullSubscriber()
	enc := string(AppendSubscriber(nil, &full))
	assert.Equal(t, 2.0, testing.AllocsPerRun(100, func() { _, _ = DecodeSubscriber(enc) }))
}

func TestBindingsRoundTrip(t *testing.T) {
	bs := []storage.Binding{fullBinding(0), fullBinding(1), {AOR: "sip:alice@example.net", Contact: "sip:x", Path: []string{}}}
	enc := string(AppendBindings(nil, bs))
	got, err := DecodeBindings(enc, nil)
	require.NoError(t, err)
	require.Len(t, got, len(bs))
	for i := range bs {
		w, g := bs[i], got[i]
		assert.True(t, w.Expires.Equal(g.Expires), "binding %d Expires", i)
		assert.True(t, w.RegisteredAt.Equal(g.RegisteredAt), "binding %d RegisteredAt", i)
		assert.Equal(t, time.UTC, g.Expires.Location(), "binding %d Expires in UTC", i)
		assert.Equal(t, time.UTC, g.RegisteredAt.Location(), "binding %d RegisteredAt in UTC", i)
		w.Expires, w.RegisteredAt = w.Expires.UTC(), w.RegisteredAt.UTC()
		if len(w.Path) == 0 {
			w.Path = nil // empty comes back nil
		}
		assert.Equal(t, w, g, "binding %d", i)
	}
	assert.Equal(t, time.Time{}, got[2].Expires, "the zero time survives")
	assert.Equal(t, len(got[0].Path), cap(got[0].Path), "Path capped")

	aor, err := FirstAOR(enc)
	require.NoError(t, err)
	assert.Equal(t, "sip:alice@example.net", aor)
	_, err = FirstAOR(string(AppendBindings(nil, nil)))
	assert.ErrorIs(t, err, ErrCorrupt)

	none, err := DecodeBindings(string(AppendBindings(nil, nil)), nil)
	require.NoError(t, err)
	assert.Nil(t, none)
}

func TestDecodeBindingsKeep(t *testing.T) {
	bs := []storage.Binding{fullBinding(0), fullBinding(1), fullBinding(2), fullBinding(3)}
	bs[1].Path = nil
	enc := string(AppendBindings(nil, bs))
	got, err := DecodeBindings(enc, func(b *storage.Binding) bool { return b.CSeq%2 == 1 })
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, bs[1].CSeq, got[0].CSeq)
	assert.Nil(t, got[0].Path)
	assert.Equal(t, bs[3].CSeq, got[1].CSeq)
	assert.Equal(t, bs[3].Path, got[1].Path)

	got, err = DecodeBindings(enc, func(*storage.Binding) bool { return false })
	require.NoError(t, err)
	assert.Nil(t, got)

	assert.Equal(t, 2.0, testing.AllocsPerRun(100, func() { _, _ = DecodeBindings(enc, nil) }))
}

func TestDecodeRejects(t *testing.T) {
	sub := fullSubscriber()
	senc := AppendSubscriber(nil, &sub)
	benc := AppendBindings(nil, []storage.Binding{fullBinding(0)})
	for name, tc := range map[string]struct {
		data string
		sub  bool
	}{
		"empty subscriber":          {"", true},
		"empty bindings":            {"", false},
		"bindings as subscriber":    {string(benc), true},
		"subscriber as bindings":    {string(senc), false},
		"JSON subscriber":           {`{"impi":"x"}`, true},
		"JSON bindings":             {`[{"aor":"x"}]`, false},
		"truncated subscriber":      {string(senc[:len(senc)-1]), true},
		"truncated bindings":        {string(benc[:len(benc)-1]), false},
		"trailing subscriber":       {string(senc) + "x", true},
		"trailing bindings":         {string(benc) + "x", false},
		"huge binding count":        {"\x02\xff\xff\xff\xff\x0f", false},
		"huge IMPU count":           {"\x01\x01x\xff\xff\xff\xff\x0f", true},
		"varint overflow":           {"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", true},
		"string longer than buffer": {"\x01\x10x", true},
		"non-minimal varint":        {"\x02\x80\x00", false},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			if tc.sub {
				_, err = DecodeSubscriber(tc.data)
			} else {
				_, err = DecodeBindings(tc.data, nil)
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrCorrupt), "%v", err)
		})
	}
}

// FuzzDecode feeds arbitrary bytes to the decoders: they must fail cleanly
// or return a value that encodes back to the same bytes (the encoding is
// canonical: one value, one encoding).
func FuzzDecode(f *testing.F) {
	sub := fullSubscriber()
	f.Add(AppendSubscriber(nil, &sub))
	f.Add(AppendSubscriber(nil, &storage.Subscriber{}))
	f.Add(AppendBindings(nil, []storage.Binding{fullBinding(0), fullBinding(1)}))
	f.Add(AppendBindings(nil, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if sub, err := DecodeSubscriber(string(data)); err == nil {
			if got := AppendSubscriber(nil, &sub); string(got) != string(data) {
				t.Fatalf("subscriber %x re-encodes as %x", data, got)
			}
		}
		if bs, err := DecodeBindings(string(data), nil); err == nil {
			if got := AppendBindings(nil, bs); string(got) != string(data) {
				t.Fatalf("bindings %x re-encode as %x", data, got)
			}
		}
		_, _ = FirstAOR(string(data))
		_, _ = SubscriberIMPI(string(data))
	})
}

// FuzzRoundTrip encodes values built from arbitrary fields and checks that
// they decode back to themselves.
func FuzzRoundTrip(f *testing.F) {
	f.Add("alice@ims", "sip:alice@x", "realm", []byte("k"), uint64(7), "contact", -1, uint32(2), int64(1e18), int64(-5), "path")
	f.Add("", "", "", []byte{}, uint64(0), "", 0, uint32(0), int64(0), int64(-62135596800e9/1e9), "")
	f.Fuzz(func(t *testing.T, impi, impu, realm string, key []byte, sqn uint64, contact string, regID int, cseq uint32, exp, reg int64, path string) {
		sub := storage.Subscriber{IMPI: impi, IMPUs: []string{impu, impu + "2"}, Realm: realm, HA1MD5: realm, K: key, OPc: key, SQN: sqn}
		got, err := DecodeSubscriber(string(AppendSubscriber(nil, &sub)))
		require.NoError(t, err)
		if len(key) == 0 {
			sub.K, sub.OPc = nil, nil
		}
		require.Equal(t, sub, got)

		b := storage.Binding{AOR: impu, Contact: contact, RegID: regID, CSeq: cseq, Q: path,
			Expires: time.Unix(exp, exp%1e9).In(zone), RegisteredAt: time.Unix(0, reg),
			Path: []string{path, contact}, Node: realm}
		bs, err := DecodeBindings(string(AppendBindings(nil, []storage.Binding{b, b})), nil)
		require.NoError(t, err)
		require.Len(t, bs, 2)
		want := b
		want.Expires, want.RegisteredAt = b.Expires.UTC(), b.RegisteredAt.UTC()
		require.Equal(t, want, bs[0])
		require.Equal(t, want, bs[1])
	})
}
