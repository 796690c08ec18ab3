package imdn

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// extractXML cuts the IMDN document out of a SIP or MSRP fixture: from the
// XML declaration to the end of </imdn>.
func extractXML(t testing.TB, text []byte) []byte {
	t.Helper()
	start := bytes.Index(text, []byte("<?xml"))
	end := bytes.LastIndex(text, []byte("</imdn>"))
	require.True(t, start >= 0 && end > start, "no IMDN document in fixture")
	return text[start : end+len("</imdn>")]
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// Every IMDN the spec prints (figs 5-3, 5-4, 5-24, 5-26, 5-57) is a
// display notification; the last three use the misprinted namespace (Q18).
func TestParseFixtures(t *testing.T) {
	tests := []struct {
		file      string
		messageID string
		datetime  string
		wrongNS   bool
	}{
		{"nm01-core/03-imdn-in-message.txt", "dpecbMzb", "2012-08-29T10:37:30+08:00", false},
		{"nm01-core/04-imdn-in-msrp.txt", "YYdcbfQA", "2014-02-25T15:12:28+08:00", false},
		{"nm01-core/20-imdn-ue-to-server.txt", "dpecbMzb", "2012-08-29T10:37:30+08:00", true},
		{"nm01-core/22-imdn-server-to-sender.txt", "dpecbMzb", "2012-08-29T10:37:30+08:00", true},
		{"nm01-msrp/28-imdn-msrp-send-ue-to-as.txt", "YYdcbfQA", "2014-02-25T15:12:28+08:00", true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			n, err := Parse(extractXML(t, readFixture(t, tt.file)))
			require.NoError(t, err)
			assert.Equal(t, &Notification{
				MessageID:      tt.messageID,
				DateTime:       tt.datetime,
				Kind:           DisplayNotification,
				Status:         StatusDisplayed,
				WrongNamespace: tt.wrongNS,
			}, n)
			assert.Empty(t, n.RecipientURI)

			// Re-encoding repairs the namespace and keeps the meaning.
			out, err := n.Encode()
			require.NoError(t, err)
			assert.Contains(t, string(out), `<imdn xmlns="urn:ietf:params:xml:ns:imdn">`)
			assert.NotContains(t, string(out), "resource-lists")
			again, err := Parse(out)
			require.NoError(t, err)
			want := *n
			want.WrongNamespace = false
			assert.Equal(t, &want, again)
		})
	}
}

// Fig 5-59 survives only as a fragment (no declaration, no root start tag).
func TestParseFragmentFixture(t *testing.T) {
	text := readFixture(t, "nm01-msrp/30-imdn-msrp-send-as-to-ue-partial.txt")
	end := bytes.Index(text, []byte("</imdn>"))
	require.Positive(t, end)
	_, err := Parse(text[:end+len("</imdn>")])
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "root element is <message-id>")
}

func TestEncodeExact(t *testing.T) {
	n := &Notification{
		MessageID:            "34jk324j",
		DateTime:             "2008-04-04T12:16:49-05:00",
		RecipientURI:         "sip:bob@example.com",
		OriginalRecipientURI: "sip:bob@example.com",
		Subject:              "a < b & c",
		Kind:                 DisplayNotification,
		Status:               StatusDisplayed,
		WrongNamespace:       true,
	}
	out, err := n.Encode()
	require.NoError(t, err)
	assert.Equal(t, `<?xml version="1.0" encoding="UTF-8"?>
<imdn xmlns="urn:ietf:params:xml:ns:imdn">
  <message-id>34jk324j</message-id>
  <datetime>2008-04-04T12:16:49-05:00</datetime>
  <recipient-uri>sip:bob@example.com</recipient-uri>
  <original-recipient-uri>sip:bob@example.com</original-recipient-uri>
  <subject>a &lt; b &amp; c</subject>
  <display-notification>
    <status>
      <displayed/>
    </status>
  </display-notification>
</imdn>
`, string(out))
}

func TestBurnEncoding(t *testing.T) {
	out, err := (&Notification{MessageID: "m1", DateTime: "2024-01-02T03:04:05Z", Kind: BurnNotification, Status: StatusBurned}).Encode()
	require.NoError(t, err)
	assert.Contains(t, string(out), "  <burn-notification>\n    <status>\n      <burned/>\n    </status>\n  </burn-notification>\n")
}

