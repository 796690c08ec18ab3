package digest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Published vectors: RFC 2617 §3.5 and RFC 7616 §3.9.1.
func TestResponseVectors(t *testing.T) {
	tests := []struct {
		name                      string
		alg                       Algorithm
		user, realm, pass, method string
		creds                     Credentials
		want                      string
	}{
		{
			name: "RFC 2617 MD5 qop=auth", alg: MD5,
			user: "Mufasa", realm: "testrealm@host.com", pass: "Circle Of Life", method: "GET",
			creds: Credentials{URI: "/dir/index.html", Nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
				NC: "00000001", CNonce: "0a4f113b", QOP: "auth"},
			want: "6629fae49393a05397450978507c4ef1",
		},
		{
			name: "RFC 7616 MD5", alg: MD5,
			user: "Mufasa", realm: "http-auth@example.org", pass: "Circle of Life", method: "GET",
			creds: Credentials{URI: "/dir/index.html", Nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
				NC: "00000001", CNonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", QOP: "auth"},
			want: "8ca523f5e9506fed4657c9700eebdbec",
		},
		{
			name: "RFC 7616 SHA-256", alg: SHA256,
			user: "Mufasa", realm: "http-auth@example.org", pass: "Circle of Life", method: "GET",
			creds: Credentials{URI: "/dir/index.html", Nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
				NC: "00000001", CNonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", QOP: "auth"},
			want: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha1 := HA1(tt.alg, tt.user, tt.realm, tt.pass)
			assert.Equal(t, tt.want, Response(tt.alg, ha1, tt.method, &tt.creds))
			c := tt.creds
			c.Response = tt.want
			assert.True(t, Verify(tt.alg, ha1, tt.method, &c))
			c.Response = tt.want[:len(tt.want)-1] + "0"
			assert.False(t, Verify(tt.alg, ha1, tt.method, &c))
		})
	}
}

func TestHA1SHA512256Length(t *testing.T) {
	assert.Len(t, HA1(SHA512256, "u", "r", "p"), 64)
	assert.Len(t, HA1(MD5, "u", "r", "p"), 32)
}

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Credentials
		wantErr bool
	}{
		{
			name: "spec fixture 12 (no qop, no spaces)",
			in:   `Digest realm="bj.ims.mnc000.mcc460.3gppnetwork.org",algorithm=SHA-256,nonce="hz0xWulXDsDYQ784Nh7BGw==",username="user2@bj.ims.mnc000.mcc460.3gppnetwork.org",uri="sip:bj.ims.mnc000.mcc460.3gppnetwork.org",response="e24bff10711a64de1563fed57abc9bcd"`,
			want: Credentials{Realm: "bj.ims.mnc000.mcc460.3gppnetwork.org", Algorithm: "SHA-256",
				Nonce: "hz0xWulXDsDYQ784Nh7BGw==", Username: "user2@bj.ims.mnc000.mcc460.3gppnetwork.org",
				URI: "sip:bj.ims.mnc000.mcc460.3gppnetwork.org", Response: "e24bff10711a64de1563fed57abc9bcd"},
		},
		{
			name: "SIPp style with qop",
			in:   `Digest username="alice",realm="rcs.local",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="abc",response="0123",algorithm=MD5`,
			want: Credentials{Username: "alice", Realm: "rcs.local", CNonce: "6b8b4567", NC: "00000001", QOP: "auth",
				URI: "sip:127.0.0.1:5060", Nonce: "abc", Response: "0123", Algorithm: "MD5"},
		},
		{
			name: "AKA initial empty nonce and response",
			in:   `Digest username="user@d", realm="d", nonce="", uri="sip:d", response=""`,
			want: Credentials{Username: "user@d", Realm: "d", URI: "sip:d"},
		},
		{
			name: "escaped quote, unknown param",
			in:   `digest username="a\"b", foo=bar, realm="r"`,
			want: Credentials{Username: `a"b`, Realm: "r"},
		},
		{name: "basic scheme", in: `Basic YWxhZGRpbjpvcGVuc2VzYW1l`, wantErr: true},
		{name: "unterminated", in: `Digest username="abc`, wantErr: true},
		{name: "duplicate", in: `Digest username="a", username="b"`, wantErr: true},
		{name: "no username", in: `Digest realm="r"`, wantErr: true},
		{name: "missing value", in: `Digest username`, wantErr: true},
		{name: "scheme prefix only", in: `Digestive username="a"`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCredentials(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestChallengeString(t *testing.T) {
	ch := Challenge{Realm: "rcs.local", Nonce: "n", Algorithm: SHA256, QOP: true, Stale: true}
	assert.Equal(t, `Digest realm="rcs.local", nonce="n", algorithm=SHA-256, qop="auth", stale=true`, ch.String())
	ch = Challenge{Realm: "bj", Nonce: "hz0xWulXDSDYQ784Nh7BGw==", Algorithm: SHA256}
	// The spec's example challenge (fixture 10), byte for byte.
	assert.Equal(t, `Digest realm="bj", nonce="hz0xWulXDSDYQ784Nh7BGw==", algorithm=SHA-256`, ch.String())
}

// FuzzParseCredentials: whatever is accepted survives a round trip through
// its canonical quoted form unchanged.
func FuzzParseCredentials(f *testing.F) {
	f.Add(`Digest username="alice",realm="rcs.local",nonce="abc",uri="sip:x",response="00",qop=auth,nc=00000001,cnonce="x"`)
	f.Add(`Digest username="a\"b", realm=r`)
	f.Add(`Digest ,,,=`)
	f.Add(`Digest usernAme=`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCredentials(s)
		if err != nil {
			return
		}
		q := func(v string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"` }
		again := "Digest username=" + q(c.Username) + ", realm=" + q(c.Realm) + ", nonce=" + q(c.Nonce) +
			", uri=" + q(c.URI) + ", response=" + q(c.Response) + ", algorithm=" + q(c.Algorithm) +
			", cnonce=" + q(c.CNonce) + ", opaque=" + q(c.Opaque) + ", qop=" + q(c.QOP) + ", nc=" + q(c.NC) +
			", auts=" + q(c.AUTS) + ", integrity-protected=" + q(c.IntegrityProtected)
		c2, err := ParseCredentials(again)
		if err != nil {
			t.Fatalf("canonical form of %q refused: %v", s, err)
		}
		if c2 != c {
			t.Fatalf("round trip changed %q:\n%+v\n%+v", s, c, c2)
		}
	})
}

func BenchmarkVerifyMD5(b *testing.B) {
	ha1 := HA1(MD5, "alice", "rcs.local", "secret")
	c := Credentials{URI: "sip:127.0.0.1:5060", Nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf9", NC: "00000001", CNonce: "abc", QOP: "auth"}
	c.Response = Response(MD5, ha1, "REGISTER", &c)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !Verify(MD5, ha1, "REGISTER", &c) {
			b.Fatal("verify")
		}
	}
}
