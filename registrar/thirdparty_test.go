package registrar

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recorder struct{ changes []Change }

func (r *recorder) RegistrationChanged(c Change) { r.changes = append(r.changes, c) }

const embeddedRegister = `REGISTER sip:rcs.local SIP/2.0
Via: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKue1
From: <sip:bob@rcs.local>;tag=ue1
To: <sip:bob@rcs.local>
Call-ID: ue-register-1
CSeq: 2 REGISTER
Authorization: Digest username="bob@rcs.local", realm="rcs.local", nonce="abc", uri="sip:rcs.local", response="0123456789abcdef0123456789abcdef", algorithm=AKAv1-MD5
Contact: <sip:bob@192.0.2.77:5060>;expires=3600;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg";+sip.instance="<urn:gsma:imei:35209900-176148-9>"
Path: <sip:term@pcscf.rcs.local;lr>
User-Agent: RCS/1.3.0(UE)
Content-Length: 0
`

const embeddedOK = `SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKue1
From: <sip:bob@rcs.local>;tag=ue1
To: <sip:bob@rcs.local>;tag=scscf1
Call-ID: ue-register-1
CSeq: 2 REGISTER
Contact: <sip:bob@192.0.2.77:5060>;expires=1800;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg";+sip.instance="<urn:gsma:imei:35209900-176148-9>"
Contact: <sip:bob@198.51.100.8:5070>;expires=900
Content-Length: 0
`

func thirdParty(h *harness, expires, contentType, body string) (*recorder, int) {
	rec := &recorder{}
	h.r.observers = []Observer{rec}
	req := parse(h.t, thirdPartyWire(expires, contentType, body), "UDP", "10.0.0.5:5060")
	res := h.r.ServeThirdParty(context.Background(), req)
	return rec, res.StatusCode
}

// thirdPartyWire is a third-party REGISTER from the S-CSCF (LF line ends).
func thirdPartyWire(expires, contentType, body string) string {
	wire := "REGISTER sip:as.rcs.local SIP/2.0\n" +
		"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-tp" + expires + contentType + "\n" +
		"From: <sip:scscf.rcs.local>;tag=sc1\n" +
		"To: <sip:bob@rcs.local>\n" +
		"Call-ID: third-party-1\n" +
		"CSeq: 1 REGISTER\n" +
		"Contact: <sip:scscf.rcs.local>\n" +
		"Expires: " + expires + "\n" +
		"Max-Forwards: 70\n"
	if contentType != "" {
		wire += "Content-Type: " + contentType + "\n"
	}
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	return wire + "Content-Length: " + strconv.Itoa(len(body)) + "\n\n" + body
}

func multipartBody(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--bnd\nContent-Type: message/sip\n\n" + p + "\n")
	}
	b.WriteString("--bnd--\n")
	return b.String()
}

func TestThirdPartyRegister(t *testing.T) {
	ctx := context.Background()
	t.Run("embedded 200 OK is the registration", func(t *testing.T) {
		h := newHarness(t)
		rec, code := thirdParty(h, "3600", "multipart/mixed;boundary=bnd", multipartBody(embeddedRegister, embeddedOK))
		require.Equal(t, 200, code)
		bs, err := h.store.Bindings(ctx, "sip:bob@rcs.local", h.now)
		require.NoError(t, err)
		require.Len(t, bs, 2)
		assert.Equal(t, "sip:bob@192.0.2.77:5060", bs[0].Contact)
		assert.Equal(t, h.now.Add(1800*time.Second), bs[0].Expires, "the 200's expiry")
		assert.Contains(t, bs[0].Params, `+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"`)
		assert.Equal(t, "urn:gsma:imei:35209900-176148-9", bs[0].InstanceID)
		assert.Equal(t, []string{"<sip:term@pcscf.rcs.local;lr>"}, bs[0].Path, "Path of the handset's REGISTER")
		assert.Equal(t, "bob@rcs.local", bs[0].IMPI)
		assert.Equal(t, "10.0.0.5:5060", bs[0].Source, "reached through the S-CSCF")
		assert.Equal(t, h.now.Add(900*time.Second), bs[1].Expires)
		require.Len(t, rec.changes, 1)
		assert.Len(t, rec.changes[0].After, 2)

		// A later 200 without the second contact replaces the set.
		_, code = thirdParty(h, "3600", "message/sip", strings.Replace(embeddedOK, "Contact: <sip:bob@198.51.100.8:5070>;expires=900\n", "", 1))
		require.Equal(t, 200, code)
		bs, err = h.store.Bindings(ctx, "sip:bob@rcs.local", h.now)
		require.NoError(t, err)
		require.Len(t, bs, 1)

		rec, code = thirdParty(h, "0", "", "")
		require.Equal(t, 200, code)
		bs, err = h.store.Bindings(ctx, "sip:bob@rcs.local", h.now)
		require.NoError(t, err)
		assert.Empty(t, bs, "third-party de-registration")
		require.Len(t, rec.changes, 1)
		assert.Len(t, rec.changes[0].Before, 1)
		assert.Empty(t, rec.changes[0].After)
	})
	t.Run("embedded REGISTER only", func(t *testing.T) {
		h := newHarness(t)
		_, code := thirdParty(h, "3600", "message/sip", embeddedRegister)
		require.Equal(t, 200, code)
		bs, err := h.store.Bindings(ctx, "sip:bob@rcs.local", h.now)
		require.NoError(t, err)
		require.Len(t, bs, 1)
		assert.Equal(t, h.now.Add(3600*time.Second), bs[0].Expires)
	})
	t.Run("no body: the identity itself, through the S-CSCF", func(t *testing.T) {
		h := newHarness(t)
		_, code := thirdParty(h, "600", "", "")
		require.Equal(t, 200, code)
		bs, err := h.store.Bindings(ctx, "sip:bob@rcs.local", h.now)
		require.NoError(t, err)
		require.Len(t, bs, 1)
		assert.Equal(t, "sip:bob@rcs.local", bs[0].Contact)
		assert.Equal(t, h.now.Add(600*time.Second), bs[0].Expires)
	})
	t.Run("bad input creates nothing", func(t *testing.T) {
		for _, tc := range []struct{ name, ct, body string }{
			{"garbage message/sip", "message/sip", "this is not SIP"},
			{"bad contact in the embedded 200", "message/sip", strings.Replace(embeddedOK, "<sip:bob@198.51.100.8:5070>", "<mailto:x@y>", 1)},
			{"multipart without boundary", "multipart/mixed", multipartBody(embeddedOK)},
			{"bad content type", "multipart/", "x"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h := newHarness(t)
				_, code := thirdParty(h, "3600", tc.ct, tc.body)
				assert.Equal(t, 400, code)
				n, err := h.store.CountBindings(ctx)
				require.NoError(t, err)
				assert.Zero(t, n)
			})
		}
	})
}