func TestRoundTripEveryKindAndStatus(t *testing.T) {
	want := map[Kind][]string{
		DeliveryNotification:   {"delivered", "failed", "forbidden", "error"},
		DisplayNotification:    {"displayed", "forbidden", "error"},
		ProcessingNotification: {"processed", "stored", "forbidden", "error"},
		BurnNotification:       {"burned", "forbidden", "error"},
	}
	for kind, statuses := range want {
		assert.Equal(t, statuses, kind.Statuses(), kind.String())
		for _, status := range statuses {
			t.Run(kind.String()+"/"+status, func(t *testing.T) {
				n := &Notification{
					MessageID:    "Msg-" + status,
					DateTime:     "2014-02-21T11:26:50+08:00",
					RecipientURI: "sip:+8613812342831@bj.ims.mnc000.mcc460.3gppnetwork.org",
					Subject:      "héllo\nworld\t✓",
					Kind:         kind,
					Status:       status,
				}
				out, err := n.Encode()
				require.NoError(t, err)
				assert.Contains(t, string(out), "<"+kind.Element()+">")
				got, err := Parse(out)
				require.NoError(t, err)
				assert.Equal(t, n, got)
			})
		}
	}
}

func TestKindNames(t *testing.T) {
	assert.Equal(t, "delivery", DeliveryNotification.String())
	assert.Equal(t, "burn", BurnNotification.String())
	assert.Equal(t, "Kind(0)", Kind(0).String())
	assert.Equal(t, "processing-notification", ProcessingNotification.Element())
	assert.Equal(t, "", Kind(9).Element())
}

// Documents that must parse, each showing one tolerance.
func TestParseTolerant(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Notification
	}{
		{"no declaration, compact",
			`<imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>a</message-id><datetime>d</datetime><delivery-notification><status><delivered/></status></delivery-notification></imdn>`,
			Notification{MessageID: "a", DateTime: "d", Kind: DeliveryNotification, Status: "delivered"}},
		{"prefixed namespace, any order, comments, BOM, trailing whitespace",
			"\xef\xbb\xbf<?xml version='1.0' encoding='utf-8'?>\n<!-- c --><i:imdn xmlns:i=\"urn:ietf:params:xml:ns:imdn\">\n<i:processing-notification><i:status><i:stored/></i:status></i:processing-notification>\n<!-- c --><i:datetime>  d  </i:datetime>\n<i:message-id><![CDATA[a]]>b</i:message-id></i:imdn>\n\n",
			Notification{MessageID: "ab", DateTime: "d", Kind: ProcessingNotification, Status: "stored"}},
		{"extensions in other namespaces and unknown IMDN elements skipped",
			`<imdn xmlns="urn:ietf:params:xml:ns:imdn" xmlns:x="urn:example:x">
			  <x:message-id>not-this</x:message-id>
			  <message-id>a</message-id><datetime>d</datetime>
			  <x:ext><x:deep><delivery-notification/></x:deep></x:ext>
			  <future-element attr="1"><anything/></future-element>
			  <display-notification><x:note>n</x:note><status><x:reason code="1"/><displayed><x:why/></displayed></status></display-notification>
			</imdn>`,
			Notification{MessageID: "a", DateTime: "d", Kind: DisplayNotification, Status: "displayed"}},
		{"burn notification, spec namespace quirk",
			`<imdn xmlns="urn:ietf:params:xml:ns:resource-lists"><message-id>a</message-id><datetime>d</datetime><burn-notification><status><burned/></status></burn-notification></imdn>`,
			Notification{MessageID: "a", DateTime: "d", Kind: BurnNotification, Status: "burned", WrongNamespace: true}},
		{"entities and character references",
			`<imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>a&amp;&#x42;</message-id><datetime>d</datetime><subject>&lt;s&gt;</subject><original-recipient-uri>tel:+1</original-recipient-uri><delivery-notification><status><error/></status></delivery-notification></imdn>`,
			Notification{MessageID: "a&B", DateTime: "d", Subject: "<s>", OriginalRecipientURI: "tel:+1", Kind: DeliveryNotification, Status: "error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.doc))
			require.NoError(t, err)
			assert.Equal(t, &tt.want, n)
		})
	}
}

