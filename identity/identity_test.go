package identity

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sip:alice@rcs.local", "sip:alice@rcs.local"},
		{"<sip:Alice@RCS.Local;user=phone>", "sip:Alice@rcs.local"},
		{`"Alice" <sips:alice@rcs.local>;tag=1`, "sip:alice@rcs.local"},
		{"sip:alice:secret@rcs.local:5060;transport=tcp", "sip:alice@rcs.local:5060"},
		{"tel:+86-138-0000-0000;phone-context=x", "tel:+8613800000000"},
		{"TEL:+8613800000000", "tel:+8613800000000"},
		{"<sip: user1@bj.ims.mnc000.mcc460.3gppnetwork.org >", "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org"}, // spec quirk Q17
		{"sip: user2@bj.ims.mnc000.mcc460.3gppnetwork.org", "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org"},
	}
	for _, tt := range tests {
		got, err := Canonical(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	for _, bad := range []string{"", "alice", "sip:rcs.local", "mailto:a@b", "tel:", "tel:abc", "<sip:a@b", "sip:a b@c"} {
		_, err := Canonical(bad)
		assert.ErrorIs(t, err, ErrInvalid, bad)
	}
}

func TestDefaultIMPI(t *testing.T) {
	got, err := DefaultIMPI("sip:alice@rcs.local", "rcs.local")
	require.NoError(t, err)
	assert.Equal(t, "alice@rcs.local", got)
	got, err = DefaultIMPI("tel:+8613800000000", "rcs.local")
	require.NoError(t, err)
	assert.Equal(t, "8613800000000@rcs.local", got)
	_, err = DefaultIMPI("tel:+8613800000000", "")
	assert.ErrorIs(t, err, ErrInvalid)
}

func FuzzCanonical(f *testing.F) {
	f.Add("<sip:Alice@RCS.Local;user=phone>")
	f.Add("tel:+86-138")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Canonical(s)
		if err != nil {
			return
		}
		// Canonical forms are fixed points.
		c2, err := Canonical(c)
		if err != nil || c2 != c {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", s, c, c2, err)
		}
	})
}
