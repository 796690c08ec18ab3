// Package cluster keeps track of the rcsd nodes sharing one store: each
// node records a heartbeat with its address in the store and reads the
// others', so a node knows where to forward a request for a handset
// connected elsewhere, and which nodes have died (their handsets'
// bindings are then unreachable until the handsets register again).
package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"rcsd/storage"
)

// Registry is this node's view of the live nodes.
type Registry struct {
	self  storage.Node
	store storage.ClusterStore
	ttl   time.Duration
	log   *zap.Logger
	now   func() time.Time

	mu    sync.RWMutex
	nodes map[string]storage.Node
}

// New returns the registry of node id reachable at address; ttl is how
// long a heartbeat keeps a node alive (one goes every ttl/3).
func New(id, address string, ttl time.Duration, store storage.ClusterStore, log *zap.Logger, reg prometheus.Registerer) *Registry {
	r := &Registry{self: storage.Node{ID: id, Address: address}, store: store, ttl: ttl, log: log, now: time.Now,
		nodes: make(map[string]storage.Node)}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rcsd_cluster_nodes",
			Help: "rcsd nodes alive in the shared store, this one included, as this node last saw them.",
		}, func() float64 { return float64(len(r.Alive())) }))
	}
	return r
}

// SetAddress sets where the other nodes reach this node, once the
// listeners are bound; call it before Beat.
func (r *Registry) SetAddress(addr string) {
	r.mu.Lock()
	r.self.Address = addr
	r.mu.Unlock()
}

// Self is this node's ID.
func (r *Registry) Self() string { return r.self.ID }

// Address returns the address of node id while it is alive.
func (r *Registry) Address(id string) (string, bool) {
	r.mu.RLock()
	self := r.self
	n, ok := r.nodes[id]
	r.mu.RUnlock()
	if id == self.ID {
		return self.Address, true
	}
	if !ok || !n.Expires.After(r.now()) {
		return "", false
	}
	return n.Address, true
}

// Holds reports whether the node id can reach its handsets: this node
// ("" is a binding from before nodes were recorded), or a live one.
func (r *Registry) Holds(id string) bool {
	if id == "" {
		return true
	}
	_, ok := r.Address(id)
	return ok
}

// Alive lists the live nodes' IDs.
func (r *Registry) Alive() []string {
	now := r.now()
	out := []string{r.self.ID}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for id, n := range r.nodes {
		if id != r.self.ID && n.Expires.After(now) {
			out = append(out, id)
		}
	}
	return out
}

// Beat records this node's heartbeat and refreshes the view of the
// others. On a store failure the last view stays, each node in it alive
// until its recorded expiry.
func (r *Registry) Beat(ctx context.Context) error {
	now := r.now()
	r.mu.RLock()
	n := r.self
	r.mu.RUnlock()
	n.Expires = now.Add(r.ttl)
	if err := r.store.Heartbeat(ctx, n); err != nil {
		return err
	}
	nodes, err := r.store.Nodes(ctx, now)
	if err != nil {
		return err
	}
	view := make(map[string]storage.Node, len(nodes))
	for _, n := range nodes {
		view[n.ID] = n
	}
	r.mu.Lock()
	for id := range r.nodes {
		if _, ok := view[id]; !ok && id != r.self.ID {
			r.log.Info("node gone", zap.String("node", id))
		}
	}
	for id, n := range view {
		if _, ok := r.nodes[id]; !ok && id != r.self.ID {
			r.log.Info("node joined", zap.String("node", id), zap.String("address", n.Address))
		}
	}
	r.nodes = view
	r.mu.Unlock()
	return nil
}

// Run beats every ttl/3 until ctx ends.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Beat(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("node heartbeat failed", zap.Error(err))
			}
		}
	}
}
