package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"rcsd/storage"
	"rcsd/storage/internal/codec"
)

// The scripts below take a recipient's keys (msg, ids, dedup, dedupexp;
// see recipientKeys) and, on a single server, the global index keys after
// them, which they then update in the same step. In Cluster the index keys
// are in another slot: the scripts get the recipient's keys only and the
// caller updates the indexes afterwards.

// putMessage stores a message unless a dedup key is known. ARGV: id,
// encoding, expiry seconds, expiry nanoseconds, expiry score (ms), index
// member, recipient, backstop TTL (Unix ms), dedup keys... KEYS[5..7]:
// {index}:msgs, {index}:dedup, {index}:recipients. Returns {1, dupOf,
// its expiry seconds, nanoseconds}, {2} (ID taken) or {0} (stored).
var putMessage = goredis.NewScript(`
for i = 9, #ARGV do
  local v = redis.call('HGET', KEYS[3], ARGV[i])
  if v then
    local sec, nsec, id = string.match(v, '^(%S+) (%S+) (.*)$')
    return {1, id, sec, nsec}
  end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {2} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
local dv = ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[1]
for i = 9, #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], dv)
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[i])
end
local ttl = tonumber(ARGV[8])
for k = 1, 4 do
  local t = redis.call('PEXPIRETIME', KEYS[k])
  if t == -1 or (t >= 0 and t < ttl) then redis.call('PEXPIREAT', KEYS[k], ARGV[8]) end
end
if #KEYS > 4 then
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[6])
  if #ARGV >= 9 then redis.call('ZADD', KEYS[6], 'LT', ARGV[5], ARGV[7]) end
  redis.call('ZADD', KEYS[7], 0, ARGV[7])
end
return {0}
`)

