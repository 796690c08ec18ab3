package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"rcsd/storage"
	"rcsd/storage/internal/check"
	"rcsd/storage/internal/codec"
)

// The bindings of an AOR are one string, their codec encoding, expired
// ones included. The index {index}:bindings has one member per binding,
// AOR NUL key, scored with its expiry, so CountBindings is its cardinality
// and ExpireBindings finds expired bindings without scanning AORs.

func bindingMember(aor string, b *storage.Binding) string { return aor + "\x00" + b.Key() }

// indexBindings updates the bindings index from old to next bindings of
// aor: members of old not in next go, members of next are (re)scored.
func (s *Store) indexBindings(ctx context.Context, p goredis.Pipeliner, aor string, old, next []storage.Binding) {
	keep := make(map[string]struct{}, len(next))
	zs := make([]goredis.Z, len(next))
	for i := range next {
		m := bindingMember(aor, &next[i])
		keep[m] = struct{}{}
		zs[i] = goredis.Z{Score: ms(next[i].Expires), Member: m}
	}
	var gone []any
	for i := range old {
		if m := bindingMember(aor, &old[i]); !hasKey(keep, m) {
			gone = append(gone, m)
		}
	}
	if len(gone) > 0 {
		p.ZRem(ctx, s.idxBindings, gone...)
		p.ZRem(ctx, s.idxBindingKeys, gone...)
	}
	if len(zs) > 0 {
		p.ZAdd(ctx, s.idxBindings, zs...)
		lex := make([]goredis.Z, len(zs))
		for i := range zs {
			lex[i] = goredis.Z{Member: zs[i].Member}
		}
		p.ZAdd(ctx, s.idxBindingKeys, lex...)
	}
}

// resyncIndex sets the index members of one AOR (ARGV[1]) to the
// score/member pairs of ARGV[2..]. KEYS: {index}:bindings,
// {index}:binding-keys.
var resyncIndex = goredis.NewScript(`
local cur = redis.call('ZRANGE', KEYS[2], '[' .. ARGV[1] .. '\0', '(' .. ARGV[1] .. '\1', 'BYLEX')
local want = {}
for i = 3, #ARGV, 2 do want[ARGV[i]] = true end
for _, m in ipairs(cur) do
  if not want[m] then
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZREM', KEYS[2], m)
  end
end
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], 0, ARGV[i + 1])
end
return 0
`)

// maxResyncRounds bounds resyncBindings under a storm of writers.
const maxResyncRounds = 100

// resyncBindings makes the index entries of aor match its stored bindings
// (Cluster, where the index is in another slot). It reads the bindings,
// sets the index to them, and reads them again, until they did not change
// in between: the last writer to resync then leaves the index matching
// the last stored state, whatever order the writers' resyncs ran in.
func (s *Store) resyncBindings(ctx context.Context, aor string) error {
	key := s.aorKey(aor)
	enc, err := s.rdb.Get(ctx, key).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	for range maxResyncRounds {
		var bs []storage.Binding
		if enc != "" {
			if bs, err = decodeBindings(enc, nil); err != nil {
				return err
			}
		}
		args := make([]any, 0, 1+2*len(bs))
		args = append(args, aor)
		for i := range bs {
			args = append(args, ms(bs[i].Expires), bindingMember(aor, &bs[i]))
		}
		if err := resyncIndex.Run(ctx, s.rdb, []string{s.idxBindings, s.idxBindingKeys}, args...).Err(); err != nil {
			return err
		}
		again, err := s.rdb.Get(ctx, key).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		if again == enc {
			return nil
		}
		enc = again
	}
	return fmt.Errorf("bindings of %q kept changing", aor)
}

func hasKey(m map[string]struct{}, k string) bool { _, ok := m[k]; return ok }

// storeBindings queues the write of aor's bindings: the key with its
// backstop TTL, or its deletion.
func (s *Store) storeBindings(ctx context.Context, p goredis.Pipeliner, key string, enc []byte, bs []storage.Binding) {
	if len(bs) == 0 {
		p.Del(ctx, key)
		return
	}
	latest := bs[0].Expires
	for i := range bs {
		if bs[i].Expires.After(latest) {
			latest = bs[i].Expires
		}
	}
	p.SetArgs(ctx, key, enc, goredis.SetArgs{ExpireAt: s.ttl(latest)})
}

