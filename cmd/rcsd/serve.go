package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"

	"rcsd/admin"
	"rcsd/cluster"
	"rcsd/config"
	"rcsd/ims"
	"rcsd/pager"
	"rcsd/regevent"
	"rcsd/registrar"
	"rcsd/registrar/digest"
	"rcsd/secagree"
	rsip "rcsd/sip"
	"rcsd/storage"
	"rcsd/storage/backends"
)

func newLogger(cfg config.Log, out io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.Format == "json" {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(out), lvl)), nil
}

// dataDir is the directory of a file: store, where the self-signed
// certificate is kept too; "" for other stores.
func dataDir(storageURL string) string {
	if p, ok := strings.CutPrefix(storageURL, "file:"); ok {
		return filepath.Clean(p)
	}
	return ""
}

// storageCollector pings the store at each scrape: rcsd_storage_up, and
// how long the ping took, so that a slow store shows before it is down.
type storageCollector struct{ store storage.Store }

var (
	storageUpDesc = prometheus.NewDesc("rcsd_storage_up",
		"1 when the storage backend answers a ping within 1s (checked at scrape), else 0.", nil, nil)
	storagePingDesc = prometheus.NewDesc("rcsd_storage_ping_seconds",
		"How long the scrape's ping of the storage backend took (up to the 1s timeout).", nil, nil)
)

func (storageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storageUpDesc
	ch <- storagePingDesc
}

func (c storageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	up := 1.0
	if c.store.Ping(ctx) != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(storagePingDesc, prometheus.GaugeValue, time.Since(start).Seconds())
	ch <- prometheus.MustNewConstMetric(storageUpDesc, prometheus.GaugeValue, up)
}

// advertised is the host:port rcsd puts in Service-Route: sip.advertise,
// else the first listener unless it is a wildcard address, else the domain.
func advertised(cfg *config.Config, bound []rsip.Listener) string {
	if cfg.SIP.Advertise != "" {
		return cfg.SIP.Advertise
	}
	for _, l := range bound {
		host, _, err := net.SplitHostPort(l.Addr)
		if err == nil && !net.ParseIP(host).IsUnspecified() {
			return l.Addr
		}
	}
	return cfg.Domain
}

