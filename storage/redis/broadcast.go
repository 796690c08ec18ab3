package redis

import (
	"context"

	goredis "github.com/redis/go-redis/v9"

	"rcsd/storage"
)

// Publish implements storage.Broadcaster with Redis Pub/Sub. In Cluster
// it is sharded Pub/Sub (SPUBLISH, Redis 7): the channel lives on one
// shard, so one publisher's messages arrive in order — classic PUBLISH
// goes through whichever node the client picks and is relayed over the
// cluster bus, and two of them were seen to overtake each other.
func (s *Store) Publish(ctx context.Context, channel string, payload []byte) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if s.cluster {
		return wrapIf("publishing", s.rdb.SPublish(ctx, s.prefix+channel, payload).Err())
	}
	return wrapIf("publishing", s.rdb.Publish(ctx, s.prefix+channel, payload).Err())
}

// Subscribe implements storage.Broadcaster. go-redis's PubSub reconnects
// and subscribes again by itself; what was published meanwhile is lost.
func (s *Store) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var ps *goredis.PubSub
	if s.cluster {
		ps = s.rdb.SSubscribe(ctx, s.prefix+channel)
	} else {
		ps = s.rdb.Subscribe(ctx, s.prefix+channel)
	}
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
