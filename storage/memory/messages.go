package memory

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"rcsd/storage"
)

// messages is the stored-message table: per recipient, IDs in order and
// the messages by ID; and the dedup keys, which outlive delivery until the
// message's expiry. One mutex: store-and-forward runs at message rates,
// not registration rates, and the bolt backend does not use this table.
type messages struct {
	mu    sync.Mutex
	queue map[string]*recipientQueue
	dedup map[dedupKey]dedupEntry
	retry map[string]time.Time // the retry schedule: few entries (failed deliveries), scanned whole
	count int
}

type recipientQueue struct {
	ids  []string // sorted
	msgs map[string]storage.Message
}

type dedupKey struct{ recipient, key string }

type dedupEntry struct {
	id      string
	expires time.Time
}

func newMessages() messages {
	return messages{queue: make(map[string]*recipientQueue), dedup: make(map[dedupKey]dedupEntry),
		retry: make(map[string]time.Time)}
}

// cloneMessage copies every slice so that neither the caller nor the
// store can change the other's copy.
func cloneMessage(m storage.Message) storage.Message {
	m.DedupKeys = slices.Clone(m.DedupKeys)
	m.Headers = slices.Clone(m.Headers)
	m.Body = slices.Clone(m.Body)
	m.Received, m.Expires, m.NextAttempt = m.Received.UTC(), m.Expires.UTC(), m.NextAttempt.UTC()
	return m
}

// PutMessage implements storage.MessageStore.
func (s *Store) PutMessage(ctx context.Context, m storage.Message) (string, error) {
	if s.closed.Load() {
		return "", errClosed()
	}
	if m.ID == "" || m.Recipient == "" {
		return "", fmt.Errorf("memory: message needs an ID and a recipient: %w", storage.ErrInvalid)
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range m.DedupKeys {
		if e, ok := t.dedup[dedupKey{m.Recipient, k}]; ok {
			return e.id, nil
		}
	}
	q := t.queue[m.Recipient]
	if q == nil {
		q = &recipientQueue{msgs: make(map[string]storage.Message)}
		t.queue[m.Recipient] = q
	}
	if _, dup := q.msgs[m.ID]; dup {
		return "", fmt.Errorf("memory: message %s of %s: %w", m.ID, m.Recipient, storage.ErrConflict)
	}
	m = cloneMessage(m)
	i := sort.SearchStrings(q.ids, m.ID)
	q.ids = slices.Insert(q.ids, i, m.ID)
	q.msgs[m.ID] = m
	for _, k := range m.DedupKeys {
		t.dedup[dedupKey{m.Recipient, k}] = dedupEntry{id: m.ID, expires: m.Expires}
	}
	t.count++
	return "", nil
}

// PendingMessages implements storage.MessageStore.
func (s *Store) PendingMessages(ctx context.Context, recipient string, limit int) ([]storage.Message, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queue[recipient]
	if q == nil {
		return nil, nil
	}
	n := len(q.ids)
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]storage.Message, 0, n)
	for _, id := range q.ids[:n] {
		out = append(out, cloneMessage(q.msgs[id]))
	}
	return out, nil
}

// UpdateMessage implements storage.MessageStore.
func (s *Store) UpdateMessage(ctx context.Context, m storage.Message) error {
	if s.closed.Load() {
		return errClosed()
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queue[m.Recipient]
	if q == nil {
		return fmt.Errorf("memory: message %s of %s: %w", m.ID, m.Recipient, storage.ErrNotFound)
	}
	cur, ok := q.msgs[m.ID]
	if !ok {
		return fmt.Errorf("memory: message %s of %s: %w", m.ID, m.Recipient, storage.ErrNotFound)
	}
	cur.Attempts, cur.NextAttempt = m.Attempts, m.NextAttempt.UTC()
	q.msgs[m.ID] = cur
	return nil
}

// DeleteMessage implements storage.MessageStore.
func (s *Store) DeleteMessage(ctx context.Context, recipient, id string) error {
	if s.closed.Load() {
		return errClosed()
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.remove(recipient, id) {
		return fmt.Errorf("memory: message %s of %s: %w", id, recipient, storage.ErrNotFound)
	}
	return nil
}

// DeleteMessages implements storage.MessageStore.
func (s *Store) DeleteMessages(ctx context.Context, recipient string, ids []string) error {
	if s.closed.Load() {
		return errClosed()
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		t.remove(recipient, id)
	}
	return nil
}

// remove drops a message, keeping its dedup keys; t.mu is held.
func (t *messages) remove(recipient, id string) bool {
	q := t.queue[recipient]
	if q == nil {
		return false
	}
	if _, ok := q.msgs[id]; !ok {
		return false
	}
	delete(q.msgs, id)
	i := sort.SearchStrings(q.ids, id)
	q.ids = slices.Delete(q.ids, i, i+1)
	if len(q.ids) == 0 {
		delete(t.queue, recipient)
	}
	t.count--
	return true
}

// ExpireMessages implements storage.MessageStore.
func (s *Store) ExpireMessages(ctx context.Context, now time.Time, limit int) ([]storage.Message, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []storage.Message
	recipients := make([]string, 0, len(t.queue))
	for r := range t.queue {
		recipients = append(recipients, r)
	}
	sort.Strings(recipients)
	for _, r := range recipients {
		q := t.queue[r]
		for _, id := range slices.Clone(q.ids) {
			if limit > 0 && len(out) >= limit {
				break
			}
			if m := q.msgs[id]; !m.Expires.After(now) {
				out = append(out, cloneMessage(m))
				t.remove(r, id)
			}
		}
	}
	for k, e := range t.dedup {
		if !e.expires.After(now) {
			if q := t.queue[k.recipient]; q != nil {
				if _, live := q.msgs[e.id]; live {
					continue // its message is still stored (a limit cut the sweep short)
				}
			}
			delete(t.dedup, k)
		}
	}
	return out, nil
}

// PendingRecipients implements storage.MessageStore.
func (s *Store) PendingRecipients(ctx context.Context, after string, limit int) ([]string, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.queue))
	for r := range t.queue {
		if r > after {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// CountMessages implements storage.MessageStore.
func (s *Store) CountMessages(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, errClosed()
	}
	s.msgs.mu.Lock()
	defer s.msgs.mu.Unlock()
	return s.msgs.count, nil
}

// ScheduleRetry implements storage.MessageStore.
func (s *Store) ScheduleRetry(ctx context.Context, recipient string, at time.Time) error {
	if s.closed.Load() {
		return errClosed()
	}
	if recipient == "" {
		return fmt.Errorf("memory: retry needs a recipient: %w", storage.ErrInvalid)
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.retry[recipient]; !ok || at.Before(old) {
		t.retry[recipient] = at
	}
	return nil
}

// DueRetries implements storage.MessageStore.
func (s *Store) DueRetries(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	t := &s.msgs
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for r, at := range t.retry {
		if !at.After(now) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := t.retry[a].Compare(t.retry[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	for _, r := range out {
		delete(t.retry, r)
	}
	return out, nil
}
