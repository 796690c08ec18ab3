// Package imdn reads and writes the IMDN document (RFC 5438 §7,
// `message/imdn+xml`) in the form the China Mobile NM-01 spec uses
// (seed 001 §5.1.1.1.3 and §5.1.3.2.3-4; checklist items 7 and 14 of
// shared/spec/nm01-core.md), and the imdn.Disposition-Notification CPIM
// header that asks for one (RFC 5438 §6.3).
//
// Choices made where the spec says nothing or says it wrongly:
//
//   - Burn-after-reading report. The spec lists the `burned` disposition
//     (seed 001 L1353, L1836: "burned（阅后即焚报告）") but never shows the
//     report itself (quirk Q9). This package encodes it like the RFC's other
//     notifications, in the IMDN namespace:
//     `<burn-notification><status><burned/></status></burn-notification>`
//     (the GSMA-style form; no published text defining it was found, so it
//     is a choice, not a quote). A burn notification may also carry
//     `<forbidden/>` or `<error/>`, as every RFC 5438 notification can.
//   - Namespace. Figs 5-24, 5-26 and 5-57 print the root as
//     `<imdn xmlns="urn:ietf:params:xml:ns:resource-lists">` (quirk Q18).
//     Parse accepts that namespace as if it were [Namespace] and sets
//     [Notification.WrongNamespace]; Encode always writes [Namespace].
//   - Extensions. Elements in the document's namespace that RFC 5438 does
//     not define, and elements in any other namespace, are skipped wherever
//     the schema allows an extension. Inside `<status>` only the values valid
//     for the notification kind are allowed.
//   - Safety. Documents over [MaxSize] bytes and documents with any `<!…>`
//     directive (DOCTYPE, and so entity definitions) are refused before
//     anything is expanded; only UTF-8 is read.
//   - `<datetime>` is required and non-empty but its format is not checked:
//     rcsd relays reports it did not write and must not drop them for a
//     handset's clock format (see Q19 for such a DateTime in CPIM).
package imdn

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Namespace is the XML namespace of the IMDN document (RFC 5438 §7.2).
const Namespace = "urn:ietf:params:xml:ns:imdn"

// WrongSpecNamespace is the namespace the spec's figs 5-24/5-26/5-57 print
// on the IMDN root by mistake (quirk Q18). Parse accepts it.
const WrongSpecNamespace = "urn:ietf:params:xml:ns:resource-lists"

// ContentType is the MIME type of the IMDN document; inside CPIM it comes
// with `Content-Disposition: notification`.
const ContentType = "message/imdn+xml"

// MaxSize is the largest document Parse reads. A real notification is a
// few hundred bytes; the cap keeps hostile bodies cheap to refuse.
const MaxSize = 64 << 10

// ErrInvalid is returned (wrapped with the reason) for every document or
// header value this package refuses.
var ErrInvalid = errors.New("imdn: invalid")

// ErrTooLarge is returned for documents over MaxSize; it wraps ErrInvalid.
var ErrTooLarge = fmt.Errorf("%w: document larger than %d bytes", ErrInvalid, MaxSize)

// ErrUnknownDisposition is returned by ParseDisposition for tokens it does
// not know; it wraps ErrInvalid.
var ErrUnknownDisposition = fmt.Errorf("%w: unknown disposition", ErrInvalid)

// Kind is which notification a document carries.
type Kind int

// The notification kinds. The zero Kind is not a valid kind.
const (
	DeliveryNotification   Kind = iota + 1 // <delivery-notification>
	DisplayNotification                    // <display-notification>
	ProcessingNotification                 // <processing-notification>
	BurnNotification                       // <burn-notification>, the spec's burn-after-reading report
)

// Status values (the element names inside <status>).
const (
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
	StatusForbidden = "forbidden"
	StatusError     = "error"
	StatusDisplayed = "displayed"
	StatusProcessed = "processed"
	StatusStored    = "stored"
	StatusBurned    = "burned"
)

var kindElements = map[Kind]string{
	DeliveryNotification:   "delivery-notification",
	DisplayNotification:    "display-notification",
	ProcessingNotification: "processing-notification",
	BurnNotification:       "burn-notification",
}

var elementKinds = map[string]Kind{
	"delivery-notification":   DeliveryNotification,
	"display-notification":    DisplayNotification,
	"processing-notification": ProcessingNotification,
	"burn-notification":       BurnNotification,
}

