package node

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// TestDrain stops a node with a drain: its health checks answer 503 while
// it still serves, on connections opened before the stop too, each answer
// closing its connection, and only then does Serve return. Without a drain
// it stops at once.
func TestDrain(t *testing.T) {
	for _, drain := range []time.Duration{2 * time.Second, 0} {
		t.Run(drain.String(), func(t *testing.T) {
			cfg := startableConfig(t)
			cfg.Drain = drain
			n, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- n.Serve(ctx) }()
			hc := &http.Client{Timeout: 5 * time.Second}
			defer hc.CloseIdleConnections()
			closes := false // whether the last answer closed its connection
			health := func(path string) (int, string) {
				resp, err := hc.Get(n.InternalURL() + path)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				closes = resp.Close
				var body struct {
					Status string `json:"status"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&body)
				return resp.StatusCode, body.Status
			}
			waitFor(t, "the node serving", func() bool { code, _ := health("/healthz"); return code == http.StatusOK })
			if closes {
				t.Error("an answer before the stop closes its connection")
			}

			stop() // the connection above stays open, idle
			if drain == 0 {
				select {
				case err := <-served:
					if err != nil {
						t.Fatalf("Serve: %v", err)
					}
				case <-time.After(15 * time.Second):
					t.Fatal("Serve did not return without a drain")
				}
				return
			}
			waitFor(t, "/healthz answering 503 draining", func() bool {
				code, status := health("/healthz")
				return code == http.StatusServiceUnavailable && status == "draining"
			})
			if code, status := health("/readyz"); code != http.StatusServiceUnavailable || status != "not ready" {
				t.Errorf("/readyz while draining: %d %q, want 503 not ready", code, status)
			}
			if code, status := health("/livez"); code != http.StatusOK {
				t.Errorf("/livez while draining: %d %q, want 200: the node still serves", code, status)
			}
			if !closes {
				t.Error("an answer while draining keeps its connection open: the client would send its next request on it")
			}
			select {
			case err := <-served:
				t.Fatalf("Serve returned while the node was still draining: %v", err)
			default:
			}
			select {
			case err := <-served:
				if err != nil {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(drain + 15*time.Second):
				t.Fatal("Serve did not return after the drain")
			}
		})
	}
}

// waitFor polls cond every 20 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("no %s within 10 s", what)
}
