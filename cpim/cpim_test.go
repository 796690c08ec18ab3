package cpim

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rfcExample is RFC 3862 §5.1's example with text/plain content.
const rfcExample = "From: MR SANDERS <im:piglet@100akerwood.com>\r\n" +
	"To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n" +
	"DateTime: 2000-12-13T13:40:00-08:00\r\n" +
	"Subject: the weather will be fine today\r\n" +
	"Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n" +
	"NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n" +
	"Require: MyFeatures.VitalMessageOption\r\n" +
	"MyFeatures.VitalMessageOption: Confirmation-requested\r\n" +
	"MyFeatures.WackyMessageOption: Use-silly-font\r\n" +
	"\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-ID: <1234567890@foo.com>\r\n" +
	"\r\n" +
	"Here is the text of my message."

func TestFixtures(t *testing.T) {
	imdnXML := "<message-id>dpecbMzb</message-id>"
	tests := []struct {
		file string
		// badLength: the content's Content-Length exceeds the content (Q20),
		// so only Options.IgnoreContentLength parses it.
		badLength          bool
		nHeaders, nContent int
		from, to           string // URIs Identity returns; "" when absent
		msgID, dateTime    string
		disposition        []string
		contentType        string
		decoded            string // exact, or a substring for XML (contains)
		contains           bool
	}{
		{file: "nm01-core/01-message-format-recipient-list.txt", badLength: true, nHeaders: 6, nContent: 3,
			from: Anonymous, to: Anonymous, msgID: "W8ecb6pd", dateTime: "2014-09-19T17:27:03+8:00",
			disposition: []string{"positive-delivery", "display"}, contentType: "text/plain", decoded: "ssssss"},
		{file: "nm01-core/02-invite-format-large-session.txt", badLength: true, nHeaders: 6, nContent: 3,
			from: Anonymous, to: Anonymous, msgID: "W8ecb6pd", dateTime: "2012-09-20T10:42:31+08:00",
			disposition: []string{"positive-delivery", "display"}, contentType: "text/plain", decoded: "ssssss"},
		{file: "nm01-core/03-imdn-in-message.txt", nHeaders: 3, nContent: 2,
			msgID: "W8dcb0vf", dateTime: "2012-09-01T11:46:43+08:00",
			contentType: "message/imdn+xml", decoded: imdnXML, contains: true},
		{file: "nm01-core/04-imdn-in-msrp.txt", badLength: true, nHeaders: 4, nContent: 3,
			from: Anonymous, to: Anonymous, msgID: "Z3ecbLH6jUNB1QLv",
			contentType: "message/imdn+xml", decoded: "<message-id>YYdcbfQA</message-id>", contains: true},
		{file: "nm01-core/15-pager-message-one-to-one.txt", badLength: true, nHeaders: 6, nContent: 3,
			from: "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", to: "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org",
			msgID: "W8dcb0vf", dateTime: "2012-09-01T11:46:43+08:00", disposition: []string{"display"},
			contentType: "text/plain", decoded: "ssssss"},
		{file: "nm01-core/16-pager-message-recipient-list.txt", badLength: true, nHeaders: 2, nContent: 3,
			from: Anonymous, to: Anonymous, contentType: "text/plain", decoded: "ssssss"},
		// Truncated in the source after From/To: a headers-only object.
		{file: "nm01-core/18-pager-message-keepalive.txt", nHeaders: 2,
			from: "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", to: "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org"},
		{file: "nm01-core/20-imdn-ue-to-server.txt", nHeaders: 3, nContent: 2,
			msgID: "W8dcb0vf", dateTime: "2012-09-01T11:46:43+08:00",
			contentType: "message/imdn+xml", decoded: imdnXML, contains: true},
		{file: "nm01-core/22-imdn-server-to-sender.txt", nHeaders: 5, nContent: 2,
			from: Anonymous, to: Anonymous, msgID: "W8dcbOvf", dateTime: "2014-02-21T11:26:50+08:00",
			contentType: "message/imdn+xml", decoded: imdnXML, contains: true},
		{file: "nm01-chat-group/19-msrp-send-cloudfile.txt", badLength: true, nHeaders: 2, nContent: 3,
			from: "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", to: "sip:125XX001XXXXXXXXXXXX@as(1..n).gc.rcs.chinamobile.com",
			contentType: "application/cloudfile", decoded: "http://www.baidu.com/"},
		// Truncated in the source after the content headers.
		{file: "nm01-chat-group/21-msrp-send-to-member-truncated.txt", nHeaders: 3, nContent: 1,
			from: "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", to: "sip:125XX001XXXXXXXXXXXX@as(1..n).gc.rcs.chinamobile.com",
			dateTime: "2014-02-24T10:33:14Z", contentType: "text/plain"},
		// An IMDN request without content (the first part of a large message).
		{file: "nm01-chat-group/41-spam-report-invite.txt", nHeaders: 6,
			from: Anonymous, to: Anonymous, msgID: "tBecblZU", dateTime: "2013-01-31T14:50:40+08:00",
			disposition: []string{"display"}},
		{file: "nm01-msrp/05-vcard-ft-invite-ue-to-as.txt", nHeaders: 6, nContent: 2,
			from: "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", to: "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org:443",
			msgID: "Y-dcbh", dateTime: "2014-02-26T16:43:29+08:00",
			disposition: []string{"negative-delivery", "positive-delivery", "display"}, contentType: "text/plain"},
		{file: "nm01-msrp/16-lmm-msrp-send-ue-to-as.txt", badLength: true, nHeaders: 2, nContent: 3,
			from: "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", to: "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org",
			contentType: "text/plain", decoded: "number1"},
		{file: "nm01-msrp/18-lmm-msrp-send-as-to-ue.txt", badLength: true, nHeaders: 2, nContent: 3,
			from: "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", to: "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org",
			contentType: "text/plain", decoded: "number1"},
		{file: "nm01-msrp/20-chat-invite-ue-to-as.txt", badLength: true, nHeaders: 6, nContent: 3,
			from: Anonymous, to: Anonymous, msgID: "W8ecb6pd", dateTime: "2012-09-24T20:33:46+8:00",
			disposition: []string{"positive-delivery", "display"}, contentType: "text/plain", decoded: "GOOD!!!"},
		{file: "nm01-msrp/22-chat-invite-as-to-ue.txt", badLength: true, nHeaders: 4, nContent: 3,
			msgID: "W8ecb6pd", dateTime: "2014-02-22T12:07:10+08:00",
			disposition: []string{"positive-delivery", "display"}, contentType: "text/plain", decoded: "GOOD!!!"},
		{file: "nm01-msrp/24-chat-msrp-send-ue-to-as.txt", badLength: true, nHeaders: 5, nContent: 3,
			from: Anonymous, to: Anonymous, msgID: "W8dcbEj7", disposition: []string{"display"},
			contentType: "text/plain", decoded: "dddddddddddddddddd"},
		{file: "nm01-msrp/26-chat-msrp-send-as-to-ue.txt", badLength: true, nHeaders: 6, nContent: 3,
			from: Anonymous, to: Anonymous, msgID: "W8dcbEj7", dateTime: "2014-02-22T12:07:12+08:00",
			disposition: []string{"display"}, contentType: "text/plain", decoded: "dddddddddddddddddd"},
		{file: "nm01-msrp/28-imdn-msrp-send-ue-to-as.txt", nHeaders: 4, nContent: 2,
			from: Anonymous, to: Anonymous, msgID: "Z3ecbLH6jUNB1QLv",
			contentType: "message/imdn+xml", decoded: "<message-id>YYdcbfQA</message-id>", contains: true},
	}
	covered := map[string]bool{"nm01-core/19-pager-message-delivery-leg.txt": true} // TestFixtureWithoutBody
	for _, tt := range tests {
		covered[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			b, ok := fixtureCPIM(t, tt.file)
			require.True(t, ok)

			_, err := Parse(b)
			if tt.badLength {
				require.ErrorIs(t, err, ErrMalformed)
				assert.Contains(t, err.Error(), "Content-Length")
			} else {
				require.NoError(t, err)
			}
			m, err := Options{IgnoreContentLength: true}.Parse(b)
			require.NoError(t, err)
			assert.Len(t, m.Headers, tt.nHeaders)
			assert.Len(t, m.Content, tt.nContent)

			for name, want := range map[string]string{"From": tt.from, "To": tt.to} {
				v, ok := m.Get(name)
				require.Equal(t, want != "", ok, name)
				if ok {
					uri, _, err := Identity(v)
					require.NoError(t, err)
					assert.Equal(t, want, uri, name)
				}
			}
			dt, _ := m.Get("DateTime")
			assert.Equal(t, tt.dateTime, dt)

			r, ok := m.IMDN()
			assert.Equal(t, tt.msgID != "", ok)
			assert.Equal(t, tt.msgID, r.MessageID)
			assert.Equal(t, tt.disposition, r.Disposition)
			if ok {
				assert.Equal(t, tt.dateTime, r.DateTime)
				ns, _ := m.Get("NS")
				assert.Equal(t, "imdn<urn:ietf:params:imdn>", ns)
			}

			assert.Equal(t, tt.contentType, m.ContentType())
			d, err := m.Decoded()
			require.NoError(t, err)
			if tt.contains {
				assert.Contains(t, string(d), tt.decoded)
				assert.Equal(t, m.Body, d, "identity encoding returns Body")
			} else {
				assert.Equal(t, tt.decoded, string(d))
			}
		})
	}
	for _, f := range fixtures(t) {
		assert.True(t, covered[f], "fixture %s has no test row", f)
	}
}

