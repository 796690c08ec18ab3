package cluster

import (
	"context"
	"encoding/json"
	"time"

	"go.uber.org/zap"

	"rcsd/registrar"
	"rcsd/storage"
)

// changesChannel is the channel registration changes go out on.
const changesChannel = "registration-changes"

// Changes shares registration changes between the nodes: a change made
// on one node (a REGISTER, the purge timer) is published, and the other
// nodes hand it to their local observers — the reg event notifier, whose
// subscriptions live on the node that took the SUBSCRIBE, which need not
// be the node the handset's next REGISTER reaches.
//
// Delivery is best effort (storage.Broadcaster): a node cut off from the
// store misses what was published meanwhile, and its subscribers learn
// the full state with the next change. Changes published by one node
// arrive in order; those of two nodes may interleave, which full-state
// NOTIFYs absorb.
type Changes struct {
	self  string
	bus   storage.Broadcaster
	log   *zap.Logger
	local []registrar.Observer
	out   chan registrar.Change
}

// changeMsg is a change on the wire.
type changeMsg struct {
	Node    string            `json:"node"`
	AOR     string            `json:"aor"`
	Before  []storage.Binding `json:"before,omitempty"`
	After   []storage.Binding `json:"after,omitempty"`
	Expired bool              `json:"expired,omitempty"`
	At      time.Time         `json:"at"`
}

// NewChanges shares the changes observed on node self over bus with the
// other nodes, and passes theirs to local.
func NewChanges(self string, bus storage.Broadcaster, log *zap.Logger, local ...registrar.Observer) *Changes {
	return &Changes{self: self, bus: bus, log: log, local: local, out: make(chan registrar.Change, 4096)}
}

// RegistrationChanged implements registrar.Observer: it queues c for
// publishing and returns at once (it is called on the REGISTER's path).
func (c *Changes) RegistrationChanged(ch registrar.Change) {
	select {
	case c.out <- ch:
	default:
		c.log.Warn("registration change not shared with the other nodes: queue full", zap.String("aor", ch.AOR))
	}
}

// Run publishes this node's changes and delivers the other nodes' until
// ctx ends, subscribing again after a failure.
func (c *Changes) Run(ctx context.Context) {
	published := make(chan struct{})
	go func() {
		defer close(published)
		c.publish(ctx)
	}()
	defer func() { <-published }()
	for ctx.Err() == nil {
		in, err := c.bus.Subscribe(ctx, changesChannel)
		if err != nil {
			c.log.Warn("subscribing to registration changes", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for payload := range in {
			c.deliver(payload)
		}
	}
}

func (c *Changes) publish(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ch := <-c.out:
			b, err := json.Marshal(changeMsg{Node: c.self, AOR: ch.AOR, Before: ch.Before, After: ch.After, Expired: ch.Expired, At: ch.At})
			if err != nil {
				c.log.Warn("encoding a registration change", zap.Error(err))
				continue
			}
			if err := c.bus.Publish(ctx, changesChannel, b); err != nil {
				c.log.Warn("registration change not shared with the other nodes", zap.String("aor", ch.AOR), zap.Error(err))
			}
		}
	}
}

func (c *Changes) deliver(payload []byte) {
	var m changeMsg
	if err := json.Unmarshal(payload, &m); err != nil || m.AOR == "" {
		c.log.Warn("undecodable registration change from another node", zap.Error(err))
		return
	}
	if m.Node == c.self {
		return // observed here already
	}
	ch := registrar.Change{AOR: m.AOR, Before: m.Before, After: m.After, Expired: m.Expired, At: m.At}
	for _, o := range c.local {
		o.RegistrationChanged(ch)
	}
}

var _ registrar.Observer = (*Changes)(nil)