const (
	okHead = `<?xml version="1.0" encoding="UTF-8"?><imdn xmlns="urn:ietf:params:xml:ns:imdn">`
	okIDs  = `<message-id>a</message-id><datetime>d</datetime>`
	okDisp = `<display-notification><status><displayed/></status></display-notification>`
)

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		why  string // a piece of the error text
	}{
		{"empty", ``, "no root element"},
		{"only declaration", `<?xml version="1.0"?>`, "no root element"},
		{"no message-id", okHead + `<datetime>d</datetime>` + okDisp + `</imdn>`, "<message-id>"},
		{"empty message-id", okHead + `<message-id> </message-id><datetime>d</datetime>` + okDisp + `</imdn>`, "<message-id>"},
		{"no datetime", okHead + `<message-id>a</message-id>` + okDisp + `</imdn>`, "<datetime>"},
		{"empty datetime", okHead + `<message-id>a</message-id><datetime/>` + okDisp + `</imdn>`, "<datetime>"},
		{"two message-ids", okHead + okIDs + `<message-id>b</message-id>` + okDisp + `</imdn>`, "more than one <message-id>"},
		{"element inside message-id", okHead + `<message-id>a<b/></message-id><datetime>d</datetime>` + okDisp + `</imdn>`, "holds text only"},
		{"no notification", okHead + okIDs + `</imdn>`, "no notification element"},
		{"two notifications", okHead + okIDs + okDisp + `<delivery-notification><status><delivered/></status></delivery-notification></imdn>`, "more than one notification element"},
		{"two identical notifications", okHead + okIDs + okDisp + okDisp + `</imdn>`, "more than one notification element"},
		{"status not valid for kind", okHead + okIDs + `<display-notification><status><delivered/></status></display-notification></imdn>`, "<delivered/> is not a valid status for <display-notification>"},
		{"burned in delivery", okHead + okIDs + `<delivery-notification><status><burned/></status></delivery-notification></imdn>`, "not a valid status"},
		{"stored in display", okHead + okIDs + `<display-notification><status><stored/></status></display-notification></imdn>`, "not a valid status"},
		{"unknown status", okHead + okIDs + `<processing-notification><status><exploded/></status></processing-notification></imdn>`, "not a valid status"},
		{"two status values", okHead + okIDs + `<delivery-notification><status><delivered/><failed/></status></delivery-notification></imdn>`, "more than one status value"},
		{"empty status", okHead + okIDs + `<delivery-notification><status/></delivery-notification></imdn>`, "empty <status>"},
		{"status value only in other namespace", okHead + okIDs + `<delivery-notification><status><x:delivered xmlns:x="urn:x"/></status></delivery-notification></imdn>`, "empty <status>"},
		{"no status", okHead + okIDs + `<delivery-notification/></imdn>`, "without <status>"},
		{"two status elements", okHead + okIDs + `<display-notification><status><displayed/></status><status><displayed/></status></display-notification></imdn>`, "more than one <status>"},
		{"text in status", okHead + okIDs + `<display-notification><status>displayed</status></display-notification></imdn>`, "text inside <status>"},
		{"text in root", okHead + okIDs + `hello` + okDisp + `</imdn>`, "text directly inside <imdn>"},
		{"wrong root", `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list/></resource-lists>`, "root element is <resource-lists>"},
		{"root without namespace", `<imdn>` + okIDs + okDisp + `</imdn>`, `namespace ""`},
		{"root in another namespace", `<imdn xmlns="urn:ietf:params:xml:ns:imdnx">` + okIDs + okDisp + `</imdn>`, "namespace"},
		{"children in another namespace than root", `<imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id xmlns="urn:x">a</message-id><datetime>d</datetime>` + okDisp + `</imdn>`, "<message-id>"},
		{"second root", okHead + okIDs + okDisp + `</imdn><imdn/>`, "after the root element"},
		{"text after root", okHead + okIDs + okDisp + `</imdn>x`, "text after the root element"},
		{"text before root", `x<imdn xmlns="urn:ietf:params:xml:ns:imdn">` + okIDs + okDisp + `</imdn>`, "text before the root element"},
		{"text before declaration", `x` + okHead + okIDs + okDisp + `</imdn>`, "text before the root element"},
		{"truncated", okHead + okIDs + `<display-notification><status><displ`, "malformed XML"},
		{"truncated after a tag", okHead + okIDs + `<display-notification>`, "unexpected EOF"},
		{"mismatched tags", okHead + okIDs + okDisp + `</imd>`, "malformed XML"},
		{"undefined entity", okHead + `<message-id>&lol;</message-id><datetime>d</datetime>` + okDisp + `</imdn>`, "malformed XML"},
		{"other encoding", `<?xml version="1.0" encoding="ISO-8859-1"?><imdn xmlns="urn:ietf:params:xml:ns:imdn">` + okIDs + okDisp + `</imdn>`, "malformed XML"},
		{"invalid UTF-8", okHead + "<message-id>\xff</message-id><datetime>d</datetime>" + okDisp + `</imdn>`, "malformed XML"},
		{"doctype", `<?xml version="1.0"?><!DOCTYPE imdn><imdn xmlns="urn:ietf:params:xml:ns:imdn">` + okIDs + okDisp + `</imdn>`, "DOCTYPE"},
		{"billion laughs", `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>&lol3;</message-id><datetime>d</datetime>` + okDisp + `</imdn>`, "DOCTYPE"},
		{"external entity", `<?xml version="1.0"?><!DOCTYPE imdn [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>&xxe;</message-id><datetime>d</datetime>` + okDisp + `</imdn>`, "DOCTYPE"},
		{"directive inside an extension", okHead + okIDs + `<x:e xmlns:x="urn:x"><!DOCTYPE x></x:e>` + okDisp + `</imdn>`, "DOCTYPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.doc))
			require.Error(t, err)
			assert.Nil(t, n)
			assert.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tt.why)
		})
	}
}

