// Package redis is the networked storage backend: subscribers, bindings and
// stored messages kept in Redis, so that several rcsd nodes share them. It
// talks to one Redis server, a Sentinel-managed primary, or a Redis Cluster
// through go-redis's UniversalClient (see Options).
//
// # Key layout
//
// Every key starts with Options.Prefix ("rcsd:" by default). Keys are built
// for Cluster: the part in braces is the hash tag, so keys sharing it share
// a slot and can be changed together by one transaction or script.
//
//	{subscribers}:sub:<IMPI>   hash: enc (codec subscriber), sqn (decimal)
//	{subscribers}:impu:<IMPU>  string: the owning IMPI
//	{subscribers}:index        sorted set, score 0, member IMPI (IMPI order)
//	{<AOR>}:bindings           string: codec bindings, expired ones included
//	{<R>}:msg                  hash: message ID -> codec message
//	{<R>}:ids                  sorted set, score 0, member message ID
//	{<R>}:dedup                hash: dedup key -> "<sec> <nsec> <message ID>"
//	{<R>}:dedupexp             sorted set: dedup key, score its expiry (ms)
//	{index}:bindings           sorted set: <AOR> NUL <binding key>, score
//	                           the binding's expiry (Unix ms)
//	{index}:binding-keys       the same members with score 0, to find an
//	                           AOR's members by lexicographic range
//	{index}:msgs               sorted set: <R> NUL <ID> of every stored
//	                           message, score its expiry (Unix ms)
//	{index}:dedup              sorted set: R, score the earliest expiry (ms)
//	                           of its dedup keys
//	{index}:recipients         sorted set, score 0: recipients with messages
//	{index}:retry              sorted set: R, score its retry time (ms)
//	registration-changes       Pub/Sub channel (sharded in Cluster)
//
// <AOR> and <R> (a message recipient) are used as hash tags as they are, or,
// when they contain a brace, as "#" and a hash of them.
//
// All subscribers share one slot. That keeps PutSubscribers, whose IMPU
// index entries would otherwise spread over many slots, one atomic
// transaction in Cluster too, at the price of not sharding subscriber data:
// subscribers are provisioning data (a few hundred bytes each, read on
// every authentication, written rarely), and one primary holds millions of
// them; reads can be spread over replicas. Bindings and messages, which
// change at traffic rates, are sharded by AOR and recipient. The global
// indexes ({index}:…) are single keys in one slot: the listings and sweeps
// that need a global order or count read them.
//
// # Atomicity
//
// On a single server (or a Sentinel primary) every method is atomic: the
// per-user keys and the global indexes change in one MULTI/EXEC or one Lua
// script. UpdateBindings is optimistic: it WATCHes the AOR's key, reads it,
// calls fn, and commits with MULTI/EXEC, calling fn again when another
// writer got in between. PutMessage (dedup check, store, queue, indexes) and
// DeleteMessage are Lua scripts; NextSQN is a Lua script on the subscriber.
//
// In Cluster a transaction or script cannot span slots, so a change of
// bindings or messages is atomic for its user's keys, and the global indexes
// are updated by a second step right after (the subscriber methods stay
// fully atomic: all their keys share a slot). That step converges under
// concurrency: for bindings it rewrites the AOR's index entries from the
// AOR's stored bindings (a script on the index slot), re-reading them until
// they did not change meanwhile, so the last writer leaves the index
// matching the last stored state; message puts and deletes re-check the
// message and the recipient's queue after indexing and undo what a racing
// call made stale. What the second step cannot cover is a crash or a lost
// connection between the two steps: that leaves an index entry without
// its data, which the sweeps drop when its expiry passes (and the counts,
// which are index cardinalities, are right again then), or data without
// an index entry, which no sweep reports and the Redis TTLs below remove.
// The bindings' second step costs a Cluster UpdateBindings three more
// round trips than a single server's.
//
// SubscriberByIMPU reads the IMPU entry and the subscriber it names in one
// script; the subscriber's key is not declared to Redis, which Redis
// accepts because it shares the slot of the declared key.
//
// The scripts use ZADD LT and PEXPIRETIME: Redis 7.0 or later.
//
// # Expiry
//
// ExpireBindings and ExpireMessages are authoritative and take "now" from
// their callers. As a backstop, for when no rcsd node sweeps, every binding
// key gets a PEXPIREAT at its latest binding expiry plus Options.Retention,
// and every recipient's message keys at their latest message expiry plus
// Options.Retention (a TTL only ever moves later), so Redis drops data the
// sweeps missed. Retention (1 hour by default) leaves the sweeps time to
// report expired bindings and messages first.
//
// Times are stored with nanoseconds (the codec encoding) and come back in
// UTC; index scores are milliseconds and only preselect candidates, the
// exact comparison is made on the stored value.
//
// # Durability
//
// A write is acknowledged by Redis once it is in the primary's memory (and
// in its append-only file when it runs with appendonly yes). What that
// survives is Redis's configuration, not rcsd's: a single server must run
// with appendfsync always for an acknowledged message to survive a crash
// (with everysec a crash of its host loses up to about a second of
// writes). Replication is
// asynchronous: a write the primary acknowledged but had not yet sent to a
// replica is lost when Sentinel promotes that replica. Options.WaitReplicas
// closes that window for what acknowledges a message to its sender:
// PutMessage sends WAIT right after its script, in the same round trip,
// and fails (ErrNotReplicated, which the pager answers with 503) unless
// that many replicas have the message. The other writes do not wait:
// a delivered message's deletion lost at a failover delivers it again
// (at-least-once; handsets de-duplicate by imdn.Message-ID), and a lost
// registration or de-registration makes a message wait in the store until
// the handset's next REGISTER, or its delivery time out and be stored;
// neither loses an acknowledged message.
package redis

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"rcsd/storage"
)

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "rcsd:"

