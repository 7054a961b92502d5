package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
	"github.com/schakel-nl/schakel/pki"
)

// TestAddressbookCommands runs load, serve and sync the way an operator
// would: entries loaded from a file, the directory on an mTLS listener, and
// a node's replica synced from it. The directory lives in --data-dir, and
// in PostgreSQL when SCHAKEL_TEST_POSTGRES is set.
func TestAddressbookCommands(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testAddressbookCommands(t, nil) })
	t.Run("postgres", func(t *testing.T) {
		dsn, schema := pgtest.Schema(t, "abcmd_test_")
		t.Setenv(envAddressbookPostgres, dsn)
		testAddressbookCommands(t, []string{"--postgres-schema", schema})
	})
}

func testAddressbookCommands(t *testing.T, db []string) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	for name, ura := range map[string]string{"directory": "99999999", "node": "90000000"} {
		if _, err := pki.LoadOrIssueUZIServer(filepath.Join(dir, "pki"), name, ca,
			pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "12345678", URA: ura, AGB: "00000000"}}); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(dir, "pki", "ca.pem")
	entries := filepath.Join(dir, "entries.json")
	if err := os.WriteFile(entries, []byte(`[{"id":"org-1","ura":"90000001","name":"Huisartsenpraktijk","endpoints":[
		{"id":"ep-1","payloadType":"Twiin-TA-notification","address":"https://gp.example/fhir/Task","fhirVersion":"3.0"},
		{"id":"ep-2","payloadType":"oauth-authorization-server","address":"https://gp.example"}]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if db == nil {
		db = []string{"--data-dir", filepath.Join(dir, "ab")}
	}
	run := func(ctx context.Context, out io.Writer, args ...string) error {
		cmd := newAddressbookCommand()
		cmd.SetArgs(args)
		cmd.SetOut(out)
		cmd.SetErr(io.Discard)
		return cmd.ExecuteContext(ctx)
	}

	var out bytes.Buffer
	if err := run(context.Background(), &out, append(append([]string{"load"}, db...), entries)...); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "loaded 3 resources") {
		t.Errorf("load printed %q", out.String())
	}
	if err := run(context.Background(), io.Discard, append(append([]string{"load"}, db...), caFile)...); err == nil {
		t.Error("load accepted a PEM file")
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	served := make(chan error, 1)
	go func() {
		served <- run(ctx, pw, append(append([]string{"serve"}, db...), "--addr", "127.0.0.1:0",
			"--cert", filepath.Join(dir, "pki", "directory.pem"), "--key", filepath.Join(dir, "pki", "directory-key.pem"), "--ca", caFile)...)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("serve: %v (%v)", err, <-served)
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain
	base := strings.TrimSpace(strings.TrimPrefix(line, "addressbook "))

	out.Reset()
	if err := run(context.Background(), &out, "sync", "--url", base, "--replica", filepath.Join(dir, "replica.db"),
		"--cert", filepath.Join(dir, "pki", "node.pem"), "--key", filepath.Join(dir, "pki", "node-key.pem"), "--ca", caFile); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"initial=true", "upserted=3", "Endpoint                 2", "Organization             1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("sync printed %q, want %q in it", out.String(), want)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("serve after shutdown: %v", err)
	}
}
