package registrar

import (
	"sync"
	"time"
)

// Limiter counts authentication failures per key (a source address or an
// identity) and blocks a key that fails too often, so passwords cannot be
// guessed at line rate (sipvicious svcrack). Unknown identities are counted
// exactly like known ones, so blocking reveals nothing about which exist.
type Limiter struct {
	window, block time.Duration
	max           int

	mu      sync.Mutex
	entries map[string]*limitEntry
}

type limitEntry struct {
	start        time.Time
	failures     int
	blockedUntil time.Time
}

// NewLimiter allows max failures per window, then blocks for block.
func NewLimiter(max int, window, block time.Duration) *Limiter {
	return &Limiter{window: window, block: block, max: max, entries: make(map[string]*limitEntry)}
}

// Blocked reports whether key is blocked and for how long still.
func (l *Limiter) Blocked(key string, now time.Time) (time.Duration, bool) {
	if l.max <= 0 {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[key]
	if e == nil || !now.Before(e.blockedUntil) {
		return 0, false
	}
	return e.blockedUntil.Sub(now), true
}

// Fail records a failure and reports whether key is now blocked.
func (l *Limiter) Fail(key string, now time.Time) bool {
	if l.max <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[key]
	if e == nil || now.Sub(e.start) > l.window {
		e = &limitEntry{start: now}
		l.entries[key] = e
	}
	e.failures++
	if e.failures >= l.max {
		e.blockedUntil = now.Add(l.block)
		e.failures = 0
		e.start = now
		return true
	}
	return false
}

// Sweep forgets entries that are neither blocked nor inside their window.
func (l *Limiter) Sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, e := range l.entries {
		if now.Sub(e.start) > l.window && !now.Before(e.blockedUntil) {
			delete(l.entries, k)
		}
	}
}
