package imdn

import (
	"bytes"
	"encoding/xml"
)

// Encode writes the canonical document: XML declaration, root in
// Namespace (whatever WrongNamespace says), the elements in RFC 5438 §7.2
// schema order, optional elements only when non-empty, two-space indent.
// It refuses what Validate refuses.
func (n *Notification) Encode() ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<imdn xmlns="` + Namespace + `">` + "\n")
	element(&b, "message-id", n.MessageID, true)
	element(&b, "datetime", n.DateTime, true)
	element(&b, "recipient-uri", n.RecipientURI, false)
	element(&b, "original-recipient-uri", n.OriginalRecipientURI, false)
	element(&b, "subject", n.Subject, false)
	kind := n.Kind.Element()
	b.WriteString("  <" + kind + ">\n    <status>\n      <" + n.Status + "/>\n    </status>\n  </" + kind + ">\n")
	b.WriteString("</imdn>\n")
	return b.Bytes(), nil
}

// element writes one text element. Values are written trimmed, as Parse
// would return them, so Encode∘Parse is the identity on parsed values.
func element(b *bytes.Buffer, name, value string, always bool) {
	value = trimXMLSpace(value)
	if value == "" && !always {
		return
	}
	b.WriteString("  <" + name + ">")
	_ = xml.EscapeText(b, []byte(value)) // bytes.Buffer writes do not fail
	b.WriteString("</" + name + ">\n")
}
