// Package config is rcsd's one configuration tree: defaults, a YAML file,
// RCSD_* environment variables and --dotted.key flags, applied in that order,
// then validated with every problem reported at once.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration. Field tags give the dotted key
// (yaml path) used by files, flags and environment variables.
type Config struct {
	// Mode is standalone (rcsd is the handsets' registrar and authenticates
	// them) or ims-as (rcsd is an application server behind an operator's
	// S-CSCF, trusting only the core's requests).
	Mode    string `yaml:"mode"`
	Domain  string `yaml:"domain"`
	Storage string `yaml:"storage"`
	Node    Node   `yaml:"node"`
	SIP     SIP    `yaml:"sip"`
	HTTP    HTTP   `yaml:"http"`
	Log     Log    `yaml:"log"`
	Auth    Auth   `yaml:"auth"`
	Reg     Reg    `yaml:"registrar"`
	IMS     IMS    `yaml:"ims"`
	Pager   Pager  `yaml:"pager"`
	PA      PA     `yaml:"public_accounts"`
	Limits  Limits `yaml:"limits"`
}

// PA connects rcsd to a public account platform (seed 001 §5.1.3.7).
type PA struct {
	// Domain is the PSI domain of the accounts (as1.pa.rcs.chinamobile.com
	// in the spec); empty turns public accounts off.
	Domain string `yaml:"domain"`
	// Webhook is where users' messages to accounts are POSTed (JSON).
	Webhook string `yaml:"webhook"`
	// Token is the bearer token of both directions: rcsd sends it to the
	// webhook and requires it on POST /pa/messages.
	Token string `yaml:"token"`
	// PagerLimit is the largest account message sent in pager mode; larger
	// ones need large-message mode (MSRP, a later release) and get 413.
	PagerLimit int `yaml:"pager_limit"`
}

// Pager configures pager-mode messaging and store-and-forward.
type Pager struct {
	// DeliveryTimeout bounds one delivery attempt; after it the message
	// is stored (202) and retried.
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	// Lifetime is how long a stored message waits for its recipient
	// before it is dropped (with a negative-delivery notification to its
	// sender when one was asked for).
	Lifetime time.Duration `yaml:"lifetime"`
	// RetryMin and RetryMax bound the back-off between attempts to a
	// registered recipient that does not take a stored message.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// SweepInterval is how often expiry and due retries are looked at.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// RescanInterval is how often every recipient with stored messages
	// is read, for a retry whose schedule was lost (pager.Options).
	RescanInterval time.Duration `yaml:"rescan_interval"`
	// MaxRecipients bounds a recipient list (one-to-many send).
	MaxRecipients int `yaml:"max_recipients"`
	// SpamNumber receives spam reports (seed 001 §5.1.3.8); empty turns
	// them off. ReportLifetime is how long a report is kept.
	SpamNumber     string        `yaml:"spam_number"`
	ReportLifetime time.Duration `yaml:"report_lifetime"`
	// Capabilities are the feature tags stated for an offline RCS user
	// asked with OPTIONS (seed 001 §5.1.3.6.2).
	Capabilities []string `yaml:"capabilities"`
}

// Modes.
const (
	ModeStandalone = "standalone"
	ModeIMSAS      = "ims-as"
)

// IMS configures the ims-as mode.
type IMS struct {
	// TrustedPeers are the IMS core's addresses (CIDRs or single IPs) and,
	// over TLS, the DNS names its certificates carry (verified against
	// TLSCAFile). Requests from anywhere else get 403.
	TrustedPeers []string `yaml:"trusted_peers"`
	// TLSCAFile verifies the certificates TLS peers present, for the names
	// in TrustedPeers. Empty: the system pool.
	TLSCAFile string `yaml:"tls_ca_file"`
	// SCSCF is the route (a SIP URI) requests rcsd originates toward users
	// take: Request-URI = the user's public identity, Route = this.
	SCSCF string `yaml:"scscf"`
}

