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

// TestImportR4 loads R4 resources into the store file a node serves at
// /internal/fhir/r4; an R4 resource refused by an STU3 store names the
// version.
func TestImportR4(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r4.json"), []byte(`{"resourceType":"Bundle","type":"transaction","entry":[`+
		`{"fullUrl":"urn:uuid:7f1c1d2e-0c1a-4a55-9c2e-3b9a8c5d0e11","resource":{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911120"}]},"request":{"method":"POST","url":"Patient"}},`+
		`{"resource":{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"urn:uuid:7f1c1d2e-0c1a-4a55-9c2e-3b9a8c5d0e11"}},"request":{"method":"POST","url":"ServiceRequest"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		cmd := newImportCommand()
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	data := t.TempDir()
	out, err := run("--fhir-version", "r4", "--store", filepath.Join(data, "fhir-r4.db"), "--tenant", "00000001", dir)
	if err != nil || !strings.Contains(out, "ServiceRequest") || !strings.Contains(out, "2 created") {
		t.Fatalf("R4 import: %v\n%s", err, out)
	}
	out, err = run("--store", filepath.Join(data, "fhir-stu3.db"), "--tenant", "00000001", dir)
	if err == nil || !strings.Contains(out, "ServiceRequest") {
		t.Errorf("R4 data into the STU3 store: %v\n%s", err, out)
	}
}
