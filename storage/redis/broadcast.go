package redis

import (
	"context"

	"rcsd/storage"
)

// Publish implements storage.Broadcaster with Redis Pub/Sub (in Cluster,
// a classic PUBLISH reaches the subscribers on every shard).
func (s *Store) Publish(ctx context.Context, channel string, payload []byte) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	return wrapIf("publishing", s.rdb.Publish(ctx, s.prefix+channel, payload).Err())
}

// Subscribe implements storage.Broadcaster. go-redis's PubSub reconnects
// and subscribes again by itself; what was published meanwhile is lost.
func (s *Store) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	ps := s.rdb.Subscribe(ctx, s.prefix+channel)
	if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
		_ = ps.Close()
		return nil, wrap("subscribing", err)
	}
	out := make(chan []byte, 256)
	go func() {
		defer close(out)
		defer ps.Close()
		in := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- []byte(m.Payload):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

var _ storage.Broadcaster = (*Store)(nil)