// DefaultRetention is how long past its expiry Redis keeps data the sweeps
// did not take, when Options.Retention is zero.
const DefaultRetention = time.Hour

// Options select and tune the Redis deployment.
type Options struct {
	// Addrs are host:port addresses: one for a single server; the
	// Sentinels when MasterName is set; the seed nodes of a Cluster when
	// there are several (or when Cluster is set).
	Addrs []string
	// MasterName selects Sentinel: the name of the monitored primary.
	MasterName string
	// Cluster forces Cluster mode with a single seed address.
	Cluster bool
	// Username and Password authenticate (ACL user, or requirepass with
	// an empty Username).
	Username, Password string
	// DB is the database number; Cluster has only database 0.
	DB int
	// TLS, when set, makes every connection use TLS.
	TLS *tls.Config
	// Prefix starts every key ("rcsd:" when empty). It must not contain
	// braces, which would change the keys' hash tags.
	Prefix string
	// Retention is how long after their expiry Redis keeps bindings and
	// messages the sweeps did not take (DefaultRetention when zero).
	Retention time.Duration
	// WaitReplicas, when positive, makes PutMessage (the write after
	// which a message is acknowledged to its sender) wait until that many
	// replicas have it: Redis WAIT, pipelined right after the write so it
	// costs no extra round trip, for at most WaitTimeout
	// (DefaultWaitTimeout when zero, at most MaxWaitTimeout). Fewer
	// replicas in time is an error wrapping ErrNotReplicated: the message
	// may be stored on the primary (a retry with the same dedup key finds
	// it and waits again) but must not be acknowledged. For a Sentinel
	// primary with replicas; not available in Cluster mode, where WAIT
	// would not reach the node that took the write.
	WaitReplicas int
	WaitTimeout  time.Duration
	// Timeout bounds one store operation, go-redis's retries and Cluster
	// redirects included (DefaultTimeout when zero). A Redis that stops
	// answering without closing its connections (a long blocking command,
	// a stuck disk, SIGSTOP) then fails a request after Timeout, and rcsd
	// answers 503, instead of after go-redis's four 3 s read timeouts.
	Timeout time.Duration
}

