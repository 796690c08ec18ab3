// Package featuretag reads and writes the RCS service identifiers carried
// in SIP feature tags (RFC 3840/3841: Contact, Accept-Contact) and in
// P-Preferred-Service / P-Asserted-Service, in every spelling the China
// Mobile spec's examples use (nm01-chat-group "Tolerant parsing variants"):
// `urn:urn-7:` and `urn%3Aurn-7%3A`, the broken `urn:3Aurn-7%3A` and
// `urn:3Aurn-7:3A`, and `3gppservice` without its hyphen. rcsd emits only
// the canonical forms.
package featuretag

import "strings"

// ICSIs and IARIs of the messaging services (canonical, decoded).
const (
	ICSIMsg          = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg"
	ICSILargeMsg     = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.largemsg"
	ICSISession      = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.session"
	ICSIFileTransfer = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.filetransfer"
)

// Tag formats a service identifier as the canonical feature tag
// parameter: +g.3gpp.icsi-ref="urn%3Aurn-7%3A…".
func Tag(icsi string) string {
	return `+g.3gpp.icsi-ref="` + strings.ReplaceAll(icsi, ":", "%3A") + `"`
}

// AcceptContact is the canonical Accept-Contact value asking for icsi.
func AcceptContact(icsi string) string { return "*;" + Tag(icsi) }

// normalize decodes the spellings the spec uses into one form.
func normalize(s string) string {
	s = strings.ToLower(s)
	s = strings.NewReplacer("“", `"`, "”", `"`).Replace(s) // the spec's curly quotes
	s = strings.ReplaceAll(s, "%3a", ":")
	s = strings.ReplaceAll(s, "urn:3aurn-7:3a", "urn:urn-7:")
	s = strings.ReplaceAll(s, "urn:3aurn-7:", "urn:urn-7:")
	s = strings.ReplaceAll(s, "3gppservice", "3gpp-service")
	return s
}

// Has reports whether a header value (or a Contact's parameters) names the
// service icsi in any spelling. The service must end there: cpm.msg does
// not match cpm.msgx, but does match a list or a quoted value.
func Has(value, icsi string) bool {
	v := normalize(value)
	want := strings.ToLower(icsi)
	for i := 0; ; {
		j := strings.Index(v[i:], want)
		if j < 0 {
			return false
		}
		end := i + j + len(want)
		if end == len(v) || strings.IndexByte(`",;> `+"\t", v[end]) >= 0 {
			return true
		}
		i = end
	}
}

// Param returns the value of a ;name=value parameter in a feature tag
// list (e.g. barCycle), as sent, and whether it is there.
func Param(value, name string) (string, bool) {
	for _, p := range strings.Split(value, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.Trim(strings.TrimSpace(v), `"`), true
		}
	}
	return "", false
}
