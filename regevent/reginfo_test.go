package regevent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
)

func ptr(v uint64) *uint64 { return &v }

func TestParseTestdata(t *testing.T) {
	tests := []struct {
		file string
		want Reginfo
	}{
		{"rfc3680-5.3-example.xml", Reginfo{Version: 0, State: DocFull, Registrations: []Registration{{
			AOR: "sip:user@example.com", ID: "as9", State: StateActive,
			Contacts: []Contact{
				{ID: "76", State: StateActive, Event: EventRegistered, DurationRegistered: ptr(7322), Q: "0.8", URI: "sip:user@pc887.example.com"},
				{ID: "77", State: StateTerminated, Event: EventExpired, DurationRegistered: ptr(3600), Q: "0.5", URI: "sip:user@university.edu"},
			},
		}}}},
		{"rfc3680-6-notify-init.xml", Reginfo{Version: 0, State: DocFull, Registrations: []Registration{{
			AOR: "sip:joe@example.com", ID: "a7", State: StateInit,
		}}}},
		{"rfc3680-6-notify-registered.xml", Reginfo{Version: 1, State: DocPartial, Registrations: []Registration{{
			AOR: "sip:joe@example.com", ID: "a7", State: StateActive,
			Contacts: []Contact{{ID: "76", State: StateActive, Event: EventRegistered, DurationRegistered: ptr(0), URI: "sip:joe@pc34.example.com"}},
		}}}},
		{"ims-handset.xml", Reginfo{Version: 4, State: DocFull, Registrations: []Registration{{
			AOR: "sip:+8613800000001@rcs.local", ID: "r1", State: StateActive,
			Contacts: []Contact{
				{ID: "c1", State: StateActive, Event: EventRefreshed, Expires: ptr(3599), DurationRegistered: ptr(120),
					CallID: "reg-1@192.0.2.10", CSeq: ptr(7), Q: "1.0", URI: "sip:+8613800000001@192.0.2.10:5060;transport=tcp",
					DisplayName: &DisplayName{Lang: "zh", Value: "张三"},
					Params: []UnknownParam{
						{Name: "+sip.instance", Value: `"<urn:gsma:imei:35209900-176148-1>"`},
						{Name: "reg-id", Value: "1"},
						{Name: "+g.3gpp.icsi-ref", Value: `"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session"`},
						{Name: "+g.gsma.rcs.botversion"},
					}},
				{ID: "c2", State: StateTerminated, Event: EventUnregistered, CallID: "reg-2@192.0.2.11", CSeq: ptr(3), URI: "sip:+8613800000001@192.0.2.11:5060"},
			},
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			require.NoError(t, err)
			got, err := Parse(data)
			require.NoError(t, err)
			assert.Equal(t, tt.want, *got)

			// What Encode writes, Parse reads back the same.
			enc, err := Encode(got)
			require.NoError(t, err)
			again, err := Parse(enc)
			require.NoError(t, err)
			assert.Equal(t, got, again, string(enc))
		})
	}
}

func TestParseRejects(t *testing.T) {
	const ns = `xmlns="urn:ietf:params:xml:ns:reginfo"`
	tests := []struct {
		name, doc, want string
	}{
		{"not xml", `hello`, "EOF"},
		{"wrong namespace", `<reginfo xmlns="urn:example" version="0" state="full"/>`, "expected element"},
		{"no namespace", `<reginfo version="0" state="full"/>`, "expected element"},
		{"wrong root", `<registration ` + ns + ` aor="sip:a@b" id="1" state="active"/>`, "expected element"},
		{"bad doc state", `<reginfo ` + ns + ` version="0" state="some"/>`, `reginfo state "some"`},
		{"missing doc state", `<reginfo ` + ns + ` version="0"/>`, `reginfo state ""`},
		{"negative version", `<reginfo ` + ns + ` version="-1" state="full"/>`, "invalid syntax"},
		{"version over 32 bits", `<reginfo ` + ns + ` version="4294967296" state="full"/>`, "out of range"},
		{"registration without aor", `<reginfo ` + ns + ` version="0" state="full"><registration id="1" state="active"/></reginfo>`, "aor and id are required"},
		{"bad registration state", `<reginfo ` + ns + ` version="0" state="full"><registration aor="sip:a@b" id="1" state="gone"/></reginfo>`, `state "gone"`},
		{"contact without id", `<reginfo ` + ns + ` version="0" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact state="active" event="registered"><uri>sip:x@y</uri></contact></registration></reginfo>`, "has no id"},
		{"bad contact event", `<reginfo ` + ns + ` version="0" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact id="c" state="active" event="moved"><uri>sip:x@y</uri></contact></registration></reginfo>`, `event "moved"`},
		{"bad contact state", `<reginfo ` + ns + ` version="0" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact id="c" state="init" event="registered"><uri>sip:x@y</uri></contact></registration></reginfo>`, `state "init"`},
		{"contact without uri", `<reginfo ` + ns + ` version="0" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact id="c" state="active" event="registered"/></registration></reginfo>`, "no uri"},
		{"unknown-param without name", `<reginfo ` + ns + ` version="0" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact id="c" state="active" event="registered"><uri>sip:x@y</uri><unknown-param>1</unknown-param></contact></registration></reginfo>`, "without name"},
		{"expires not a number", `<reginfo ` + ns + ` version="0" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact id="c" state="active" event="registered" expires="soon"><uri>sip:x@y</uri></contact></registration></reginfo>`, "invalid syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalidDocument), err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestDocumentFromBindings(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	aor := "sip:alice@rcs.local"
	phone := storage.Binding{AOR: aor, Contact: "sip:alice@192.0.2.10:5060;transport=tcp",
		Params:     `+sip.instance="<urn:gsma:imei:3520990017614801>";reg-id=1;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel;x";video`,
		InstanceID: "urn:gsma:imei:3520990017614801", RegID: 1, Q: "0.7", CallID: "c1", CSeq: 12,
		Expires: now.Add(3600*time.Second - 300*time.Millisecond), RegisteredAt: now.Add(-90 * time.Second)}
	old := storage.Binding{AOR: aor, Contact: "sip:alice@192.0.2.11", InstanceID: "urn:uuid:0001", CallID: "c2", CSeq: 3,
		Expires: now.Add(-time.Second), RegisteredAt: now.Add(-time.Hour)}

	doc := document(aor, 3, []contactState{{b: phone, state: StateActive, event: EventRefreshed}, {b: old, state: StateTerminated, event: EventExpired}}, now)
	data, err := Encode(doc)
	require.NoError(t, err)
	s := string(data)
	assert.True(t, strings.HasPrefix(s, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="3" state="full">`), s)
	assert.Contains(t, s, `<registration aor="sip:alice@rcs.local" id="`+RegistrationID(aor)+`" state="active">`)
	assert.Contains(t, s, `<contact id="`+ContactID(aor, &phone)+`" state="active" event="refreshed" duration-registered="90" expires="3600" q="0.7" callid="c1" cseq="12">`+
		`<uri>sip:alice@192.0.2.10:5060;transport=tcp</uri>`+
		`<unknown-param name="+sip.instance">&#34;&lt;urn:gsma:imei:3520990017614801&gt;&#34;</unknown-param>`+
		`<unknown-param name="reg-id">1</unknown-param>`+
		`<unknown-param name="+g.3gpp.icsi-ref">&#34;urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel;x&#34;</unknown-param>`+
		`<unknown-param name="video"></unknown-param></contact>`)
	// Terminated contacts carry no expires; the missing +sip.instance
	// parameter is made up from the instance ID.
	assert.Contains(t, s, `<contact id="`+ContactID(aor, &old)+`" state="terminated" event="expired" duration-registered="3600" callid="c2" cseq="3">`+
		`<uri>sip:alice@192.0.2.11</uri><unknown-param name="+sip.instance">&#34;&lt;urn:uuid:0001&gt;&#34;</unknown-param></contact>`)

	back, err := Parse(data)
	require.NoError(t, err)
	assert.Equal(t, doc.Registrations, back.Registrations)

	// Ids are stable per binding key, distinct across keys and AORs.
	moved := phone
	moved.Contact = "sip:alice@198.51.100.1"
	assert.Equal(t, ContactID(aor, &phone), ContactID(aor, &moved), "same instance, new address: same contact")
	assert.NotEqual(t, ContactID(aor, &phone), ContactID(aor, &old))
	assert.NotEqual(t, ContactID(aor, &phone), ContactID("sip:bob@rcs.local", &phone))

	empty := document(aor, 0, nil, now)
	assert.Equal(t, StateTerminated, empty.Registrations[0].State, "no active contact: registration terminated")
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	require.NoError(f, err)
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte(`<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="partial"><registration aor="a" id="b" state="init"/></reginfo>`))
	// Whitespace and character references in attributes and text, a
	// child inside <uri>, a repeated <uri>, an empty display name.
	f.Add([]byte("<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"2\" state=\"full\"><registration aor=\"a\tb&#xD;\n\" id=\"&amp;\" state=\"active\">" +
		"<contact id=\"x\" state=\"active\" event=\"created\" q=\"&#x9;\"><uri> s<b/>ip:&#xD;x\r\n</uri><uri>sip:y</uri><display-name/>" +
		"<unknown-param name=\"&lt;\">&#xD;]]&gt;</unknown-param></contact></registration></reginfo>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse(data)
		if err != nil {
			return
		}
		enc, err := Encode(doc)
		require.NoError(t, err)
		again, err := Parse(enc)
		require.NoError(t, err, "Parse refused what Encode wrote:\n%s", enc)
		require.Equal(t, doc, again)
	})
}