// Fixture 19's body is missing in the source (Content-Length 417, nothing
// after the headers): an empty message/cpim body is malformed.
func TestFixtureWithoutBody(t *testing.T) {
	b, ok := fixtureCPIM(t, "nm01-core/19-pager-message-delivery-leg.txt")
	require.True(t, ok)
	require.Empty(t, b)
	_, err := Options{IgnoreContentLength: true}.Parse(b)
	require.ErrorIs(t, err, ErrMalformed)
}

func TestRFCExample(t *testing.T) {
	m, err := Parse([]byte(rfcExample))
	require.NoError(t, err)
	require.Len(t, m.Headers, 9)
	require.Equal(t, []Header{
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-ID", "<1234567890@foo.com>"},
	}, m.Content)
	assert.Equal(t, Header{"Subject", ";lang=fr beau temps prevu pour aujourd'hui"}, m.Headers[4])
	lang, ok := m.Headers[4].Param("lang")
	assert.True(t, ok)
	assert.Equal(t, "fr", lang)
	assert.Equal(t, "beau temps prevu pour aujourd'hui", m.Headers[4].Text())
	_, ok = m.Headers[3].Param("lang")
	assert.False(t, ok)
	assert.Equal(t, "the weather will be fine today", m.Headers[3].Text())

	v, ok := m.GetNS("mid:MessageFeatures@id.foo.com", "VitalMessageOption")
	assert.True(t, ok)
	assert.Equal(t, "Confirmation-requested", v)
	_, ok = m.IMDN()
	assert.False(t, ok)

	uri, display, err := Identity(m.Headers[0].Value)
	require.NoError(t, err)
	assert.Equal(t, "im:piglet@100akerwood.com", uri)
	assert.Equal(t, "MR SANDERS", display)
	assert.Equal(t, "text/plain", m.ContentType())
	assert.Equal(t, "Here is the text of my message.", string(m.Body))

	// Already canonical: AppendTo gives back the input byte for byte.
	assert.Equal(t, rfcExample, string(m.AppendTo(nil)))
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		in, uri, display string
	}{
		{`<sip:user1@example.com>`, "sip:user1@example.com", ""},
		{`"Alice B" <sip:alice@example.com>`, "sip:alice@example.com", "Alice B"},
		{`"Say \"hi\"" <tel:+8613800138000>`, "tel:+8613800138000", `Say "hi"`},
		{`MR SANDERS <im:piglet@100akerwood.com>`, "im:piglet@100akerwood.com", "MR SANDERS"},
		{`sip:user2@example.com`, "sip:user2@example.com", ""},
		// Q17: trailing space inside <>, no scheme, stray word, space after sip:.
		{`<sip:anonymous@anonymous.invalid >`, Anonymous, ""},
		{`<anonymous@anonymous.invalid>`, Anonymous, ""},
		{`<anonymous@anonymous.invalid >`, Anonymous, ""},
		{`<sip:anonymous@anonymous.invalid g>`, Anonymous, ""},
		{`<sip: user1@bj.ims.mnc000.mcc460.3gppnetwork.org >`, "sip:user1@bj.ims.mnc000.mcc460.3gppnetwork.org", ""},
		{`sip: user2@bj.ims.mnc000.mcc460.3gppnetwork.org`, "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org", ""},
		// nm01-msrp fixture 24: a stray "s" before the URI.
		{`<s anonymous@anonymous.invalid >`, Anonymous, ""},
		// A port is not a scheme.
		{`<user@host:5060>`, "sip:user@host:5060", ""},
		{`<+8613800138000@ims.example.com>`, "sip:+8613800138000@ims.example.com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			uri, display, err := Identity(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.uri, uri)
			assert.Equal(t, tt.display, display)
		})
	}

	bad := []string{
		"",
		"   ",
		"<>",
		"< >",
		"<sip:a@b",
		"<sip:a@b> trailing",
		"anonymous",                   // no scheme, no @
		"<sip:>",                      // scheme only
		"Alice sip:alice@example.com", // words outside <>
		"<sip:a@b sip:c@d>",           // two URIs
		`"unterminated <sip:a@b>`,
		`Al"ice <sip:a@b>`,
		"<sip:a<b@c>",
	}
	for _, in := range bad {
		t.Run("bad/"+in, func(t *testing.T) {
			_, _, err := Identity(in)
			assert.Error(t, err)
		})
	}
}

