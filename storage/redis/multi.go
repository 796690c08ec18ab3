package redis

import (
	"context"
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"rcsd/storage"
)

// BindingsOf implements storage.MultiBindingReader: one pipeline of GETs
// (a Cluster client sends each node its part at once).
func (s *Store) BindingsOf(ctx context.Context, aors []string, now time.Time) ([][]storage.Binding, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	cmds := make([]*goredis.StringCmd, len(aors))
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, aor := range aors {
			cmds[i] = p.Get(ctx, s.aorKey(aor))
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, wrap("reading bindings", err)
	}
	out := make([][]storage.Binding, len(aors))
	for i, c := range cmds {
		enc, err := c.Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, wrap("reading bindings", err)
		}
		if out[i], err = decodeBindings(enc, func(b *storage.Binding) bool { return b.Expires.After(now) }); err != nil {
			return nil, wrap("reading bindings of "+aors[i], err)
		}
	}
	return out, nil
}

var _ storage.MultiBindingReader = (*Store)(nil)