// SecAgree configures RFC 3329 security agreement (standalone mode).
type SecAgree struct {
	// Mechanisms offered in Security-Server, in preference order. Only
	// tls-3gpp is implemented; empty turns sec-agree off (Require:
	// sec-agree then gets 420).
	Mechanisms []string `yaml:"mechanisms"`
}

// AKA configures IMS AKA (RFC 3310).
type AKA struct {
	// Algorithm is the challenge's token: AKAv1-SHA256 (the spec) or
	// AKAv1-MD5 (RFC 3310). Answers with either are accepted.
	Algorithm string `yaml:"algorithm"`
	// SendIKCK adds ik/ck to the challenge, for a P-CSCF in front of rcsd
	// that sets up IPsec with them (TS 33.203); never toward handsets.
	SendIKCK bool `yaml:"send_ik_ck"`
	// AMF (4 hex digits) of vectors for subscribers provisioned without one.
	AMF string `yaml:"amf"`
}

// Node identifies this process among several sharing one store.
type Node struct {
	ID string `yaml:"id"`
	// Address is host:port where the other nodes reach this node's SIP TCP
	// listener to hand it requests for the handsets connected here; empty:
	// the first tcp:// listener (with sip.advertise's host when set).
	Address string `yaml:"address"`
	// TTL is how long a node counts as alive after its last heartbeat in
	// the shared store; heartbeats go every TTL/3. Bindings held by a node
	// not alive are unreachable (messages for them are stored).
	TTL time.Duration `yaml:"ttl"`
}

// SIP is the signalling side.
type SIP struct {
	Listen    []string `yaml:"listen"`
	Advertise string   `yaml:"advertise"`
	// MaxMessageSize bounds a whole SIP message; larger ones get 513.
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxPending bounds the MESSAGE/OPTIONS requests over UDP handled at
	// once (each may wait on a recipient); more get 503 + Retry-After.
	MaxPending int `yaml:"max_pending"`
	// UDPBuffer is the receive and send buffer of UDP listeners, so a
	// burst (or a GC pause) does not overflow the socket. The kernel caps
	// it at net.core.rmem_max / wmem_max.
	UDPBuffer    int    `yaml:"udp_buffer"`
	ServerHeader string `yaml:"server_header"`
	TLS          TLS    `yaml:"tls"`
}

// TLS holds the certificate for tls:// and wss:// listeners. Empty paths
// mean a self-signed certificate generated on first start.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// HTTP is the operator endpoint: /metrics, /healthz, /readyz, admin API.
type HTTP struct {
	Listen string `yaml:"listen"`
	// AdminToken, when set, is required as a Bearer token by the admin API
	// and lets it be reached from non-loopback addresses.
	AdminToken string `yaml:"admin_token"`
	// Pprof serves Go's profiler under /debug/pprof/ (same access rule
	// as the admin API). Off by default.
	Pprof bool `yaml:"pprof"`
}

// Log configures zap.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Auth configures authentication.
type Auth struct {
	Realm            string        `yaml:"realm"`
	Schemes          []string      `yaml:"schemes"`
	AKA              AKA           `yaml:"aka"`
	SecAgree         SecAgree      `yaml:"sec_agree"`
	DigestAlgorithms []string      `yaml:"digest_algorithms"`
	AllowNoQop       bool          `yaml:"allow_no_qop"`
	NonceLifetime    time.Duration `yaml:"nonce_lifetime"`
	// NonceSecret keys the nonce MAC; nodes sharing a store share it so a
	// nonce issued by one verifies on another. Empty: random per process.
	NonceSecret string `yaml:"nonce_secret"`
	// FailureWindow/MaxFailuresPerSource/MaxFailuresPerIdentity bound
	// password guessing; BlockFor is how long a source or identity is refused.
	FailureWindow          time.Duration `yaml:"failure_window"`
	MaxFailuresPerSource   int           `yaml:"max_failures_per_source"`
	MaxFailuresPerIdentity int           `yaml:"max_failures_per_identity"`
	BlockFor               time.Duration `yaml:"block_for"`
}