func TestParseDateTime(t *testing.T) {
	for in, want := range map[string]string{
		"2012-09-01T11:46:43+08:00": "2012-09-01T03:46:43Z",
		"2014-09-19T17:27:03+8:00":  "2014-09-19T09:27:03Z", // Q19
		"2014-02-24T10:33:14Z":      "2014-02-24T10:33:14Z",
		"2000-12-13T13:40:00-08:00": "2000-12-13T21:40:00Z",
	} {
		got, err := ParseDateTime(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got.UTC().Format("2006-01-02T15:04:05Z07:00"), in)
	}
	for _, in := range []string{"", "yesterday", "2014-09-19 17:27:03", "2014-09-19T17:27:03", "2014-09-19T17:27:03+8"} {
		_, err := ParseDateTime(in)
		assert.Error(t, err, in)
	}
}

func TestDuplicate(t *testing.T) {
	const imdnNS = "NS: imdn <urn:ietf:params:imdn>\n"
	tests := []struct {
		name, header, in string
	}{
		{"From", "From", "From: <sip:a@b>\nFrom: <sip:c@d>\n"},
		{"DateTime", "DateTime", "DateTime: 2012-09-01T11:46:43+08:00\nTo: <sip:a@b>\nDateTime: 2012-09-01T11:46:43+08:00\n"},
		{"Subject without lang", "Subject", "Subject: a\nSubject: b\n"},
		{"Subject same lang", "Subject", "Subject:;lang=fr a\nSubject:;lang=FR b\n"},
		{"Require", "Require", "Require: a.B\nRequire: c.D\n"},
		{"NS prefix", "NS", "NS: imdn<urn:ietf:params:imdn>\nNS: imdn <urn:other>\n"},
		{"NS default", "NS", "NS: <urn:a>\nNS: <urn:b>\n"},
		{"imdn.Message-ID", "imdn.Message-ID", imdnNS + "imdn.Message-ID: a\nimdn.Message-ID: b\n"},
		{"imdn.Disposition-Notification", "imdn.Disposition-Notification",
			imdnNS + "imdn.Disposition-Notification: display\nimdn.Disposition-Notification: processing\n"},
		{"imdn.Original-To", "imdn.Original-To", imdnNS + "imdn.Original-To: <sip:a@b>\nimdn.Original-To: <sip:a@b>\n"},
		{"imdn without NS", "imdn.Message-ID", "imdn.Message-ID: a\nimdn.Message-ID: b\n"},
		{"IMDN under two prefixes", "rep.Message-ID", imdnNS + "NS: rep<urn:ietf:params:imdn>\nimdn.Message-ID: a\nrep.Message-ID: b\n"},
		{"Content-Type", "content-type", "From: <sip:a@b>\n\nContent-Type: text/plain\ncontent-type: text/html\n\nx"},
		{"Content-Length", "Content-Length", "From: <sip:a@b>\n\nContent-Length: 1\nContent-Length: 1\n\nx"},
		{"Content-Transfer-Encoding", "Content-Transfer-Encoding", "From: <sip:a@b>\n\nContent-Transfer-Encoding: base64\nContent-Transfer-Encoding: 7bit\n\nx"},
		{"Content-Disposition", "Content-Disposition", "From: <sip:a@b>\n\nContent-Disposition: notification\nContent-Disposition: notification\n\nx"},
		{"Content-ID", "Content-ID", "From: <sip:a@b>\n\nContent-ID: <a@b>\nContent-ID: <c@d>\n\nx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Options{IgnoreContentLength: true}.Parse([]byte(tt.in))
			require.ErrorIs(t, err, ErrDuplicate)
			require.ErrorIs(t, err, ErrMalformed)
			assert.True(t, strings.HasSuffix(err.Error(), ": "+tt.header), err.Error())
		})
	}

	// What RFC 3862 and RFC 5438 let repeat.
	allowed := []struct{ name, in string }{
		{"To", "To: <sip:a@b>\nTo: <sip:c@d>\n"},
		{"cc", "cc: <sip:a@b>\ncc: <sip:c@d>\n"},
		{"Subject in two languages", "Subject: hi\nSubject:;lang=fr salut\nSubject:;lang=de hallo\n"},
		{"NS for two prefixes", "NS: imdn<urn:ietf:params:imdn>\nNS: x<urn:x>\nNS: <urn:default>\n"},
		{"IMDN-Record-Route", imdnNS + "imdn.IMDN-Record-Route: <sip:a@b>\nimdn.IMDN-Record-Route: <sip:c@d>\n"},
		{"IMDN-Route", imdnNS + "imdn.IMDN-Route: <sip:a@b>\nimdn.IMDN-Route: <sip:c@d>\n"},
		{"other namespace", "NS: x<urn:x>\nx.Opt: 1\nx.Opt: 2\n"},
		{"imdn prefix bound elsewhere", "NS: imdn<urn:not-imdn>\nimdn.Message-ID: a\nimdn.Message-ID: b\n"},
		{"names are case-sensitive", "From: <sip:a@b>\nfrom: <sip:c@d>\n"},
		{"unknown content header", "From: <sip:a@b>\n\nX-Note: 1\nX-Note: 2\n\nx"},
	}
	for _, tt := range allowed {
		t.Run("allowed/"+tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			assert.NoError(t, err)
		})
	}
}

