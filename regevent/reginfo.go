package regevent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	"rcsd/storage"
)

// Namespace and MIME type of reginfo documents (RFC 3680 §5.4, §4.3).
const (
	Namespace   = "urn:ietf:params:xml:ns:reginfo"
	ContentType = "application/reginfo+xml"
)

// Document states (the reginfo "state" attribute).
const (
	DocFull    = "full"
	DocPartial = "partial"
)

// Registration and contact states.
const (
	StateInit       = "init" // registration only
	StateActive     = "active"
	StateTerminated = "terminated"
)

// Contact events (RFC 3680 §5.1.2): what moved the contact into its state.
// registered/refreshed/unregistered come from REGISTER requests, expired
// from the expiry timer; created, shortened, deactivated, probation and
// rejected are administrative actions.
const (
	EventRegistered   = "registered"
	EventCreated      = "created"
	EventRefreshed    = "refreshed"
	EventShortened    = "shortened"
	EventExpired      = "expired"
	EventDeactivated  = "deactivated"
	EventProbation    = "probation"
	EventUnregistered = "unregistered"
	EventRejected     = "rejected"
)

// ErrInvalidDocument is wrapped by every Parse error.
var ErrInvalidDocument = errors.New("regevent: invalid reginfo document")

// Reginfo is a reginfo document (RFC 3680 §5.4). Elements from other
// namespaces (the schema's extension points) are dropped when parsing.
type Reginfo struct {
	XMLName       xml.Name       `xml:"urn:ietf:params:xml:ns:reginfo reginfo"`
	Version       uint32         `xml:"version,attr"` // RFC 3680 §5.1: fits 32 bits
	State         string         `xml:"state,attr"`
	Registrations []Registration `xml:"registration"`
}

// Registration is the state of one address of record.
type Registration struct {
	AOR      string    `xml:"aor,attr"`
	ID       string    `xml:"id,attr"`
	State    string    `xml:"state,attr"`
	Contacts []Contact `xml:"contact"`
}

// Contact is one registered contact. Optional numeric attributes are
// pointers so that an absent attribute and a zero stay distinct.
type Contact struct {
	ID                 string         `xml:"id,attr"`
	State              string         `xml:"state,attr"`
	Event              string         `xml:"event,attr"`
	DurationRegistered *uint64        `xml:"duration-registered,attr,omitempty"`
	Expires            *uint64        `xml:"expires,attr,omitempty"`
	RetryAfter         *uint64        `xml:"retry-after,attr,omitempty"`
	Q                  string         `xml:"q,attr,omitempty"`
	CallID             string         `xml:"callid,attr,omitempty"`
	CSeq               *uint64        `xml:"cseq,attr,omitempty"`
	URI                string         `xml:"uri"`
	DisplayName        *DisplayName   `xml:"display-name"`
	Params             []UnknownParam `xml:"unknown-param"`
}

// DisplayName is the contact's display name, with its language.
type DisplayName struct {
	Lang  string `xml:"http://www.w3.org/XML/1998/namespace lang,attr,omitempty"`
	Value string `xml:",chardata"`
}

// UnknownParam is a Contact header parameter the schema has no attribute
// for: the feature tags (RFC 3840), +sip.instance, reg-id. Value is the
// parameter value as the handset sent it (quotes kept), "" for a flag.
type UnknownParam struct {
	Name  string `xml:"name,attr"`
	Value string `xml:",chardata"`
}

var (
	docStates       = set(DocFull, DocPartial)
	regStates       = set(StateInit, StateActive, StateTerminated)
	contactStates   = set(StateActive, StateTerminated)
	contactEventSet = set(EventRegistered, EventCreated, EventRefreshed, EventShortened, EventExpired, EventDeactivated, EventProbation, EventUnregistered, EventRejected)
	xmlDeclaration  = []byte(xml.Header)
)

func set(vs ...string) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[v] = true
	}
	return m
}

// Encode serialises a document (UTF-8, with the XML declaration, no
// indentation: NOTIFYs over UDP must stay small).
func Encode(doc *Reginfo) ([]byte, error) {
	var b bytes.Buffer
	b.Write(xmlDeclaration)
	if err := xml.NewEncoder(&b).Encode(doc); err != nil {
		return nil, fmt.Errorf("regevent: encode reginfo: %w", err)
	}
	return b.Bytes(), nil
}