func serve(ctx context.Context, cfg config.Config, logOut io.Writer) error {
	log, err := newLogger(cfg.Log, logOut)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	// sipgo logs some connection events through its package default
	// logger; route it into zap too (the process has one sipgo stack).
	siplib.SetDefaultLogger(slog.New(zapslog.NewHandler(log.Named("sipgo").Core())))

	store, err := backends.Open(ctx, cfg.Storage)
	if err != nil {
		return fmt.Errorf("storage %s: %w", backends.Redact(cfg.Storage), err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("storage close", zap.Error(err))
		}
	}()

	metricsRegistry := prometheus.NewRegistry()
	metricsRegistry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metricsRegistry.MustRegister(storageCollector{store})

	hosts := []string{"localhost", "127.0.0.1", "::1", cfg.Domain}
	for _, l := range cfg.SIP.Listen {
		if _, addr, err := config.ParseListen(l); err == nil {
			if h, _, err := net.SplitHostPort(addr); err == nil {
				hosts = append(hosts, h)
			}
		}
	}
	if cfg.SIP.Advertise != "" {
		h, _, err := net.SplitHostPort(cfg.SIP.Advertise)
		if err != nil {
			h = cfg.SIP.Advertise
		}
		hosts = append(hosts, h)
	}
	tlsCfg, created, err := rsip.LoadOrCreateCertificate(cfg.SIP.TLS.CertFile, cfg.SIP.TLS.KeyFile, dataDir(cfg.Storage), hosts)
	if err != nil {
		return err
	}
	if created {
		log.Info("generated a self-signed TLS certificate", zap.String("dir", dataDir(cfg.Storage)))
	}

	var trust *ims.Trust
	var route *ims.Route
	if cfg.Mode == config.ModeIMSAS {
		var peers *ims.PeerNames
		if hasNames(cfg.IMS.TrustedPeers) {
			roots, err := loadCA(cfg.IMS.TLSCAFile)
			if err != nil {
				return err
			}
			peers = ims.NewPeerNames()
			tlsCfg = peers.TLSConfig(tlsCfg, roots)
		}
		if trust, err = ims.NewTrust(cfg.IMS.TrustedPeers, peers, log.Named("ims")); err != nil {
			return err
		}
		r, err := ims.ParseRoute(cfg.IMS.SCSCF)
		if err != nil {
			return err
		}
		route = &r
	}

	optionTags := []string{"path", pager.RequireRecipientList}
	secAgreeOn := cfg.Mode == config.ModeStandalone && len(cfg.Auth.SecAgree.Mechanisms) > 0
	if secAgreeOn {
		optionTags = append(optionTags, secagree.OptionTag)
	}
	router := rsip.NewRouter(cfg.SIP.ServerHeader, optionTags, log.Named("sip"), metricsRegistry)
	if trust != nil {
		router.Gate(trust.Gate)
	} else {
		router.Gate(ims.StripAsserted(log.Named("sip")))
	}
	server, err := rsip.NewServer(rsip.Config{
		Listen: cfg.SIP.Listen, MaxMessageSize: cfg.SIP.MaxMessageSize, MaxPending: cfg.SIP.MaxPending, UDPBuffer: cfg.SIP.UDPBuffer, Advertise: cfg.SIP.Advertise, UserAgent: cfg.SIP.ServerHeader, TLS: tlsCfg,
	}, router, log.Named("sip"))
	if err != nil {
		return err
	}

	schemes, err := authSchemes(&cfg, store)
	if err != nil {
		return err
	}
	perSource := registrar.NewLimiter(cfg.Auth.MaxFailuresPerSource, cfg.Auth.FailureWindow, cfg.Auth.BlockFor)
	perIdentity := registrar.NewLimiter(cfg.Auth.MaxFailuresPerIdentity, cfg.Auth.FailureWindow, cfg.Auth.BlockFor)
	metrics := registrar.NewMetrics(metricsRegistry, func() float64 {
		c, _ := store.CountBindings(context.Background())
		return float64(c)
	})
	regOpts := registrar.Options{
		Domain: cfg.Domain, Realm: cfg.RealmOrDomain(),
		MinExpires: cfg.Reg.MinExpires, MaxExpires: cfg.Reg.MaxExpires, DefaultExpires: cfg.Reg.DefaultExpires,
		MaxContacts: cfg.Reg.MaxContacts, PathRequiresSupport: cfg.Reg.PathRequiresSupport, Node: cfg.Node.ID,
	}
	var tlsPort atomic.Int32
	if secAgreeOn {
		mechs := make([]string, len(cfg.Auth.SecAgree.Mechanisms))
		for i, m := range cfg.Auth.SecAgree.Mechanisms {
			mechs[i] = strings.ToLower(m)
		}
		regOpts.SecAgree = &secagree.Server{Mechanisms: mechs, Port: func() int { return int(tlsPort.Load()) }, Secret: []byte(cfg.Auth.NonceSecret)}
	}
	registrarHandler := registrar.New(regOpts, store, schemes, perSource, perIdentity, log.Named("registrar"), metrics)
	if cfg.Mode == config.ModeIMSAS {
		// The S-CSCF authenticated the handset; rcsd learns the
		// registration from its third-party REGISTER.
		router.Handle("REGISTER", registrarHandler.ServeThirdParty)
	} else {
		router.Handle("REGISTER", registrarHandler.ServeSIP)
	}
	var regEvents *regevent.Notifier
	if cfg.Mode == config.ModeStandalone {
		// Behind an S-CSCF handsets subscribe to the S-CSCF's reg event,
		// not to an application server's.
		regEvents = regevent.New(regevent.Options{}, store, server, log.Named("regevent"))
		router.Handle("SUBSCRIBE", regEvents.ServeSIP)
		registrarHandler.Observe(regEvents)
	}
	var changes *cluster.Changes
	if bus, ok := store.(storage.Broadcaster); ok && regEvents != nil {
		// A shared store: subscriptions taken by this node hear of
		// registrations made on the others.
		changes = cluster.NewChanges(cfg.Node.ID, bus, log.Named("cluster"), regEvents)
		registrarHandler.Observe(changes)
	}
	nodes := cluster.New(cfg.Node.ID, cfg.Node.Address, cfg.Node.TTL, store, log.Named("cluster"), metricsRegistry)
	clusterKey := []byte(cfg.Auth.NonceSecret)
	if len(clusterKey) == 0 {
		// Nodes sharing a store must share auth.nonce_secret (nonces and
		// flow tokens); a lone node makes its own.
		clusterKey = make([]byte, 32)
		_, _ = rand.Read(clusterKey)
	}
	server.SetCluster(rsip.ClusterConfig{Self: cfg.Node.ID, Key: clusterKey, Nodes: nodes})
	pagerMetrics := pager.NewMetrics(metricsRegistry, func() float64 {
		n, _ := store.CountMessages(context.Background())
		return float64(n)
	})
	pagerHandler := pager.New(pager.Options{
		Route: route, UserAgent: cfg.SIP.ServerHeader, Domain: cfg.Domain,
		DeliveryTimeout: cfg.Pager.DeliveryTimeout, Lifetime: cfg.Pager.Lifetime,
		RetryMin: cfg.Pager.RetryMin, RetryMax: cfg.Pager.RetryMax, SweepInterval: cfg.Pager.SweepInterval,
		RescanInterval: cfg.Pager.RescanInterval,
		MaxRecipients:  cfg.Pager.MaxRecipients, SpamNumber: cfg.Pager.SpamNumber, ReportLifetime: cfg.Pager.ReportLifetime,
		Capabilities: cfg.Pager.Capabilities,
		PADomain:     cfg.PA.Domain, PAWebhook: cfg.PA.Webhook, PAToken: cfg.PA.Token, PAPagerLimit: cfg.PA.PagerLimit,
		Node: cfg.Node.ID, Holds: nodes.Holds, LeaseTTL: cfg.Node.TTL,
	}, store, server, log.Named("pager"), pagerMetrics)
	router.HandleTx("MESSAGE", pagerHandler.ServeSIP)
	registrarHandler.Observe(pagerHandler)
	// Transactional: an OPTIONS to a user waits on the user's handsets.
	router.HandleTx("OPTIONS", optionsHandler(router, pagerHandler.ServeOPTIONS))

	httpSrv := admin.New(store, metricsRegistry, cfg.HTTP.AdminToken, cfg.RealmOrDomain(), cfg.Domain, cfg.HTTP.Pprof, log.Named("http"))
	httpSrv.Handle("GET /admin/spam-reports", pagerHandler.ServeSpamReports)
	httpSrv.Handle("DELETE /admin/spam-reports/{id}", pagerHandler.DeleteSpamReport)
	if cfg.PA.Domain != "" {
		// The platform authenticates with public_accounts.token, not the
		// admin rule: it is a remote peer.
		httpSrv.HandleOpen("POST /pa/messages", pagerHandler.ServePADownlink)
	}
	if cfg.HTTP.Listen != "" {
		if err := httpSrv.Start(cfg.HTTP.Listen); err != nil {
			return err
		}
	}
	if err := server.Start(ctx); err != nil {
		_ = httpSrv.Shutdown(context.Background())
		return err
	}
	// Service-Route needs the bound address; set it before going ready.
	registrarHandler.SetServiceRoute("<sip:orig@" + advertised(&cfg, server.Listeners()) + ";lr>")
	if _, p, err := net.SplitHostPort(server.Addr("tls")); err == nil {
		n, _ := strconv.Atoi(p)
		tlsPort.Store(int32(n))
	}
	nodeAddr := cfg.Node.Address
	if nodeAddr == "" {
		nodeAddr = server.NodeAddress()
	}
	if nodeAddr == "" {
		nodeAddr = advertised(&cfg, server.Listeners())
		log.Warn("no tcp:// listener: other nodes cannot hand this one requests for its handsets (set node.address to a TCP listener)")
	}
	nodes.SetAddress(nodeAddr)
	if err := nodes.Beat(ctx); err != nil {
		log.Warn("first node heartbeat failed", zap.Error(err))
	}
	if len(cfg.Auth.NonceSecret) == 0 && len(nodes.Alive()) > 1 {
		log.Warn("other nodes share this store but auth.nonce_secret is not set: they cannot forward requests to each other")
	}
	regEventsCtx, stopRegEvents := context.WithCancel(context.Background())
	regEventsDone := make(chan struct{})
	if regEvents != nil {
		regEvents.SetContact("sip:" + advertised(&cfg, server.Listeners()))
	}
	pagerHandler.SetContact(advertised(&cfg, server.Listeners()))
	go func() {
		defer close(regEventsDone)
		if regEvents != nil {
			regEvents.Run(regEventsCtx)
		}
	}()
	clusterDone := make(chan struct{})
	go func() {
		defer close(clusterDone)
		changesDone := make(chan struct{})
		go func() {
			defer close(changesDone)
			if changes != nil {
				changes.Run(regEventsCtx)
			}
		}()
		nodes.Run(regEventsCtx)
		<-changesDone
	}()
	pagerDone := make(chan struct{})
	go func() {
		defer close(pagerDone)
		pagerHandler.Run(regEventsCtx)
	}()
	httpSrv.SetReady(true)
	log.Info("rcsd ready", zap.String("version", config.Version), zap.String("domain", cfg.Domain),
		zap.String("storage", backends.Redact(cfg.Storage)), zap.String("node", cfg.Node.ID))

	purgeDone := make(chan struct{})
	purgeCtx, stopPurge := context.WithCancel(context.Background())
	go func() {
		defer close(purgeDone)
		purge(purgeCtx, store, registrarHandler, cfg.Reg.PurgeInterval, log, perSource, perIdentity)
	}()

	<-ctx.Done()
	log.Info("shutting down")
	httpSrv.SetReady(false)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownTimeout)
	defer cancel()
	var errs []error
	// NOTIFYs and deliveries in flight are cancelled first: they wait on
	// handsets. A delivery cut short keeps its message stored.
	stopRegEvents()
	<-regEventsDone
	<-pagerDone
	<-clusterDone
	pagerHandler.Close()
	if err := server.Shutdown(sctx); err != nil {
		errs = append(errs, err)
	}
	stopPurge()
	<-purgeDone
	if err := httpSrv.Shutdown(sctx); err != nil {
		errs = append(errs, err)
	}
	log.Info("stopped")
	return errors.Join(errs...)
}