// DefaultTimeout is Options.Timeout when zero.
const DefaultTimeout = 3 * time.Second

// DefaultWaitTimeout bounds WAIT when Options.WaitTimeout is zero.
const DefaultWaitTimeout = 100 * time.Millisecond

// poolSize is the connections per node (per Redis server in Cluster).
const poolSize = 128

// MaxWaitTimeout is the longest WaitTimeout: WAIT is read under the
// operation's Timeout (3 s by default), which must stay longer.
const MaxWaitTimeout = 2 * time.Second

// ErrNotReplicated is wrapped by PutMessage's error when fewer than
// Options.WaitReplicas replicas acknowledged the write in time.
var ErrNotReplicated = errors.New("not acknowledged by enough replicas")

// Store is a Redis-backed storage.Store.
type Store struct {
	rdb     goredis.UniversalClient
	cluster bool
	prefix  string
	keep    time.Duration

	// Keys of the subscriber slot and the index slot.
	subIndex                                                            string
	idxBindings, idxBindingKeys, idxMsgs, idxDedup, idxRecpts, idxRetry string

	// timeout is Options.Timeout, the deadline of one operation.
	timeout time.Duration

	// WAIT after PutMessage (Options.WaitReplicas); waitN 0 is off.
	waitN int
	waitT time.Duration

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ storage.Store = (*Store)(nil)

// Open connects to Redis and checks that it answers. ctx bounds the check.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, fmt.Errorf("redis: no address: %w", storage.ErrInvalid)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redis: key prefix %q contains a brace: %w", opts.Prefix, storage.ErrInvalid)
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	cluster := opts.MasterName == "" && (len(opts.Addrs) > 1 || opts.Cluster)
	if cluster && opts.DB != 0 {
		return nil, fmt.Errorf("redis: Cluster has only database 0, not %d: %w", opts.DB, storage.ErrInvalid)
	}
	if opts.WaitReplicas < 0 || opts.WaitTimeout < 0 || opts.WaitTimeout > MaxWaitTimeout ||
		opts.WaitTimeout > 0 && opts.WaitTimeout < time.Millisecond { // WAIT n 0 would block for ever
		return nil, fmt.Errorf("redis: wait for %d replicas within %v: want 0 or more replicas within 1ms to %v: %w",
			opts.WaitReplicas, opts.WaitTimeout, MaxWaitTimeout, storage.ErrInvalid)
	}
	if opts.WaitReplicas > 0 && cluster {
		return nil, fmt.Errorf("redis: waiting for replicas is not available in Cluster mode: %w", storage.ErrInvalid)
	}
	if opts.WaitReplicas > 0 && opts.WaitTimeout == 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 10*time.Millisecond || opts.WaitReplicas > 0 && opts.Timeout <= opts.WaitTimeout {
		return nil, fmt.Errorf("redis: operation timeout %v: want at least 10ms and more than the wait for replicas (%v): %w",
			opts.Timeout, opts.WaitTimeout, storage.ErrInvalid)
	}
	uo := &goredis.UniversalOptions{
		Addrs:         opts.Addrs,
		MasterName:    opts.MasterName,
		IsClusterMode: cluster,
		Username:      opts.Username,
		Password:      opts.Password,
		DB:            opts.DB,
		TLSConfig:     opts.TLS,
		// RESP2: what every server version speaks; nothing here needs
		// RESP3 push messages.
		Protocol:        2,
		DisableIdentity: true,
		// With appendfsync always Redis fsyncs once per event-loop turn
		// for every write it read in that turn: throughput is in-flight
		// writes per fsync. go-redis's default pool (10 per GOMAXPROCS)
		// capped them at 10 per node; handlers wait on the store anyway,
		// so let them wait in Redis's batch, not for a connection.
		PoolSize: poolSize,
		// Redis before 7.4 does not know CLIENT MAINT_NOTIFICATIONS.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		// Socket reads and writes end at the operation's deadline
		// (deadlineHook): Timeout, or a bulk operation's longer budget.
		// No fixed read/write timeout besides, which would cut a large
		// batch short; Pub/Sub connections keep their own health checks.
		ContextTimeoutEnabled: true,
		ReadTimeout:           -1,
		WriteTimeout:          -1,
	}
	rdb := goredis.NewUniversalClient(uo)
	hook := deadlineHook{opts.Timeout}
	rdb.AddHook(hook)
	if cc, ok := rdb.(*goredis.ClusterClient); ok {
		// WATCH/MULTI in a Cluster runs on a node's client, past the
		// cluster-level hook.
		cc.OnNewNode(func(n *goredis.Client) { n.AddHook(hook) })
	}
	p := opts.Prefix
	s := &Store{
		rdb:            rdb,
		cluster:        cluster,
		prefix:         p,
		keep:           opts.Retention,
		timeout:        opts.Timeout,
		waitN:          opts.WaitReplicas,
		waitT:          opts.WaitTimeout,
		subIndex:       p + "{subscribers}:index",
		idxBindings:    p + "{index}:bindings",
		idxBindingKeys: p + "{index}:binding-keys",
		idxMsgs:        p + "{index}:msgs",
		idxDedup:       p + "{index}:dedup",
		idxRecpts:      p + "{index}:recipients",
		idxRetry:       p + "{index}:retry",
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		_ = s.rdb.Close()
		return nil, fmt.Errorf("redis: connecting to %s: %w", strings.Join(opts.Addrs, ","), err)
	}
	return s, nil
}

