package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"rcsd/storage"
	"rcsd/storage/internal/check"
	"rcsd/storage/internal/codec"
)

// A subscriber is a hash of its encoding (enc) and its SQN (sqn, decimal),
// which NextSQN advances in a script without decoding the encoding; the
// encoded SQN is not used.

// nextSQN advances the SQN of KEYS[1] to max(sqn, ARGV[1]) + 1 unless that
// exceeds ARGV[2]. Lua numbers are doubles: exact below 2^53, and every
// value above 2^48 is refused anyway.
var nextSQN = goredis.NewScript(`
local sqn = redis.call('HGET', KEYS[1], 'sqn')
if not sqn then return redis.error_reply('NOTFOUND') end
local n = tonumber(sqn)
local floor = tonumber(ARGV[1])
if floor > n then n = floor end
n = n + 1
if n > tonumber(ARGV[2]) then return redis.error_reply('RANGE') end
redis.call('HSET', KEYS[1], 'sqn', string.format('%.0f', n))
return n
`)

// byIMPU reads the IMPU index entry KEYS[1] and the subscriber it names in
// one step. The subscriber's key is derived (ARGV[1] .. IMPI); it shares
// KEYS[1]'s slot, as every subscriber key does.
var byIMPU = goredis.NewScript(`
local impi = redis.call('GET', KEYS[1])
if not impi then return false end
local v = redis.call('HMGET', ARGV[1] .. impi, 'enc', 'sqn')
if not v[1] then return false end
return {v[1], v[2]}
`)

func decodeSubscriber(enc, sqn string) (storage.Subscriber, error) {
	sub, err := codec.DecodeSubscriber(enc)
	if err != nil {
		return sub, fmt.Errorf("decoding subscriber: %w", err)
	}
	n, err := strconv.ParseUint(sqn, 10, 64)
	if err != nil {
		return sub, fmt.Errorf("subscriber %q: bad SQN %q", sub.IMPI, sqn)
	}
	sub.SQN = n
	return sub, nil
}

// PutSubscribers implements storage.SubscriberStore: one optimistic
// transaction on the subscriber slot.
func (s *Store) PutSubscribers(ctx context.Context, subs []storage.Subscriber) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if len(subs) == 0 {
		return nil
	}
	inBatch, err := check.Subscribers(subs)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	encs := make([]string, len(subs))
	var watch []string
	for i := range subs {
		encs[i] = string(codec.AppendSubscriber(nil, &subs[i]))
		watch = append(watch, s.subKey(subs[i].IMPI))
	}
	for i := range subs {
		for _, u := range subs[i].IMPUs {
			watch = append(watch, s.impuKey(u))
		}
	}
	err = s.optimistic(ctx, func(tx *goredis.Tx) error {
		// Read the subscribers being replaced and the owners of the
		// claimed IMPUs.
		olds := make([]*goredis.StringCmd, len(subs))
		owners := make([][]*goredis.StringCmd, len(subs))
		if _, err := tx.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i := range subs {
				olds[i] = p.HGet(ctx, s.subKey(subs[i].IMPI), "enc")
				for _, u := range subs[i].IMPUs {
					owners[i] = append(owners[i], p.Get(ctx, s.impuKey(u)))
				}
			}
			return nil
		}); err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		// Check everything before writing anything. An IMPU owned by a
		// subscriber of this batch is free: all its old IMPUs are
		// released below.
		for i := range subs {
			for j, c := range owners[i] {
				owner, err := c.Result()
				if errors.Is(err, goredis.Nil) || owner == subs[i].IMPI {
					continue
				}
				if err != nil {
					return err
				}
				if _, moving := inBatch[owner]; !moving {
					return fmt.Errorf("public identity %q of %q belongs to %q: %w", subs[i].IMPUs[j], subs[i].IMPI, owner, storage.ErrConflict)
				}
			}
		}
		// The old IMPUs of replaced subscribers: released when they
		// still point at their subscriber (watched, so a change
		// between this read and the commit retries).
		var release []string
		for i := range subs {
			enc, err := olds[i].Result()
			if errors.Is(err, goredis.Nil) {
				continue
			}
			if err != nil {
				return err
			}
			prev, err := codec.DecodeSubscriber(enc)
			if err != nil {
				return fmt.Errorf("decoding subscriber %q: %w", subs[i].IMPI, err)
			}
			for _, u := range prev.IMPUs {
				release = append(release, s.impuKey(u))
			}
		}
		var releaseOwners []*goredis.StringCmd
		if len(release) > 0 {
			if err := tx.Watch(ctx, release...).Err(); err != nil {
				return err
			}
			if _, err := tx.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, k := range release {
					releaseOwners = append(releaseOwners, p.Get(ctx, k))
				}
				return nil
			}); err != nil && !errors.Is(err, goredis.Nil) {
				return err
			}
		}
		_, err := tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			for k, c := range releaseOwners {
				owner := c.Val()
				if _, moving := inBatch[owner]; moving {
					p.Del(ctx, release[k])
				}
			}
			for i := range subs {
				p.HSet(ctx, s.subKey(subs[i].IMPI), "enc", encs[i], "sqn", strconv.FormatUint(subs[i].SQN, 10))
				for _, u := range subs[i].IMPUs {
					p.Set(ctx, s.impuKey(u), subs[i].IMPI, 0)
				}
			}
			members := make([]goredis.Z, len(subs))
			for i := range subs {
				members[i] = goredis.Z{Member: subs[i].IMPI}
			}
			p.ZAdd(ctx, s.subIndex, members...)
			return nil
		})
		return err
	}, watch...)
	if err != nil {
		return wrap("putting subscribers", err)
	}
	return nil
}