func TestMalformed(t *testing.T) {
	long := strings.Repeat("x", MaxLine)
	var many strings.Builder
	for i := range MaxHeaders + 1 {
		many.WriteString("X" + strconv.Itoa(i) + ": v\n")
	}
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"no colon", "From <sip:a@b>\n"},
		{"empty name", ": value\n"},
		{"space in name", "Date Time: 2012-09-01T11:46:43+08:00\n"},
		{"two dots in name", "a.b.c: v\n"},
		{"empty value", "Subject:\n"},
		{"blank value", "Subject:   \n"},
		{"folded line", "Subject: a\n b\n"},
		{"folded first line", " Subject: a\n"},
		{"invalid UTF-8", "Subject: \xff\xfe\n"},
		{"NUL in value", "Subject: a\x00b\n"},
		{"bare CR in value", "Subject: a\rb\n"},
		{"invalid UTF-8 in content header", "From: <sip:a@b>\n\nContent-Description: \xc3\x28\n\nx"},
		{"bad From", "From: nobody\n"},
		{"bad To", "To: <sip:a@b\n"},
		{"bad cc", "cc: <>\n"},
		{"bad DateTime", "DateTime: 2012-09-01 11:46:43\n"},
		{"bad NS", "NS: imdn urn:ietf:params:imdn\n"},
		{"NS with empty URI", "NS: imdn<>\n"},
		{"NS with bad prefix", "NS: im.dn<urn:x>\n"},
		{"bad Require", "Require: a b\n"},
		{"bad Content-Type", "From: <sip:a@b>\n\nContent-Type: text\n\nx"},
		{"unknown Content-Transfer-Encoding", "From: <sip:a@b>\n\nContent-Transfer-Encoding: x-gzip\n\nx"},
		{"bad Content-Length", "From: <sip:a@b>\n\nContent-Length: -1\n\nx"},
		{"Content-Length beyond content", "From: <sip:a@b>\n\nContent-Length: 2\n\nx"},
		{"invalid UTF-8 text", "From: <sip:a@b>\n\nContent-Type: text/plain\n\n\xff"},
		{"invalid UTF-8 text utf-8 charset", "From: <sip:a@b>\n\nContent-Type: text/plain; charset=\"UTF-8\"\n\n\xff"},
		{"line too long", "Subject: " + long + "\n"},
		{"too many headers", many.String()},
		{"too many content headers", "From: <sip:a@b>\n\n" + strings.ReplaceAll(many.String(), "X", "Content-X")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in))
			require.ErrorIs(t, err, ErrMalformed)
			assert.False(t, errors.Is(err, ErrDuplicate))
			assert.Nil(t, m)
		})
	}
}

