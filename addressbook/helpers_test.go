package addressbook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/pki"
)

// testPKI is a throwaway CA and the certificates of the organisations in a
// test.
type testPKI struct {
	ca    *pki.CA
	roots *x509.CertPool
	n     atomic.Int64
}

func newPKI(tb testing.TB) *testPKI {
	tb.Helper()
	ca, err := pki.NewCA("addressbook test CA", time.Time{}, time.Time{})
	if err != nil {
		tb.Fatal(err)
	}
	return &testPKI{ca: ca, roots: pki.CertPool(ca.Cert)}
}

// cert issues an UZI server certificate for the organisation with ura.
func (p *testPKI) cert(tb testing.TB, ura string) tls.Certificate {
	tb.Helper()
	n := p.n.Add(1)
	c, err := p.ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: fmt.Sprintf("%08d", 10000000+n), URA: ura, AGB: "00000000"}})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// client is the mTLS client of the organisation with ura.
func (p *testPKI) client(tb testing.TB, ura string) *http.Client {
	tb.Helper()
	tr := &http.Transport{TLSClientConfig: pki.ClientTLSConfig(p.cert(tb, ura), p.roots), ForceAttemptHTTP2: true}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// testDir is a real directory: NewServer over a SQLite store, on an mTLS
// listener on 127.0.0.1. hook, when set, may answer a request itself (to
// inject faults); it returns true when it did.
type testDir struct {
	srv   *httptest.Server
	ab    *Server
	store *sqlite.Store
	base  string
	pki   *testPKI

	mu   sync.Mutex
	hook func(w http.ResponseWriter, r *http.Request) bool
	log  []string // request URIs, in order
}

const dirURA = "99999999"

func startDirectory(tb testing.TB, p *testPKI, entries ...Entry) *testDir {
	tb.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "ab.db"), fhir.R4)
	if err != nil {
		tb.Fatal(err)
	}
	d := &testDir{store: st, pki: p}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.log = append(d.log, r.URL.RequestURI())
		hook := d.hook
		d.mu.Unlock()
		if hook != nil && hook(w, r) {
			return
		}
		d.ab.Handler().ServeHTTP(w, r)
	}))
	d.srv.TLS = pki.ServerTLSConfig(p.cert(tb, dirURA), p.roots)
	d.srv.StartTLS()
	d.base = d.srv.URL + "/fhir"
	d.ab = NewServer(st, d.base, nil)
	tb.Cleanup(func() {
		d.srv.Close()
		st.Close()
	})
	if err := d.ab.Load(context.Background(), entries...); err != nil {
		tb.Fatal(err)
	}
	return d
}

func (d *testDir) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	d.mu.Lock()
	d.hook = h
	d.mu.Unlock()
}

// requests returns and forgets the logged request URIs.
func (d *testDir) requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.log
	d.log = nil
	return out
}

// replica opens a replica of d as a node (URA 90000000) would.
func (d *testDir) replica(tb testing.TB, cfg ReplicaConfig) *Replica {
	tb.Helper()
	cfg.Source = &Client{Base: d.base, HTTP: d.pki.client(tb, "90000000")}
	switch {
	case replicaDSN != "":
		cfg.Path, cfg.Postgres, cfg.Schema = "", replicaDSN, freshSchema(tb)
	case cfg.Path == "":
		cfg.Path = filepath.Join(tb.TempDir(), "replica.db")
	}
	r, err := OpenReplica(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// orgEntry is an organisation with a notification and a BgZ endpoint.
func orgEntry(i int) Entry {
	ura := fmt.Sprintf("9%07d", i)
	return Entry{ID: "org-" + ura, URA: ura, Name: "Org " + ura, Endpoints: []EndpointSpec{
		{ID: "ep-" + ura + "-n", PayloadType: PayloadNotification, Address: "https://" + ura + ".example/fhir/Task", FHIRVersion: "3.0"},
		{ID: "ep-" + ura + "-b", PayloadType: PayloadBgZServer, Address: "https://" + ura + ".example/fhir", FHIRVersion: "3.0"},
	}}
}

// replicaDSN, while a test runs on PostgreSQL (TestReplicaOnPostgres),
// makes replica open each replica in a fresh schema there.
var replicaDSN string
