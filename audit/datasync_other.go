//go:build !linux

package audit

import "os"

// datasync writes f to stable storage (fsync(2) where fdatasync is not
// available).
func datasync(f *os.File) error { return f.Sync() }

// lockFile opens path as the journal's lock file. Without flock(2) it does
// not exclude a second writer: run one node per audit store.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
}