func TestLimits(t *testing.T) {
	var hs strings.Builder
	for i := range MaxHeaders {
		hs.WriteString("X" + strconv.Itoa(i) + ": v\r\n")
	}
	m, err := Parse([]byte(hs.String()))
	require.NoError(t, err)
	assert.Len(t, m.Headers, MaxHeaders)

	// The longest line AppendTo can write back: "Subject: " + value.
	value := strings.Repeat("x", MaxLine-len("Subject: "))
	m, err = Parse([]byte("Subject:" + value + "\n"))
	require.NoError(t, err)
	out := m.AppendTo(nil)
	_, err = Parse(out)
	require.NoError(t, err)
	_, err = Parse([]byte("Subject:" + value + "x\n"))
	require.ErrorIs(t, err, ErrMalformed)
}

func TestTolerated(t *testing.T) {
	tests := []struct {
		name, in string
		headers  []Header
		content  []Header
		body     string
	}{
		{"CRLF", "From: <sip:a@b>\r\n\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
			[]Header{{"From", "<sip:a@b>"}}, []Header{{"Content-Type", "text/plain"}}, "hi\r\n"},
		{"no space after colon, spaces and tab around value", "Subject:hi\nTo:\t <sip:a@b> \n",
			[]Header{{"Subject", "hi"}, {"To", "<sip:a@b>"}}, nil, ""},
		{"space before colon", "Subject : hi\n", []Header{{"Subject", "hi"}}, nil, ""},
		{"headers only, no final line end", "Subject: hi", []Header{{"Subject", "hi"}}, nil, ""},
		{"content headers, no body", "Subject: hi\n\nContent-Type: text/plain\n",
			[]Header{{"Subject", "hi"}}, []Header{{"Content-Type", "text/plain"}}, ""},
		{"no CPIM headers", "\nContent-Type: text/plain\n\nhi", nil, []Header{{"Content-Type", "text/plain"}}, "hi"},
		{"no content headers", "Subject: hi\n\n\nhi", []Header{{"Subject", "hi"}}, nil, "hi"},
		{"Content-Length shorter than content", "Subject: hi\n\nContent-Length: 1\n\nhello",
			[]Header{{"Subject", "hi"}}, []Header{{"Content-Length", "1"}}, "hello"},
		{"binary content", "Subject: hi\n\nContent-Type: application/octet-stream\n\n\xff\x00\n",
			[]Header{{"Subject", "hi"}}, []Header{{"Content-Type", "application/octet-stream"}}, "\xff\x00\n"},
		{"GBK text is not checked", "Subject: hi\n\nContent-Type: text/plain;charset=GBK\n\n\xc4\xe3",
			[]Header{{"Subject", "hi"}}, []Header{{"Content-Type", "text/plain;charset=GBK"}}, "\xc4\xe3"},
		{"UTF-8 values", "Subject: 你好\n", []Header{{"Subject", "你好"}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.headers, m.Headers)
			assert.Equal(t, tt.content, m.Content)
			assert.Equal(t, tt.body, string(m.Body))
		})
	}
}

