package rest

import (
	"testing"

	"github.com/schakel-nl/schakel/internal/benchfloor"
)

// BenchmarkFloor reports the machine's floors (one fdatasync, one ES256
// signature) in the same run as this package's benchmarks: add "|Floor" to
// -bench.
func BenchmarkFloor(b *testing.B) { benchfloor.Run(b, "") }