// SubscriberByIMPI implements storage.SubscriberStore.
func (s *Store) SubscriberByIMPI(ctx context.Context, impi string) (storage.Subscriber, error) {
	if err := s.ready(ctx); err != nil {
		return storage.Subscriber{}, err
	}
	v, err := s.rdb.HMGet(ctx, s.subKey(impi), "enc", "sqn").Result()
	if err != nil {
		return storage.Subscriber{}, wrap("subscriber by IMPI", err)
	}
	enc, ok1 := v[0].(string)
	sqn, ok2 := v[1].(string)
	if !ok1 || !ok2 {
		return storage.Subscriber{}, fmt.Errorf("redis: subscriber %q: %w", impi, storage.ErrNotFound)
	}
	sub, err := decodeSubscriber(enc, sqn)
	if err != nil {
		return storage.Subscriber{}, wrap("subscriber by IMPI", err)
	}
	return sub, nil
}

// SubscriberByIMPU implements storage.SubscriberStore in one round trip.
func (s *Store) SubscriberByIMPU(ctx context.Context, impu string) (storage.Subscriber, error) {
	if err := s.ready(ctx); err != nil {
		return storage.Subscriber{}, err
	}
	v, err := byIMPU.Run(ctx, s.rdb, []string{s.impuKey(impu)}, s.subKey("")).StringSlice()
	if errors.Is(err, goredis.Nil) {
		return storage.Subscriber{}, fmt.Errorf("redis: public identity %q: %w", impu, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Subscriber{}, wrap("subscriber by IMPU", err)
	}
	if len(v) != 2 {
		return storage.Subscriber{}, fmt.Errorf("redis: subscriber by IMPU: %d values from script", len(v))
	}
	sub, err := decodeSubscriber(v[0], v[1])
	if err != nil {
		return storage.Subscriber{}, wrap("subscriber by IMPU", err)
	}
	return sub, nil
}

// NextSQN implements storage.SubscriberStore with a script, so concurrent
// challenges never share an SQN.
func (s *Store) NextSQN(ctx context.Context, impi string, floor uint64) (uint64, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	n, err := nextSQN.Run(ctx, s.rdb, []string{s.subKey(impi)}, strconv.FormatUint(floor, 10), storage.SQNMax).Int64()
	switch {
	case err == nil:
		return uint64(n), nil
	case strings.Contains(err.Error(), "NOTFOUND"):
		return 0, fmt.Errorf("redis: subscriber %q: %w", impi, storage.ErrNotFound)
	case strings.Contains(err.Error(), "RANGE"):
		return 0, fmt.Errorf("redis: SQN of %q past 48 bits: %w", impi, storage.ErrInvalid)
	}
	return 0, wrap("advancing SQN", err)
}

// ListSubscribers implements storage.SubscriberStore. limit <= 0 means no
// limit.
func (s *Store) ListSubscribers(ctx context.Context, after string, limit int) ([]storage.Subscriber, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	impis, err := s.rdb.ZRangeArgs(ctx, lexRange(s.subIndex, after, limit)).Result()
	if err != nil {
		return nil, wrap("listing subscribers", err)
	}
	if len(impis) == 0 {
		return nil, nil
	}
	cmds := make([]*goredis.SliceCmd, len(impis))
	if _, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, impi := range impis {
			cmds[i] = p.HMGet(ctx, s.subKey(impi), "enc", "sqn")
		}
		return nil
	}); err != nil {
		return nil, wrap("listing subscribers", err)
	}
	out := make([]storage.Subscriber, 0, len(impis))
	for _, c := range cmds {
		v := c.Val()
		enc, ok1 := v[0].(string)
		sqn, ok2 := v[1].(string)
		if !ok1 || !ok2 {
			continue // deleted since the index was read
		}
		sub, err := decodeSubscriber(enc, sqn)
		if err != nil {
			return nil, wrap("listing subscribers", err)
		}
		out = append(out, sub)
	}
	return out, nil
}

