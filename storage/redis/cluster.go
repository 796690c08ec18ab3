package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"rcsd/storage"
)

// Node records live in one slot ({nodes}): a sorted set of IDs scored by
// their expiry (ms) and a hash of their encodings. Records far past their
// expiry are dropped by the next heartbeat of any node.
func (s *Store) nodeKeys() []string {
	return []string{s.prefix + "{nodes}:alive", s.prefix + "{nodes}:node"}
}

// forgetNodesAfter is how long a dead node's record is kept (for operators
// looking at Redis; nothing reads it).
const forgetNodesAfter = time.Hour

var heartbeat = goredis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
for _, id in ipairs(old) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
return 1
`)

var liveNodes = goredis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))
`)

// Heartbeat implements storage.ClusterStore.
func (s *Store) Heartbeat(ctx context.Context, n storage.Node) error {
	if n.ID == "" || n.Address == "" {
		return fmt.Errorf("redis: node %q at %q: %w", n.ID, n.Address, storage.ErrInvalid)
	}
	if err := s.ready(ctx); err != nil {
		return err
	}
	n.Expires = n.Expires.UTC()
	enc, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("redis: encoding node: %w", err)
	}
	exp := n.Expires.UnixMilli()
	err = heartbeat.Run(ctx, s.rdb, s.nodeKeys(), n.ID, enc, exp, exp-forgetNodesAfter.Milliseconds()).Err()
	if err != nil {
		return wrap("heartbeat", err)
	}
	return nil
}

// Nodes implements storage.ClusterStore.
func (s *Store) Nodes(ctx context.Context, now time.Time) ([]storage.Node, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	vals, err := liveNodes.Run(ctx, s.rdb, s.nodeKeys(), now.UnixMilli()).Slice()
	if err != nil && err != goredis.Nil {
		return nil, wrap("listing nodes", err)
	}
	out := make([]storage.Node, 0, len(vals))
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue // expired between the two reads of the script: cannot happen, but never trust
		}
		var n storage.Node
		if err := json.Unmarshal([]byte(str), &n); err != nil {
			return nil, fmt.Errorf("redis: decoding node: %w", err)
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b storage.Node) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *Store) leaseKey(key string) string { return s.prefix + "{" + tag(key) + "}:lease" }

var takeLease = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

var releaseLease = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Lease implements storage.ClusterStore. The expiry is Redis's own TTL
// (server clock); now is not used.
func (s *Store) Lease(ctx context.Context, key, owner string, _ time.Time, ttl time.Duration) (bool, error) {
	if key == "" || owner == "" || ttl <= 0 {
		return false, fmt.Errorf("redis: lease %q for %q (%s): %w", key, owner, ttl, storage.ErrInvalid)
	}
	if err := s.ready(ctx); err != nil {
		return false, err
	}
	n, err := takeLease.Run(ctx, s.rdb, []string{s.leaseKey(key)}, owner, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)).Int()
	if err != nil {
		return false, wrap("lease", err)
	}
	return n == 1, nil
}

// Release implements storage.ClusterStore.
func (s *Store) Release(ctx context.Context, key, owner string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if err := releaseLease.Run(ctx, s.rdb, []string{s.leaseKey(key)}, owner).Err(); err != nil {
		return wrap("release", err)
	}
	return nil
}