// ttl is the backstop expiry of data whose latest expiry is t: Retention
// after it, and never less than Retention from now, so data whose expiry
// already passed on Redis's clock still waits for a sweep.
func (s *Store) ttl(t time.Time) time.Time {
	at := t.Add(s.keep)
	if floor := time.Now().Add(s.keep); at.Before(floor) {
		at = floor
	}
	return at.Truncate(time.Millisecond)
}

func decodeBindings(enc string, keep func(*storage.Binding) bool) ([]storage.Binding, error) {
	bs, err := codec.DecodeBindings(enc, keep)
	if err != nil {
		return nil, fmt.Errorf("decoding bindings: %w", err)
	}
	return bs, nil
}

// Bindings implements storage.BindingStore.
func (s *Store) Bindings(ctx context.Context, aor string, now time.Time) ([]storage.Binding, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	enc, err := s.rdb.Get(ctx, s.aorKey(aor)).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("reading bindings", err)
	}
	bs, err := decodeBindings(enc, func(b *storage.Binding) bool { return b.Expires.After(now) })
	if err != nil {
		return nil, wrap("reading bindings of "+aor, err)
	}
	return bs, nil
}

// UpdateBindings implements storage.BindingStore optimistically: fn runs
// between a WATCH of the AOR's key and the MULTI/EXEC that writes what it
// returned, and runs again when another writer changed the key meanwhile.
func (s *Store) UpdateBindings(ctx context.Context, aor string, now time.Time, fn func(cur []storage.Binding) ([]storage.Binding, error)) ([]storage.Binding, error) {
	if aor == "" || strings.IndexByte(aor, 0) >= 0 {
		return nil, fmt.Errorf("redis: empty AOR or AOR with a NUL byte: %w", storage.ErrInvalid)
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	key := s.aorKey(aor)
	var (
		fnErr error
		old   []storage.Binding
		out   []storage.Binding
	)
	err := s.optimistic(ctx, func(tx *goredis.Tx) error {
		enc, err := tx.Get(ctx, key).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		old, err = decodeBindings(enc, nil)
		if enc == "" {
			old, err = nil, nil
		}
		if err != nil {
			return err
		}
		// fn gets its own decoding: it may scribble on it.
		var cur []storage.Binding
		if enc != "" {
			if cur, err = decodeBindings(enc, func(b *storage.Binding) bool { return b.Expires.After(now) }); err != nil {
				return err
			}
		}
		var next []storage.Binding
		next, fnErr = fn(cur)
		if fnErr != nil {
			return fnErr
		}
		if err := check.Bindings(aor, next); err != nil {
			return err
		}
		newEnc := codec.AppendBindings(nil, next)
		if _, err := tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			s.storeBindings(ctx, p, key, newEnc, next)
			if !s.cluster {
				s.indexBindings(ctx, p, aor, old, next)
			}
			return nil
		}); err != nil {
			return err
		}
		// Returned from the stored encoding: nothing the caller holds
		// (what fn returned) is shared.
		if len(next) > 0 {
			out, err = decodeBindings(string(newEnc), nil)
		}
		return err
	}, key)
	if fnErr != nil {
		return nil, fnErr
	}
	if err != nil {
		return nil, wrap("updating bindings of "+aor, err)
	}
	if s.cluster {
		if err := s.resyncBindings(ctx, aor); err != nil {
			return nil, wrap("indexing bindings of "+aor+" (they are stored)", err)
		}
	}
	return out, nil
}

// sweepBatch is how many index entries a sweep without a limit reads at a
// time.
const sweepBatch = 512

// maxSweepRounds bounds a sweep's reads of the index, in case concurrent
// writers keep moving entries under it.
const maxSweepRounds = 10_000

