package imdn

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Parse reads an IMDN document. It is strict about what the report means
// and lenient about how it is written:
//
//   - refused: more than MaxSize bytes; any <!…> directive (DOCTYPE);
//     malformed or truncated XML; a root other than <imdn> in Namespace
//     (or the spec's misprint WrongSpecNamespace, which sets
//     WrongNamespace); a missing or empty <message-id> or <datetime>; a
//     repeated simple element; zero or several notification elements; a
//     notification without exactly one <status>, or whose <status> does not
//     hold exactly one value valid for its kind; text where only elements
//     belong;
//   - accepted: an XML declaration, a UTF-8 byte-order mark, whitespace,
//     comments and processing instructions, elements in any order, and
//     extension elements (unknown names, other namespaces), which are
//     skipped.
//
// Text values are returned without surrounding whitespace.
func Parse(b []byte) (*Notification, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, len(b))
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	// No CharsetReader: a declaration naming another encoding is refused by
	// the decoder. No Entity map: only the five predefined entities exist.
	p := &parser{d: d}

	root, err := p.prolog()
	if err != nil {
		return nil, err
	}
	if root.Name.Local != "imdn" {
		return nil, fmt.Errorf("%w: root element is <%s>, want <imdn>", ErrInvalid, root.Name.Local)
	}
	n := &Notification{}
	switch root.Name.Space {
	case Namespace:
	case WrongSpecNamespace:
		n.WrongNamespace = true
	default:
		return nil, fmt.Errorf("%w: <imdn> namespace %q, want %q", ErrInvalid, root.Name.Space, Namespace)
	}
	p.ns = root.Name.Space
	if err := p.imdn(n); err != nil {
		return nil, err
	}
	if err := p.epilog(); err != nil {
		return nil, err
	}
	return n, nil
}

type parser struct {
	d  *xml.Decoder
	ns string // the namespace of the root: IMDN elements are the ones in it
}

// next returns the next token, refusing directives wherever they appear.
// CharData is copied, since the decoder reuses its buffer.
func (p *parser) next() (xml.Token, error) {
	tok, err := p.d.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: malformed XML: %w", ErrInvalid, err)
	}
	switch t := tok.(type) {
	case xml.Directive:
		return nil, fmt.Errorf("%w: <!%s…> directives (DOCTYPE, entities) are refused", ErrInvalid, firstWord(t))
	case xml.CharData:
		return t.Copy(), nil
	}
	return tok, nil
}

// nextIn is next for positions inside an element, where EOF is truncation.
func (p *parser) nextIn(where string) (xml.Token, error) {
	tok, err := p.next()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: document ends inside <%s>", ErrInvalid, where)
	}
	return tok, err
}

// prolog skips the XML declaration, comments and whitespace and returns
// the root element's start tag.
func (p *parser) prolog() (xml.StartElement, error) {
	for {
		tok, err := p.next()
		if err == io.EOF {
			return xml.StartElement{}, fmt.Errorf("%w: no root element", ErrInvalid)
		}
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if !isBlank(string(t)) {
				return xml.StartElement{}, fmt.Errorf("%w: text before the root element", ErrInvalid)
			}
		}
	}
}

// epilog checks that only whitespace, comments and processing
// instructions follow the root element.
func (p *parser) epilog() error {
	for {
		tok, err := p.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return fmt.Errorf("%w: element <%s> after the root element", ErrInvalid, t.Name.Local)
		case xml.CharData:
			if !isBlank(string(t)) {
				return fmt.Errorf("%w: text after the root element", ErrInvalid)
			}
		}
	}
}

