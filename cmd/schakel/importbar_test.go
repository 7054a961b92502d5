package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestImportBarShowsRateAndETA: between files the bar names the resources
// written, their rate and the time left.
func TestImportBarShowsRateAndETA(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for _, name := range []string{"a.json", "b.json", "c.json"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte("x"), 1000), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	var out bytes.Buffer
	var written atomic.Int64
	bar := newImportBar(&out, files, &written)
	written.Store(47)
	bar.file(files[0])
	if got := out.String(); !strings.Contains(got, "47 resources, ") || !strings.Contains(got, "/s, ETA ") {
		t.Fatalf("bar after one of three files: %q", got)
	}
	// The last file leaves no time to wait for.
	written.Store(141)
	bar.file(files[1])
	bar.file(files[2])
	bar.finish()
}