// Reg configures the registrar.
type Reg struct {
	MinExpires     int           `yaml:"min_expires"`
	MaxExpires     int           `yaml:"max_expires"`
	DefaultExpires int           `yaml:"default_expires"`
	MaxContacts    int           `yaml:"max_contacts"`
	PurgeInterval  time.Duration `yaml:"purge_interval"`
	// PathRequiresSupport refuses Path without Supported: path (421).
	PathRequiresSupport bool `yaml:"path_requires_support"`
}

// Limits bounds resource use.
type Limits struct {
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Default returns the configuration `make run` uses.
func Default() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "rcsd"
	}
	return Config{
		Mode:    "standalone",
		Domain:  "rcs.local",
		Storage: "file:./data",
		Node:    Node{ID: host, TTL: 10 * time.Second},
		SIP: SIP{
			Listen:         []string{"udp://127.0.0.1:5060", "tcp://127.0.0.1:5060", "tls://127.0.0.1:5061"},
			MaxMessageSize: 65535,
			MaxPending:     8192,
			UDPBuffer:      4 << 20,
			ServerHeader:   "IM-serv/OMA1.0 rcsd/" + Version,
		},
		HTTP: HTTP{Listen: "127.0.0.1:9090"},
		Log:  Log{Level: "info", Format: "console"},
		Auth: Auth{
			Schemes:                []string{"digest", "aka"},
			AKA:                    AKA{Algorithm: "AKAv1-SHA256", AMF: "8000"},
			SecAgree:               SecAgree{Mechanisms: []string{"tls-3gpp"}},
			DigestAlgorithms:       []string{"SHA-256", "MD5"},
			AllowNoQop:             true,
			NonceLifetime:          300 * time.Second,
			FailureWindow:          60 * time.Second,
			MaxFailuresPerSource:   20,
			MaxFailuresPerIdentity: 10,
			BlockFor:               60 * time.Second,
		},
		Reg: Reg{
			MinExpires:          60,
			MaxExpires:          86400,
			DefaultExpires:      3600,
			MaxContacts:         16,
			PurgeInterval:       10 * time.Second,
			PathRequiresSupport: true,
		},
		IMS: IMS{TrustedPeers: []string{}},
		PA:  PA{PagerLimit: 900},
		Pager: Pager{DeliveryTimeout: 8 * time.Second, Lifetime: 7 * 24 * time.Hour, RetryMin: 30 * time.Second,
			RetryMax: time.Hour, SweepInterval: 10 * time.Second, RescanInterval: 5 * time.Minute, MaxRecipients: 100,
			SpamNumber: "+861008699999", ReportLifetime: 90 * 24 * time.Hour,
			Capabilities: []string{
				`+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg,urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.largemsg,urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.filetransfer,urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session"`,
				`+g.3gpp.iari-ref="urn%3Aurn-7%3A3gpp-application.ims.iari.rcs.mnc000.mcc460.publicmsg,urn%3Aurn-7%3A3gpp-application.ims.iari.rcs.mnc000.mcc460.gpmanage"`,
			}},
		Limits: Limits{ShutdownTimeout: 10 * time.Second},
	}
}

// Version is the release; set by the linker (-X rcsd/config.Version=…).
var Version = "0.1.0-dev"

// Load builds the configuration: defaults, then the YAML file (if path is
// not empty), then environment variables, then flags (dotted key → value).
func Load(path string, environ []string, flags map[string]string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	var problems []string
	keys := Keys()
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "RCSD_") {
			continue
		}
		key := envToKey(name, keys)
		if key == "" {
			problems = append(problems, fmt.Sprintf("%s: unknown setting", name))
			continue
		}
		if err := Set(&cfg, key, val); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
		}
	}
	flagKeys := make([]string, 0, len(flags))
	for k := range flags {
		flagKeys = append(flagKeys, k)
	}
	sort.Strings(flagKeys)
	for _, k := range flagKeys {
		if err := Set(&cfg, k, flags[k]); err != nil {
			problems = append(problems, fmt.Sprintf("--%s: %v", k, err))
		}
	}
	if cfg.Node.ID == "" {
		cfg.Node.ID = Default().Node.ID
	}
	// "VERSION" in the server header stands for this release.
	cfg.SIP.ServerHeader = strings.ReplaceAll(cfg.SIP.ServerHeader, "VERSION", Version)
	problems = append(problems, cfg.Validate()...)
	if len(problems) > 0 {
		return cfg, fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(problems, "\n  "))
	}
	return cfg, nil
}

