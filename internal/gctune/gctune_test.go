package gctune

import (
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)

	t.Setenv("GOGC", "")
	if got := Apply(); got != Percent {
		t.Fatalf("without GOGC: target %d, want %d", got, Percent)
	}
	if got := debug.SetGCPercent(Percent); got != Percent {
		t.Fatalf("without GOGC: the runtime runs at %d, want %d", got, Percent)
	}

	// The operator's GOGC stands: the runtime read it at start; here the
	// runtime's current value plays that part.
	debug.SetGCPercent(150)
	t.Setenv("GOGC", "150")
	if got := Apply(); got != 150 {
		t.Fatalf("with GOGC=150: target %d, want 150", got)
	}
	if got := debug.SetGCPercent(150); got != 150 {
		t.Fatalf("with GOGC=150: the runtime runs at %d, want 150", got)
	}
}
