package secagree

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
		bad  bool
	}{
		{in: []string{"tls-3gpp; alg=hmac-sha-256-96; spi-c=23456789; spi-s=12345678; port-c=2468; port-s=1357"},
			want: "tls-3gpp; alg=hmac-sha-256-96; spi-c=23456789; spi-s=12345678; port-c=2468; port-s=1357"},
		{in: []string{"TLS-3GPP;Q=0.1", "ipsec-3gpp; q=0.2, digest"}, want: "tls-3gpp; q=0.1, ipsec-3gpp; q=0.2, digest"},
		{in: []string{"digest;d-alg=md5;d-ver=\"a,b\""}, want: "digest; d-alg=md5; d-ver=\"a,b\""},
		{in: []string{""}, want: ""},
		{in: []string{"tls-3gpp; q=2"}, bad: true},
		{in: []string{"tls-3gpp; q=0.1; q=0.2"}, bad: true},
		{in: []string{"<bad>"}, bad: true},
		{in: []string{"tls-3gpp; =x"}, bad: true},
	} {
		ms, err := Parse(tc.in)
		if tc.bad {
			assert.ErrorIs(t, err, ErrMalformed, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, Format(ms))
	}
}

func TestEqual(t *testing.T) {
	parse := func(s string) []Mechanism {
		ms, err := Parse([]string{s})
		require.NoError(t, err)
		return ms
	}
	server := parse("tls-3gpp; q=0.1; alg=hmac-sha-256-96; spi-c=98765432; spi-s=87654321; port-c=8642; port-s=7531")
	assert.True(t, Equal(server, parse("tls-3gpp;port-s=7531;q=0.10;alg=hmac-sha-256-96;spi-c=98765432;spi-s=87654321;port-c=8642")), "order and q spelling do not matter")
	assert.False(t, Equal(server, parse("tls-3gpp; q=0.1; alg=hmac-sha-1-96; spi-c=98765432; spi-s=87654321; port-c=8642; port-s=7531")), "alg altered")
	assert.False(t, Equal(server, parse("tls-3gpp; q=0.1")), "parameters stripped")
	assert.False(t, Equal(server, parse("tls-3gpp; q=0.1; alg=hmac-sha-256-96; spi-c=98765432; spi-s=87654321; port-c=8642; port-s=7531, ipsec-3gpp; q=0.05")), "list differs")
	assert.False(t, Equal(server, nil))
}

func TestAnswer(t *testing.T) {
	s := &Server{Mechanisms: []string{TLS3GPP}, Port: func() int { return 5061 }, Secret: []byte("k")}
	client, err := Parse([]string{"ipsec-3gpp; alg=hmac-md5-96; spi-c=1; spi-s=2; port-c=3; port-s=4, tls-3gpp; alg=hmac-sha-256-96; spi-c=23456789; spi-s=12345678; port-c=2468; port-s=1357"})
	require.NoError(t, err)
	ans, ok := s.Answer(client)
	require.True(t, ok)
	require.Len(t, ans, 1, "ipsec-3gpp is never agreed")
	assert.Regexp(t, `^tls-3gpp; q=0\.1; alg=hmac-sha-256-96; spi-c=\d+; spi-s=\d+; port-c=5061; port-s=5061$`, Format(ans))
	again, _ := s.Answer(client)
	assert.Equal(t, Format(ans), Format(again), "the same offer gets the same answer (stateless verification)")

	bare, _ := Parse([]string{"tls-3gpp"})
	ans, ok = s.Answer(bare)
	require.True(t, ok)
	assert.Equal(t, "tls-3gpp; q=0.1", Format(ans))

	ipsecOnly, _ := Parse([]string{"ipsec-3gpp; alg=hmac-md5-96"})
	_, ok = s.Answer(ipsecOnly)
	assert.False(t, ok)
	assert.Equal(t, "tls-3gpp; q=0.1", Format(s.Offer()))
}

func FuzzParse(f *testing.F) {
	f.Add("tls-3gpp; alg=hmac-sha-256-96; spi-c=23456789; spi-s=12345678; port-c=2468; port-s=1357")
	f.Add("ipsec-3gpp; q=0.1, digest;d-ver=\"x\"")
	f.Fuzz(func(t *testing.T, v string) {
		ms, err := Parse([]string{v})
		if err != nil {
			return
		}
		again, err := Parse([]string{Format(ms)})
		if err != nil {
			t.Fatalf("formatted %q does not parse: %v", Format(ms), err)
		}
		if !Equal(ms, again) {
			t.Fatalf("round trip changed %q into %q", Format(ms), Format(again))
		}
	})
}