func TestGetNS(t *testing.T) {
	tests := []struct {
		name, in, urn, local string
		want                 string
		ok                   bool
	}{
		{"imdn", "NS: imdn<urn:ietf:params:imdn>\nimdn.Message-ID: a\n", IMDNNamespace, "Message-ID", "a", true},
		{"other prefix", "NS: rep <urn:ietf:params:imdn>\nrep.Message-ID: a\nimdn.Message-ID: b\n", IMDNNamespace, "Message-ID", "a", true},
		{"undeclared imdn prefix", "imdn.Message-ID: b\n", IMDNNamespace, "Message-ID", "b", true},
		{"imdn prefix bound elsewhere", "NS: imdn<urn:x>\nimdn.Message-ID: b\n", IMDNNamespace, "Message-ID", "", false},
		{"default namespace", "NS: <urn:x>\nOpt: 1\n", "urn:x", "Opt", "1", true},
		{"undeclared", "x.Opt: 1\n", "urn:x", "Opt", "", false},
		{"local is exact", "NS: x<urn:x>\nx.Opt2: 1\n", "urn:x", "Opt", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in))
			require.NoError(t, err)
			got, ok := m.GetNS(tt.urn, tt.local)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestIMDN(t *testing.T) {
	m, err := Parse([]byte("NS: imdn<urn:ietf:params:imdn>\nimdn.Message-ID: Xy1\n" +
		"DateTime: 2012-09-01T11:46:43+08:00\n" +
		"imdn.Disposition-Notification: Positive-Delivery, negative-delivery ,processing,display,,burned\n"))
	require.NoError(t, err)
	r, ok := m.IMDN()
	require.True(t, ok)
	assert.Equal(t, IMDNRequest{
		MessageID:   "Xy1",
		DateTime:    "2012-09-01T11:46:43+08:00",
		Disposition: []string{"positive-delivery", "negative-delivery", "processing", "display", "burned"},
	}, r)
}

func TestDecoded(t *testing.T) {
	tests := []struct {
		name, content, body, want string
	}{
		{"base64 padded", "Content-Transfer-Encoding: base64", "bnVtYmVyMQ==", "number1"},
		{"base64 unpadded", "Content-Transfer-Encoding: BASE64", "bnVtYmVyMQ", "number1"},
		{"base64 wrapped", "Content-Transfer-Encoding: base64", "5L2g5aW9\r\n5LiW55WM\r\n", "你好世界"},
		{"quoted-printable", "Content-Transfer-Encoding: quoted-printable", "caf=C3=A9", "café"},
		{"8bit", "Content-Transfer-Encoding: 8bit", "café", "café"},
		{"none", "Content-Type: text/plain", "hi", "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte("Subject: s\n\n" + tt.content + "\n\n" + tt.body))
			require.NoError(t, err)
			d, err := m.Decoded()
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(d))
		})
	}
	for name, in := range map[string]string{
		"bad base64":           "Content-Transfer-Encoding: base64\n\n!!!!",
		"base64 to bad UTF-8":  "Content-Type: text/plain;charset=UTF-8\nContent-Transfer-Encoding: base64\n\n/w==",
		"bad quoted-printable": "Content-Transfer-Encoding: quoted-printable\n\na\x00b",
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Parse([]byte("Subject: s\n\n" + in))
			require.NoError(t, err)
			_, err = m.Decoded()
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
}