// deadlineHook gives every command and pipeline a deadline d from its
// start (or the budget withBudget put in its context) unless the
// caller's is sooner. Pub/Sub does not pass through it.
type deadlineHook struct{ d time.Duration }

// budgetKey is the context key of withBudget.
type budgetKey struct{}

// withBudget lets the operations under ctx take up to d each, for batches
// too large for Options.Timeout (a subscriber import).
func withBudget(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, budgetKey{}, d)
}

// bulkBudget is the budget of a batch of n items: Timeout plus 200 µs an
// item (100 000 subscribers: 23 s with the default Timeout; they take
// about 2 s of it on this project's 2-core test machine).
func (s *Store) bulkBudget(n int) time.Duration {
	return s.timeout + time.Duration(n)*200*time.Microsecond
}

func (h deadlineHook) within(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(budgetKey{}).(time.Duration); ok && d > h.d {
		return d
	}
	return h.d
}

func (h deadlineHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h deadlineHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		ctx, cancel := context.WithTimeout(ctx, h.within(ctx))
		defer cancel()
		return next(ctx, cmd)
	}
}

func (h deadlineHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		ctx, cancel := context.WithTimeout(ctx, h.within(ctx))
		defer cancel()
		return next(ctx, cmds)
	}
}

// ParseURL reads a storage URL:
//
//	redis://[user:password@]host:port[,host2:port2…][/db][?master=NAME&cluster=1]
//	rediss://…   the same over TLS (system roots, server name from the host)
//
// With rediss, tls_ca=FILE trusts the PEM certificates in FILE instead of
// the system roots (Redis deployments usually have their own CA), and
// tls_cert=FILE&tls_key=FILE present a client certificate, which
// redis-server asks for by default (tls-auth-clients yes). In a Cluster
// the same settings and password serve every node the client learns of
// from the seeds.
//
// One address is a single server; master=NAME makes the addresses
// Sentinels; several addresses, or cluster=1, make a Cluster. The port
// defaults to 6379 (26379 for Sentinels). prefix=… sets Options.Prefix;
// wait_replicas=N and wait_timeout=DURATION (Go syntax: 100ms) set
// Options.WaitReplicas and WaitTimeout; timeout=DURATION sets
// Options.Timeout.
func ParseURL(raw string) (Options, error) {
	var o Options
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, password included.
		return o, fmt.Errorf("redis URL: %w", storage.ErrInvalid)
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	default:
		return o, fmt.Errorf("redis URL: scheme %q, want redis or rediss: %w", u.Scheme, storage.ErrInvalid)
	}
	if u.Opaque != "" {
		return o, fmt.Errorf("redis URL: want redis://host:port: %w", storage.ErrInvalid)
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	q := u.Query()
	o.MasterName = q.Get("master")
	if v := q.Get("cluster"); v != "" {
		c, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("redis URL: cluster=%q is not a boolean: %w", v, storage.ErrInvalid)
		}
		o.Cluster = c
	}
	o.Prefix = q.Get("prefix")
	if v := q.Get("wait_replicas"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("redis URL: wait_replicas=%q is not a count: %w", v, storage.ErrInvalid)
		}
		o.WaitReplicas = n
	}
	if v := q.Get("wait_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > MaxWaitTimeout {
			return o, fmt.Errorf("redis URL: wait_timeout=%q is not a duration from 1ms to %v: %w", v, MaxWaitTimeout, storage.ErrInvalid)
		}
		if o.WaitReplicas == 0 {
			return o, fmt.Errorf("redis URL: wait_timeout without wait_replicas: %w", storage.ErrInvalid)
		}
		o.WaitTimeout = d
	}
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Millisecond {
			return o, fmt.Errorf("redis URL: timeout=%q is not a duration of 10ms or more: %w", v, storage.ErrInvalid)
		}
		o.Timeout = d
	}
	if err := parseTLSOptions(q, o.TLS); err != nil {
		return o, err
	}
	for k := range q {
		switch k {
		case "master", "cluster", "prefix", "wait_replicas", "wait_timeout", "timeout", "tls_ca", "tls_cert", "tls_key":
		default:
			return o, fmt.Errorf("redis URL: unknown option %q: %w", k, storage.ErrInvalid)
		}
	}
	if o.MasterName != "" && o.Cluster {
		return o, fmt.Errorf("redis URL: master and cluster exclude each other: %w", storage.ErrInvalid)
	}
	defPort := "6379"
	if o.MasterName != "" {
		defPort = "26379"
	}
	if u.Host == "" {
		return o, fmt.Errorf("redis URL: no host: %w", storage.ErrInvalid)
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return o, fmt.Errorf("redis URL: empty address in host list: %w", storage.ErrInvalid)
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = strings.Trim(h, "[]"), defPort
		}
		if host == "" {
			return o, fmt.Errorf("redis URL: address %q without host: %w", h, storage.ErrInvalid)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return o, fmt.Errorf("redis URL: bad port in %q: %w", h, storage.ErrInvalid)
		}
		o.Addrs = append(o.Addrs, net.JoinHostPort(host, port))
	}
	if o.TLS != nil && len(o.Addrs) > 0 {
		o.TLS.ServerName, _, _ = net.SplitHostPort(o.Addrs[0])
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		db, err := strconv.Atoi(p)
		if err != nil || db < 0 {
			return o, fmt.Errorf("redis URL: database %q is not a number: %w", p, storage.ErrInvalid)
		}
		o.DB = db
	}
	if o.DB != 0 && o.MasterName == "" && (o.Cluster || len(o.Addrs) > 1) {
		return o, fmt.Errorf("redis URL: Cluster has only database 0: %w", storage.ErrInvalid)
	}
	if o.WaitReplicas > 0 && o.MasterName == "" && (o.Cluster || len(o.Addrs) > 1) {
		return o, fmt.Errorf("redis URL: wait_replicas is not available in Cluster mode: %w", storage.ErrInvalid)
	}
	return o, nil
}

