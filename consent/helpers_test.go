package consent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
)

// URAs of the parties in the tests.
const (
	uraService  = "00000001" // the consent service
	uraHolder   = "00000010" // a hospital (Z3) holding data
	uraHolder2  = "00000011" // another hospital
	uraAsker    = "00000020" // a GP asking
	uraPortal   = "00000099" // a consent portal
	uraReceiver = "00000030" // a subscriber's notification endpoint
)

// bsn returns a valid BSN starting with the 8 digits of seed (varied until a
// check digit exists).
func bsn(t testing.TB, seed int) string {
	t.Helper()
	for i := seed; ; i++ {
		first := fmt.Sprintf("%08d", 10000000+i%89999999)
		if d, ok := nl.BSNCheckDigit(first); ok {
			return first + string(d)
		}
	}
}

// testPKI is a CA with certificates issued per URA.
type testPKI struct {
	ca    *pki.CA
	roots *x509.CertPool
	mu    sync.Mutex
	certs map[string]tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.NewCA("consent test CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, roots: pki.CertPool(ca.Cert), certs: map[string]tls.Certificate{}}
}

func (p *testPKI) cert(t testing.TB, ura string) tls.Certificate {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.certs[ura]; ok {
		return c
	}
	c, err := p.ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "9" + ura, URA: ura, AGB: "01234567"}})
	if err != nil {
		t.Fatal(err)
	}
	p.certs[ura] = c
	return c
}

func (p *testPKI) httpClient(t testing.TB, ura string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(p.cert(t, ura), p.roots)}}
}

// serve starts h on an mTLS listener on 127.0.0.1 with the certificate of ura.
func (p *testPKI) serve(t testing.TB, ura string, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = pki.ServerTLSConfig(p.cert(t, ura), p.roots)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a running consent service and the parties around it.
type env struct {
	pki   *testPKI
	srv   *Server
	ts    *httptest.Server
	clock *clock
}

func newEnv(t testing.TB, mod func(*ServerConfig)) *env {
	t.Helper()
	p := newTestPKI(t)
	c := newClock()
	cfg := ServerConfig{
		DataDir:    t.TempDir(),
		ClientTLS:  pki.ClientTLSConfig(p.cert(t, uraService), p.roots),
		PortalURAs: []string{uraPortal},
		Now:        c.Now,
		Delivery:   DeliveryConfig{PollInterval: 5 * time.Millisecond, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Attempts: 3, Timeout: 5 * time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &env{pki: p, srv: srv, ts: p.serve(t, uraService, srv.Handler()), clock: c}
}

func (e *env) client(t testing.TB, ura string, mod func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{BaseURL: e.ts.URL, TLS: pki.ClientTLSConfig(e.pki.cert(t, ura), e.pki.roots), Now: e.clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// question is a complete closed question about patient from the GP to the
// first hospital.
func question(patient string) Question {
	return Question{
		PatientBSN: patient, DataHolderURA: uraHolder, DataHolderType: "Z3",
		RequesterURA: uraAsker, RequesterType: "Z1", RequesterRole: "01.015", RequesterUZI: "900012345",
	}
}

// postgresDSN returns the test PostgreSQL DSN, skipping the test without one.
func postgresDSN(t testing.TB) string {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	return dsn
}

// openPostgres opens a store in a fresh schema, dropped after the test.
func openPostgres(t testing.TB) *Store {
	t.Helper()
	dsn := postgresDSN(t)
	schema := "consent_test_" + strings.ReplaceAll(fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano()), "-", "")
	ctx := context.Background()
	s, err := OpenPostgres(ctx, dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		s.Close()
	})
	return s
}

// waitFor polls cond until it holds; it fails the test after a generous
// deadline. It waits on asynchronous delivery; it asserts no speed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
