package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/demo"
)

func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	patients, err := demo.Generate(demo.Options{Count: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	resources := 0
	for i, p := range patients {
		resources += len(p.Resources)
		if err := os.WriteFile(filepath.Join(dir, "p"+string(rune('a'+i))+".json"), demo.TransactionBundle(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(t.TempDir(), "fhir.db")
	run := func(args ...string) (stdout, stderr string, err error) {
		var out, errOut bytes.Buffer
		cmd := newImportCommand()
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		err = cmd.ExecuteContext(context.Background())
		return out.String(), errOut.String(), err
	}
	for _, tc := range []struct {
		name     string
		args     []string
		bar      bool
		unchange bool
	}{
		{"fresh, progress asked", []string{"--progress"}, true, false},
		{"again, no terminal", nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(append([]string{"--store", db, "--tenant", "00000001", dir}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			// The summary line, always; the bar only when asked (stderr is
			// a buffer here, no terminal).
			if !strings.Contains(out, "resources in") || !strings.Contains(out, "resources/s") {
				t.Errorf("no summary line: %q", out)
			}
			if got := strings.Contains(errOut, "resources, "); got != tc.bar {
				t.Errorf("progress shown %v, want %v: %q", got, tc.bar, errOut)
			}
			if tc.unchange && !strings.Contains(out, "0 created, 0 updated") {
				t.Errorf("re-run wrote: %q", out)
			}
		})
	}
}
