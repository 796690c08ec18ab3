// Package registrar answers REGISTER (RFC 3261 §10, seed 001 §5.1.3.1): it
// authenticates the handset with a pluggable Scheme (Digest now, IMS AKA
// next), keeps its bindings (contacts with expiry, instance ID, feature tags
// and the flow they arrived on) in storage, and answers with what the spec's
// 200 OK carries. It answers statelessly (RFC 3261 §8.2.7): nothing is kept
// per transaction, so memory does not grow with the registration rate.
package registrar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/identity"
	"rcsd/registrar/digest"
	"rcsd/secagree"
	rsip "rcsd/sip"
	"rcsd/storage"
)

// Options configure the registrar.
type Options struct {
	Domain         string
	Realm          string
	MinExpires     int
	MaxExpires     int
	DefaultExpires int
	MaxContacts    int
	// PathRequiresSupport refuses a REGISTER that carries Path without
	// "path" in Supported with 421 (RFC 3327 §5.3), instead of storing a
	// Path the handset did not agree to.
	PathRequiresSupport bool
	ServiceRoute        string // Service-Route value for the 200 OK, "" for none
	Node                string
	// SecAgree answers RFC 3329 security agreement (standalone mode);
	// nil: sec-agree is not supported.
	SecAgree *secagree.Server
}

// Change is one public identity's registration change, reported once it
// is stored: the bindings before and after (After excludes expired ones).
type Change struct {
	AOR           string
	Before, After []storage.Binding
	// Expired: the bindings in Before but not After ran out (the purge
	// timer), rather than being removed by a REGISTER.
	Expired bool
	At      time.Time
}

// Observer learns about registration changes (the reg event package, RFC
// 3680). It is called on the request's goroutine and must not block.
type Observer interface {
	RegistrationChanged(Change)
}

// Registrar handles REGISTER.
type Registrar struct {
	opts    Options
	store   storage.Store
	schemes []Scheme
	src, id *Limiter
	log     *zap.Logger
	metrics *Metrics
	now     func() time.Time

	observers []Observer

	serviceRoute atomic.Pointer[string]
	dateCache    atomic.Pointer[cachedDate]
}

// New creates a registrar.
func New(opts Options, store storage.Store, schemes []Scheme, perSource, perIdentity *Limiter, log *zap.Logger, m *Metrics) *Registrar {
	r := &Registrar{opts: opts, store: store, schemes: schemes, src: perSource, id: perIdentity, log: log, metrics: m, now: time.Now}
	r.SetServiceRoute(opts.ServiceRoute)
	return r
}

// Observe adds an observer of registration changes; call before serving.
func (r *Registrar) Observe(o Observer) { r.observers = append(r.observers, o) }

// Expired reports bindings removed by the purge timer to the observers.
func (r *Registrar) Expired(gone []storage.Binding, now time.Time) {
	byAOR := map[string][]storage.Binding{}
	for _, b := range gone {
		byAOR[b.AOR] = append(byAOR[b.AOR], b)
	}
	for aor, bs := range byAOR {
		after, err := r.store.Bindings(context.Background(), aor, now)
		if err != nil {
			r.log.Warn("reading bindings after expiry", zap.String("aor", aor), zap.Error(err))
			continue
		}
		r.notify(Change{AOR: aor, Before: append(bs, after...), After: after, Expired: true, At: now})
	}
}

func (r *Registrar) notify(c Change) {
	for _, o := range r.observers {
		o.RegistrationChanged(c)
	}
}

// SetClock replaces the clock (tests).
func (r *Registrar) SetClock(now func() time.Time) { r.now = now }

// errors that map to responses.
var (
	errOutOfOrder  = errors.New("CSeq not higher than the binding's")
	errTooMany     = errors.New("too many contacts")
	errRetransmit  = errors.New("retransmission")
	errBadContact  = errors.New("bad Contact")
	errBadWildcard = errors.New(`"Contact: *" needs Expires: 0 and no other contact`)
)

// ServeSIP answers one REGISTER. ctx may carry the local listener address
// (rsip.LocalAddr) for the flow.
func (r *Registrar) ServeSIP(ctx context.Context, req *siplib.Request) *siplib.Response {
	now := r.now()
	var server []secagree.Mechanism
	if r.opts.SecAgree != nil {
		var res *siplib.Response
		var result string
		if res, result, server = r.secAgree(req); res != nil {
			r.metrics.register(result)
			return res
		}
	}
	res, result := r.serve(ctx, req, now)
	if server != nil && res.StatusCode == 401 {
		res.AppendHeader(siplib.NewHeader("Security-Server", secagree.Format(server)))
	}
	r.metrics.register(result)
	return res
}

func (r *Registrar) reject(req *siplib.Request, code int, reason, result, why string) (*siplib.Response, string) {
	r.log.Info("REGISTER rejected", zap.Int("status", code), zap.String("reason", why),
		zap.String("source", req.Source()), zap.String("transport", req.Transport()),
		zap.String("call_id", callID(req)))
	return rsip.NewResponse(req, code, reason), result
}