// parseTLSOptions applies the URL's tls_ca, tls_cert and tls_key to c
// (nil for redis://, where they are refused).
func parseTLSOptions(q url.Values, c *tls.Config) error {
	ca, cert, key := q.Get("tls_ca"), q.Get("tls_cert"), q.Get("tls_key")
	if ca == "" && cert == "" && key == "" {
		return nil
	}
	if c == nil {
		return fmt.Errorf("redis URL: tls_ca, tls_cert and tls_key need rediss://: %w", storage.ErrInvalid)
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return fmt.Errorf("redis URL: tls_ca: %w: %w", err, storage.ErrInvalid)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("redis URL: tls_ca %s: no PEM certificate in it: %w", ca, storage.ErrInvalid)
		}
		c.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return fmt.Errorf("redis URL: tls_cert and tls_key go together: %w", storage.ErrInvalid)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("redis URL: tls_cert/tls_key: %w: %w", err, storage.ErrInvalid)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return nil
}

// tag returns s as a hash tag body: s itself, unless it is empty (an
// empty tag does not count) or a brace in it would end the tag early, and
// then a hash of it.
func tag(s string) string {
	if s != "" && !strings.ContainsAny(s, "{}") {
		return s
	}
	h := sha256.Sum256([]byte(s))
	return "#" + hex.EncodeToString(h[:12])
}

