package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/internal/crashload"
	"github.com/schakel-nl/schakel/pki"
)

// runMainEnv makes the test binary run schakel's main instead of the tests,
// so that a test can start the real `schakel node` as a child process.
const runMainEnv = "SCHAKEL_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startNode runs `schakel node --config cfg` as a child process and returns
// it with its internal base URL, read from the line it prints when it
// listens.
func startNode(t *testing.T, cfg string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "node", "--config", cfg, "--log-level", "warn")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	_, internal, ok := strings.Cut(strings.TrimSpace(line), " internal ")
	if err != nil || !ok {
		t.Fatalf("node did not start: %q %v", line, err)
	}
	go io.Copy(io.Discard, stdout)
	return cmd, internal
}

// TestNodeCrashKeepsEveryAnsweredAccess kills a running node with SIGKILL
// while its participant's system reads patient data through the internal
// FHIR API, restarts it, and checks that every answered request has its
// audit record and that the chain verifies with the node's checkpoint key.
func TestNodeCrashKeepsEveryAnsweredAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network and a node process")
	}
	dir := t.TempDir()
	// A complete network once, to leave a configured GP node with its data.
	root := newRootCommand()
	root.SetArgs([]string{"network", "up", "--once", "--data-dir", dir, "--log-level", "error"})
	root.SetOut(io.Discard)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("network up --once: %v", err)
	}
	cfg := filepath.Join(dir, "gp-node", "node.yaml")
	token, err := os.ReadFile(filepath.Join(dir, "gp-node", "internal-token-90000001"))
	if err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + strings.TrimSpace(string(token))

	node, base := startNode(t, cfg)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	answered := crashload.Run(8, 400, func(id string) bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/internal/fhir/Patient?_id="+id, nil)
		req.Header.Set("Authorization", bearer)
		resp, err := client.Do(req)
		if err != nil {
			return false // the node is gone
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("search %s: HTTP %d", id, resp.StatusCode)
			return false
		}
		return true
	}, func() { _ = node.Process.Signal(syscall.SIGKILL) }) // no shutdown, no final checkpoint
	var exit *exec.ExitError
	if err := node.Wait(); !errors.As(err, &exit) {
		t.Fatalf("node exit after SIGKILL: %v", err)
	}

	// The node starts again on the same stores and keeps answering.
	node, base = startNode(t, cfg)
	req, _ := http.NewRequest(http.MethodGet, base+"/internal/fhir/Patient?_id=after-restart", nil)
	req.Header.Set("Authorization", bearer)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("search after the restart: HTTP %d", resp.StatusCode)
	}
	if err := node.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := node.Wait(); err != nil {
		t.Fatalf("node after SIGTERM: %v", err)
	}

	db := filepath.Join(dir, "gp-node", "data", "audit.db")
	s, err := audit.OpenWith(context.Background(), audit.Config{Path: db, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.List(context.Background(), audit.Filter{})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		if id, ok := strings.CutPrefix(r.Query, "Patient?_id="); ok {
			have[id] = true
		}
	}
	for _, id := range append(answered, "after-restart") {
		if !have[id] {
			t.Errorf("request %s was answered but has no audit record", id)
		}
	}

	// The chain verifies, checked as an auditor would: with the public half
	// of the node's checkpoint key.
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(dir, "gp-node", "data", "audit-checkpoint-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := pki.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "checkpoint-jwks.json")
	if err := writeJSONFile(keyFile, jwks); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	verify := newRootCommand()
	verify.SetArgs([]string{"audit", "verify", "--db", db, "--key", keyFile})
	verify.SetOut(&out)
	if err := verify.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("audit verify after the crash: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "OK:") || strings.Contains(out.String(), "journal:") {
		t.Errorf("audit verify after the crash and a clean stop:\n%s", out.String())
	}
	t.Logf("%d requests answered before the kill, %d audit records", len(answered), len(recs))
}

func writeJSONFile(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(v)
}
