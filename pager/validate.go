package pager

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"

	siplib "github.com/emiago/sipgo/sip"

	"rcsd/cpim"
	"rcsd/featuretag"
	"rcsd/imdn"
)

// supportedTypes are the body types of seed 001 Table 5-1, the Accept of a
// 400 for an unsupported one. Every one may be the top-level type (quirk
// Q12: rule 2 of §5.1.1.1.2 would allow only message/cpim and
// application/sdp without a boundary, but the spec's own fig 5-19 sends a
// bare application/vemoticon+xml; the original's Table 5-1 wins).
var supportedTypes = []string{
	"message/cpim", "application/sdp", "multipart/mixed", "application/resource-lists+xml",
	"message/imdn+xml", "application/grouplist-ver+xml", "application/xml",
	"application/vemoticon+xml", "application/cloudfile", "text/plain",
}

// uniqueParts may appear at most once in a multipart body (§5.1.1.1.2
// rule 1).
var uniqueParts = map[string]bool{
	"message/cpim": true, "application/sdp": true, "application/resource-lists+xml": true,
	"application/xml": true, "application/vemoticon+xml": true,
}

// badRequest is a validation failure: the reason phrase names what is
// wrong (seed 001 gives no status; 400 as for every other syntax error).
type badRequest struct {
	reason string // reason phrase
	why    string // for the log
	accept bool   // add Accept: the supported types
}

func (b *badRequest) Error() string { return b.reason + ": " + b.why }

func bad(reason, format string, args ...any) error {
	return &badRequest{reason: reason, why: fmt.Sprintf(format, args...)}
}

// parsedBody is what validation learnt from the body.
type parsedBody struct {
	cpim      *cpim.Message // the CPIM object, when there is one
	messageID string        // its imdn.Message-ID
	list      []byte        // the resource-lists part of a recipient-list message
	// notification: the body is an IMDN (CPIM content message/imdn+xml).
	notification bool
}

// claimsRCS reports whether req presents itself as an RCS pager message
// (the CPM messaging ICSI in Accept-Contact or P-Preferred-Service): those
// get the spec's validation; plain SIP MESSAGEs do not.
func claimsRCS(req *siplib.Request) bool {
	for _, name := range [...]string{"Accept-Contact", "P-Preferred-Service"} {
		for _, h := range req.GetHeaders(name) {
			if featuretag.Has(h.Value(), featuretag.ICSIMsg) {
				return true
			}
		}
	}
	return false
}

// mandatory are the M headers of seed 001 Table 5-9 beyond those every
// request needs (the router checks To, From, Call-ID, CSeq, Via,
// Max-Forwards). User-Agent, M in the table, is checked like an O header:
// the spec's own one-to-many example (fig 5-18) has none, and it carries
// nothing rcsd acts on.
var mandatory = []string{"Accept-Contact", "P-Preferred-Service", "Conversation-ID", "Contribution-ID", "Content-Type", "Content-Length"}

// optional are the O headers of Table 5-9: when present they must not be
// empty (L982-984).
var optional = []string{"User-Agent", "Contact", "Allow", "P-Preferred-Identity", "InReplyTo-Contribution-ID", "Require", "Date", "Subject"}

// mandatoryIMDN are the M headers of an IMDN MESSAGE (seed 001 Tables
// 5-13/5-15 as far as they survive; fixture 20 carries no
// P-Preferred-Service, Conversation-ID or Contribution-ID).
var mandatoryIMDN = []string{"Accept-Contact", "Content-Type", "Content-Length"}

// validate applies seed 001 §5.1.1.1.1-§5.1.1.1.2 to an RCS MESSAGE.
func validate(req *siplib.Request) (*parsedBody, error) {
	ct := req.GetHeader("Content-Type")
	if ct == nil || strings.TrimSpace(ct.Value()) == "" {
		if len(req.Body()) > 0 {
			return nil, bad("Missing Content-Type header", "a body without Content-Type (rule 5)")
		}
		return nil, bad("Missing Content-Type header", "mandatory header Content-Type absent (Table 5-9)")
	}
	pb, err := validateBody(ct.Value(), req.Body())
	if err != nil {
		return nil, err
	}
	need := mandatory
	if pb.notification {
		need = mandatoryIMDN
	}
	for _, name := range need {
		h := req.GetHeader(name)
		if h == nil {
			return nil, bad("Missing "+name+" header", "mandatory header %s absent (Table 5-9)", name)
		}
		if strings.TrimSpace(h.Value()) == "" && name != "Content-Length" {
			return nil, bad("Empty "+name+" header", "mandatory header %s empty", name)
		}
	}
	for _, name := range optional {
		for _, h := range req.GetHeaders(name) {
			if strings.TrimSpace(h.Value()) == "" {
				return nil, bad("Empty "+name+" header", "optional header %s present but empty (L982-984)", name)
			}
		}
	}
	if h := req.GetHeader("P-Preferred-Service"); h != nil && !featuretag.Has(h.Value(), featuretag.ICSIMsg) {
		return nil, bad("Wrong P-Preferred-Service", "P-Preferred-Service %q is not the CPM messaging service", h.Value())
	}
	return pb, nil
}

