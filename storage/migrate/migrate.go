// Package migrate copies the whole state of one storage backend into
// another (`rcsd storage copy`), so that a deployment that started on the
// embedded store can move to Redis when it grows, and back.
//
// What is copied: every subscriber (with its AKA sequence number), every
// AOR's bindings (expired ones not yet purged included; the flow fields
// make handsets reachable again only if they reconnect to the same node),
// and every stored message with its attempts and back-off; every
// recipient with messages is put on the target's retry schedule at once
// (the source's schedule is not read: the first sweep on the target looks
// at each recipient, and the messages of offline ones wait for their
// registration as before). Not copied:
// the dedup keys of messages already delivered (they only stop a late
// duplicate of an old message) and nonces (stateless). The target must be
// empty: a copy never merges or overwrites.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rcsd/storage"
)

// Counts says what was copied.
type Counts struct {
	Subscribers, AORs, Bindings, Messages int
}

// ErrNotEmpty means the target already holds state.
var ErrNotEmpty = errors.New("migrate: the target store is not empty")

const page = 1000

// Copy copies from into to.
func Copy(ctx context.Context, from, to storage.Store) (Counts, error) {
	var c Counts
	if err := empty(ctx, to); err != nil {
		return c, err
	}
	for after := ""; ; {
		subs, err := from.ListSubscribers(ctx, after, page)
		if err != nil {
			return c, fmt.Errorf("migrate: reading subscribers: %w", err)
		}
		if len(subs) == 0 {
			break
		}
		if err := to.PutSubscribers(ctx, subs); err != nil {
			return c, fmt.Errorf("migrate: writing subscribers: %w", err)
		}
		// The AKA sequence number must not go back (the USIMs would
		// refuse the next vectors until a resync): raise the target's
		// to the source's where PutSubscribers did not carry it.
		for _, s := range subs {
			if s.SQN == 0 {
				continue
			}
			got, err := to.SubscriberByIMPI(ctx, s.IMPI)
			if err != nil {
				return c, fmt.Errorf("migrate: reading back %s: %w", s.IMPI, err)
			}
			if got.SQN < s.SQN {
				if _, err := to.NextSQN(ctx, s.IMPI, s.SQN-1); err != nil {
					return c, fmt.Errorf("migrate: SQN of %s: %w", s.IMPI, err)
				}
			}
		}
		c.Subscribers += len(subs)
		after = subs[len(subs)-1].IMPI
	}
	for after := ""; ; {
		aors, err := from.AORs(ctx, after, page)
		if err != nil {
			return c, fmt.Errorf("migrate: reading AORs: %w", err)
		}
		if len(aors) == 0 {
			break
		}
		for _, aor := range aors {
			// The zero time sees every binding, expired ones too.
			bs, err := from.Bindings(ctx, aor, time.Time{})
			if err != nil {
				return c, fmt.Errorf("migrate: reading bindings of %s: %w", aor, err)
			}
			if len(bs) == 0 {
				continue
			}
			if _, err := to.UpdateBindings(ctx, aor, time.Time{}, func([]storage.Binding) ([]storage.Binding, error) { return bs, nil }); err != nil {
				return c, fmt.Errorf("migrate: writing bindings of %s: %w", aor, err)
			}
			c.AORs++
			c.Bindings += len(bs)
		}
		after = aors[len(aors)-1]
	}
	for after := ""; ; {
		rs, err := from.PendingRecipients(ctx, after, page)
		if err != nil {
			return c, fmt.Errorf("migrate: reading recipients: %w", err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			ms, err := from.PendingMessages(ctx, r, 0)
			if err != nil {
				return c, fmt.Errorf("migrate: reading messages of %s: %w", r, err)
			}
			for _, m := range ms {
				if _, err := to.PutMessage(ctx, m); err != nil {
					return c, fmt.Errorf("migrate: writing message %s of %s: %w", m.ID, r, err)
				}
				if m.Attempts > 0 || !m.NextAttempt.IsZero() {
					if err := to.UpdateMessage(ctx, m); err != nil {
						return c, fmt.Errorf("migrate: message %s of %s: %w", m.ID, r, err)
					}
				}
				c.Messages++
			}
			if len(ms) > 0 {
				if err := to.ScheduleRetry(ctx, r, time.Now()); err != nil {
					return c, fmt.Errorf("migrate: scheduling %s: %w", r, err)
				}
			}
		}
		after = rs[len(rs)-1]
	}
	return c, nil
}

func empty(ctx context.Context, s storage.Store) error {
	n, err := s.CountSubscribers(ctx)
	if err != nil {
		return fmt.Errorf("migrate: target: %w", err)
	}
	b, err := s.CountBindings(ctx)
	if err != nil {
		return fmt.Errorf("migrate: target: %w", err)
	}
	m, err := s.CountMessages(ctx)
	if err != nil {
		return fmt.Errorf("migrate: target: %w", err)
	}
	if n+b+m > 0 {
		return fmt.Errorf("%w: %d subscribers, %d bindings, %d messages", ErrNotEmpty, n, b, m)
	}
	return nil
}
