package ims

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	siplib "github.com/emiago/sipgo/sip"

	rsip "rcsd/sip"
)

// Route is the S-CSCF route of ims-as mode: requests rcsd originates
// toward a user carry the user's public identity as Request-URI and this
// route as their Route header (TS 24.229 §5.7.3: an AS acting as an
// originating UA sends to the S-CSCF), and are sent to its address.
type Route struct {
	URI  string    // as configured, e.g. sip:scscf.ims.example:5060;lr;transport=tcp
	Flow rsip.Flow // where to send
}

// ParseRoute parses ims.scscf.
func ParseRoute(s string) (Route, error) {
	var u siplib.Uri
	if err := siplib.ParseUri(s, &u); err != nil || u.Host == "" {
		return Route{}, fmt.Errorf("ims.scscf %q: not a SIP URI with a host", s)
	}
	tp := "udp"
	if v, ok := u.UriParams.Get("transport"); ok && v != "" {
		tp = strings.ToLower(v)
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if strings.EqualFold(u.Scheme, "sips") || tp == "tls" {
			port = 5061
		}
	}
	if strings.EqualFold(u.Scheme, "sips") {
		tp = "tls"
	}
	switch tp {
	case "udp", "tcp", "tls":
	default:
		return Route{}, fmt.Errorf("ims.scscf %q: transport %s not supported (udp, tcp, tls)", s, tp)
	}
	uri := s
	if !strings.Contains(strings.ToLower(s), ";lr") {
		uri += ";lr" // RFC 3261 §16.12: strict routing is not supported
	}
	return Route{URI: uri, Flow: rsip.Flow{Transport: tp, Source: net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port))}}, nil
}

// Prepare addresses req to impu through the S-CSCF.
func (r Route) Prepare(req *siplib.Request, impu string) error {
	var u siplib.Uri
	if err := siplib.ParseUri(impu, &u); err != nil {
		return fmt.Errorf("ims: request URI %q: %w", impu, err)
	}
	req.Recipient = u
	req.RemoveHeader("Route")
	req.PrependHeader(siplib.NewHeader("Route", "<"+r.URI+">"))
	return nil
}
