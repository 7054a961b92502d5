package logcentral

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/pki"
)

// stores are the backends the contract runs on: SQLite always, PostgreSQL
// when SCHAKEL_TEST_POSTGRES is set.
func stores(t *testing.T) map[string]func(t *testing.T) Store {
	out := map[string]func(*testing.T) Store{
		"sqlite": func(t *testing.T) Store {
			st, err := Open(context.Background(), filepath.Join(t.TempDir(), "central.db"), "", "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		out["postgres"] = func(t *testing.T) Store {
			schema := fmt.Sprintf("logcentral_test_%d", time.Now().UnixNano())
			st, err := Open(context.Background(), "", dsn, schema)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				st.Close()
				if c, err := pgx.Connect(context.Background(), dsn); err == nil {
					_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
					c.Close(context.Background())
				}
			})
			return st
		}
	}
	return out
}

// nodeLog is a node's audit log in a temporary directory.
func nodeLog(t testing.TB, dir string) *audit.Store {
	t.Helper()
	s, err := audit.Open(context.Background(), filepath.Join(dir, "audit.db"), "node-a", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendN(t testing.TB, s *audit.Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append(context.Background(), audit.Record{Action: audit.ActionRead, Interaction: "search-type", Outcome: 200,
			Tenant: "00000001", ActorURA: "00000002", Patient: "999909587", Query: fmt.Sprintf("Condition?n=%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// testPKI is a CA with the central log's and two nodes' certificates.
type testPKI struct {
	ca                    *pki.CA
	central, nodeA, nodeB tls.Certificate
}

const uraA, uraB = "00000001", "00000002"

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.NewCA("Test CA", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(uzi, ura string) tls.Certificate {
		c, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: uzi, URA: ura, AGB: "01234567"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return &testPKI{ca: ca, central: issue("900000090", "00000090"), nodeA: issue("900000001", uraA), nodeB: issue("900000002", uraB)}
}

func (p *testPKI) client(cert tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(p.ca.Cert))}}
}

// receiver is a running central log on 127.0.0.1 that a test can stop and
// start again on the same address.
type receiver struct {
	t    testing.TB
	pki  *testPKI
	srv  *Server
	addr string
	hs   *http.Server
	reg  *prometheus.Registry
}

func startReceiver(t testing.TB, p *testPKI, st Store) *receiver {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := NewServer(ServerConfig{Store: st, PeerURA: PeerURAFromUZI, Registry: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, pki: p, srv: srv, addr: "127.0.0.1:0", reg: reg}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) start() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.hs = &http.Server{Handler: r.srv.Handler(), TLSConfig: pki.ServerTLSConfig(r.pki.central, pki.CertPool(r.pki.ca.Cert)),
		ErrorLog: nil}
	go func() { _ = r.hs.ServeTLS(ln, "", "") }()
}

func (r *receiver) stop() {
	if r.hs != nil {
		_ = r.hs.Close()
		r.hs = nil
	}
}

func (r *receiver) url() string { return "https://" + r.addr }

// eventually polls cond until it holds; the bound only keeps a broken test
// from hanging, it is not what is tested.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 6000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never: %s", what)
}