func TestAppendTo(t *testing.T) {
	m, err := Options{IgnoreContentLength: true}.Parse([]byte(
		"From:<anonymous@anonymous.invalid >\nSubject:;lang=fr salut\n\ncontent-type:text/plain\nContent-Length:129\n\nc3Nzc3Nz"))
	require.NoError(t, err)
	want := "From: <anonymous@anonymous.invalid >\r\n" +
		"Subject:;lang=fr salut\r\n" +
		"\r\n" +
		"content-type: text/plain\r\n" +
		"Content-Length: 8\r\n" +
		"\r\n" +
		"c3Nzc3Nz"
	assert.Equal(t, want, string(m.AppendTo(nil)))
	assert.Equal(t, "prefix"+want, string(m.AppendTo([]byte("prefix"))))

	// Built from scratch, with a body set after the fact.
	b := &Message{
		Headers: []Header{{"NS", "imdn <urn:ietf:params:imdn>"}, {"imdn.Message-ID", "m1"}},
		Content: []Header{{"Content-Type", "text/plain;charset=UTF-8"}, {"Content-Length", "0"}, {"Content-Transfer-Encoding", "base64"}},
		Body:    []byte("5L2g5aW9"),
	}
	again, err := Parse(b.AppendTo(nil))
	require.NoError(t, err)
	v, _ := again.ContentHeader("content-length")
	assert.Equal(t, "8", v)
	d, err := again.Decoded()
	require.NoError(t, err)
	assert.Equal(t, "你好", string(d))

	// Headers only: no content section is written.
	h := &Message{Headers: []Header{{"From", "<sip:a@b>"}}}
	assert.Equal(t, "From: <sip:a@b>\r\n\r\n", string(h.AppendTo(nil)))
}