func TestParseSizeCap(t *testing.T) {
	// A valid document padded with whitespace to exactly the cap parses …
	doc := okHead + okIDs + okDisp + `</imdn>`
	atCap := doc + strings.Repeat(" ", MaxSize-len(doc))
	require.Len(t, atCap, 64*1024)
	_, err := Parse([]byte(atCap))
	require.NoError(t, err)

	// … one byte more is refused before any parsing.
	_, err = Parse([]byte(atCap + " "))
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "65537 bytes")
}

func TestParseDeepNestingRefused(t *testing.T) {
	// Depth costs nothing beyond the size cap; this must fail fast or parse,
	// never crash.
	depth := 10000
	doc := okHead + okIDs + strings.Repeat("<x:e xmlns:x='urn:x'>", 1) + strings.Repeat("<e>", depth) + strings.Repeat("</e>", depth) + "</x:e>" + okDisp + "</imdn>"
	require.Greater(t, len(doc), MaxSize)
	_, err := Parse([]byte(doc))
	require.ErrorIs(t, err, ErrTooLarge)

	depth = 4000
	doc = okHead + okIDs + "<x:e xmlns:x='urn:x'>" + strings.Repeat("<e>", depth) + strings.Repeat("</e>", depth) + "</x:e>" + okDisp + "</imdn>"
	n, err := Parse([]byte(doc))
	require.NoError(t, err)
	assert.Equal(t, StatusDisplayed, n.Status)
}

func TestEncodeInvalid(t *testing.T) {
	ok := Notification{MessageID: "a", DateTime: "d", Kind: DeliveryNotification, Status: "delivered"}
	tests := []struct {
		name   string
		mutate func(*Notification)
		why    string
	}{
		{"no message-id", func(n *Notification) { n.MessageID = " " }, "empty message-id"},
		{"no datetime", func(n *Notification) { n.DateTime = "" }, "empty datetime"},
		{"zero kind", func(n *Notification) { n.Kind = 0 }, "unknown notification kind 0"},
		{"status for another kind", func(n *Notification) { n.Status = "displayed" }, `status "displayed" is not valid for <delivery-notification>`},
		{"no status", func(n *Notification) { n.Status = "" }, `status ""`},
		{"control character", func(n *Notification) { n.Subject = "a\x00b" }, "<subject> holds characters XML cannot carry"},
		{"invalid UTF-8", func(n *Notification) { n.RecipientURI = "sip:\xff" }, "<recipient-uri>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := ok
			tt.mutate(&n)
			out, err := n.Encode()
			require.ErrorIs(t, err, ErrInvalid)
			assert.Nil(t, out)
			assert.Contains(t, err.Error(), tt.why)
		})
	}
	var nilN *Notification
	_, err := nilN.Encode()
	require.ErrorIs(t, err, ErrInvalid)
}

func TestFailed(t *testing.T) {
	at := time.Date(2014, 2, 21, 11, 26, 50, 0, time.FixedZone("CST", 8*3600))
	n := Failed("W8dcb0vf", "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org", at)
	assert.Equal(t, &Notification{
		MessageID:    "W8dcb0vf",
		DateTime:     "2014-02-21T03:26:50Z",
		RecipientURI: "sip:user2@bj.ims.mnc000.mcc460.3gppnetwork.org",
		Kind:         DeliveryNotification,
		Status:       "failed",
	}, n)
	out, err := n.Encode()
	require.NoError(t, err)
	assert.Contains(t, string(out), "<delivery-notification>\n    <status>\n      <failed/>")
	got, err := Parse(out)
	require.NoError(t, err)
	assert.Equal(t, n, got)
	assert.True(t, NegativeDelivery.Wants(got.Kind, got.Status))
	assert.False(t, PositiveDelivery.Wants(got.Kind, got.Status))
}

func TestErrorsAreSentinels(t *testing.T) {
	assert.True(t, errors.Is(ErrTooLarge, ErrInvalid))
	assert.True(t, errors.Is(ErrUnknownDisposition, ErrInvalid))
	assert.False(t, errors.Is(ErrInvalid, ErrTooLarge))
}