func callID(req *siplib.Request) string {
	if c := req.CallID(); c != nil {
		return string(*c)
	}
	return ""
}

func (r *Registrar) serve(ctx context.Context, req *siplib.Request, now time.Time) (*siplib.Response, string) {
	to := req.To()
	if to == nil {
		return r.reject(req, 400, "Missing To header", "bad_request", "no To header")
	}
	if s := strings.ToLower(to.Address.Scheme); s != "sip" && s != "sips" && s != "tel" {
		res, result := r.reject(req, 416, "Unsupported URI Scheme", "bad_request", "To scheme "+to.Address.Scheme)
		return res, result
	}
	aor, err := aorOf(&to.Address)
	if err != nil {
		return r.reject(req, 400, "Invalid To header", "bad_request", err.Error())
	}
	srcIP := hostOf(req.Source())
	if wait, blocked := r.src.Blocked("src:"+srcIP, now); blocked {
		res, result := r.reject(req, 403, "Too Many Failed Authentications", "rate_limited", "source blocked after repeated failures")
		res.AppendHeader(siplib.NewHeader("Retry-After", strconv.Itoa(int(wait.Seconds())+1)))
		return res, result
	}

	creds, hint, err := r.credentials(req)
	if err != nil {
		return r.reject(req, 400, "Malformed Authorization header", "bad_request", err.Error())
	}
	if creds == nil {
		return r.challenge(ctx, req, aor, hint, nil, now, false)
	}
	if wait, blocked := r.id.Blocked("id:"+creds.Username, now); blocked {
		res, result := r.reject(req, 403, "Too Many Failed Authentications", "rate_limited", "identity blocked after repeated failures")
		res.AppendHeader(siplib.NewHeader("Retry-After", strconv.Itoa(int(wait.Seconds())+1)))
		return res, result
	}
	sub, err := r.lookup(ctx, creds.Username)
	if err != nil {
		return r.unavailable(req, err)
	}
	var scheme Scheme
	for _, s := range r.schemes {
		if s.Offers(sub) && s.Accepts(creds) {
			scheme = s
			break
		}
	}
	if scheme == nil {
		// Answered with an algorithm we did not offer: challenge afresh.
		return r.challenge(ctx, req, aor, "", nil, now, false)
	}
	// Challenges that follow an AKA answer lead with AKA again.
	again := ""
	if scheme.NeedsIdentity() {
		again = creds.Username
	}
	branch := ""
	if v := req.Via(); v != nil {
		branch, _ = v.Params.Get("branch")
	}
	verdict, why := scheme.Verify(ctx, string(req.Method), creds, sub, branch, now)
	switch verdict {
	case VerdictStale:
		r.metrics.AuthFailures.WithLabelValues("stale").Inc()
		r.log.Debug("stale credentials", zap.String("reason", why), zap.String("user", creds.Username))
		res, _ := r.challenge(ctx, req, aor, again, sub, now, true)
		return res, "stale"
	case VerdictResync:
		r.log.Info("AKA re-synchronisation", zap.String("user", creds.Username), zap.String("detail", why))
		res, _ := r.challenge(ctx, req, aor, again, sub, now, false)
		return res, "resync"
	case VerdictError:
		return r.unavailable(req, errors.New(why))
	case VerdictFail:
		r.metrics.AuthFailures.WithLabelValues("credentials").Inc()
		r.src.Fail("src:"+srcIP, now)
		r.id.Fail("id:"+creds.Username, now)
		// Same status and reason for unknown users and wrong passwords.
		return r.reject(req, 403, "Forbidden", "forbidden", why+" (user "+creds.Username+")")
	}
	if !owns(sub, aor) {
		r.metrics.AuthFailures.WithLabelValues("identity").Inc()
		return r.reject(req, 403, "Forbidden", "forbidden", aor+" is not a public identity of "+sub.IMPI)
	}
	return r.bind(ctx, req, aor, sub, now)
}

// credentials returns the Authorization for our realm. For the empty one
// IMS handsets send first (nonce="", TS 24.229 §5.1.1.2.1) it returns nil
// credentials and the private identity to challenge.
func (r *Registrar) credentials(req *siplib.Request) (*digest.Credentials, string, error) {
	for _, h := range req.GetHeaders("Authorization") {
		c, err := digest.ParseCredentials(h.Value())
		if err != nil {
			return nil, "", err
		}
		if c.Realm != r.opts.Realm {
			continue
		}
		if c.Nonce == "" {
			return nil, c.Username, nil
		}
		if c.Response == "" && c.AUTS == "" {
			if _, isAKA := ParseAKAAlgorithm(c.Algorithm); !isAKA {
				return nil, "", nil
			}
			// AKA with an empty response: the handset refused our
			// AUTN (RFC 3310 §3.4); the scheme answers 403.
		}
		return &c, "", nil
	}
	return nil, "", nil
}

