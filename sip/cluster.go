package sip

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Several rcsd nodes share one store, but a handset's connection (and its
// NAT pinhole) lives on the node it registered through. A request for it
// that another node must send goes to that node with a top Route naming
// the flow in a signed token, RFC 5626 §5.2 edge-proxy style:
//
//	Route: <sip:TOKEN@node-address;transport=tcp;lr>
//
// The node holding the flow checks the token, sends the request down the
// flow in a transaction of its own and answers the forwarding node with
// the handset's final response. Nothing per request is stored: the token
// carries the flow, the shared key proves a node made it.

// ErrNodeDown is returned by Send for a flow held by a node that is not
// alive: the request cannot reach the handset until it registers again.
var ErrNodeDown = errors.New("sip: the node holding the flow is down")

// Nodes tells the SIP layer where the other nodes are.
type Nodes interface {
	// Address returns the SIP TCP address of node id when it is alive.
	Address(id string) (string, bool)
}

// ClusterConfig makes the server a node among several.
type ClusterConfig struct {
	Self  string // this node's ID, as bindings record it
	Key   []byte // shared by all nodes: flow tokens are MACed with it
	Nodes Nodes
}

// relayTimeout bounds a forwarded request's wait for the handset: Timer F
// (64*T1), which the forwarding node's own transaction also observes.
const relayTimeout = 32 * time.Second

// SetCluster makes s forward requests for flows other nodes hold, and
// relay those other nodes forward to it. Call it before Start.
func (s *Server) SetCluster(c ClusterConfig) {
	key := hmac.New(sha256.New, c.Key)
	key.Write([]byte("rcsd flow token"))
	c.Key = key.Sum(nil)
	s.cluster = &c
}

// token signs flow (its Node included) for the node holding it.
func (s *Server) token(f Flow) string {
	payload := strings.Join([]string{f.Node, f.Transport, f.Source, f.Local, f.Contact}, "\x00")
	m := hmac.New(sha256.New, s.cluster.Key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// flowOf checks a token and returns the flow it names.
func (s *Server) flowOf(tok string) (Flow, error) {
	p, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return Flow{}, errors.New("no signature")
	}
	payload, err1 := base64.RawURLEncoding.Strict().DecodeString(p)
	mac, err2 := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err1 != nil || err2 != nil {
		return Flow{}, errors.New("not base64url")
	}
	m := hmac.New(sha256.New, s.cluster.Key)
	m.Write(payload)
	if !hmac.Equal(mac, m.Sum(nil)[:16]) {
		return Flow{}, errors.New("bad signature")
	}
	parts := bytes.Split(payload, []byte{0})
	if len(parts) != 5 {
		return Flow{}, errors.New("malformed")
	}
	return Flow{Node: string(parts[0]), Transport: string(parts[1]), Source: string(parts[2]), Local: string(parts[3]), Contact: string(parts[4])}, nil
}

// remote reports whether flow is held by another node.
func (s *Server) remote(flow Flow) bool {
	return s.cluster != nil && flow.Node != "" && flow.Node != s.cluster.Self
}

// sendViaNode hands req to the node holding flow.
func (s *Server) sendViaNode(ctx context.Context, req *siplib.Request, flow Flow) (func() (*siplib.Response, error), error) {
	addr, ok := s.cluster.Nodes.Address(flow.Node)
	if !ok {
		return nil, fmt.Errorf("sip: %s to %s via node %s: %w", req.Method, flow.Source, flow.Node, ErrNodeDown)
	}
	req.PrependHeader(siplib.NewHeader("Route", "<sip:"+s.token(flow)+"@"+addr+";transport=tcp;lr>"))
	req.SetTransport("TCP")
	req.SetDestination(addr)
	req.Laddr = siplib.Addr{}
	wrap := func(err error) error {
		return fmt.Errorf("sip: %s to %s via node %s at %s: %w", req.Method, flow.Source, flow.Node, addr, err)
	}
	tx, err := s.client.TransactionRequest(ctx, req)
	if err != nil {
		return nil, wrap(err)
	}
	return finalResponse(ctx, tx, wrap), nil
}

// forwarded returns the flow a request forwarded by another node is for;
// ok is false for any other request. Only a token that verifies makes a
// request forwarded: handsets' Routes carry users too (Service-Route's
// "orig"), and a forged token just leaves the request a handset's own,
// with every check that implies.
func (s *Server) forwarded(req *siplib.Request) (flow Flow, ok bool) {
	if s.cluster == nil {
		return Flow{}, false
	}
	r, isRoute := req.GetHeader("Route").(*siplib.RouteHeader)
	if !isRoute || !strings.Contains(r.Address.User, ".") {
		return Flow{}, false
	}
	flow, err := s.flowOf(r.Address.User)
	if err == nil && flow.Node != s.cluster.Self {
		err = fmt.Errorf("flow of node %s", flow.Node)
	}
	if err != nil {
		s.log.Debug("Route user is not a flow token of this node", zap.String("source", req.Source()), zap.Error(err))
		return Flow{}, false
	}
	return flow, true
}

// relay sends a request another node forwarded down the flow it names and
// returns the final response for that node.
func (s *Server) relay(req *siplib.Request, flow Flow) *siplib.Response {
	out := req.Clone()
	for out.RemoveHeader("Via") {
	}
	out.RemoveHeader("Route")
	if mf := out.MaxForwards(); mf != nil {
		if *mf <= 1 {
			return s.router.refuse(req, 483, "Too Many Hops", "forwarded request out of Max-Forwards")
		}
		n := *mf - 1 // a new header: the clone shares the original's
		out.ReplaceHeader(&n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	res, err := s.Request(ctx, out, flow)
	if err != nil {
		s.log.Info("forwarded request not delivered", zap.String("method", string(req.Method)),
			zap.String("flow", flow.Transport+":"+flow.Source), zap.Error(err))
		// 480: the handset is not reachable now; the sender keeps it.
		return NewResponse(req, 480, "Temporarily Unavailable")
	}
	back := NewResponse(req, res.StatusCode, res.Reason)
	if to := res.To(); to != nil {
		back.ReplaceHeader(siplib.HeaderClone(to))
	}
	for _, h := range res.Headers() {
		switch strings.ToLower(h.Name()) {
		case "via", "from", "to", "call-id", "cseq", "content-length", "server":
			continue
		}
		back.AppendHeader(siplib.HeaderClone(h))
	}
	if body := res.Body(); len(body) > 0 {
		back.SetBody(append([]byte(nil), body...))
	}
	return back
}

// nodeAddress is this node's address for the others: the first TCP
// listener, with the advertised host when there is one.
func (s *Server) nodeAddress(advertise string) string {
	for _, l := range s.Listeners() {
		if l.Transport != "tcp" {
			continue
		}
		if advertise == "" {
			return l.Addr
		}
		host := advertise
		if h, _, err := net.SplitHostPort(advertise); err == nil {
			host = h
		}
		_, port, _ := net.SplitHostPort(l.Addr)
		return net.JoinHostPort(host, port)
	}
	return ""
}

// NodeAddress is the default node.address: the first TCP listener's
// address (sip.advertise's host when set), "" without a TCP listener.
func (s *Server) NodeAddress() string { return s.nodeAddress(s.cfg.Advertise) }