// readMessages returns up to ARGV[1] (<= 0: all) messages of KEYS[1]
// (msg) in the order of KEYS[2] (ids).
var readMessages = goredis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
local out = {}
for i = 1, #ids, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #ids) do chunk[#chunk + 1] = ids[j] end
  local vs = redis.call('HMGET', KEYS[1], unpack(chunk))
  for j = 1, #vs do
    if vs[j] then out[#out + 1] = vs[j] end
  end
end
return out
`)

// deleteMessages removes messages (not their dedup keys). ARGV:
// recipient, ids... KEYS: msg, ids[, {index}:msgs, {index}:recipients].
// Returns the IDs removed.
var deleteMessages = goredis.NewScript(`
local gone = {}
for i = 2, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    gone[#gone + 1] = ARGV[i]
    if #KEYS > 2 then redis.call('ZREM', KEYS[3], ARGV[1] .. '\0' .. ARGV[i]) end
  end
end
if #KEYS > 2 and redis.call('ZCARD', KEYS[2]) == 0 then redis.call('ZREM', KEYS[4], ARGV[1]) end
return gone
`)

// forgetDedup forgets the dedup keys of one recipient expired at now,
// except those whose message is still stored. ARGV: now (ms), now
// seconds, now nanoseconds, recipient. KEYS: dedup, dedupexp, msg[,
// {index}:dedup]. Returns the earliest remaining expiry score, or false
// when none is left.
var forgetDedup = goredis.NewScript(`
local now, sec, nsec = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for _, k in ipairs(redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE')) do
  local v = redis.call('HGET', KEYS[1], k)
  if not v then
    redis.call('ZREM', KEYS[2], k)
  else
    local s, ns, id = string.match(v, '^(%S+) (%S+) (.*)$')
    s, ns = tonumber(s), tonumber(ns)
    if (s < sec or (s == sec and ns <= nsec)) and redis.call('HEXISTS', KEYS[3], id) == 0 then
      redis.call('HDEL', KEYS[1], k)
      redis.call('ZREM', KEYS[2], k)
    end
  end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #KEYS > 3 then
  if #first == 0 then redis.call('ZREM', KEYS[4], ARGV[4])
  else redis.call('ZADD', KEYS[4], first[2], ARGV[4]) end
end
if #first == 0 then return false end
return first[2]
`)

func msgMember(recipient, id string) string { return recipient + "\x00" + id }

// withIndex appends the global index keys to a script's keys on a single
// server.
func (s *Store) withIndex(keys []string, index ...string) []string {
	if s.cluster {
		return keys
	}
	return append(keys, index...)
}

// backstop rounds a recipient's key TTL up to the hour: the script moves
// the TTL only when it grows, so messages arriving within an hour write
// no PEXPIREATs (four AOF and replication records per message before).
func backstop(t time.Time) time.Time {
	h := t.Truncate(time.Hour)
	if h.Before(t) {
		h = h.Add(time.Hour)
	}
	return h
}

func validRecipient(r string) bool { return r != "" && !strings.ContainsRune(r, 0) }

// PutMessage implements storage.MessageStore: one script on the
// recipient's slot.
func (s *Store) PutMessage(ctx context.Context, m storage.Message) (string, error) {
	if err := s.ready(ctx); err != nil {
		return "", err
	}
	if m.ID == "" || !validRecipient(m.Recipient) {
		return "", fmt.Errorf("redis: message needs an ID and a recipient: %w", storage.ErrInvalid)
	}
	score := ms(m.Expires)
	member := msgMember(m.Recipient, m.ID)
	args := []any{
		m.ID, codec.AppendMessage(nil, &m),
		m.Expires.Unix(), m.Expires.Nanosecond(), score, member, m.Recipient,
		backstop(s.ttl(m.Expires)).UnixMilli(),
	}
	for _, k := range m.DedupKeys {
		args = append(args, k)
	}
	keys := s.withIndex(s.recipientKeys(m.Recipient), s.idxMsgs, s.idxDedup, s.idxRecpts)
	res, replicas, err := s.runPut(ctx, keys, args)
	if err != nil {
		return "", wrap("storing message", err)
	}
	code, _ := res[0].(int64)
	if code == 2 {
		return "", fmt.Errorf("redis: message %s of %s: %w", m.ID, m.Recipient, storage.ErrConflict)
	}
	if replicas < s.waitN {
		// Stored (or already known: a retry of a message whose first
		// attempt was not replicated in time) on the primary, but a
		// failover now could lose it: not to be acknowledged.
		return "", fmt.Errorf("redis: message %s of %s: %d of %d replicas within %v: %w",
			m.ID, m.Recipient, replicas, s.waitN, s.waitT, ErrNotReplicated)
	}
	if code == 1 {
		dup, _ := res[1].(string)
		if s.cluster && len(res) >= 4 {
			// The retry of a message whose indexing failed (a 503, say
			// TRYAGAIN during a slot migration) finds it stored: index
			// it now, or it would be acknowledged and never indexed.
			sec, _ := strconv.ParseInt(fmt.Sprint(res[2]), 10, 64)
			nsec, _ := strconv.ParseInt(fmt.Sprint(res[3]), 10, 64)
			if err := s.index(ctx, keys[0], m.Recipient, dup, ms(time.Unix(sec, nsec)), true); err != nil {
				return "", err
			}
		}
		return dup, nil
	}
	if s.cluster {
		if err := s.index(ctx, keys[0], m.Recipient, m.ID, score, len(m.DedupKeys) > 0); err != nil {
			return "", err
		}
	}
	return "", nil
}

// index is PutMessage's second step in Cluster, where the global indexes
// are in another slot than the recipient's keys (msgKey): idempotent, so
// a retry repairs what a failed first attempt left out.
func (s *Store) index(ctx context.Context, msgKey, recipient, id string, score float64, dedup bool) error {
	_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZAdd(ctx, s.idxMsgs, goredis.Z{Score: score, Member: msgMember(recipient, id)})
		if dedup {
			p.ZAddLT(ctx, s.idxDedup, goredis.Z{Score: score, Member: recipient})
		}
		p.ZAdd(ctx, s.idxRecpts, goredis.Z{Member: recipient})
		return nil
	})
	if err != nil {
		return wrap("indexing message (it is stored)", err)
	}
	// A delete that ran between the script and the indexing (or, for a
	// duplicate, long before it) could not unindex the message: check
	// and undo.
	n, err := s.rdb.HExists(ctx, msgKey, id).Result()
	if err == nil && !n {
		err = s.unindexMessages(ctx, recipient, []string{id})
	}
	if err != nil {
		return wrap("indexing message (it is stored)", err)
	}
	return nil
}

// runPut runs the putMessage script and, with Options.WaitReplicas, WAIT
// in the same pipeline (one round trip): WAIT blocks until the replicas
// have everything this connection wrote, which includes the script's
// write, or an earlier attempt's when the script found the message known.
// It returns the script's result and how many replicas acknowledged (0
// when not waiting).
func (s *Store) runPut(ctx context.Context, keys []string, args []any) ([]any, int, error) {
	if s.waitN == 0 {
		res, err := putMessage.Run(ctx, s.rdb, keys, args...).Slice()
		return res, 0, err
	}
	run := func(sha bool) (*goredis.Cmd, *goredis.Cmd) {
		var c, w *goredis.Cmd
		_, _ = s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
			if sha {
				c = putMessage.EvalSha(ctx, p, keys, args...)
			} else {
				c = putMessage.Eval(ctx, p, keys, args...)
			}
			// Pipeliner has no Wait; the pipeline is read under the
			// client's read timeout, which MaxWaitTimeout stays below.
			w = p.Do(ctx, "WAIT", s.waitN, s.waitT.Milliseconds())
			return nil
		})
		return c, w
	}
	c, w := run(true)
	if err := c.Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		c, w = run(false) // the server's script cache is empty (restarted, failed over)
	}
	res, err := c.Slice()
	if err != nil {
		return nil, 0, err
	}
	n, err := w.Int()
	if err != nil {
		return nil, 0, fmt.Errorf("waiting for replicas: %w", err)
	}
	return res, int(n), nil
}

func decodeMessage(v string) (storage.Message, error) {
	m, err := codec.DecodeMessage(v)
	if err != nil {
		return m, fmt.Errorf("decoding message: %w", err)
	}
	return m, nil
}

// PendingMessages implements storage.MessageStore.
func (s *Store) PendingMessages(ctx context.Context, recipient string, limit int) ([]storage.Message, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	if !validRecipient(recipient) {
		return nil, nil
	}
	ks := s.recipientKeys(recipient)
	vs, err := readMessages.Run(ctx, s.rdb, ks[:2], max(limit, 0)).StringSlice()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, wrap("reading messages", err)
	}
	if len(vs) == 0 {
		return nil, nil
	}
	out := make([]storage.Message, len(vs))
	for i, v := range vs {
		if out[i], err = decodeMessage(v); err != nil {
			return nil, wrap("reading messages", err)
		}
	}
	return out, nil
}

// UpdateMessage implements storage.MessageStore.
func (s *Store) UpdateMessage(ctx context.Context, m storage.Message) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	notFound := fmt.Errorf("redis: message %s of %s: %w", m.ID, m.Recipient, storage.ErrNotFound)
	if !validRecipient(m.Recipient) {
		return notFound
	}
	key := s.recipientKeys(m.Recipient)[0]
	err := s.optimistic(ctx, func(tx *goredis.Tx) error {
		v, err := tx.HGet(ctx, key, m.ID).Result()
		if errors.Is(err, goredis.Nil) {
			return notFound
		}
		if err != nil {
			return err
		}
		cur, err := decodeMessage(v)
		if err != nil {
			return err
		}
		cur.Attempts, cur.NextAttempt = m.Attempts, m.NextAttempt
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.HSet(ctx, key, m.ID, codec.AppendMessage(nil, &cur))
			return nil
		})
		return err
	}, key)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound
	}
	if err != nil {
		return wrap("updating message", err)
	}
	return nil
}

// DeleteMessage implements storage.MessageStore.
func (s *Store) DeleteMessage(ctx context.Context, recipient, id string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	gone, err := s.deleteMessages(ctx, recipient, []string{id})
	if err != nil {
		return err
	}
	if gone == 0 {
		return fmt.Errorf("redis: message %s of %s: %w", id, recipient, storage.ErrNotFound)
	}
	return nil
}

// DeleteMessages implements storage.MessageStore.
func (s *Store) DeleteMessages(ctx context.Context, recipient string, ids []string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := s.deleteMessages(ctx, recipient, ids)
	return err
}

func (s *Store) deleteMessages(ctx context.Context, recipient string, ids []string) (int, error) {
	if !validRecipient(recipient) {
		return 0, nil
	}
	args := make([]any, 0, 1+len(ids))
	args = append(args, recipient)
	for _, id := range ids {
		args = append(args, id)
	}
	keys := s.withIndex(s.recipientKeys(recipient)[:2], s.idxMsgs, s.idxRecpts)
	gone, err := deleteMessages.Run(ctx, s.rdb, keys, args...).StringSlice()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, wrap("deleting messages", err)
	}
	if s.cluster && len(gone) > 0 {
		if err := s.unindexMessages(ctx, recipient, gone); err != nil {
			return 0, err
		}
	}
	return len(gone), nil
}

// unindexMessages drops removed messages from the index, and the
// recipient from the recipients index when it has none left (Cluster: a
// second step after the recipient's own keys changed).
func (s *Store) unindexMessages(ctx context.Context, recipient string, ids []string) error {
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = msgMember(recipient, id)
	}
	if err := s.rdb.ZRem(ctx, s.idxMsgs, members...).Err(); err != nil {
		return wrap("unindexing messages", err)
	}
	// The recipient leaves the recipients index when it has no message
	// left, checked again after, since a put may have raced the removal
	// (its own ZADD may have come first).
	queue := s.recipientKeys(recipient)[1]
	n, err := s.rdb.ZCard(ctx, queue).Result()
	if err != nil || n > 0 {
		return wrapIf("unindexing messages", err)
	}
	if err := s.rdb.ZRem(ctx, s.idxRecpts, recipient).Err(); err != nil {
		return wrap("unindexing messages", err)
	}
	if n, err = s.rdb.ZCard(ctx, queue).Result(); err != nil || n == 0 {
		return wrapIf("unindexing messages", err)
	}
	return wrapIf("unindexing messages", s.rdb.ZAdd(ctx, s.idxRecpts, goredis.Z{Member: recipient}).Err())
}

// ExpireMessages implements storage.MessageStore: messages are found
// through the index, checked at the nanosecond and removed per recipient
// in an optimistic transaction; then the dedup keys of the recipients the
// dedup index names are swept by a script each.
func (s *Store) ExpireMessages(ctx context.Context, now time.Time, limit int) ([]storage.Message, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var out []storage.Message
	var offset int64
	for range maxSweepRounds {
		n := int64(sweepBatch)
		if limit > 0 {
			n = int64(limit - len(out))
		}
		cands, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{
			Key: s.idxMsgs, Start: "-inf", Stop: ms(now), ByScore: true, Offset: offset, Count: n,
		}).Result()
		if err != nil {
			return out, wrap("expiring messages", err)
		}
		if len(cands) == 0 {
			break
		}
		var rs []string
		byR := make(map[string][]string)
		for _, m := range cands {
			r, id, _ := cutNUL(m)
			if _, seen := byR[r]; !seen {
				rs = append(rs, r)
			}
			byR[r] = append(byR[r], id)
		}
		for _, r := range rs {
			quota := 0
			if limit > 0 {
				if quota = limit - len(out); quota <= 0 {
					break
				}
			}
			got, left, err := s.expireRecipient(ctx, r, now, quota, byR[r])
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
	if err := s.forgetDedup(ctx, now); err != nil {
		return out, err
	}
	return out, nil
}

// expireRecipient removes up to quota (0: all) of recipient r's messages
// among ids that are expired at now. It returns them and how many of ids
// stay in the index.
func (s *Store) expireRecipient(ctx context.Context, r string, now time.Time, quota int, ids []string) ([]storage.Message, int, error) {
	ks := s.recipientKeys(r)
	var (
		removed []storage.Message
		drop    []string // index entries to remove: expired or stale
		left    int
		empty   bool
	)
	err := s.optimistic(ctx, func(tx *goredis.Tx) error {
		removed, drop, left = nil, nil, 0
		vs, err := tx.HMGet(ctx, ks[0], ids...).Result()
		if err != nil {
			return err
		}
		card, err := tx.ZCard(ctx, ks[1]).Result()
		if err != nil {
			return err
		}
		for i, v := range vs {
			enc, ok := v.(string)
			if !ok {
				drop = append(drop, ids[i]) // stale
				continue
			}
			m, err := decodeMessage(enc)
			if err != nil {
				return err
			}
			if !m.Expires.After(now) && (quota <= 0 || len(removed) < quota) {
				removed = append(removed, m)
				drop = append(drop, ids[i])
			} else {
				left++
			}
		}
		empty = card == int64(len(removed))
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			if len(removed) > 0 {
				gone := make([]string, len(removed))
				zgone := make([]any, len(removed))
				for i := range removed {
					gone[i], zgone[i] = removed[i].ID, removed[i].ID
				}
				p.HDel(ctx, ks[0], gone...)
				p.ZRem(ctx, ks[1], zgone...)
			}
			if !s.cluster {
				if len(drop) > 0 {
					members := make([]any, len(drop))
					for i, id := range drop {
						members[i] = msgMember(r, id)
					}
					p.ZRem(ctx, s.idxMsgs, members...)
				}
				if empty {
					p.ZRem(ctx, s.idxRecpts, r)
				}
			}
			return nil
		})
		return err
	}, ks[0], ks[1])
	if err != nil {
		return nil, 0, wrap("expiring messages of "+r, err)
	}
	if s.cluster && len(drop) > 0 {
		if err := s.unindexMessages(ctx, r, drop); err != nil {
			return nil, 0, err
		}
	}
	return removed, left, nil
}

// forgetDedup sweeps the dedup keys of every recipient whose earliest
// dedup expiry is due.
func (s *Store) forgetDedup(ctx context.Context, now time.Time) error {
	nowMs := ms(now)
	var offset int64
	for range maxSweepRounds {
		rs, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{
			Key: s.idxDedup, Start: "-inf", Stop: nowMs, ByScore: true, Offset: offset, Count: sweepBatch,
		}).Result()
		if err != nil {
			return wrap("forgetting dedup keys", err)
		}
		if len(rs) == 0 {
			return nil
		}
		for _, r := range rs {
			ks := s.recipientKeys(r)
			keys := s.withIndex([]string{ks[2], ks[3], ks[0]}, s.idxDedup)
			next, err := forgetDedup.Run(ctx, s.rdb, keys, nowMs, now.Unix(), now.Nanosecond(), r).Text()
			none := errors.Is(err, goredis.Nil)
			if err != nil && !none {
				return wrap("forgetting dedup keys of "+r, err)
			}
			var score float64
			if !none {
				if score, err = strconv.ParseFloat(next, 64); err != nil {
					return wrap("forgetting dedup keys of "+r, err)
				}
				if score <= nowMs {
					offset++ // still due at the millisecond: skip it from now on
				}
			}
			if s.cluster {
				if err := s.resyncDedup(ctx, r, ks[3]); err != nil {
					return wrap("forgetting dedup keys of "+r, err)
				}
			}
		}
	}
	return nil
}

// PendingRecipients implements storage.MessageStore.
func (s *Store) PendingRecipients(ctx context.Context, after string, limit int) ([]string, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	rs, err := s.rdb.ZRangeArgs(ctx, lexRange(s.idxRecpts, after, limit)).Result()
	if err != nil {
		return nil, wrap("listing recipients", err)
	}
	return rs, nil
}

// CountMessages implements storage.MessageStore.
func (s *Store) CountMessages(ctx context.Context) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	n, err := s.rdb.ZCard(ctx, s.idxMsgs).Result()
	if err != nil {
		return 0, wrap("counting messages", err)
	}
	return int(n), nil
}

// resyncDedup sets recipient r's entry in the dedup index to the earliest
// expiry in its dedupexp key (Cluster, where they are in different slots),
// reading it again after each write until it did not change meanwhile, so
// that a racing PutMessage's own index update is not overwritten.
func (s *Store) resyncDedup(ctx context.Context, r, dedupexp string) error {
	first := func() ([]goredis.Z, error) { return s.rdb.ZRangeWithScores(ctx, dedupexp, 0, 0).Result() }
	cur, err := first()
	if err != nil {
		return err
	}
	for range maxResyncRounds {
		if len(cur) == 0 {
			err = s.rdb.ZRem(ctx, s.idxDedup, r).Err()
		} else {
			err = s.rdb.ZAdd(ctx, s.idxDedup, goredis.Z{Score: cur[0].Score, Member: r}).Err()
		}
		if err != nil {
			return err
		}
		again, err := first()
		if err != nil {
			return err
		}
		if len(again) == len(cur) && (len(cur) == 0 || again[0] == cur[0]) {
			return nil
		}
		cur = again
	}
	return fmt.Errorf("dedup keys of %q kept changing", r)
}

// wrapIf is wrap for errors that may be nil.
func wrapIf(op string, err error) error {
	if err == nil {
		return nil
	}
	return wrap(op, err)
}

// ScheduleRetry implements storage.MessageStore: one sorted set scored by
// the retry time in ms; ZADD LT keeps an earlier time (Redis >= 6.2). It
// does not wait for replicas: a lost schedule costs a late retry only
// (the pager's rescan finds it).
func (s *Store) ScheduleRetry(ctx context.Context, recipient string, at time.Time) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if !validRecipient(recipient) {
		return fmt.Errorf("redis: retry for recipient %q: %w", recipient, storage.ErrInvalid)
	}
	err := s.rdb.ZAddLT(ctx, s.idxRetry, goredis.Z{Score: float64(at.UnixMilli()), Member: recipient}).Err()
	return wrapIf("scheduling a retry", err)
}

// takeDue pops up to ARGV[2] (<= 0: all) members of KEYS[1] scored at or
// below ARGV[1], lowest first: in one step, so that two nodes never take
// the same one.
var takeDue = goredis.NewScript(`
local args = {KEYS[1], '-inf', ARGV[1], 'BYSCORE'}
if tonumber(ARGV[2]) > 0 then
  args[5], args[6], args[7] = 'LIMIT', 0, ARGV[2]
end
local due = redis.call('ZRANGE', unpack(args))
for i = 1, #due, 500 do
  redis.call('ZREM', KEYS[1], unpack(due, i, math.min(i + 499, #due)))
end
return due
`)

// DueRetries implements storage.MessageStore.
func (s *Store) DueRetries(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	rs, err := takeDue.Run(ctx, s.rdb, []string{s.idxRetry}, now.UnixMilli(), limit).StringSlice()
	if err != nil {
		return nil, wrap("taking due retries", err)
	}
	return rs, nil
}
