package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"rcsd/storage"
	"rcsd/storage/internal/codec"
)

// Stored messages are written synchronously: a 202 Accepted promises the
// message is on disk. PutMessage goes through bbolt's Batch, which
// coalesces concurrent callers into one transaction and one fsync (group
// commit), so the store rate is not bounded by one fsync per message.
//
// Layout (recipient identities never contain bytes below 0x20):
//
//	messages:    recipient \x00 id                     -> codec.AppendMessage
//	             recipient \x01 dedup key              -> expires(8) id
//	msgexpiry:   expires(8, big-endian ns) recipient \x00 id  -> nil
//	msgdedupexp: expires(8) recipient \x01 key          -> nil
//	retryat:     at(8) recipient                        -> nil
//	retryof:     recipient                              -> at(8)
//
// A recipient's messages and dedup keys sit next to each other in one
// bucket, so storing a message dirties the one or two leaf pages of its
// recipient instead of one page per index: the commit's page writes were
// most of the store path's CPU (docs/benchmarks.md). The time-prefixed
// indexes only ever grow at their right edge.
var (
	bucketMessages    = []byte("messages")
	bucketMsgExpiry   = []byte("msgexpiry")
	bucketMsgDedupExp = []byte("msgdedupexp")
	// The retry schedule: retryat in time order for DueRetries, retryof
	// to find a recipient's entry when it is moved earlier.
	bucketRetryAt = []byte("retryat")
	bucketRetryOf = []byte("retryof")
)

func messageKey(recipient, id string) []byte { return subKey(recipient, 0, id) }

func dedupKey(recipient, key string) []byte { return subKey(recipient, 1, key) }

func subKey(recipient string, sep byte, rest string) []byte {
	k := make([]byte, 0, len(recipient)+1+len(rest))
	k = append(k, recipient...)
	k = append(k, sep)
	return append(k, rest...)
}

// recipientOf returns the recipient part of a messages-bucket key.
func recipientOf(k []byte) ([]byte, bool) {
	for i, c := range k {
		if c < 2 {
			return k[:i], true
		}
	}
	return nil, false
}

// timeKey is t as 8 big-endian bytes that sort like the times (times
// before 1970 sort first, as 0).
func timeKey(t time.Time) []byte {
	var b [8]byte
	if n := t.UnixNano(); n > 0 && t.Year() < 2262 {
		binary.BigEndian.PutUint64(b[:], uint64(n))
	} else if t.Year() >= 2262 {
		binary.BigEndian.PutUint64(b[:], ^uint64(0))
	}
	return b[:]
}

func expiryKey(t time.Time, recipient, id string) []byte {
	return append(timeKey(t), messageKey(recipient, id)...)
}

// PutMessage implements storage.MessageStore.
func (s *Store) PutMessage(ctx context.Context, m storage.Message) (string, error) {
	if err := s.ready(ctx); err != nil {
		return "", err
	}
	if m.ID == "" || m.Recipient == "" || strings.IndexFunc(m.Recipient, func(r rune) bool { return r < 0x20 }) >= 0 {
		return "", fmt.Errorf("bolt: message needs an ID and a recipient: %w", storage.ErrInvalid)
	}
	var dupOf string
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		dupOf = "" // Batch may run the function again
		mb := tx.Bucket(bucketMessages)
		for _, k := range m.DedupKeys {
			if v := mb.Get(dedupKey(m.Recipient, k)); len(v) >= 8 {
				dupOf = string(v[8:])
				return nil
			}
		}
		mk := messageKey(m.Recipient, m.ID)
		if mb.Get(mk) != nil {
			return fmt.Errorf("message %s of %s: %w", m.ID, m.Recipient, storage.ErrConflict)
		}
		if err := mb.Put(mk, codec.AppendMessage(nil, &m)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMsgExpiry).Put(expiryKey(m.Expires, m.Recipient, m.ID), nil); err != nil {
			return err
		}
		for _, k := range m.DedupKeys {
			if err := mb.Put(dedupKey(m.Recipient, k), append(timeKey(m.Expires), m.ID...)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketMsgDedupExp).Put(append(timeKey(m.Expires), dedupKey(m.Recipient, k)...), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", dbErr("storing message", err)
	}
	if dupOf == "" {
		s.msgCount.Add(1)
	}
	return dupOf, nil
}

func decodeMessage(v []byte) (storage.Message, error) {
	m, err := codec.DecodeMessage(string(v))
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
	var out []storage.Message
	prefix := append([]byte(recipient), 0)
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			m, err := decodeMessage(v)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("reading messages", err)
	}
	return out, nil
}

