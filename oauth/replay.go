package oauth

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrReplay is returned by a ReplayCache for a (issuer, jti) pair it has seen.
var ErrReplay = errors.New("oauth: JWT ID already used")

// ErrReplayCacheFull is returned when a ReplayCache cannot record another
// pair; the assertion is then refused (fail closed) rather than remembered
// partially, which would let a replay through.
var ErrReplayCacheFull = errors.New("oauth: replay cache full")

// ReplayCache remembers the JWT IDs of assertions already used (RFC 7523 §3
// item 7). The in-memory MemoryReplayCache serves one node process; a node's
// replicas share one in PostgreSQL (package oauth/replaydb). The contract
// every implementation meets is in package oauth/replaytest.
type ReplayCache interface {
	// Use records issuer+jti until expiry. It returns ErrReplay if the pair
	// was recorded before and has not expired yet.
	Use(ctx context.Context, issuer, jti string, expiry time.Time) error
}

// MemoryReplayCache is a bounded, concurrency-safe in-memory ReplayCache.
type MemoryReplayCache struct {
	mu        sync.Mutex
	seen      map[string]time.Time
	max       int
	now       func() time.Time
	lastSweep time.Time
	nextSweep time.Time
}

// DefaultReplayCacheSize bounds a MemoryReplayCache made with size 0: about
// five minutes of assertions at 3 000 token requests per second.
const DefaultReplayCacheSize = 1 << 20

// sweepInterval is how often expired entries are dropped even while the
// cache is not full, so memory follows the load.
const sweepInterval = 30 * time.Second

// NewMemoryReplayCache returns a cache holding at most size entries
// (DefaultReplayCacheSize if size ≤ 0); now may be nil for time.Now.
func NewMemoryReplayCache(size int, now func() time.Time) *MemoryReplayCache {
	if size <= 0 {
		size = DefaultReplayCacheSize
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayCache{seen: make(map[string]time.Time), max: size, now: now}
}

// Use implements ReplayCache.
func (c *MemoryReplayCache) Use(_ context.Context, issuer, jti string, expiry time.Time) error {
	// The NUL separator keeps ("ab","c") and ("a","bc") apart.
	key := issuer + "\x00" + jti
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[key]; ok && now.Before(exp) {
		return ErrReplay
	}
	// When full, sweep at most once a second: a flood must not turn every
	// request into a scan of the whole map.
	if now.After(c.nextSweep) || (len(c.seen) >= c.max && now.Sub(c.lastSweep) >= time.Second) {
		c.sweep(now)
	}
	if len(c.seen) >= c.max {
		return ErrReplayCacheFull
	}
	c.seen[key] = expiry
	return nil
}

// Len returns the number of remembered pairs, expired ones included.
func (c *MemoryReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func (c *MemoryReplayCache) sweep(now time.Time) {
	for k, exp := range c.seen {
		if !now.Before(exp) {
			delete(c.seen, k)
		}
	}
	c.lastSweep = now
	c.nextSweep = now.Add(sweepInterval)
}