// purge removes expired bindings on a timer (RFC 3261 §10.3: a binding
// past its expiry is gone even if nobody looks it up).
func purge(ctx context.Context, store storage.Store, reg *registrar.Registrar, every time.Duration, log *zap.Logger, limiters ...*registrar.Limiter) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			gone, err := store.ExpireBindings(ctx, now, 10000)
			if err != nil {
				log.Warn("expiring bindings failed", zap.Error(err))
			}
			for _, b := range gone {
				log.Debug("binding expired", zap.String("aor", b.AOR), zap.String("contact", b.Contact))
			}
			if len(gone) > 0 {
				reg.Expired(gone, now)
			}
			for _, l := range limiters {
				l.Sweep(now)
			}
		}
	}
}

// authSchemes builds the configured schemes, in auth.schemes order. One
// nonce source serves both, so a nonce of either kind is checked the same way.
func authSchemes(cfg *config.Config, store storage.Store) ([]registrar.Scheme, error) {
	nonces := registrar.NewNonces(cfg.Auth.NonceSecret, cfg.Auth.NonceLifetime)
	var out []registrar.Scheme
	for _, name := range cfg.Auth.Schemes {
		switch name {
		case "digest":
			algs := make([]digest.Algorithm, 0, len(cfg.Auth.DigestAlgorithms))
			for _, a := range cfg.Auth.DigestAlgorithms {
				alg, _ := digest.ParseAlgorithm(a)
				algs = append(algs, alg)
			}
			out = append(out, &registrar.DigestScheme{
				Realm: cfg.RealmOrDomain(), Algorithms: algs, AllowNoQop: cfg.Auth.AllowNoQop, Nonces: nonces,
			})
		case "aka":
			alg, _ := registrar.ParseAKAAlgorithm(cfg.Auth.AKA.Algorithm)
			amf, err := hex.DecodeString(cfg.Auth.AKA.AMF)
			if err != nil {
				return nil, fmt.Errorf("auth.aka.amf: %w", err)
			}
			out = append(out, &registrar.AKAScheme{
				Realm: cfg.RealmOrDomain(), Algorithm: alg, SendIKCK: cfg.Auth.AKA.SendIKCK, AMF: amf, Nonces: nonces, Store: store,
			})
		}
	}
	return out, nil
}

func hasNames(peers []string) bool {
	for _, p := range peers {
		if pp, err := config.ParsePeer(p); err == nil && pp.Name != "" {
			return true
		}
	}
	return false
}

// loadCA reads ims.tls_ca_file; "" means the system pool.
func loadCA(path string) (*x509.CertPool, error) {
	if path == "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("system CA pool: %w", err)
		}
		return pool, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ims.tls_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ims.tls_ca_file %s: no PEM certificate in it", path)
	}
	return pool, nil
}