// Parse reads a reginfo document and checks what the schema requires:
// the namespace, the mandatory attributes and their enumerations, and a
// <uri> in every contact.
func Parse(data []byte) (*Reginfo, error) {
	var doc Reginfo
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDocument, err)
	}
	if err := doc.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDocument, err)
	}
	// The namespace was checked; forgetting how the root was spelt
	// (prefix or not) makes equal documents compare equal.
	doc.XMLName = xml.Name{}
	return &doc, nil
}

func (d *Reginfo) validate() error {
	if !docStates[d.State] {
		return fmt.Errorf("reginfo state %q", d.State)
	}
	for i := range d.Registrations {
		r := &d.Registrations[i]
		if r.AOR == "" || r.ID == "" {
			return fmt.Errorf("registration %d: aor and id are required", i)
		}
		if !regStates[r.State] {
			return fmt.Errorf("registration %s: state %q", r.ID, r.State)
		}
		for j := range r.Contacts {
			c := &r.Contacts[j]
			switch {
			case c.ID == "":
				return fmt.Errorf("registration %s: contact %d has no id", r.ID, j)
			case !contactStates[c.State]:
				return fmt.Errorf("contact %s: state %q", c.ID, c.State)
			case !contactEventSet[c.Event]:
				return fmt.Errorf("contact %s: event %q", c.ID, c.Event)
			case strings.TrimSpace(c.URI) == "":
				return fmt.Errorf("contact %s: no uri", c.ID)
			}
			for _, p := range c.Params {
				if p.Name == "" {
					return fmt.Errorf("contact %s: unknown-param without name", c.ID)
				}
			}
		}
	}
	return nil
}

// RegistrationID is the stable id of an AOR's <registration> element.
func RegistrationID(aor string) string { return "r" + shortHash(aor) }

// ContactID is the stable id of a binding's <contact> element: the same
// binding keeps its id across NOTIFYs, subscriptions and nodes.
func ContactID(aor string, b *storage.Binding) string { return "c" + shortHash(aor+"\x00"+b.Key()) }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// contactState is a binding as one NOTIFY reports it.
type contactState struct {
	b     storage.Binding
	state string
	event string
}

// document builds the full-state document of one AOR.
func document(aor string, version uint32, contacts []contactState, now time.Time) *Reginfo {
	reg := Registration{AOR: aor, ID: RegistrationID(aor), State: StateTerminated}
	for _, cs := range contacts {
		if cs.state == StateActive {
			reg.State = StateActive
		}
		reg.Contacts = append(reg.Contacts, contactElement(aor, cs, now))
	}
	return &Reginfo{Version: version, State: DocFull, Registrations: []Registration{reg}}
}

func contactElement(aor string, cs contactState, now time.Time) Contact {
	b := &cs.b
	c := Contact{
		ID:     ContactID(aor, b),
		State:  cs.state,
		Event:  cs.event,
		Q:      b.Q,
		CallID: b.CallID,
		CSeq:   u64(uint64(b.CSeq)),
		URI:    b.Contact,
		Params: params(b),
	}
	if !b.RegisteredAt.IsZero() {
		c.DurationRegistered = u64(seconds(now.Sub(b.RegisteredAt)))
	}
	if cs.state == StateActive {
		c.Expires = u64(seconds(b.Expires.Sub(now)))
	}
	return c
}

func u64(v uint64) *uint64 { return &v }

// seconds rounds up, so a binding with 0.4 s left is not reported as
// already expired; negative durations count as 0.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

// params turns the binding's Contact parameters into unknown-param
// elements, values as sent. The instance ID is added when the parameters
// lack it, so a watcher can always tell devices apart (RFC 5626).
func params(b *storage.Binding) []UnknownParam {
	var out []UnknownParam
	haveInstance := false
	for _, p := range splitParams(b.Params) {
		name, value, _ := strings.Cut(p, "=")
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		switch strings.ToLower(name) {
		case "q", "expires": // attributes of <contact>
			continue
		case "+sip.instance":
			haveInstance = true
		}
		out = append(out, UnknownParam{Name: name, Value: strings.TrimSpace(value)})
	}
	if !haveInstance && b.InstanceID != "" {
		out = append(out, UnknownParam{Name: "+sip.instance", Value: `"<` + b.InstanceID + `>"`})
	}
	return out
}

// splitParams splits on ";" outside quoted strings (a feature tag value
// such as +g.3gpp.icsi-ref="a;b" may hold one).
func splitParams(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
