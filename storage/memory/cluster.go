package memory

import (
	"context"
	"fmt"
	"time"

	"rcsd/storage"
)

// Heartbeat implements storage.ClusterStore.
func (s *Store) Heartbeat(ctx context.Context, n storage.Node) error {
	if s.closed.Load() {
		return fmt.Errorf("memory: %w", storage.ErrClosed)
	}
	return s.cluster.Heartbeat(ctx, n)
}

// Nodes implements storage.ClusterStore.
func (s *Store) Nodes(ctx context.Context, now time.Time) ([]storage.Node, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("memory: %w", storage.ErrClosed)
	}
	return s.cluster.Nodes(ctx, now)
}

// Lease implements storage.ClusterStore.
func (s *Store) Lease(ctx context.Context, key, owner string, now time.Time, ttl time.Duration) (bool, error) {
	if s.closed.Load() {
		return false, fmt.Errorf("memory: %w", storage.ErrClosed)
	}
	return s.cluster.Lease(ctx, key, owner, now, ttl)
}

// Release implements storage.ClusterStore.
func (s *Store) Release(ctx context.Context, key, owner string) error {
	if s.closed.Load() {
		return fmt.Errorf("memory: %w", storage.ErrClosed)
	}
	return s.cluster.Release(ctx, key, owner)
}