func (s *Store) subKey(impi string) string  { return s.prefix + "{subscribers}:sub:" + impi }
func (s *Store) impuKey(impu string) string { return s.prefix + "{subscribers}:impu:" + impu }
func (s *Store) aorKey(aor string) string   { return s.prefix + "{" + tag(aor) + "}:bindings" }

// recipientKeys are the message keys of recipient r, in the order the
// scripts take them: msg, ids, dedup, dedupexp.
func (s *Store) recipientKeys(r string) []string {
	base := s.prefix + "{" + tag(r) + "}:"
	return []string{base + "msg", base + "ids", base + "dedup", base + "dedupexp"}
}

func errClosed() error { return fmt.Errorf("redis: %w", storage.ErrClosed) }

func (s *Store) ready(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed()
	}
	return ctx.Err()
}

// wrap wraps an error from go-redis, turning a call that raced Close into
// storage.ErrClosed.
func wrap(op string, err error) error {
	if errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis: %s: %w", op, storage.ErrClosed)
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// maxAttempts bounds the optimistic retries of one call; each failed
// attempt means another writer committed, so this is only reached under
// pathological contention.
const maxAttempts = 1000

// optimistic runs an optimistic transaction (go-redis Watch) until it
// commits, backing off a little after conflicts.
func (s *Store) optimistic(ctx context.Context, fn func(*goredis.Tx) error, keys ...string) error {
	return untilNoConflict(ctx, func() (bool, error) {
		err := s.rdb.Watch(ctx, fn, keys...)
		if errors.Is(err, goredis.TxFailedErr) {
			return false, nil
		}
		return true, err
	})
}

// untilNoConflict runs try until it is done (true) or fails, backing off
// a little after repeated conflicts (false) and giving up after
// maxAttempts of them.
func untilNoConflict(ctx context.Context, try func() (bool, error)) error {
	for attempt := 0; ; attempt++ {
		done, err := try()
		if done || err != nil {
			return err
		}
		if attempt >= maxAttempts {
			return fmt.Errorf("gave up after %d conflicting writers: %w", attempt, storage.ErrConflict)
		}
		if attempt >= 3 {
			d := time.Duration(attempt) * 50 * time.Microsecond
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(min(d, 5*time.Millisecond)):
			}
		}
	}
}

// expireAt is the backstop TTL of data whose latest expiry is t.
func (s *Store) expireAt(t time.Time) time.Time { return t.Add(s.keep) }

// ms is t in Unix milliseconds, rounded down, as index scores hold it.
func ms(t time.Time) float64 {
	return float64(t.Unix()*1000 + int64(t.Nanosecond())/1e6)
}

// Ping implements storage.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// Close implements storage.Store. Every write is acknowledged by Redis
// before its method returns, so there is nothing to flush.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if err := s.rdb.Close(); err != nil {
			s.closeErr = fmt.Errorf("redis: closing: %w", err)
		}
	})
	return s.closeErr
}
