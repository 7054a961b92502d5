package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/schakel-nl/schakel/node"
)

// TestAdminCommand runs the real `schakel admin` against a served node:
// it changes a partner's plateau, is refused a change the node could not
// start with, and withdraws the agreement.
func TestAdminCommand(t *testing.T) {
	f := newNodeFixture(t)
	tokenFile := filepath.Join(f.dir, "admin-tokens")
	const token = "operator-token-0123456789abcdef0123456789"
	if err := os.WriteFile(tokenFile, []byte("alice "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.extra = fmt.Sprintf("admin:\n  addr: 127.0.0.1:0\n  tokenfile: %q\n", tokenFile)
	cfg, err := loadNodeConfig(f.write(t), pflag.NewFlagSet("none", pflag.ContinueOnError))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(context.Background(), cfg, node.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	admin := func(args ...string) (string, error) {
		return runSchakel(t, nil, append([]string{"admin", "--node", n.AdminURL(), "--token-file", tokenFile}, args...)...)
	}

	out, err := admin("agreements", "set", "90000002", "--plateau", "authentication=2", "--plateau", "authorization=2")
	if err != nil || !strings.Contains(out, `"authentication": 2`) || !strings.Contains(out, `"endpoints"`) {
		t.Fatalf("set: %v\n%s", err, out)
	}
	out, err = admin("agreements", "get", "90000002")
	if err != nil || !strings.Contains(out, `"authorization": 2`) || !strings.Contains(out, "Ziekenhuis Rijnstroom") {
		t.Fatalf("get after set: %v\n%s", err, out)
	}
	out, err = admin("agreements", "set", "90000002", "--plateau", "logging=3")
	if err == nil || !strings.Contains(out, "422") || !strings.Contains(out, "audit.central.url") {
		t.Fatalf("logging 3 without a central log: %v\n%s", err, out)
	}
	out, err = admin("agreements", "set", "90000002", "--plateau", "authentication")
	if err == nil || !strings.Contains(out, "want function=plateau") {
		t.Fatalf("malformed --plateau: %v\n%s", err, out)
	}
	file := filepath.Join(f.dir, "agreement.yaml")
	if err := os.WriteFile(file, []byte("ura: \"90000003\"\nname: Apotheek\nplateaus: {addressing: 1}\nendpoints:\n  jwks: https://127.0.0.1:9/jwks/90000003\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err = admin("agreements", "set", "90000003", "--file", file); err != nil || !strings.Contains(out, "Apotheek") {
		t.Fatalf("set from a YAML file: %v\n%s", err, out)
	}
	if out, err = admin("agreements", "delete", "90000003"); err != nil || !strings.Contains(out, "withdrawn") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, err = admin("agreements", "get", "90000003"); err == nil || !strings.Contains(out, "404") {
		t.Fatalf("get after delete: %v\n%s", err, out)
	}
	if out, err = admin("participants", "list"); err != nil || !strings.Contains(out, "Huisartsenpraktijk De Linde") || strings.Contains(out, f.tokens) {
		t.Fatalf("participants list: %v\n%s", err, out)
	}
	wrong := filepath.Join(f.dir, "wrong-token")
	if err := os.WriteFile(wrong, []byte("not-the-operator-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runSchakel(t, nil, "admin", "--node", n.AdminURL(), "--token-file", wrong, "agreements", "list")
	if err == nil || !strings.Contains(out, "401") {
		t.Fatalf("a wrong token: %v\n%s", err, out)
	}
}