// lexRange is the ZRANGE of up to limit members of a score-0 sorted set
// after the given one.
func lexRange(key, after string, limit int) goredis.ZRangeArgs {
	a := goredis.ZRangeArgs{Key: key, Start: "-", Stop: "+", ByLex: true}
	if after != "" {
		a.Start = "(" + after
	}
	if limit > 0 {
		a.Count = int64(limit)
	}
	return a
}

// DeleteSubscriber implements storage.SubscriberStore.
func (s *Store) DeleteSubscriber(ctx context.Context, impi string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	key := s.subKey(impi)
	err := s.optimistic(ctx, func(tx *goredis.Tx) error {
		enc, err := tx.HGet(ctx, key, "enc").Result()
		if errors.Is(err, goredis.Nil) {
			return fmt.Errorf("subscriber %q: %w", impi, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		prev, err := codec.DecodeSubscriber(enc)
		if err != nil {
			return fmt.Errorf("decoding subscriber %q: %w", impi, err)
		}
		keys := make([]string, len(prev.IMPUs))
		for i, u := range prev.IMPUs {
			keys[i] = s.impuKey(u)
		}
		if err := tx.Watch(ctx, keys...).Err(); err != nil {
			return err
		}
		owners := make([]*goredis.StringCmd, len(keys))
		if _, err := tx.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range keys {
				owners[i] = p.Get(ctx, k)
			}
			return nil
		}); err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			for i, c := range owners {
				if c.Val() == impi {
					p.Del(ctx, keys[i])
				}
			}
			p.Del(ctx, key)
			p.ZRem(ctx, s.subIndex, impi)
			return nil
		})
		return err
	}, key)
	if err != nil {
		return wrap("deleting subscriber", err)
	}
	return nil
}

// CountSubscribers implements storage.SubscriberStore.
func (s *Store) CountSubscribers(ctx context.Context) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	n, err := s.rdb.ZCard(ctx, s.subIndex).Result()
	if err != nil {
		return 0, wrap("counting subscribers", err)
	}
	return int(n), nil
}