func (r *Registrar) unavailable(req *siplib.Request, err error) (*siplib.Response, string) {
	r.log.Error("storage failed while registering", zap.Error(err), zap.String("call_id", callID(req)))
	res := rsip.NewResponse(req, 503, "Storage Unavailable")
	res.AppendHeader(siplib.NewHeader("Retry-After", "5"))
	return res, "error"
}

// lookup finds the subscriber by private identity (the digest username:
// HA1 covers it, so a bare "alice" and "alice@rcs.local" are different
// users; provision --impi as the clients send it). Unknown users return nil
// without error.
func (r *Registrar) lookup(ctx context.Context, username string) (*storage.Subscriber, error) {
	sub, err := r.store.SubscriberByIMPI(ctx, username)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", username, err)
	}
	return &sub, nil
}

func owns(sub *storage.Subscriber, aor string) bool {
	for _, u := range sub.IMPUs {
		if u == aor {
			return true
		}
	}
	return false
}

// challenge answers 401. Which challenges it carries depends only on the
// request, never on whether the user exists (no enumeration):
//   - a request naming a private identity in an empty Authorization (IMS
//     handsets) gets the AKA challenge first — a real vector when the
//     identity has AKA keys, an unanswerable random nonce of the same shape
//     otherwise — then the Digest ones, so an App client that also sends an
//     empty Authorization still finds its scheme;
//   - other requests get Digest only; when Digest is not configured, AKA is
//     challenged for the subscriber owning the To identity.
//
// sub is impi's record when the caller has it already.
func (r *Registrar) challenge(ctx context.Context, req *siplib.Request, aor, impi string, sub *storage.Subscriber, now time.Time, stale bool) (*siplib.Response, string) {
	identityFirst := impi != ""
	if impi == "" && !r.offersIdentityFree() {
		s, err := r.store.SubscriberByIMPU(ctx, aor)
		switch {
		case err == nil:
			impi, sub = s.IMPI, &s
		case errors.Is(err, storage.ErrNotFound):
			impi, _ = identity.DefaultIMPI(aor, r.opts.Domain)
		default:
			return r.unavailable(req, fmt.Errorf("lookup %s: %w", aor, err))
		}
	}
	if impi != "" && r.needsIdentity() {
		// Each AKA challenge of a known identity costs a store write (its
		// SQN): challenges per identity are bounded like failures, and
		// counted the same for unknown identities (no enumeration).
		key := "aka:" + impi
		if wait, blocked := r.id.Blocked(key, now); blocked {
			res, result := r.reject(req, 403, "Too Many Failed Authentications", "rate_limited", "too many AKA challenges for "+impi)
			res.AppendHeader(siplib.NewHeader("Retry-After", strconv.Itoa(int(wait.Seconds())+1)))
			return res, result
		}
		r.id.Fail(key, now)
	}
	if impi != "" && sub == nil && r.needsIdentity() {
		s, err := r.lookup(ctx, impi)
		if err != nil {
			return r.unavailable(req, err)
		}
		sub = s
	}
	res := rsip.NewResponse(req, 401, "Unauthorized")
	add := func(s Scheme) error {
		if s.NeedsIdentity() && impi == "" {
			return nil
		}
		vals, err := s.Challenge(ctx, now, impi, sub, stale)
		for _, v := range vals {
			res.AppendHeader(siplib.NewHeader("WWW-Authenticate", v))
		}
		return err
	}
	for _, pass := range [2]bool{true, false} {
		for _, s := range r.schemes {
			// First pass: identity-bound schemes when the request named
			// an identity; second pass: the rest.
			if (s.NeedsIdentity() && identityFirst) != pass {
				continue
			}
			if err := add(s); err != nil {
				return r.unavailable(req, err)
			}
		}
	}
	if stale {
		return res, "stale"
	}
	return res, "challenge"
}

func (r *Registrar) offersIdentityFree() bool {
	for _, s := range r.schemes {
		if !s.NeedsIdentity() {
			return true
		}
	}
	return false
}

func (r *Registrar) needsIdentity() bool {
	for _, s := range r.schemes {
		if s.NeedsIdentity() {
			return true
		}
	}
	return false
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// SetServiceRoute sets the Service-Route of 200 responses; it is known
// only once the listeners are bound.
func (r *Registrar) SetServiceRoute(v string) { r.serviceRoute.Store(&v) }

// aorOf is identity.Canonical for a parsed URI, without printing the URI
// first (this runs on every REGISTER).
func aorOf(u *siplib.Uri) (string, error) {
	if s := strings.ToLower(u.Scheme); (s == "sip" || s == "sips") && u.User != "" && u.Host != "" &&
		u.Password == "" && !strings.ContainsAny(u.User, " \t<>\"") && !strings.ContainsAny(u.Host, " \t<>\"") {
		host := u.Host
		if u.Port != 0 {
			host += ":" + strconv.Itoa(u.Port)
		}
		return "sip:" + u.User + "@" + strings.ToLower(host), nil
	}
	return identity.Canonical(u.String())
}