// kindStatuses lists, per kind, the status values RFC 5438 §7.2 allows
// (and, for BurnNotification, the values this package chose).
var kindStatuses = map[Kind][]string{
	DeliveryNotification:   {StatusDelivered, StatusFailed, StatusForbidden, StatusError},
	DisplayNotification:    {StatusDisplayed, StatusForbidden, StatusError},
	ProcessingNotification: {StatusProcessed, StatusStored, StatusForbidden, StatusError},
	BurnNotification:       {StatusBurned, StatusForbidden, StatusError},
}

// String is the kind's short name: delivery, display, processing, burn.
func (k Kind) String() string {
	if e, ok := kindElements[k]; ok {
		return strings.TrimSuffix(e, "-notification")
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Element is the XML element name of the kind, e.g. "display-notification";
// empty for an invalid kind.
func (k Kind) Element() string { return kindElements[k] }

// Statuses lists the status values valid for the kind.
func (k Kind) Statuses() []string { return append([]string(nil), kindStatuses[k]...) }

// ValidStatus reports whether status may appear in a notification of kind k.
func (k Kind) ValidStatus(status string) bool {
	for _, s := range kindStatuses[k] {
		if s == status {
			return true
		}
	}
	return false
}

// Notification is one IMDN document.
type Notification struct {
	MessageID            string // <message-id>: the imdn.Message-ID of the message reported on
	DateTime             string // <datetime>: when that message was sent, as the document states it
	RecipientURI         string // <recipient-uri>, optional
	OriginalRecipientURI string // <original-recipient-uri>, optional
	Subject              string // <subject>, optional

	Kind   Kind
	Status string // one of Kind.Statuses()

	// WrongNamespace is set by Parse when the document used the spec's
	// misprinted namespace WrongSpecNamespace (quirk Q18) instead of
	// Namespace. Encode ignores it and always writes Namespace.
	WrongNamespace bool
}

// Failed builds the negative delivery notification the server itself sends
// to the original sender for messageID when it gives up delivering to
// recipient (e.g. a stored message expired). at is stated in RFC 3339, UTC.
//
// RFC 5438 lets an IM server acting for the recipient generate such a
// report; the NM-01 range gives no timer or trigger for it (nm01-core.md
// "Timers … spec silent"), so when to call this is the caller's policy.
func Failed(messageID, recipient string, at time.Time) *Notification {
	return &Notification{
		MessageID:    messageID,
		DateTime:     at.UTC().Format(time.RFC3339),
		RecipientURI: recipient,
		Kind:         DeliveryNotification,
		Status:       StatusFailed,
	}
}

// Validate checks what Encode needs: message-id and datetime present, a
// valid kind with a status valid for it, and every text value made of
// characters XML can carry.
func (n *Notification) Validate() error {
	if n == nil {
		return fmt.Errorf("%w: nil notification", ErrInvalid)
	}
	if isBlank(n.MessageID) {
		return fmt.Errorf("%w: empty message-id", ErrInvalid)
	}
	if isBlank(n.DateTime) {
		return fmt.Errorf("%w: empty datetime", ErrInvalid)
	}
	if _, ok := kindElements[n.Kind]; !ok {
		return fmt.Errorf("%w: unknown notification kind %d", ErrInvalid, int(n.Kind))
	}
	if !n.Kind.ValidStatus(n.Status) {
		return fmt.Errorf("%w: status %q is not valid for <%s>", ErrInvalid, n.Status, n.Kind.Element())
	}
	for _, f := range []struct{ name, v string }{
		{"message-id", n.MessageID},
		{"datetime", n.DateTime},
		{"recipient-uri", n.RecipientURI},
		{"original-recipient-uri", n.OriginalRecipientURI},
		{"subject", n.Subject},
	} {
		if !xmlText(f.v) {
			return fmt.Errorf("%w: <%s> holds characters XML cannot carry", ErrInvalid, f.name)
		}
	}
	return nil
}

// isBlank reports whether s is empty once XML whitespace is removed.
func isBlank(s string) bool { return trimXMLSpace(s) == "" }

// trimXMLSpace removes the XML whitespace characters (XML 1.0 §2.3 S).
func trimXMLSpace(s string) string { return strings.Trim(s, " \t\r\n") }

// xmlText reports whether s is valid UTF-8 made only of XML 1.0 Chars.
func xmlText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}
