// Package crashload drives load at a process until it is killed, for the
// crash tests that check every answered request survived the kill.
package crashload

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Run starts workers goroutines, each calling do with ids "w<worker>-<n>"
// until do returns false (the process is gone, or the answer was wrong:
// do reports that itself). Once killAfter calls were answered it calls kill,
// once, while the load goes on. It returns the ids of the answered calls.
func Run(workers, killAfter int, do func(id string) bool, kill func()) []string {
	var (
		mu       sync.Mutex
		answered []string
		count    atomic.Int64
		killOnce sync.Once
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				if !do(id) {
					return
				}
				mu.Lock()
				answered = append(answered, id)
				mu.Unlock()
				if count.Add(1) >= int64(killAfter) {
					killOnce.Do(kill)
				}
			}
		}()
	}
	wg.Wait()
	return answered
}
