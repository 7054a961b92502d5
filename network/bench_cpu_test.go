package network

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) this process has used: both
// nodes, the services and the benchmark's client all run in it.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// awaitedCommits sums the nodes' durable audit commits that some request
// waited on: those on an exchange's critical path. Commits that held only
// deferred records (steps that answered no one) are not counted.
func awaitedCommits(nw *Network) int64 {
	var n int64
	for _, node := range nw.Nodes {
		n += node.Audit().Stats().Awaited
	}
	return n
}
