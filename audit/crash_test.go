package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/internal/crashload"
	"github.com/schakel-nl/schakel/pki"
)

const crashDBEnv = "SCHAKEL_TEST_AUDIT_CRASH_DB"

// TestHelperProcess is the node side of TestCrashKeepsEveryAnsweredRecord:
// an HTTP API that answers only after Append returned. It runs only when
// re-executed by that test.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(crashDBEnv)
	if path == "" {
		t.Skip("helper process for TestCrashKeepsEveryAnsweredRecord")
	}
	s, err := Open(context.Background(), path, "crash-node", slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	s.log = slog.New(slog.DiscardHandler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", ln.Addr())
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := record(0)
		rec.EventID = r.URL.Query().Get("id")
		if err := s.Append(r.Context(), rec); err != nil {
			http.Error(w, "audit unavailable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

// TestCrashKeepsEveryAnsweredRecord kills a process appending under load
// with SIGKILL and checks that every request it answered has its record and
// that the chain still verifies and continues.
func TestCrashKeepsEveryAnsweredRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), crashDBEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("helper did not start: %q %v", line, err)
	}
	base := "http://" + strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	answered := crashload.Run(8, 300, func(id string) bool {
		resp, err := client.Post(base+"/?id="+id, "text/plain", nil)
		if err != nil {
			return false // the process is gone
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("append %s: HTTP %d", id, resp.StatusCode)
			return false
		}
		return true
	}, func() { _ = cmd.Process.Kill() }) // SIGKILL: no Close, no final checkpoint
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) {
		t.Fatalf("helper exit: %v", err)
	}

	ctx := context.Background()
	s, err := Open(ctx, path, "crash-node", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.log = slog.New(slog.DiscardHandler)
	recs, err := s.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[string]bool, len(recs))
	for _, r := range recs {
		have[r.EventID] = true
	}
	for _, id := range answered {
		if !have[id] {
			t.Errorf("request %s was answered but its record is gone", id)
		}
	}
	if err := s.Append(ctx, record(1)); err != nil { // the chain continues after the crash
		t.Fatal(err)
	}
	s.Close()

	key, err := pki.LoadOrCreateSigningKey(path + ".key")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := pki.PublicJWKS(key)
	ro, err := OpenWith(ctx, Config{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rep, err := Verify(ctx, ro, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records != int64(len(recs)+1) || rep.LastAnchored != rep.Records {
		t.Errorf("after crash and restart: %+v", rep)
	}
	t.Logf("%d answered, %d recorded before the kill", len(answered), len(recs))
}
