package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
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
// Layout (recipient identities never contain a NUL byte):
//
//	messages:    recipient \0 id                       -> codec.AppendMessage
//	msgexpiry:   expires(8, big-endian ns) recipient \0 id -> nil
//	msgdedup:    recipient \0 key                      -> expires(8) id
//	msgdedupexp: expires(8) recipient \0 key            -> nil
var (
	bucketMessages    = []byte("messages")
	bucketMsgExpiry   = []byte("msgexpiry")
	bucketMsgDedup    = []byte("msgdedup")
	bucketMsgDedupExp = []byte("msgdedupexp")
)

func messageKey(recipient, id string) []byte {
	k := make([]byte, 0, len(recipient)+1+len(id))
	k = append(k, recipient...)
	k = append(k, 0)
	return append(k, id...)
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
	if m.ID == "" || m.Recipient == "" || bytes.IndexByte([]byte(m.Recipient), 0) >= 0 {
		return "", fmt.Errorf("bolt: message needs an ID and a recipient: %w", storage.ErrInvalid)
	}
	var dupOf string
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		dupOf = "" // Batch may run the function again
		dd := tx.Bucket(bucketMsgDedup)
		for _, k := range m.DedupKeys {
			if v := dd.Get(messageKey(m.Recipient, k)); len(v) >= 8 {
				dupOf = string(v[8:])
				return nil
			}
		}
		mk := messageKey(m.Recipient, m.ID)
		mb := tx.Bucket(bucketMessages)
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
			if err := dd.Put(messageKey(m.Recipient, k), append(timeKey(m.Expires), m.ID...)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketMsgDedupExp).Put(expiryKey(m.Expires, m.Recipient, k), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", dbErr("storing message", err)
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
	err := s.db.Batch(func(tx *bbolt.Tx) error {
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
		}
		return nil
	})
	if err != nil {
		return dbErr("deleting messages", err)
	}
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
		db, dx := tx.Bucket(bucketMsgDedup), tx.Bucket(bucketMsgDedupExp)
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
			if v := db.Get(rk); v != nil && bytes.Equal(v[:8], k[:8]) {
				if err := db.Delete(rk); err != nil {
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
		// recipient\x01 sorts after every recipient\0id key.
		seek := append([]byte(after), 1)
		if after == "" {
			seek = nil
		}
		var k []byte
		if seek == nil {
			k, _ = c.First()
		} else {
			k, _ = c.Seek(seek)
		}
		for k != nil {
			if limit > 0 && len(out) >= limit {
				break
			}
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("message key %q without separator", k)
			}
			r := string(k[:i])
			out = append(out, r)
			k, _ = c.Seek(append([]byte(r), 1))
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("listing recipients", err)
	}
	return out, nil
}

// CountMessages implements storage.MessageStore.
func (s *Store) CountMessages(ctx context.Context) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	var n int
	err := s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketMessages).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, dbErr("counting messages", err)
	}
	return n, nil
}
