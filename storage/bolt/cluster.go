package bolt

import (
	"context"
	"fmt"
	"time"

	"rcsd/storage"
)

// Heartbeat implements storage.ClusterStore (in memory: the file has one
// process).
func (s *Store) Heartbeat(ctx context.Context, n storage.Node) error {
	if s.closed.Load() {
		return fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	return s.mem.Heartbeat(ctx, n)
}

// Nodes implements storage.ClusterStore.
func (s *Store) Nodes(ctx context.Context, now time.Time) ([]storage.Node, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	return s.mem.Nodes(ctx, now)
}

// Lease implements storage.ClusterStore.
func (s *Store) Lease(ctx context.Context, key, owner string, now time.Time, ttl time.Duration) (bool, error) {
	if s.closed.Load() {
		return false, fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	return s.mem.Lease(ctx, key, owner, now, ttl)
}

// Release implements storage.ClusterStore.
func (s *Store) Release(ctx context.Context, key, owner string) error {
	if s.closed.Load() {
		return fmt.Errorf("bolt: %w", storage.ErrClosed)
	}
	return s.mem.Release(ctx, key, owner)
}
