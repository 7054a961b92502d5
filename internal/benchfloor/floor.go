// Package benchfloor measures the machine's floors next to a benchmark: the
// cost of one durable write (write + fdatasync) and of one ES256 signature.
// The machine the figures come from is shared and noisy; a figure quoted as
// a multiple of its floor, measured in the same run, compares across runs
// and machines where a raw time does not.
package benchfloor

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Run adds the floors as sub-benchmarks of b: floor-fsync (a 4 KiB append
// and fdatasync in dir, the audit journal's durable write; b.TempDir when
// dir is empty) and floor-es256 (one ES256 signature over a SHA-256 digest,
// the cost of every token and assertion the node signs).
func Run(b *testing.B, dir string) {
	b.Run("floor-fsync", func(b *testing.B) { Fsync(b, dir) })
	b.Run("floor-es256", ES256)
}

// Fsync measures one 4 KiB append plus fdatasync of a file in dir.
func Fsync(b *testing.B, dir string) {
	if dir == "" {
		dir = b.TempDir()
	}
	f, err := os.OpenFile(filepath.Join(dir, "floor-fsync"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	buf := make([]byte, 4096)
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
}

// ES256 measures one ECDSA P-256 signature over a SHA-256 digest.
func ES256(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("header.claims"))
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// CPU is the CPU time (user and system) the process has used so far. On a
// shared machine a benchmark's CPU per operation compares across runs where
// its wall time does not: other processes delay it, but do not add to it.
func CPU(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