func TestRoundTrip(t *testing.T) {
	inputs := map[string][]byte{"rfc": []byte(rfcExample)}
	for _, f := range fixtures(t) {
		if b, ok := fixtureCPIM(t, f); ok && len(b) > 0 {
			inputs[f] = b
		}
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			m, err := Options{IgnoreContentLength: true}.Parse(in)
			require.NoError(t, err)
			out := m.AppendTo(nil)
			again, err := Parse(out) // strict: AppendTo fixed Content-Length
			require.NoError(t, err)
			assertSameMessage(t, m, again)
			assert.Equal(t, string(out), string(again.AppendTo(nil)))
		})
	}
}

func TestParseCopiesInput(t *testing.T) {
	in := []byte("Subject: hello\n\nContent-Type: text/plain\n\nbody")
	m, err := Parse(in)
	require.NoError(t, err)
	for i := range in {
		in[i] = 'z'
	}
	assert.Equal(t, "hello", m.Headers[0].Value)
	assert.Equal(t, "body", string(m.Body))
}

// assertSameMessage compares what Parse returned for an input (a) with
// what it returned for AppendTo's output (b): equal but for Content-Length,
// which AppendTo sets to the content's length.
func assertSameMessage(t testing.TB, a, b *Message) {
	t.Helper()
	assert.Equal(t, nilIfEmpty(a.Headers), nilIfEmpty(b.Headers))
	want := make([]Header, 0, len(a.Content))
	for _, h := range a.Content {
		if strings.EqualFold(h.Name, "Content-Length") {
			h.Value = strconv.Itoa(len(a.Body))
		}
		want = append(want, h)
	}
	assert.Equal(t, nilIfEmpty(want), nilIfEmpty(b.Content))
	assert.True(t, bytes.Equal(a.Body, b.Body), "body %q != %q", a.Body, b.Body)
}

func nilIfEmpty(hs []Header) []Header {
	if len(hs) == 0 {
		return nil
	}
	return hs
}
