package network

import (
	"os"
	"testing"

	"github.com/schakel-nl/schakel/internal/gctune"
)

// TestMain runs the network's tests and benchmarks with the collector
// target every schakel process runs with (cmd/schakel's main applies the
// same), so the benchmarks measure what a node costs in production.
func TestMain(m *testing.M) {
	gctune.Apply()
	os.Exit(m.Run())
}