// UpdateMessage implements storage.MessageStore.
func (s *Store) UpdateMessage(ctx context.Context, m storage.Message) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		mb := tx.Bucket(bucketMessages)
		k := messageKey(m.Recipient, m.ID)
		v := mb.Get(k)
		if v == nil {
			return fmt.Errorf("message %s of %s: %w", m.ID, m.Recipient, storage.ErrNotFound)
		}
		cur, err := decodeMessage(v)
		if err != nil {
			return err
		}
		cur.Attempts, cur.NextAttempt = m.Attempts, m.NextAttempt
		return mb.Put(k, codec.AppendMessage(nil, &cur))
	})
	if err != nil {
		return dbErr("updating message", err)
	}
	return nil
}

// DeleteMessage implements storage.MessageStore.
func (s *Store) DeleteMessage(ctx context.Context, recipient, id string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		mb := tx.Bucket(bucketMessages)
		k := messageKey(recipient, id)
		v := mb.Get(k)
		if v == nil {
			return fmt.Errorf("message %s of %s: %w", id, recipient, storage.ErrNotFound)
		}
		m, err := decodeMessage(v)
		if err != nil {
			return err
		}
		if err := mb.Delete(k); err != nil {
			return err
		}
		return tx.Bucket(bucketMsgExpiry).Delete(expiryKey(m.Expires, recipient, id))
	})
	if err != nil {
		return dbErr("deleting message", err)
	}
	s.msgCount.Add(-1)
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
	var n int64
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		n = 0
		mb, eb := tx.Bucket(bucketMessages), tx.Bucket(bucketMsgExpiry)
		for _, id := range ids {
			k := messageKey(recipient, id)
			v := mb.Get(k)
			if v == nil {
				continue
			}
			m, err := decodeMessage(v)
			if err != nil {
				return err
			}
			if err := mb.Delete(k); err != nil {
				return err
			}
			if err := eb.Delete(expiryKey(m.Expires, recipient, id)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return dbErr("deleting messages", err)
	}
	s.msgCount.Add(-n)
	return nil
}

// ExpireMessages implements storage.MessageStore.
func (s *Store) ExpireMessages(ctx context.Context, now time.Time, limit int) ([]storage.Message, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var out []storage.Message
	end := timeKey(now)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		out = out[:0]
		mb, eb := tx.Bucket(bucketMessages), tx.Bucket(bucketMsgExpiry)
		var gone [][]byte
		c := eb.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], end) <= 0; k, _ = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			mk := k[8:]
			if v := mb.Get(mk); v != nil {
				m, err := decodeMessage(v)
				if err != nil {
					return err
				}
				out = append(out, m)
				if err := mb.Delete(mk); err != nil {
					return err
				}
			}
			gone = append(gone, bytes.Clone(k))
		}
		for _, k := range gone {
			if err := eb.Delete(k); err != nil {
				return err
			}
		}
		// Dedup keys past their expiry are forgotten (their message,
		// stored or not, has the same expiry and is gone).
		dx := tx.Bucket(bucketMsgDedupExp)
		gone = gone[:0]
		c = dx.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], end) <= 0; k, _ = c.Next() {
			if limit > 0 && len(gone) >= limit {
				break
			}
			gone = append(gone, bytes.Clone(k))
		}
		for _, k := range gone {
			rk := k[8:]
			if v := mb.Get(rk); len(v) >= 8 && bytes.Equal(v[:8], k[:8]) {
				if err := mb.Delete(rk); err != nil {
					return err
				}
			}
			if err := dx.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("expiring messages", err)
	}
	s.msgCount.Add(-int64(len(out)))
	return out, nil
}

