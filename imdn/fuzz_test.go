package imdn

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts Encode writes back
// as a document Parse reads to the same Notification (with the namespace
// repaired).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/nm01-*/*.txt")
	for _, name := range files {
		text, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		start, end := bytes.Index(text, []byte("<?xml")), bytes.LastIndex(text, []byte("</imdn>"))
		if start >= 0 && end > start {
			f.Add(text[start : end+len("</imdn>")])
		}
		f.Add(text)
	}
	for kind, statuses := range kindStatuses {
		for _, s := range statuses {
			out, err := (&Notification{MessageID: "m", DateTime: "d", RecipientURI: "sip:a@b", Subject: "s&t", Kind: kind, Status: s}).Encode()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(out)
		}
	}
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><imdn xmlns="urn:ietf:params:xml:ns:imdn"/>`))
	f.Add([]byte(`<imdn xmlns="urn:ietf:params:xml:ns:imdn" xmlns:x="urn:x"><x:a><b/></x:a><message-id>a</message-id><datetime>d</datetime><delivery-notification><status><x:r/><failed/></status></delivery-notification></imdn>`))

	f.Fuzz(func(t *testing.T, doc []byte) {
		n, err := Parse(doc)
		if err != nil {
			if n != nil {
				t.Fatalf("Parse returned a notification with error %v", err)
			}
			return
		}
		out, err := n.Encode()
		if err != nil {
			t.Fatalf("Parse accepted %q but Encode refused %+v: %v", doc, n, err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Encode output does not parse: %v\n%s", err, out)
		}
		want := *n
		want.WrongNamespace = false
		if *again != want {
			t.Fatalf("round trip changed the notification:\n first %+v\n again %+v\n%s", want, *again, out)
		}
		if out2, _ := again.Encode(); !bytes.Equal(out, out2) {
			t.Fatalf("Encode is not stable:\n%s\n%s", out, out2)
		}
	})
}
