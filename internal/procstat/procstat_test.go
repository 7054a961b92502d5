package procstat

import (
	"os"
	"testing"
	"time"
)

// This process's own figures grow with work it does.
func TestOwnProcess(t *testing.T) {
	pid := os.Getpid()
	cpu0, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	sw0, err := ContextSwitches(pid)
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		time.Sleep(time.Millisecond) // each sleep switches out
	}
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
	}
	cpu1, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	sw1, err := ContextSwitches(pid)
	if err != nil {
		t.Fatal(err)
	}
	if cpu1 <= cpu0 {
		t.Errorf("CPU %v after 100 ms of work, %v before", cpu1, cpu0)
	}
	if sw1 <= sw0 {
		t.Errorf("%d context switches after 50 sleeps, %d before", sw1, sw0)
	}
}

func TestNoSuchProcess(t *testing.T) {
	if _, err := CPU(-1); err == nil {
		t.Error("CPU of pid -1: no error")
	}
	if _, err := ContextSwitches(-1); err == nil {
		t.Error("context switches of pid -1: no error")
	}
}
