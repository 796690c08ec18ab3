// Package storage defines the state rcsd keeps: subscribers (credentials and
// public identities) and registration bindings. Later issues add messages and
// groups. Backends live in sub-packages (memory, bolt, later redis) and are
// all held to one conformance suite (storage/storagetest).
//
// The interface is shaped for a networked backend: every call that a SIP
// transaction makes is one round trip (batch reads, one atomic
// read-modify-write per address of record), and expiry is a property of the
// data so a TTL-capable backend can enforce it itself.
package storage

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Sentinel errors; backends wrap them with %w so callers test with errors.Is.
var (
	ErrNotFound = errors.New("storage: not found")
	ErrConflict = errors.New("storage: conflict")
	ErrInvalid  = errors.New("storage: invalid value")
	ErrClosed   = errors.New("storage: closed")
)

// Subscriber is one provisioned user: one private identity (IMPI, the digest
// username) with one or more public identities (IMPUs, sip: and tel: URIs).
// Passwords are never stored: only the digest HA1 values, which depend on
// the realm, so a subscriber's realm is fixed when it is provisioned.
type Subscriber struct {
	IMPI  string   `json:"impi"`
	IMPUs []string `json:"impus"` // canonical URIs; the first is the default public identity
	Realm string   `json:"realm"`

	// Digest HA1 = H(username ":" realm ":" password), hex, per algorithm.
	HA1MD5       string `json:"ha1_md5,omitempty"`
	HA1SHA256    string `json:"ha1_sha256,omitempty"`
	HA1SHA512256 string `json:"ha1_sha512_256,omitempty"`

	// IMS AKA (USIM) material, raw bytes. OPc is derived from OP when only
	// OP is provisioned; both may be kept.
	K   []byte `json:"k,omitempty"`
	OP  []byte `json:"op,omitempty"`
	OPc []byte `json:"opc,omitempty"`
	AMF []byte `json:"amf,omitempty"`
	SQN uint64 `json:"sqn,omitempty"`
}

// HasDigest reports whether the subscriber can authenticate with Digest.
func (s *Subscriber) HasDigest() bool {
	return s.HA1MD5 != "" || s.HA1SHA256 != "" || s.HA1SHA512256 != ""
}

// HasAKA reports whether the subscriber can authenticate with IMS AKA.
func (s *Subscriber) HasAKA() bool { return len(s.K) > 0 }

// Binding is one registered contact of an address of record.
type Binding struct {
	AOR     string `json:"aor"`     // canonical public identity the contact is bound to
	Contact string `json:"contact"` // Contact URI as the handset sent it, without header parameters
	// Params are the Contact header parameters other than expires and q, as
	// sent (feature tags such as +g.3gpp.icsi-ref, +sip.instance, reg-id),
	// ";"-separated without a leading ";".
	Params     string    `json:"params,omitempty"`
	InstanceID string    `json:"instance,omitempty"` // +sip.instance value without quotes and <>
	RegID      int       `json:"reg_id,omitempty"`   // RFC 5626 reg-id, 0 when absent
	Q          string    `json:"q,omitempty"`        // q value as sent, "" when absent
	CallID     string    `json:"call_id"`
	CSeq       uint32    `json:"cseq"`
	Expires    time.Time `json:"expires"` // absolute expiry
	Path       []string  `json:"path,omitempty"`
	UserAgent  string    `json:"ua,omitempty"`
	IMPI       string    `json:"impi,omitempty"` // who authenticated this binding

	// Flow (RFC 5626): where the REGISTER came from, so later requests to
	// the handset reuse its connection and NAT pinhole.
	Transport string `json:"transport"`       // udp, tcp, tls, ws, wss
	Source    string `json:"source"`          // remote host:port the REGISTER arrived from
	Local     string `json:"local,omitempty"` // local listener host:port it arrived on
	Node      string `json:"node,omitempty"`  // rcsd node holding the connection

	RegisteredAt time.Time `json:"registered_at"`
}

// Key identifies a binding within its AOR: the instance (and reg-id) when
// the handset sent one (RFC 5626 §6), else the contact URI.
func (b *Binding) Key() string {
	if b.InstanceID != "" {
		if b.RegID != 0 {
			return "inst:" + b.InstanceID + ";reg-id=" + strconv.Itoa(b.RegID)
		}
		return "inst:" + b.InstanceID
	}
	return "uri:" + b.Contact
}

