// Package gctune sets the garbage collector's target of a Schakel process.
//
// A node's live heap is small (tens of megabytes) and its work allocates
// briskly: every request decodes and encodes JSON, and the SQLite driver
// allocates per statement. With Go's default target (GOGC=100) the
// collector then runs often enough to take a tenth of the CPU of an
// exchange. Schakel's processes run with a larger target instead, trading
// memory (the heap may grow to about five times what is live) for that
// CPU. An operator who sets GOGC or GOMEMLIMIT keeps the runtime's own
// handling of them.
package gctune

import (
	"os"
	"runtime/debug"
)

// Percent is the collection target (as GOGC) a Schakel process runs with
// when the environment sets none.
const Percent = 400

// Apply sets the collection target to Percent unless GOGC is set in the
// environment, and reports the target in force.
func Apply() int {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		p := debug.SetGCPercent(100) // read the runtime's value from GOGC
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(Percent)
	return Percent
}
