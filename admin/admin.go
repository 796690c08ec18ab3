// Package admin is rcsd's operator HTTP endpoint: Prometheus /metrics,
// /healthz (the process is alive), /readyz (listeners bound and storage
// reachable) and the provisioning API the `rcsd subscriber` commands use
// while the server runs (the embedded store is locked by the running
// process, so they cannot open it themselves).
//
// The API answers only loopback clients unless http.admin_token is set;
// with a token, every API call must carry it as a Bearer token.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"rcsd/identity"
	"rcsd/storage"
	"rcsd/subscriber"
)

// Server is the HTTP endpoint.
type Server struct {
	store         storage.Store
	gatherer      prometheus.Gatherer
	token         string
	realm, domain string
	log           *zap.Logger
	mux           *http.ServeMux
	ready         atomic.Bool
	http          *http.Server
	ln            net.Listener
}

// New creates the endpoint; pprof adds Go's profiler under /debug/pprof/.
func New(store storage.Store, g prometheus.Gatherer, token, realm, domain string, pprof bool, log *zap.Logger) *Server {
	s := &Server{store: store, gatherer: g, token: token, realm: realm, domain: domain, log: log}
	mux := http.NewServeMux()
	s.mux = mux
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("POST /admin/subscribers", s.guard(s.putSubscribers))
	mux.HandleFunc("GET /admin/subscribers", s.guard(s.listSubscribers))
	mux.HandleFunc("GET /admin/subscribers/{impi}", s.guard(s.showSubscriber))
	mux.HandleFunc("DELETE /admin/subscribers/{impi}", s.guard(s.deleteSubscriber))
	if pprof {
		mux.HandleFunc("GET /debug/pprof/", s.guard(httppprof.Index))
		mux.HandleFunc("GET /debug/pprof/profile", s.guard(httppprof.Profile))
		mux.HandleFunc("GET /debug/pprof/symbol", s.guard(httppprof.Symbol))
		mux.HandleFunc("GET /debug/pprof/trace", s.guard(httppprof.Trace))
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// Handle adds an operator endpoint behind the admin API's access rule
// (loopback only, or the admin token); call before Start.
func (s *Server) Handle(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, s.guard(h)) }

// HandleOpen adds an endpoint that does its own authentication (not the
// admin rule); call before Start.
func (s *Server) HandleOpen(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }

// SetReady marks the process ready (listeners bound).
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// Start listens on addr and serves in the background.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	s.ln = ln
	s.log.Info("listening", zap.String("transport", "http"), zap.String("addr", ln.Addr().String()))
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", zap.Error(err))
		}
	}()
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops the endpoint.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "not ready: listeners not bound", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "not ready: storage: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func (s *Server) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				s.log.Info("admin request refused", zap.String("remote", r.RemoteAddr), zap.String("reason", "bad or missing token"))
				http.Error(w, "admin token required", http.StatusUnauthorized)
				return
			}
		} else if !isLoopback(r.RemoteAddr) {
			s.log.Info("admin request refused", zap.String("remote", r.RemoteAddr), zap.String("reason", "not loopback and no admin_token set"))
			http.Error(w, "admin API is loopback-only unless http.admin_token is set", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// putSubscribers takes a JSON array of subscriber.Spec (or a CSV body with
// Content-Type text/csv) and stores them in one batch.
func (s *Server) putSubscribers(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 512<<20)
	var subs []storage.Subscriber
	if strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") {
		var err error
		subs, err = subscriber.ReadCSV(r.Body, s.realm, s.domain)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	} else {
		var specs []subscriber.Spec
		if err := json.NewDecoder(r.Body).Decode(&specs); err != nil {
			http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		for _, sp := range specs {
			sub, err := subscriber.Build(sp, s.realm, s.domain)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			subs = append(subs, sub)
		}
	}
	if err := s.store.PutSubscribers(r.Context(), subs); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrInvalid) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	writeJSON(w, map[string]int{"stored": len(subs)})
}

func (s *Server) listSubscribers(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	subs, err := s.store.ListSubscribers(r.Context(), r.URL.Query().Get("after"), limit)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := make([]View, 0, len(subs))
	for i := range subs {
		out = append(out, ViewOf(&subs[i]))
	}
	writeJSON(w, out)
}

func (s *Server) lookup(ctx context.Context, key string) (storage.Subscriber, error) {
	if strings.Contains(key, ":") {
		if c, err := identity.Canonical(key); err == nil {
			return s.store.SubscriberByIMPU(ctx, c)
		}
	}
	return s.store.SubscriberByIMPI(ctx, key)
}

func (s *Server) showSubscriber(w http.ResponseWriter, r *http.Request) {
	sub, err := s.lookup(r.Context(), r.PathValue("impi"))
	if err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, ViewOf(&sub))
}

func (s *Server) deleteSubscriber(w http.ResponseWriter, r *http.Request) {
	sub, err := s.lookup(r.Context(), r.PathValue("impi"))
	if err != nil {
		httpError(w, err)
		return
	}
	if err := s.store.DeleteSubscriber(r.Context(), sub.IMPI); err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, map[string]string{"deleted": sub.IMPI})
}

func httpError(w http.ResponseWriter, err error) {
	if errors.Is(err, storage.ErrNotFound) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// View is what list/show print: identities and which credentials exist,
// never the secrets.
type View struct {
	IMPI   string   `json:"impi"`
	IMPUs  []string `json:"impus"`
	Realm  string   `json:"realm"`
	Digest bool     `json:"digest"`
	AKA    bool     `json:"aka"`
	SQN    uint64   `json:"sqn,omitempty"`
}

// ViewOf summarises a subscriber.
func ViewOf(s *storage.Subscriber) View {
	return View{IMPI: s.IMPI, IMPUs: s.IMPUs, Realm: s.Realm, Digest: s.HasDigest(), AKA: s.HasAKA(), SQN: s.SQN}
}