// ExpireBindings implements storage.BindingStore: it reads candidates from
// the index (score at or before now's millisecond), and removes the
// bindings of each candidate AOR that are expired at the nanosecond, each
// AOR in an optimistic transaction.
func (s *Store) ExpireBindings(ctx context.Context, now time.Time, limit int) ([]storage.Binding, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var out []storage.Binding
	var offset int64 // candidates left in place: not expired at the nanosecond
	for range maxSweepRounds {
		n := int64(sweepBatch)
		if limit > 0 {
			n = int64(limit - len(out))
		}
		cands, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{
			Key: s.idxBindings, Start: "-inf", Stop: ms(now), ByScore: true, Offset: offset, Count: n,
		}).Result()
		if err != nil {
			return out, wrap("expiring bindings", err)
		}
		if len(cands) == 0 {
			break
		}
		// Group the candidates by AOR, in index order.
		var aors []string
		byAOR := make(map[string][]string)
		for _, m := range cands {
			aor, _, ok := cutNUL(m)
			if !ok {
				aor = m
			}
			if _, seen := byAOR[aor]; !seen {
				aors = append(aors, aor)
			}
			byAOR[aor] = append(byAOR[aor], m)
		}
		for _, aor := range aors {
			quota := 0
			if limit > 0 {
				quota = limit - len(out)
				if quota <= 0 {
					break
				}
			}
			got, left, err := s.expireAOR(ctx, aor, now, quota, byAOR[aor])
			if err != nil {
				return out, err
			}
			out = append(out, got...)
			offset += int64(left)
		}
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

func cutNUL(m string) (before, after string, ok bool) {
	for i := 0; i < len(m); i++ {
		if m[i] == 0 {
			return m[:i], m[i+1:], true
		}
	}
	return m, "", false
}

// expireAOR removes up to quota (0: all) bindings of aor expired at now,
// and drops the index members among cands whose binding is gone. It
// returns the removed bindings and how many of cands stay in the index.
func (s *Store) expireAOR(ctx context.Context, aor string, now time.Time, quota int, cands []string) ([]storage.Binding, int, error) {
	key := s.aorKey(aor)
	var (
		removed []storage.Binding
		drop    []any
		left    int
	)
	err := s.optimistic(ctx, func(tx *goredis.Tx) error {
		removed, drop, left = nil, nil, 0
		enc, err := tx.Get(ctx, key).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		var all []storage.Binding
		if enc != "" {
			if all, err = decodeBindings(enc, nil); err != nil {
				return err
			}
		}
		var kept []storage.Binding
		for i := range all {
			if !all[i].Expires.After(now) && (quota <= 0 || len(removed) < quota) {
				removed = append(removed, all[i])
			} else {
				kept = append(kept, all[i])
			}
		}
		keptMembers := make(map[string]struct{}, len(kept))
		for i := range kept {
			keptMembers[bindingMember(aor, &kept[i])] = struct{}{}
		}
		for i := range removed {
			drop = append(drop, bindingMember(aor, &removed[i]))
		}
		for _, m := range cands {
			if hasKey(keptMembers, m) {
				left++
			} else if !containsAny(drop, m) {
				drop = append(drop, m) // stale: its binding is gone
			}
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			if len(removed) > 0 {
				s.storeBindings(ctx, p, key, codec.AppendBindings(nil, kept), kept)
			}
			if !s.cluster && len(drop) > 0 {
				p.ZRem(ctx, s.idxBindings, drop...)
				p.ZRem(ctx, s.idxBindingKeys, drop...)
			}
			return nil
		})
		return err
	}, key)
	if err != nil {
		return nil, 0, wrap("expiring bindings of "+aor, err)
	}
	if s.cluster && len(drop) > 0 {
		if err := s.resyncBindings(ctx, aor); err != nil {
			return nil, 0, wrap("expiring bindings of "+aor, err)
		}
	}
	return removed, left, nil
}

func containsAny(xs []any, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// CountBindings implements storage.BindingStore.
func (s *Store) CountBindings(ctx context.Context) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	n, err := s.rdb.ZCard(ctx, s.idxBindings).Result()
	if err != nil {
		return 0, wrap("counting bindings", err)
	}
	return int(n), nil
}

// AORs implements storage.BindingStore: the AORs are the prefixes of the
// lexicographic index {index}:binding-keys ("AOR NUL key" members), read
// in pages and de-duplicated.
func (s *Store) AORs(ctx context.Context, after string, limit int) ([]string, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var out []string
	min := "-"
	if after != "" {
		min = "[" + after + "\x01" // past every member of after
	}
	for {
		ms, err := s.rdb.ZRangeByLex(ctx, s.idxBindingKeys, &goredis.ZRangeBy{Min: min, Max: "+", Count: 1000}).Result()
		if err != nil {
			return nil, wrap("listing AORs", err)
		}
		if len(ms) == 0 {
			return out, nil
		}
		for _, m := range ms {
			aor, _, _ := strings.Cut(m, "\x00")
			if len(out) == 0 || out[len(out)-1] != aor {
				if limit > 0 && len(out) >= limit {
					return out, nil
				}
				out = append(out, aor)
			}
		}
		min = "(" + ms[len(ms)-1]
	}
}
