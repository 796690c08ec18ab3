// Package ims fits rcsd behind an operator's IMS core (mode ims-as, seed
// 001's "new message module" as an application server behind the S-CSCF):
// which peers are the trusted core (3GPP TS 24.229 §4.4 trust domain), the
// identity they assert (P-Asserted-Identity, RFC 3325), and the route of
// requests rcsd originates toward users (the S-CSCF).
//
// In standalone mode the same package strips asserted identities handsets
// put in their requests: no request from outside a trust domain is believed
// about who sent it (RFC 3325 §5).
package ims

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/config"
	"rcsd/identity"
	rsip "rcsd/sip"
)

// Trust decides whether a request comes from the trusted IMS core: its
// source address is in a configured network, or it arrived over TLS from a
// peer whose verified certificate carries a configured name.
type Trust struct {
	nets  []*net.IPNet
	names map[string]bool
	peers *PeerNames
	log   *zap.Logger
}

// NewTrust parses ims.trusted_peers. peers may be nil when no names are
// configured (or there is no TLS listener).
func NewTrust(entries []string, peers *PeerNames, log *zap.Logger) (*Trust, error) {
	t := &Trust{names: map[string]bool{}, peers: peers, log: log}
	for _, e := range entries {
		p, err := config.ParsePeer(e)
		if err != nil {
			return nil, fmt.Errorf("ims.trusted_peers: %w", err)
		}
		if p.Net != nil {
			t.nets = append(t.nets, p.Net)
		} else {
			t.names[p.Name] = true
		}
	}
	return t, nil
}

// Trusted reports whether req comes from the trusted core, and why not.
func (t *Trust) Trusted(req *siplib.Request) (bool, string) {
	src := req.Source()
	host, _, err := net.SplitHostPort(src)
	if err != nil {
		host = src
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false, "source " + src + " is not an IP address"
	}
	for _, n := range t.nets {
		if n.Contains(ip) {
			return true, ""
		}
	}
	tp := strings.ToUpper(req.Transport())
	if len(t.names) > 0 && t.peers != nil && (tp == "TLS" || tp == "WSS") {
		for _, name := range t.peers.Names(src) {
			if t.names[name] {
				return true, ""
			}
		}
		return false, "TLS peer " + src + " presented no trusted certificate name"
	}
	return false, "source " + host + " is not in ims.trusted_peers"
}

// Gate is the router gate of ims-as mode: a request from outside the core
// gets 403 and a log line, and never reaches a handler (so no binding or
// message is created from it).
func (t *Trust) Gate(_ context.Context, req *siplib.Request) *siplib.Response {
	ok, why := t.Trusted(req)
	if ok {
		return nil
	}
	t.log.Warn("request from an untrusted peer refused", zap.String("method", string(req.Method)),
		zap.String("source", req.Source()), zap.String("transport", req.Transport()), zap.String("reason", why))
	return rsip.NewResponse(req, 403, "Forbidden - Not A Trusted IMS Peer")
}

// assertedHeaders are the headers only a trust domain may set (RFC 3325,
// RFC 6050 for P-Asserted-Service).
var assertedHeaders = []string{"P-Asserted-Identity", "P-Asserted-Service"}

// StripAsserted is the router gate of standalone mode: asserted identities
// a handset sends are removed (RFC 3325 §5: never believed from outside a
// trust domain), and the removal is logged.
func StripAsserted(log *zap.Logger) rsip.Handler {
	return func(_ context.Context, req *siplib.Request) *siplib.Response {
		for _, h := range assertedHeaders {
			if req.GetHeader(h) != nil {
				log.Info("asserted identity from an untrusted source stripped", zap.String("header", h),
					zap.String("method", string(req.Method)), zap.String("source", req.Source()))
				req.RemoveHeader(h)
			}
		}
		return nil
	}
}

// AssertedIdentity returns the canonical identities of the request's
// P-Asserted-Identity headers (RFC 3325 §9.1: at most one sip/sips URI and
// one tel URI); ok is false when there is none or one is malformed.
func AssertedIdentity(req *siplib.Request) (ids []string, ok bool) {
	for _, h := range req.GetHeaders("P-Asserted-Identity") {
		for _, v := range splitURIs(h.Value()) {
			id, err := canonicalNameAddr(v)
			if err != nil {
				return nil, false
			}
			ids = append(ids, id)
		}
	}
	return ids, len(ids) > 0
}

// PeerNames remembers, per remote address, the names in the verified
// certificate a TLS peer presented, so Trust can match them against
// ims.trusted_peers. Entries are written at handshake time and replaced by
// the next handshake from the same address.
type PeerNames struct {
	mu sync.Mutex
	m  map[string][]string
}

// NewPeerNames creates an empty table.
func NewPeerNames() *PeerNames { return &PeerNames{m: map[string][]string{}} }

// Names returns the verified names of the peer at addr.
func (p *PeerNames) Names(addr string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[addr]
}

// maxPeers bounds the table; only peers with a certificate the configured
// CA verifies get an entry, so this is the number of core nodes.
const maxPeers = 4096

// TLSConfig returns base set up to ask TLS peers for a certificate, verify
// it against roots (nil: the system pool) when one is given, and record its
// names. Handsets without certificates still connect.
func (p *PeerNames) TLSConfig(base *tls.Config, roots *x509.CertPool) *tls.Config {
	cfg := base.Clone()
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	cfg.ClientCAs = roots
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		addr := hello.Conn.RemoteAddr().String()
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
				return nil
			}
			leaf := cs.PeerCertificates[0]
			names := append([]string{}, leaf.DNSNames...)
			if leaf.Subject.CommonName != "" {
				names = append(names, leaf.Subject.CommonName)
			}
			for i := range names {
				names[i] = strings.ToLower(names[i])
			}
			p.mu.Lock()
			if len(p.m) >= maxPeers {
				for k := range p.m {
					delete(p.m, k)
					break
				}
			}
			p.m[addr] = names
			p.mu.Unlock()
			return nil
		}
		return c, nil
	}
	return cfg
}

func splitURIs(v string) []string { return rsip.SplitList(v) }

func canonicalNameAddr(v string) (string, error) {
	id, err := identity.Canonical(v)
	if err != nil {
		return "", fmt.Errorf("P-Asserted-Identity: %w", err)
	}
	return id, nil
}