// Message is a pager-mode request held for a recipient who could not take
// it yet (store-and-forward), or a notification held for its sender.
type Message struct {
	// ID is unique and sorts in arrival order (callers make it from the
	// arrival time); PendingMessages returns a recipient's messages in ID
	// order.
	ID        string `json:"id"`
	Recipient string `json:"recipient"` // canonical public identity
	Sender    string `json:"sender"`    // canonical identity rcsd asserted for the originator
	// DedupKeys identify the request (its Call-ID/CSeq, the sender's
	// imdn.Message-ID): a message whose key is already known for the
	// recipient is a duplicate and is not stored again, even after the
	// first was delivered, until the first's Expires.
	DedupKeys   []string  `json:"dedup,omitempty"`
	Received    time.Time `json:"received"`
	Expires     time.Time `json:"expires"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitempty"`
	// Headers are the header lines ("Name: value") the delivery leg
	// carries, Body its body.
	Headers []string `json:"headers,omitempty"`
	Body    []byte   `json:"body,omitempty"`
}

// MessageStore holds stored messages. A message is acknowledged to its
// sender only once PutMessage has returned: it must then survive a crash.
type MessageStore interface {
	// PutMessage stores m durably, unless one of its DedupKeys is already
	// known for m.Recipient: then nothing is written and the ID of the
	// message that holds the key is returned. ID and Recipient are
	// required (ErrInvalid); an ID already stored for the recipient is
	// ErrConflict.
	PutMessage(ctx context.Context, m Message) (dupOf string, err error)
	// PendingMessages returns up to limit (<= 0: all) of recipient's
	// messages, in ID order, expired ones included (ExpireMessages takes
	// those).
	PendingMessages(ctx context.Context, recipient string, limit int) ([]Message, error)
	// UpdateMessage replaces a stored message's Attempts and NextAttempt;
	// ErrNotFound when absent.
	UpdateMessage(ctx context.Context, m Message) error
	// DeleteMessage removes a message once delivered or given up; its
	// dedup keys stay known until its Expires. ErrNotFound when absent.
	DeleteMessage(ctx context.Context, recipient, id string) error
	// DeleteMessages removes several of recipient's messages in one
	// write (a drain acknowledging what it delivered); IDs not stored are
	// skipped.
	DeleteMessages(ctx context.Context, recipient string, ids []string) error
	// ExpireMessages removes up to limit (<= 0: all) messages whose
	// Expires is at or before now and returns them; dedup keys past their
	// Expires are forgotten too.
	ExpireMessages(ctx context.Context, now time.Time, limit int) ([]Message, error)
	// PendingRecipients lists recipients that have messages, in order,
	// starting after the given one (cursor pagination).
	PendingRecipients(ctx context.Context, after string, limit int) ([]string, error)
	// CountMessages returns how many messages are stored.
	CountMessages(ctx context.Context) (int, error)
	// ScheduleRetry asks for recipient's stored messages to be tried
	// again at (or after) at. An earlier time already scheduled for the
	// recipient is kept: a retry may come early, never late.
	ScheduleRetry(ctx context.Context, recipient string, at time.Time) error
	// DueRetries takes off the schedule and returns up to limit (<= 0:
	// all) recipients whose retry time is at or before now, earliest
	// first. Each scheduled retry is returned to one caller only, so that
	// nodes sharing the store do not all look at the same recipient.
	DueRetries(ctx context.Context, now time.Time, limit int) ([]string, error)
}

// SubscriberStore holds provisioned subscribers.
type SubscriberStore interface {
	// PutSubscribers creates or replaces subscribers (keyed by IMPI) and
	// their IMPU index in one atomic batch. A public identity already owned
	// by another IMPI is an ErrConflict and nothing is written; an IMPU
	// released by a subscriber replaced in the same batch is free. A
	// replaced subscriber's IMPUs not in its new version stop resolving.
	// Every subscriber needs an IMPI and at least one non-empty IMPU; an
	// IMPI twice in the batch, or an IMPU twice in one subscriber, is
	// ErrInvalid, and an IMPU in two subscribers of the batch ErrConflict.
	// An empty batch does nothing.
	PutSubscribers(ctx context.Context, subs []Subscriber) error
	// SubscriberByIMPI returns ErrNotFound when absent.
	SubscriberByIMPI(ctx context.Context, impi string) (Subscriber, error)
	// SubscriberByIMPU returns the subscriber owning a public identity.
	SubscriberByIMPU(ctx context.Context, impu string) (Subscriber, error)
	// ListSubscribers returns up to limit subscribers with IMPI > after, in
	// IMPI order (cursor pagination: pass the last IMPI to continue).
	// limit <= 0: no limit.
	ListSubscribers(ctx context.Context, after string, limit int) ([]Subscriber, error)
	// DeleteSubscriber removes a subscriber and its IMPU index entries;
	// ErrNotFound when absent.
	DeleteSubscriber(ctx context.Context, impi string) error
	// CountSubscribers returns how many subscribers exist.
	CountSubscribers(ctx context.Context) (int, error)
	// NextSQN atomically advances the subscriber's IMS AKA sequence number
	// and returns the new value, max(current, floor) + 1: floor is the
	// handset's SQN after a re-synchronisation (TS 33.102 §6.3.5), else 0.
	// Every challenge takes its own SQN. ErrNotFound when absent; ErrInvalid
	// past the 48-bit range.
	NextSQN(ctx context.Context, impi string, floor uint64) (uint64, error)
}

