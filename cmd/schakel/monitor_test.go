package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestMonitorServeFlags(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no password file", []string{"--node", "n=http://127.0.0.1:1/metrics"}, "--password-file is required"},
		{"plain HTTP on a public address", []string{"--addr", "0.0.0.0:0", "--password-file", pw}, "plain HTTP only on a loopback address"},
		{"a node without its URL", []string{"--password-file", pw, "--node", "gp-node"}, "want NAME=URL"},
		{"a node config without its node", []string{"--password-file", pw, "--node-config", "gp=node.yaml"}, "no --node of that name"},
		{"a metrics URL that is not one", []string{"--password-file", pw, "--node", "n=ftp://x"}, "is not an http(s) URL"},
		{"the register without mTLS", []string{"--password-file", pw, "--admission", "https://127.0.0.1:1/admission/fhir"}, "need --cert, --key and --ca"},
		{"HTTPS half given", []string{"--password-file", pw, "--https-cert", "c.pem"}, "go together"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := newRootCommand()
			root.SetArgs(append([]string{"monitor", "serve", "--addr", "127.0.0.1:0"}, tc.args...))
			root.SetOut(io.Discard)
			err := root.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestMonitorServe starts `schakel monitor serve` on a node's metrics and
// checks it prints its URL, keeps the password out of its output and
// serves the login page.
func TestMonitorServe(t *testing.T) {
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "# TYPE schakel_http_requests_total counter\nschakel_http_requests_total{code=\"200\",listener=\"public\"} 1\n")
	}))
	defer node.Close()
	pwFile := filepath.Join(t.TempDir(), "monitor", "password")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	root := newRootCommand()
	root.SetArgs([]string{"monitor", "serve", "--addr", "127.0.0.1:0", "--password-file", pwFile, "--node", "n1=" + node.URL + "/metrics"})
	root.SetOut(pw)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no output: %v (%v)", err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(line)
	if url == "" {
		t.Fatalf("no URL in %q", line)
	}
	secret, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, strings.TrimSpace(string(secret))) {
		t.Fatal("the password was printed")
	}
	resp, err := http.Get(url + "/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `name="password"`) {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestMonitorNodeReplicas: --node given again with the same name adds a
// replica of that node, whose metrics the monitor adds up.
func TestMonitorNodeReplicas(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("correct-horse-battery-staple"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := monitorConfig(monitorFlags{user: "operator", passwordFile: pw, interval: 2 * time.Second, nodes: []string{
		"gp-node=http://127.0.0.1:1/metrics", "hosp=http://127.0.0.1:3/metrics", "gp-node=http://127.0.0.1:2/metrics"}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Nodes) != 2 {
		t.Fatalf("%d nodes, want 2: %+v", len(cfg.Nodes), cfg.Nodes)
	}
	if got := cfg.Nodes[0].Replicas; len(got) != 2 || got[0] != "http://127.0.0.1:1/metrics" || got[1] != "http://127.0.0.1:2/metrics" {
		t.Errorf("gp-node's replicas %v", got)
	}
	if got := cfg.Nodes[1]; got.MetricsURL != "http://127.0.0.1:3/metrics" || len(got.Replicas) != 0 {
		t.Errorf("hosp %+v, want one /metrics", got)
	}
}