// PendingRecipients implements storage.MessageStore.
func (s *Store) PendingRecipients(ctx context.Context, after string, limit int) ([]string, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var out []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		// recipient\x02 sorts after every recipient\x00… and recipient\x01… key.
		var k []byte
		if after == "" {
			k, _ = c.First()
		} else {
			k, _ = c.Seek(append([]byte(after), 2))
		}
		for k != nil {
			if limit > 0 && len(out) >= limit {
				break
			}
			r, ok := recipientOf(k)
			if !ok {
				return fmt.Errorf("message key %q without separator", k)
			}
			if k[len(r)] == 0 { // has messages, not only dedup keys
				out = append(out, string(r))
				k, _ = c.Seek(append(bytes.Clone(r), 2))
				continue
			}
			// Only dedup keys so far: look for a message of r after
			// them? Messages (\x00) sort before dedup keys (\x01), so
			// r has none.
			k, _ = c.Seek(append(bytes.Clone(r), 2))
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("listing recipients", err)
	}
	return out, nil
}

// CountMessages implements storage.MessageStore. The count is kept in
// memory (loaded at open, adjusted by every committed change): the
// messages bucket also holds dedup keys, so its key count is not it.
func (s *Store) CountMessages(ctx context.Context) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	return int(s.msgCount.Load()), nil
}

// countMessages counts the stored messages (at open).
func countMessages(tx *bbolt.Tx) int64 {
	var n int64
	c := tx.Bucket(bucketMessages).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if r, ok := recipientOf(k); ok && k[len(r)] == 0 {
			n++
		}
	}
	return n
}

// ScheduleRetry implements storage.MessageStore. It goes through Batch: a
// lost schedule costs a late retry only (the pager's rescan finds it),
// but a batch of failed deliveries should not cost an fsync each.
func (s *Store) ScheduleRetry(ctx context.Context, recipient string, at time.Time) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if recipient == "" {
		return fmt.Errorf("bolt: retry needs a recipient: %w", storage.ErrInvalid)
	}
	tk := timeKey(at)
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		ab, ob := tx.Bucket(bucketRetryAt), tx.Bucket(bucketRetryOf)
		if old := ob.Get([]byte(recipient)); old != nil {
			if bytes.Compare(old, tk) <= 0 {
				return nil // an earlier retry is scheduled
			}
			if err := ab.Delete(append(bytes.Clone(old), recipient...)); err != nil {
				return err
			}
		}
		if err := ab.Put(append(bytes.Clone(tk), recipient...), nil); err != nil {
			return err
		}
		return ob.Put([]byte(recipient), tk)
	})
	if err != nil {
		return dbErr("scheduling a retry", err)
	}
	return nil
}

// DueRetries implements storage.MessageStore.
func (s *Store) DueRetries(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	end := timeKey(now)
	due := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketRetryAt).Cursor().First()
		due = k != nil && len(k) >= 8 && bytes.Compare(k[:8], end) <= 0
		return nil
	})
	if err != nil {
		return nil, dbErr("reading due retries", err)
	}
	if !due {
		return nil, nil // most sweeps: no write transaction (and fsync)
	}
	var out []string
	err = s.db.Update(func(tx *bbolt.Tx) error {
		out = out[:0]
		ab, ob := tx.Bucket(bucketRetryAt), tx.Bucket(bucketRetryOf)
		var keys [][]byte
		c := ab.Cursor()
		for k, _ := c.First(); k != nil && len(k) >= 8 && bytes.Compare(k[:8], end) <= 0; k, _ = c.Next() {
			if limit > 0 && len(keys) >= limit {
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := ab.Delete(k); err != nil {
				return err
			}
			if err := ob.Delete(k[8:]); err != nil {
				return err
			}
			out = append(out, string(k[8:]))
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("taking due retries", err)
	}
	return out, nil
}