// SQNMax is the largest 48-bit AKA sequence number.
const SQNMax = 1<<48 - 1

// BindingStore holds registrations.
type BindingStore interface {
	// Bindings returns the bindings of aor not expired at now (Expires
	// after now), in the order they were first registered. Times come
	// back in UTC.
	Bindings(ctx context.Context, aor string, now time.Time) ([]Binding, error)
	// AORs lists the AORs that have bindings (expired ones not yet
	// purged included), in order, starting after the given one (cursor
	// pagination; limit <= 0: all). For copying a store and operator
	// tools, not for the request path.
	AORs(ctx context.Context, after string, limit int) ([]string, error)
	// UpdateBindings atomically replaces the bindings of aor with what fn
	// returns. fn receives the bindings not expired at now and may be
	// called more than once (optimistic backends retry on conflict), so it
	// must not have side effects. An error from fn aborts the update and is
	// returned as is. Expired bindings, which fn does not see, are dropped.
	// The store keeps the order fn returns (callers append new bindings,
	// which gives first-registered order). Every binding must have AOR ==
	// aor, a Contact and a Key of its own, else ErrInvalid and nothing is
	// written. It returns the bindings now stored.
	UpdateBindings(ctx context.Context, aor string, now time.Time, fn func(cur []Binding) ([]Binding, error)) ([]Binding, error)
	// ExpireBindings deletes up to limit bindings expired at now (Expires
	// at or before now) and returns them, in no particular order (limit
	// <= 0: no limit), so the caller can report them. It returns exactly
	// limit while at least limit are expired: fewer means none are left.
	ExpireBindings(ctx context.Context, now time.Time, limit int) ([]Binding, error)
	// CountBindings returns the number of stored bindings, expired ones
	// not yet purged included.
	CountBindings(ctx context.Context) (int, error)
}

// MultiBindingReader is implemented by backends that read the bindings of
// several AORs in one round trip (a subscriber's public identities).
type MultiBindingReader interface {
	// BindingsOf returns, for each of aors, what Bindings would.
	BindingsOf(ctx context.Context, aors []string, now time.Time) ([][]Binding, error)
}

// Broadcaster is implemented by backends that several nodes share: what
// one node publishes on a channel reaches every node subscribed to it,
// itself included. Delivery is best effort — a node disconnected from
// the store at that moment misses it — so it carries only what is also
// recoverable from the stored state.
type Broadcaster interface {
	Publish(ctx context.Context, channel string, payload []byte) error
	// Subscribe delivers the channel's messages until ctx ends, then
	// closes the returned channel; it resubscribes by itself after a
	// lost connection.
	Subscribe(ctx context.Context, channel string) (<-chan []byte, error)
}

// BindingsOf reads the bindings of several AORs, in one round trip when
// the backend can.
func BindingsOf(ctx context.Context, s BindingStore, aors []string, now time.Time) ([][]Binding, error) {
	if m, ok := s.(MultiBindingReader); ok {
		return m.BindingsOf(ctx, aors, now)
	}
	out := make([][]Binding, len(aors))
	for i, aor := range aors {
		bs, err := s.Bindings(ctx, aor, now)
		if err != nil {
			return nil, err
		}
		out[i] = bs
	}
	return out, nil
}

// Node is an rcsd process sharing the store with others.
type Node struct {
	ID      string    `json:"id"`
	Address string    `json:"address"` // host:port of its SIP TCP listener, for the other nodes
	Expires time.Time `json:"expires"` // alive until then unless it heartbeats again
}

// ClusterStore is what nodes sharing one store coordinate through. The
// embedded backends serve one process, so for them it only ever sees that
// process; times compare across nodes, so their clocks must agree (NTP)
// to well within the node TTL.
type ClusterStore interface {
	// Heartbeat records n as alive until n.Expires, replacing its earlier
	// record. ID and Address are required (ErrInvalid).
	Heartbeat(ctx context.Context, n Node) error
	// Nodes returns the nodes whose Expires is after now, in ID order.
	Nodes(ctx context.Context, now time.Time) ([]Node, error)
	// Lease gives key to owner until now+ttl when it is free, expired or
	// already owner's (a renewal), and reports whether owner holds it.
	Lease(ctx context.Context, key, owner string, now time.Time, ttl time.Duration) (bool, error)
	// Release frees key when owner holds it, and does nothing otherwise.
	Release(ctx context.Context, key, owner string) error
}

// Store is a complete backend.
type Store interface {
	SubscriberStore
	BindingStore
	MessageStore
	ClusterStore
	// Ping reports whether the backend can serve requests (for /readyz).
	Ping(ctx context.Context) error
	// Close flushes pending writes and releases the backend. Calling it
	// again returns the first call's result; every other method then
	// fails with ErrClosed.
	Close() error
}
