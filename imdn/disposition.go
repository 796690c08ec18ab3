package imdn

import (
	"fmt"
	"strings"
)

// Disposition is the set of notifications a message asks for in its CPIM
// imdn.Disposition-Notification header (RFC 5438 §6.3, seed 001 Table 5-9
// L1353 and Table 5-17 L1836, which add "burned").
type Disposition uint8

// The dispositions, one bit each.
const (
	PositiveDelivery Disposition = 1 << iota // positive-delivery
	NegativeDelivery                         // negative-delivery
	Processing                               // processing
	Display                                  // display
	Burned                                   // burned: the spec's burn-after-reading report
)

// dispositionNames is in canonical order.
var dispositionNames = []struct {
	d    Disposition
	name string
}{
	{PositiveDelivery, "positive-delivery"},
	{NegativeDelivery, "negative-delivery"},
	{Processing, "processing"},
	{Display, "display"},
	{Burned, "burned"},
}

// ParseDisposition reads an imdn.Disposition-Notification value: a
// comma-separated list, any case, with or without spaces (the spec prints
// both "positive-delivery,display" and "negative-delivery, positive-delivery,
// display"). Empty list items are ignored and RFC 5438 parameters after ";"
// are dropped. Unknown tokens give an error wrapping ErrUnknownDisposition
// that names every one of them; the known ones are still returned, so a
// relay may choose to go on with them.
func ParseDisposition(v string) (Disposition, error) {
	var d Disposition
	var unknown []string
	for _, item := range strings.Split(v, ",") {
		tok, _, _ := strings.Cut(item, ";")
		tok = strings.Trim(tok, " \t\r\n")
		if tok == "" {
			continue
		}
		found := false
		for _, dn := range dispositionNames {
			if strings.EqualFold(tok, dn.name) {
				d |= dn.d
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, fmt.Sprintf("%q", tok))
		}
	}
	if len(unknown) > 0 {
		return d, fmt.Errorf("%w %s", ErrUnknownDisposition, strings.Join(unknown, ", "))
	}
	return d, nil
}

// String is the canonical header value: the set's names in the order
// positive-delivery, negative-delivery, processing, display, burned,
// separated by ", " (as in RFC 5438's examples). Empty for no disposition.
func (d Disposition) String() string {
	var names []string
	for _, dn := range dispositionNames {
		if d&dn.d != 0 {
			names = append(names, dn.name)
		}
	}
	return strings.Join(names, ", ")
}

// Has reports whether every disposition in x is in d.
func (d Disposition) Has(x Disposition) bool { return d&x == x }

// For is the disposition that asks for a notification of kind k with this
// status, or 0 if the status is not valid for the kind: delivered needs
// positive-delivery; failed, forbidden and error delivery reports need
// negative-delivery; display, processing and burn notifications of any
// status need display, processing and burned.
func For(k Kind, status string) Disposition {
	if !k.ValidStatus(status) {
		return 0
	}
	switch k {
	case DeliveryNotification:
		if status == StatusDelivered {
			return PositiveDelivery
		}
		return NegativeDelivery
	case DisplayNotification:
		return Display
	case ProcessingNotification:
		return Processing
	case BurnNotification:
		return Burned
	}
	return 0
}

// Wants reports whether a message whose request was d wants a notification
// of kind k with this status (RFC 5438 §7: send only what was asked for).
func (d Disposition) Wants(k Kind, status string) bool {
	x := For(k, status)
	return x != 0 && d&x != 0
}
