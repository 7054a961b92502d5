package audit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestObserveSeesEveryCommit: the node's metrics and readiness rely on
// Observe hearing of each durable commit with its record count.
func TestObserveSeesEveryCommit(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			records, commits := 0, 0
			s := open(t, func(c *Config) {
				c.Observe = func(n int, took time.Duration, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						t.Errorf("commit failed: %v", err)
					}
					if took < 0 {
						t.Errorf("negative commit time %v", took)
					}
					records += n
					commits++
				}
			})
			for i := range 3 {
				if err := s.Append(context.Background(), record(i)); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			// Append returns after its commit, so all three are observed.
			if records != 3 || commits == 0 || commits > 3 {
				t.Fatalf("observed %d records in %d commits, want 3 in 1–3", records, commits)
			}
		})
	}
}