// ErrInvalid wraps every configuration problem.
var ErrInvalid = errors.New("invalid configuration")

// envToKey maps RCSD_SIP_LISTEN to sip.listen. Underscores are ambiguous
// (sip.max_message_size), so match against the known keys.
func envToKey(name string, keys []string) string {
	want := strings.ToLower(strings.TrimPrefix(name, "RCSD_"))
	for _, k := range keys {
		if strings.ReplaceAll(k, ".", "_") == want {
			return k
		}
	}
	return ""
}

// Keys lists every settable dotted key.
func Keys() []string {
	var out []string
	walk(reflect.ValueOf(&Config{}).Elem(), "", func(key string, _ reflect.Value) { out = append(out, key) })
	sort.Strings(out)
	return out
}

func walk(v reflect.Value, prefix string, fn func(key string, field reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Duration(0)) {
			walk(fv, key, fn)
			continue
		}
		fn(key, fv)
	}
}

// IsKey reports whether key names a setting.
func IsKey(key string) bool {
	for _, k := range Keys() {
		if k == key {
			return true
		}
	}
	return false
}

// Set assigns one setting from its string form. Lists are comma-separated
// (or a YAML flow list such as [a, b]).
func Set(cfg *Config, key, val string) error {
	var target reflect.Value
	walk(reflect.ValueOf(cfg).Elem(), "", func(k string, fv reflect.Value) {
		if k == key {
			target = fv
		}
	})
	if !target.IsValid() {
		return fmt.Errorf("unknown setting %q", key)
	}
	switch target.Interface().(type) {
	case string:
		target.SetString(val)
	case bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", val)
		}
		target.SetBool(b)
	case int:
		n, err := strconv.Atoi(val)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", val)
		}
		target.SetInt(int64(n))
	case time.Duration:
		d, err := time.ParseDuration(val)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s, got %q", val)
		}
		target.SetInt(int64(d))
	case []string:
		s := strings.TrimSpace(val)
		s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		var list []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		target.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported type for %q", key)
	}
	return nil
}

