package pager

import (
	"context"
	"errors"
	"sync"
	"time"

	"rcsd/storage"
)

// aliasCache remembers a subscriber's public identities by each of them
// for a short while. A message to an identity without bindings looks for
// bindings under the subscriber's other identities (a tel: URI addressed,
// the sip: URI registered): without the cache that costs a subscriber
// read per message to an offline user — a round trip on Redis, where the
// budget is three per stored message. Subscribers change rarely; a
// change reaches the alias lookup within the TTL (the identity addressed
// itself is always looked up afresh).
type aliasCache struct {
	store storage.SubscriberStore
	ttl   time.Duration
	now   func() time.Time

	mu sync.Mutex
	m  map[string]aliasEntry
}

type aliasEntry struct {
	impus []string // nil: no subscriber owns the identity
	until time.Time
}

// aliasCacheMax bounds the entries; when full the cache starts over
// (cheaper than LRU bookkeeping, and a refill costs one read per identity).
const aliasCacheMax = 200_000

func newAliasCache(store storage.SubscriberStore, ttl time.Duration, now func() time.Time) *aliasCache {
	return &aliasCache{store: store, ttl: ttl, now: now, m: make(map[string]aliasEntry)}
}

// lookup returns the public identities of the subscriber owning impu
// (impu included), none when nobody owns it.
func (c *aliasCache) lookup(ctx context.Context, impu string) ([]string, error) {
	now := c.now()
	if c.ttl > 0 {
		c.mu.Lock()
		e, ok := c.m[impu]
		c.mu.Unlock()
		if ok && now.Before(e.until) {
			return e.impus, nil
		}
	}
	sub, err := c.store.SubscriberByIMPU(ctx, impu)
	var impus []string
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		impus = sub.IMPUs
	}
	if c.ttl > 0 {
		c.mu.Lock()
		if len(c.m) >= aliasCacheMax {
			clear(c.m)
		}
		c.m[impu] = aliasEntry{impus: impus, until: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return impus, nil
}
