package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/pki"
)

// startableConfig is a configuration New accepts: real certificate files
// from a CA made for the test.
func startableConfig(t testing.TB) Config {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrIssueUZIServer(filepath.Join(dir, "tls"), "node", ca,
		pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000011", URA: "90000001", AGB: "00000000"}}); err != nil {
		t.Fatal(err)
	}
	return Config{
		Name: "n", DataDir: filepath.Join(dir, "data"),
		Public:   ListenerConfig{Addr: "127.0.0.1:0"},
		Internal: ListenerConfig{Addr: "127.0.0.1:0"},
		TLS: TLSConfig{CertFile: filepath.Join(dir, "tls", "node.pem"), KeyFile: filepath.Join(dir, "tls", "node-key.pem"),
			CAFiles: []string{filepath.Join(dir, "ca", "ca.pem")}},
		SigningKeyFile: filepath.Join(dir, "as.pem"), AddressbookURL: "https://127.0.0.1:1/fhir",
		Participants: []ParticipantConfig{{URA: "90000001", SigningKeyFile: filepath.Join(dir, "p.pem"),
			InternalToken: "0123456789abcdef0123"}},
	}
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestNewFailureReleasesWhatItOpened makes New fail after it has bound its
// listeners: it must return an error naming the setting, not panic, and
// leave the addresses free for the next start.
func TestNewFailureReleasesWhatItOpened(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name  string
		setup func(c *Config)
		want  string
	}{
		{"internal port in use", func(c *Config) { c.Internal.Addr = busy.Addr().String() }, "internal.addr: "},
		{"unreachable PostgreSQL", func(c *Config) {
			c.Store.Postgres = "postgres://nobody:pw@127.0.0.1:1/none?sslmode=disable&connect_timeout=5"
		}, "store.postgres: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := startableConfig(t)
			cfg.Public.Addr = freeAddr(t)
			if !strings.HasPrefix(tc.want, "internal") {
				cfg.Internal.Addr = freeAddr(t)
			}
			tc.setup(&cfg)
			n, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil {
				n.Close()
				t.Fatal("New succeeded")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q does not start with %q", err, tc.want)
			}
			for _, addr := range []string{cfg.Public.Addr, cfg.Internal.Addr} {
				if addr == busy.Addr().String() {
					continue
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("%s still held after the failed start: %v", addr, err)
					continue
				}
				ln.Close()
			}
		})
	}
}

// TestNewStartsAndCloses is the control for the failure cases: the same
// configuration, unchanged, starts.
func TestNewStartsAndCloses(t *testing.T) {
	n, err := New(context.Background(), startableConfig(t), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
}