// Validate returns every problem, each prefixed with its key.
func (c *Config) Validate() []string {
	var p []string
	add := func(key, format string, args ...any) { p = append(p, key+": "+fmt.Sprintf(format, args...)) }
	if c.Node.TTL < 3*time.Second {
		add("node.ttl", "must be at least 3s (heartbeats go every ttl/3), got %s", c.Node.TTL)
	}
	if c.Node.Address != "" {
		if _, _, err := net.SplitHostPort(c.Node.Address); err != nil {
			add("node.address", "want host:port: %v", err)
		}
	}
	switch c.Mode {
	case ModeStandalone:
	case ModeIMSAS:
		if len(c.IMS.TrustedPeers) == 0 {
			add("ims.trusted_peers", "ims-as mode needs the IMS core's addresses")
		}
		if c.IMS.SCSCF == "" {
			add("ims.scscf", "ims-as mode needs the S-CSCF route (sip:scscf.example.net;lr)")
		}
	default:
		add("mode", "%q is not supported (standalone, ims-as)", c.Mode)
	}
	for _, p := range c.IMS.TrustedPeers {
		if _, err := ParsePeer(p); err != nil {
			add("ims.trusted_peers", "%v", err)
		}
	}
	if c.IMS.SCSCF != "" && !strings.HasPrefix(c.IMS.SCSCF, "sip:") && !strings.HasPrefix(c.IMS.SCSCF, "sips:") {
		add("ims.scscf", "want a SIP URI such as sip:scscf.example.net:5060;lr, got %q", c.IMS.SCSCF)
	}
	if c.Domain == "" || strings.ContainsAny(c.Domain, " @:;<>") {
		add("domain", "want a host name such as rcs.local, got %q", c.Domain)
	}
	if !strings.HasPrefix(c.Storage, "file:") && c.Storage != "memory:" &&
		!strings.HasPrefix(c.Storage, "redis://") && !strings.HasPrefix(c.Storage, "rediss://") {
		shown := c.Storage // without what could be a password
		if i := strings.LastIndex(shown, "@"); i >= 0 {
			shown = "…@" + shown[i+1:]
		}
		add("storage", "want file:PATH, memory: or redis://host:port/db, got %q", shown)
	}
	if len(c.SIP.Listen) == 0 {
		add("sip.listen", "at least one listener is needed")
	}
	for _, l := range c.SIP.Listen {
		if _, _, err := ParseListen(l); err != nil {
			add("sip.listen", "%v", err)
		}
	}
	if c.SIP.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.SIP.Advertise); err != nil && strings.ContainsAny(c.SIP.Advertise, "/@;") {
			add("sip.advertise", "want host or host:port, got %q", c.SIP.Advertise)
		}
	}
	if c.SIP.MaxMessageSize < 1024 || c.SIP.MaxMessageSize > 1<<20 {
		add("sip.max_message_size", "want 1024..1048576, got %d", c.SIP.MaxMessageSize)
	}
	if c.SIP.MaxPending < 0 {
		add("sip.max_pending", "want 0 (no bound) or more, got %d", c.SIP.MaxPending)
	}
	if c.SIP.UDPBuffer < 0 || c.SIP.UDPBuffer > 1<<30 {
		add("sip.udp_buffer", "want 0..1073741824 bytes (0: the system default), got %d", c.SIP.UDPBuffer)
	}
	if (c.SIP.TLS.CertFile == "") != (c.SIP.TLS.KeyFile == "") {
		add("sip.tls", "cert_file and key_file go together")
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			add("http.listen", "want host:port, got %q", c.HTTP.Listen)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		add("log.format", "want console or json, got %q", c.Log.Format)
	}
	if len(c.Auth.Schemes) == 0 {
		add("auth.schemes", "at least one scheme is needed")
	}
	for _, s := range c.Auth.Schemes {
		if s != "digest" && s != "aka" {
			add("auth.schemes", "%q is not supported (digest, aka)", s)
		}
	}
	switch strings.ToUpper(c.Auth.AKA.Algorithm) {
	case "AKAV1-SHA256", "AKAV1-SHA-256", "AKAV1-MD5":
	default:
		add("auth.aka.algorithm", "want AKAv1-SHA256 or AKAv1-MD5, got %q", c.Auth.AKA.Algorithm)
	}
	for _, m := range c.Auth.SecAgree.Mechanisms {
		switch strings.ToLower(m) {
		case "tls-3gpp":
		case "ipsec-3gpp", "ipsec-ike", "ipsec-man", "tls", "digest":
			add("auth.sec_agree.mechanisms", "%q is not implemented (rcsd protects handsets with TLS: tls-3gpp)", m)
		default:
			add("auth.sec_agree.mechanisms", "%q is not a known mechanism (tls-3gpp)", m)
		}
	}
	if b, err := hex.DecodeString(c.Auth.AKA.AMF); err != nil || len(b) != 2 {
		add("auth.aka.amf", "want 4 hex digits, got %q", c.Auth.AKA.AMF)
	}
	if len(c.Auth.DigestAlgorithms) == 0 {
		add("auth.digest_algorithms", "at least one algorithm is needed")
	}
	for _, a := range c.Auth.DigestAlgorithms {
		switch strings.ToUpper(a) {
		case "MD5", "SHA-256", "SHA-512-256":
		default:
			add("auth.digest_algorithms", "%q is not supported (MD5, SHA-256, SHA-512-256)", a)
		}
	}
	if c.Auth.NonceLifetime < 10*time.Second {
		add("auth.nonce_lifetime", "want at least 10s, got %s", c.Auth.NonceLifetime)
	}
	if c.Pager.DeliveryTimeout < 100*time.Millisecond || c.Pager.DeliveryTimeout > time.Minute {
		add("pager.delivery_timeout", "want 100ms..1m, got %s", c.Pager.DeliveryTimeout)
	}
	if c.Pager.Lifetime < time.Minute {
		add("pager.lifetime", "want at least 1m, got %s", c.Pager.Lifetime)
	}
	if c.Pager.RetryMin < time.Second || c.Pager.RetryMax < c.Pager.RetryMin {
		add("pager.retry_min", "want 1s <= retry_min <= retry_max, got %s and %s", c.Pager.RetryMin, c.Pager.RetryMax)
	}
	if c.Pager.SweepInterval < 100*time.Millisecond {
		add("pager.sweep_interval", "want at least 100ms, got %s", c.Pager.SweepInterval)
	}
	if c.Pager.RescanInterval < 100*time.Millisecond {
		// Shorter than sweep_interval means every sweep.
		add("pager.rescan_interval", "want at least 100ms, got %s", c.Pager.RescanInterval)
	}
	if c.PA.Domain != "" {
		if c.PA.Token == "" {
			add("public_accounts.token", "public accounts need a token (the platform's bearer token)")
		}
		if u, err := url.Parse(c.PA.Webhook); c.PA.Webhook != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			add("public_accounts.webhook", "want an http(s) URL, got %q", c.PA.Webhook)
		}
	}
	if c.PA.PagerLimit < 100 || c.PA.PagerLimit > 60000 {
		add("public_accounts.pager_limit", "want 100..60000 bytes, got %d", c.PA.PagerLimit)
	}
	if c.Pager.MaxRecipients < 1 || c.Pager.MaxRecipients > 10000 {
		add("pager.max_recipients", "want 1..10000, got %d", c.Pager.MaxRecipients)
	}
	if c.Reg.MinExpires < 1 || c.Reg.MaxExpires < c.Reg.MinExpires {
		add("registrar", "want 1 <= min_expires <= max_expires, got %d and %d", c.Reg.MinExpires, c.Reg.MaxExpires)
	}
	if c.Reg.DefaultExpires < c.Reg.MinExpires || c.Reg.DefaultExpires > c.Reg.MaxExpires {
		add("registrar.default_expires", "want between min_expires and max_expires, got %d", c.Reg.DefaultExpires)
	}
	if c.Reg.MaxContacts < 1 {
		add("registrar.max_contacts", "want at least 1, got %d", c.Reg.MaxContacts)
	}
	if c.Reg.PurgeInterval < time.Second {
		add("registrar.purge_interval", "want at least 1s, got %s", c.Reg.PurgeInterval)
	}
	return p
}