// imdn reads the root's content; the root start tag has been consumed.
func (p *parser) imdn(n *Notification) error {
	seen := map[string]bool{}
	simple := map[string]*string{
		"message-id":             &n.MessageID,
		"datetime":               &n.DateTime,
		"recipient-uri":          &n.RecipientURI,
		"original-recipient-uri": &n.OriginalRecipientURI,
		"subject":                &n.Subject,
	}
	for {
		tok, err := p.nextIn("imdn")
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if n.Kind == 0 {
				return fmt.Errorf("%w: no notification element (delivery-, display-, processing- or burn-notification)", ErrInvalid)
			}
			if isBlank(n.MessageID) {
				return fmt.Errorf("%w: missing or empty <message-id>", ErrInvalid)
			}
			if isBlank(n.DateTime) {
				return fmt.Errorf("%w: missing or empty <datetime>", ErrInvalid)
			}
			return nil
		case xml.CharData:
			if !isBlank(string(t)) {
				return fmt.Errorf("%w: text directly inside <imdn>", ErrInvalid)
			}
		case xml.StartElement:
			if t.Name.Space != p.ns {
				if err := p.skip(t.Name.Local); err != nil {
					return err
				}
				continue
			}
			name := t.Name.Local
			if dst, ok := simple[name]; ok {
				if seen[name] {
					return fmt.Errorf("%w: more than one <%s>", ErrInvalid, name)
				}
				seen[name] = true
				v, err := p.text(name)
				if err != nil {
					return err
				}
				*dst = v
				continue
			}
			if kind, ok := elementKinds[name]; ok {
				if n.Kind != 0 {
					return fmt.Errorf("%w: more than one notification element (<%s> and <%s>)", ErrInvalid, n.Kind.Element(), name)
				}
				status, err := p.notification(kind)
				if err != nil {
					return err
				}
				n.Kind, n.Status = kind, status
				continue
			}
			if err := p.skip(name); err != nil { // extension in the IMDN namespace
				return err
			}
		}
	}
}

// text reads a text-only element's content, trimmed.
func (p *parser) text(name string) (string, error) {
	var buf []byte
	for {
		tok, err := p.nextIn(name)
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			buf = append(buf, t...)
		case xml.StartElement:
			return "", fmt.Errorf("%w: <%s> inside <%s>, which holds text only", ErrInvalid, t.Name.Local, name)
		case xml.EndElement:
			return trimXMLSpace(string(buf)), nil
		}
	}
}

// notification reads a <…-notification> element and returns its status.
func (p *parser) notification(kind Kind) (string, error) {
	where := kind.Element()
	status := ""
	for {
		tok, err := p.nextIn(where)
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if !isBlank(string(t)) {
				return "", fmt.Errorf("%w: text inside <%s>", ErrInvalid, where)
			}
		case xml.EndElement:
			if status == "" {
				return "", fmt.Errorf("%w: <%s> without <status>", ErrInvalid, where)
			}
			return status, nil
		case xml.StartElement:
			if t.Name.Space != p.ns || t.Name.Local != "status" {
				if err := p.skip(t.Name.Local); err != nil {
					return "", err
				}
				continue
			}
			if status != "" {
				return "", fmt.Errorf("%w: more than one <status> in <%s>", ErrInvalid, where)
			}
			if status, err = p.status(kind); err != nil {
				return "", err
			}
		}
	}
}

// status reads <status>: exactly one value element valid for kind, plus
// extension elements in other namespaces.
func (p *parser) status(kind Kind) (string, error) {
	value := ""
	for {
		tok, err := p.nextIn("status")
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if !isBlank(string(t)) {
				return "", fmt.Errorf("%w: text inside <status>", ErrInvalid)
			}
		case xml.EndElement:
			if value == "" {
				return "", fmt.Errorf("%w: empty <status> in <%s>", ErrInvalid, kind.Element())
			}
			return value, nil
		case xml.StartElement:
			name := t.Name.Local
			if t.Name.Space == p.ns {
				if !kind.ValidStatus(name) {
					return "", fmt.Errorf("%w: <%s/> is not a valid status for <%s>", ErrInvalid, name, kind.Element())
				}
				if value != "" {
					return "", fmt.Errorf("%w: more than one status value (<%s/> and <%s/>)", ErrInvalid, value, name)
				}
				value = name
			}
			if err := p.skip(name); err != nil {
				return "", err
			}
		}
	}
}

// skip consumes the rest of an element whose start tag was just read.
// Unlike xml.Decoder.Skip it goes through next, so a directive hidden
// inside an extension is still refused.
func (p *parser) skip(name string) error {
	for depth := 1; depth > 0; {
		tok, err := p.nextIn(name)
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

// firstWord names a directive in an error without echoing all of it.
func firstWord(d xml.Directive) string {
	w := bytes.Fields(d)
	if len(w) == 0 {
		return ""
	}
	if len(w[0]) > 16 {
		return string(w[0][:16])
	}
	return string(w[0])
}
