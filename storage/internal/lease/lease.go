// Package lease is the in-process ClusterStore of the embedded backends:
// one process owns their data, so node records and leases need no
// persistence and no other reader.
package lease

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"rcsd/storage"
)

// Table holds node heartbeats and leases in memory.
type Table struct {
	mu     sync.Mutex
	nodes  map[string]storage.Node
	leases map[string]held
}

type held struct {
	owner string
	until time.Time
}

// New returns an empty table.
func New() *Table {
	return &Table{nodes: make(map[string]storage.Node), leases: make(map[string]held)}
}

// Heartbeat implements storage.ClusterStore.
func (t *Table) Heartbeat(_ context.Context, n storage.Node) error {
	if n.ID == "" || n.Address == "" {
		return fmt.Errorf("node %q at %q: %w", n.ID, n.Address, storage.ErrInvalid)
	}
	n.Expires = n.Expires.UTC()
	t.mu.Lock()
	t.nodes[n.ID] = n
	t.mu.Unlock()
	return nil
}

// Nodes implements storage.ClusterStore.
func (t *Table) Nodes(_ context.Context, now time.Time) ([]storage.Node, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []storage.Node
	for id, n := range t.nodes {
		if n.Expires.After(now) {
			out = append(out, n)
		} else {
			delete(t.nodes, id)
		}
	}
	slices.SortFunc(out, func(a, b storage.Node) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Lease implements storage.ClusterStore.
func (t *Table) Lease(_ context.Context, key, owner string, now time.Time, ttl time.Duration) (bool, error) {
	if key == "" || owner == "" || ttl <= 0 {
		return false, fmt.Errorf("lease %q for %q (%s): %w", key, owner, ttl, storage.ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.leases[key]; ok && h.owner != owner && h.until.After(now) {
		return false, nil
	}
	t.leases[key] = held{owner: owner, until: now.Add(ttl)}
	return true, nil
}

// Release implements storage.ClusterStore.
func (t *Table) Release(_ context.Context, key, owner string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.leases[key]; ok && h.owner == owner {
		delete(t.leases, key)
	}
	return nil
}