// RealmOrDomain is the digest realm: auth.realm, else the domain.
func (c *Config) RealmOrDomain() string {
	if c.Auth.Realm != "" {
		return c.Auth.Realm
	}
	return c.Domain
}

// ParseListen splits a listener such as udp://127.0.0.1:5060 into its
// transport and address.
func ParseListen(s string) (transport, addr string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", "", fmt.Errorf("want transport://host:port, got %q", s)
	}
	switch u.Scheme {
	case "udp", "tcp", "tls", "ws", "wss":
	default:
		return "", "", fmt.Errorf("transport %q in %q is not one of udp, tcp, tls, ws, wss", u.Scheme, s)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", "", fmt.Errorf("want host:port in %q", s)
	}
	return u.Scheme, u.Host, nil
}

// Peer is one ims.trusted_peers entry: a network, or a TLS peer name.
type Peer struct {
	Net  *net.IPNet
	Name string
}

// ParsePeer parses a CIDR, an IP address or a DNS name.
func ParsePeer(s string) (Peer, error) {
	if _, n, err := net.ParseCIDR(s); err == nil {
		return Peer{Net: n}, nil
	}
	if ip := net.ParseIP(s); ip != nil {
		bits := 8 * len(ip.To16())
		if ip.To4() != nil {
			ip, bits = ip.To4(), 32
		}
		return Peer{Net: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}}, nil
	}
	if s == "" || strings.ContainsAny(s, " /:@;<>") {
		return Peer{}, fmt.Errorf("want a CIDR, an IP address or a TLS peer name, got %q", s)
	}
	return Peer{Name: strings.ToLower(s)}, nil
}