// validateBody applies the body rules of §5.1.1.1.2 (L682-690).
func validateBody(contentType string, body []byte) (*parsedBody, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, bad("Malformed Content-Type", "Content-Type %q: %v", contentType, err)
	}
	if _, hasBoundary := params["boundary"]; hasBoundary && mt != "multipart/mixed" {
		return nil, bad("Boundary Only With multipart/mixed", "Content-Type %s has a boundary (rule 3)", mt)
	}
	if !supported(mt) {
		return nil, &badRequest{reason: "Unsupported Content-Type " + mt, why: "type " + mt + " not in Table 5-1 (rule 4)", accept: true}
	}
	pb := &parsedBody{}
	switch mt {
	case "message/cpim":
		if err := pb.setCPIM(body); err != nil {
			return nil, err
		}
	case "multipart/mixed":
		if params["boundary"] == "" {
			return nil, bad("Multipart Without Boundary", "multipart/mixed without a boundary")
		}
		seen := map[string]bool{}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for n := 0; ; n++ {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, bad("Malformed Multipart Body", "%v", err)
			}
			if n >= 16 {
				return nil, bad("Too Many Body Parts", "more than 16 parts")
			}
			pct := part.Header.Get("Content-Type")
			if pct == "" {
				return nil, bad("Body Part Without Content-Type", "part %d has no Content-Type (rule 5)", n+1)
			}
			pmt, _, err := mime.ParseMediaType(pct)
			if err != nil {
				return nil, bad("Malformed Content-Type In Body Part", "part %d Content-Type %q: %v", n+1, pct, err)
			}
			if uniqueParts[pmt] && seen[pmt] {
				return nil, bad("Duplicate "+pmt+" Body Part", "two %s parts (rule 1)", pmt)
			}
			seen[pmt] = true
			if !supported(pmt) {
				return nil, &badRequest{reason: "Unsupported Content-Type " + pmt, why: "part type " + pmt + " not in Table 5-1 (rule 4)", accept: true}
			}
			data, err := io.ReadAll(io.LimitReader(part, 1<<20))
			if err != nil {
				return nil, bad("Malformed Multipart Body", "%v", err)
			}
			switch pmt {
			case "message/cpim":
				if err := pb.setCPIM(data); err != nil {
					return nil, err
				}
			case "application/resource-lists+xml":
				pb.list = data
			}
		}
	}
	return pb, nil
}

func (pb *parsedBody) setCPIM(data []byte) error {
	// The SIP framing delimits the object; handsets (and the spec's own
	// examples, quirk Q20) put wrong inner Content-Lengths.
	m, err := cpim.Options{IgnoreContentLength: true}.Parse(data)
	if err != nil {
		if errors.Is(err, cpim.ErrDuplicate) {
			return bad("Duplicate CPIM Header", "%v (rule 6)", err)
		}
		return bad("Malformed CPIM Body", "%v", err)
	}
	pb.cpim = m
	if r, ok := m.IMDN(); ok {
		pb.messageID = r.MessageID
	}
	// A report request needs what the report will refer to (seed 001
	// Table 5-9 CPIM rows: C = mandatory when a report is wanted).
	if _, wants := m.GetNS(cpim.IMDNNamespace, "Disposition-Notification"); wants {
		if pb.messageID == "" {
			return bad("IMDN Request Without imdn.Message-ID", "imdn.Disposition-Notification without imdn.Message-ID")
		}
		if _, ok := m.Get("DateTime"); !ok {
			return bad("IMDN Request Without DateTime", "imdn.Disposition-Notification without DateTime")
		}
	}
	pb.notification = m.ContentType() == imdn.ContentType
	return nil
}

func supported(mt string) bool {
	for _, t := range supportedTypes {
		if t == mt {
			return true
		}
	}
	return false
}
