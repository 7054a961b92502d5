// Package replaytest is the contract of oauth.ReplayCache: every
// implementation (memory, SQLite, PostgreSQL) runs these tests, so a
// replayed assertion is refused the same way on all of them.
package replaytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/oauth"
)

// Clock is the time a cache under test sees; tests move it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *Clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Open returns a function that opens the cache under test with clock's
// time; within one test every call opens the same store again (another
// replica, or a restart).
type Open func(t *testing.T, clock *Clock) func() oauth.ReplayCache

// Run runs the contract. shared says the backend is shared between the
// caches one test opens (a database), as a node's replicas share it.
func Run(t *testing.T, open Open, shared bool) {
	tests := []struct {
		name string
		test func(t *testing.T, clock *Clock, open func() oauth.ReplayCache)
	}{
		{"SecondUseRefused", testSecondUse},
		{"PairsKeptApart", testPairsApart},
		{"ExpiredPairReusable", testExpired},
		{"ConcurrentUsesOneWins", testConcurrent},
	}
	if shared {
		tests = append(tests, struct {
			name string
			test func(t *testing.T, clock *Clock, open func() oauth.ReplayCache)
		}{"ReplayAtAnotherReplicaRefused", testReplicas})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &Clock{t: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}
			tc.test(t, clock, open(t, clock))
		})
	}
}

func testSecondUse(t *testing.T, clock *Clock, open func() oauth.ReplayCache) {
	ctx := context.Background()
	c := open()
	exp := clock.Now().Add(5 * time.Minute)
	if err := c.Use(ctx, "https://a.example/90000001", "jti-1", exp); err != nil {
		t.Fatalf("first use: %v", err)
	}
	clock.advance(4 * time.Minute)
	if err := c.Use(ctx, "https://a.example/90000001", "jti-1", exp); !errors.Is(err, oauth.ErrReplay) {
		t.Fatalf("second use before expiry: %v, want ErrReplay", err)
	}
	// A replay with a later claimed expiry is still a replay.
	if err := c.Use(ctx, "https://a.example/90000001", "jti-1", exp.Add(time.Hour)); !errors.Is(err, oauth.ErrReplay) {
		t.Fatalf("replay with a later expiry: %v, want ErrReplay", err)
	}
}

func testPairsApart(t *testing.T, clock *Clock, open func() oauth.ReplayCache) {
	ctx := context.Background()
	c := open()
	exp := clock.Now().Add(time.Minute)
	for _, p := range [][2]string{{"a", "1"}, {"b", "1"}, {"a", "2"}, {"ab", "c"}, {"a", "bc"}} {
		if err := c.Use(ctx, p[0], p[1], exp); err != nil {
			t.Errorf("use of (%q, %q): %v; each pair is its own", p[0], p[1], err)
		}
	}
}

func testExpired(t *testing.T, clock *Clock, open func() oauth.ReplayCache) {
	ctx := context.Background()
	c := open()
	if err := c.Use(ctx, "a", "1", clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	if err := c.Use(ctx, "a", "1", clock.Now().Add(time.Minute)); err != nil {
		t.Fatalf("use after expiry: %v; the pair is forgotten once expired", err)
	}
	if err := c.Use(ctx, "a", "1", clock.Now().Add(time.Minute)); !errors.Is(err, oauth.ErrReplay) {
		t.Fatalf("second use of the renewed pair: %v, want ErrReplay", err)
	}
}

func testConcurrent(t *testing.T, clock *Clock, open func() oauth.ReplayCache) {
	ctx := context.Background()
	c := open()
	exp := clock.Now().Add(time.Minute)
	const n = 16
	var ok, replays atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := c.Use(ctx, "a", "race", exp); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, oauth.ErrReplay):
				replays.Add(1)
			default:
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ok.Load() != 1 || replays.Load() != n-1 {
		t.Fatalf("%d uses accepted, %d refused; want 1 and %d", ok.Load(), replays.Load(), n-1)
	}
}

// testReplicas uses each pair once at one cache and again at another on
// the same store, concurrently: every pair is accepted exactly once.
func testReplicas(t *testing.T, clock *Clock, open func() oauth.ReplayCache) {
	ctx := context.Background()
	a, b := open(), open()
	exp := clock.Now().Add(time.Minute)
	if err := a.Use(ctx, "a", "1", exp); err != nil {
		t.Fatal(err)
	}
	if err := b.Use(ctx, "a", "1", exp); !errors.Is(err, oauth.ErrReplay) {
		t.Fatalf("replay at the other replica: %v, want ErrReplay", err)
	}
	const pairs = 20
	var accepted [pairs]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 2*pairs)
	for _, c := range []oauth.ReplayCache{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range pairs {
				switch err := c.Use(ctx, "b", fmt.Sprint(i), exp); {
				case err == nil:
					accepted[i].Add(1)
				case !errors.Is(err, oauth.ErrReplay):
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range accepted {
		if n := accepted[i].Load(); n != 1 {
			t.Errorf("pair %d accepted %d times, want once", i, n)
		}
	}
}
