package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for CRL staleness and polling.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// trustFixture is a dev CA (with a CRL in dir), an unknown CA whose one
// certificate is pinned, and the certificates of the parties.
type trustFixture struct {
	dir        string
	ca         *CA
	partnerCA  *CA // not trusted; its certificate "partner" is pinned
	server     tls.Certificate
	client     tls.Certificate
	partner    tls.Certificate // pinned, UZI identity with partnerURA
	partnerAlt tls.Certificate // same partner CA, not pinned
	clock      *fakeClock
}

var (
	trustServerID  = UZIServerID{UZI: "900000001", URA: "11111111", AGB: "00000001"}
	trustClientID  = UZIServerID{UZI: "900000002", URA: "22222222", AGB: "00000002"}
	trustPartnerID = UZIServerID{UZI: "900000003", URA: "33333333", AGB: "00000003"}
)

func newTrustFixture(t *testing.T) *trustFixture {
	t.Helper()
	f := &trustFixture{dir: t.TempDir(), ca: newTestCA(t, "dev CA"), partnerCA: newTestCA(t, "partner's own CA"),
		clock: &fakeClock{now: time.Now()}}
	var err error
	if f.server, err = f.ca.IssueUZIServer(ServerCertRequest{ID: trustServerID}); err != nil {
		t.Fatal(err)
	}
	if f.client, err = f.ca.IssueUZIServer(ServerCertRequest{ID: trustClientID}); err != nil {
		t.Fatal(err)
	}
	if f.partner, err = f.partnerCA.IssueUZIServer(ServerCertRequest{ID: trustPartnerID}); err != nil {
		t.Fatal(err)
	}
	if f.partnerAlt, err = f.partnerCA.IssueUZIServer(ServerCertRequest{ID: trustPartnerID}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "ca.pem"), encodeCertPEM(f.ca.Cert.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "partner.pem"), encodeCertPEM(f.partner.Leaf.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := RevokeInDir(f.dir, f.ca, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is the fixture's trust: dev CA with its CRL, partner pinned.
func (f *trustFixture) config() TrustConfig {
	return TrustConfig{
		CAFiles:  []string{filepath.Join(f.dir, "ca.pem")},
		CRLFiles: []string{filepath.Join(f.dir, CRLFile)},
		Pinned:   []PinConfig{{Name: "partner", URA: trustPartnerID.URA, CertFile: filepath.Join(f.dir, "partner.pem")}},
		Now:      f.clock.Now,
		Logger:   slog.New(slog.DiscardHandler),
	}
}

func (f *trustFixture) load(t *testing.T, edit func(*TrustConfig)) *Trust {
	t.Helper()
	cfg := f.config()
	if edit != nil {
		edit(&cfg)
	}
	tr, err := LoadTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTrustServerHandshake(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the trust and the certificate the client presents.
		setup     func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate)
		wantErr   error // nil: the handshake must succeed
		wantRoute Route
		wantURA   string
	}{
		{"CA route", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			return f.load(t, nil), f.client
		}, nil, RouteCA, trustClientID.URA},
		{"pinned certificate from an untrusted CA", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			return f.load(t, nil), f.partner
		}, nil, RoutePinned, trustPartnerID.URA},
		{"pinned by base64url sha256 only", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			return f.load(t, func(c *TrustConfig) {
				c.Pinned = []PinConfig{{Name: "p", URA: trustPartnerID.URA, SHA256: CertThumbprintS256(f.partner.Leaf)}}
			}), f.partner
		}, nil, RoutePinned, trustPartnerID.URA},
		{"pinned certificate without UZI identity takes the pin's URA", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			c, err := f.partnerCA.IssueWithoutUZIIdentity(ServerCertRequest{CommonName: "bilateral partner"})
			if err != nil {
				t.Fatal(err)
			}
			sum := CertThumbprintS256(c.Leaf)
			raw, _ := ParsePin(sum)
			return f.load(t, func(cfg *TrustConfig) {
				cfg.Pinned = []PinConfig{{Name: "p", URA: "44444444", SHA256: hex.EncodeToString(raw[:])}}
			}), c
		}, nil, RoutePinned, "44444444"},
		{"unpinned certificate from the pinned partner's CA", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			return f.load(t, nil), f.partnerAlt
		}, ErrUntrustedPeer, 0, ""},
		{"pinned certificate carrying another URA", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			return f.load(t, func(c *TrustConfig) {
				c.Pinned = []PinConfig{{Name: "p", URA: "55555555", SHA256: CertThumbprintS256(f.partner.Leaf)}}
			}), f.partner
		}, ErrPinnedURAMismatch, 0, ""},
		{"expired pinned certificate", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			c, err := f.partnerCA.IssueExpired(ServerCertRequest{ID: trustPartnerID})
			if err != nil {
				t.Fatal(err)
			}
			return f.load(t, func(cfg *TrustConfig) {
				cfg.Pinned = []PinConfig{{Name: "p", URA: trustPartnerID.URA, SHA256: CertThumbprintS256(c.Leaf)}}
			}), c
		}, ErrUntrustedPeer, 0, ""},
		{"expired CA-route certificate", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			c, err := f.ca.IssueExpired(ServerCertRequest{ID: trustClientID})
			if err != nil {
				t.Fatal(err)
			}
			return f.load(t, nil), c
		}, ErrUntrustedPeer, 0, ""},
		{"not yet valid certificate", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			c, err := f.ca.IssueNotYetValid(ServerCertRequest{ID: trustClientID})
			if err != nil {
				t.Fatal(err)
			}
			return f.load(t, nil), c
		}, ErrUntrustedPeer, 0, ""},
		{"CA route without UZI identity", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			c, err := f.ca.IssueWithoutUZIIdentity(ServerCertRequest{ID: trustClientID})
			if err != nil {
				t.Fatal(err)
			}
			return f.load(t, nil), c
		}, ErrNoUZIIdentity, 0, ""},
		{"revoked by CRL", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			if _, err := RevokeInDir(f.dir, f.ca, []*big.Int{f.client.Leaf.SerialNumber}, time.Hour); err != nil {
				t.Fatal(err)
			}
			return f.load(t, nil), f.client
		}, ErrRevokedCertificate, 0, ""},
		{"stale CRL fails closed", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			tr := f.load(t, nil)
			f.clock.Advance(2 * time.Hour)
			return tr, f.client
		}, ErrStaleCRL, 0, ""},
		{"stale CRL accepted when configured", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			tr := f.load(t, func(c *TrustConfig) { c.StaleCRL = StaleCRLAccept })
			f.clock.Advance(2 * time.Hour)
			return tr, f.client
		}, nil, RouteCA, trustClientID.URA},
		{"RequireCRL without a CRL", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			return f.load(t, func(c *TrustConfig) { c.CRLFiles, c.RequireCRL = nil, true }), f.client
		}, ErrNoCRL, 0, ""},
		{"deny list", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			return f.load(t, func(c *TrustConfig) { c.DenySerials = []string{"0x" + f.client.Leaf.SerialNumber.Text(16)} }), f.client
		}, ErrDeniedCertificate, 0, ""},
		{"deny list applies to pinned certificates", func(t *testing.T, f *trustFixture) (*Trust, tls.Certificate) {
			return f.load(t, func(c *TrustConfig) { c.DenySerials = []string{f.partner.Leaf.SerialNumber.String()} }), f.partner
		}, ErrDeniedCertificate, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTrustFixture(t)
			tr, clientCert := tc.setup(t, f)
			// The client trusts the server by the dev CA; what is tested is the server.
			client := forceClientCert(ClientTLSConfig(tls.Certificate{}, CertPool(f.ca.Cert)), clientCert)
			res := handshake(t, tr.ServerTLSConfig(f.server), client)
			if tc.wantErr != nil {
				if res.serverErr == nil || res.clientErr == nil {
					t.Fatalf("handshake completed (server %v, client %v), want refusal %v", res.serverErr, res.clientErr, tc.wantErr)
				}
				if !errors.Is(res.serverErr, tc.wantErr) {
					t.Fatalf("server refused with %v, want %v", res.serverErr, tc.wantErr)
				}
				return
			}
			if res.serverErr != nil || res.clientErr != nil {
				t.Fatalf("handshake failed: server %v, client %v", res.serverErr, res.clientErr)
			}
			peer, err := tr.Peer(&res.serverState)
			if err != nil {
				t.Fatal(err)
			}
			if peer.Route != tc.wantRoute || peer.URA != tc.wantURA {
				t.Fatalf("peer = %s %s, want %s %s", peer.Route, peer.URA, tc.wantRoute, tc.wantURA)
			}
			if ura, err := tr.PeerURA(&res.serverState); err != nil || ura != tc.wantURA {
				t.Fatalf("PeerURA = %q, %v", ura, err)
			}
		})
	}
}

func TestTrustClientHandshake(t *testing.T) {
	tests := []struct {
		name    string
		server  func(t *testing.T, f *trustFixture) tls.Certificate
		host    string
		wantErr error
	}{
		{"server under the CA", func(t *testing.T, f *trustFixture) tls.Certificate { return f.server }, "localhost", nil},
		{"pinned server from an untrusted CA", func(t *testing.T, f *trustFixture) tls.Certificate { return f.partner }, "127.0.0.1", nil},
		{"unpinned server from an untrusted CA", func(t *testing.T, f *trustFixture) tls.Certificate { return f.partnerAlt }, "localhost", ErrUntrustedPeer},
		{"pinned server under another host name", func(t *testing.T, f *trustFixture) tls.Certificate { return f.partner }, "node.example", ErrUntrustedPeer},
		{"CA server under another host name", func(t *testing.T, f *trustFixture) tls.Certificate { return f.server }, "node.example", ErrUntrustedPeer},
		{"revoked server", func(t *testing.T, f *trustFixture) tls.Certificate {
			if _, err := RevokeInDir(f.dir, f.ca, []*big.Int{f.server.Leaf.SerialNumber}, time.Hour); err != nil {
				t.Fatal(err)
			}
			return f.server
		}, "localhost", ErrRevokedCertificate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTrustFixture(t)
			serverCert := tc.server(t, f)
			tr := f.load(t, nil)
			clientCfg := tr.ClientTLSConfig(f.client)
			clientCfg.ServerName = tc.host
			// The server trusts the client by the dev CA; what is tested is the client.
			res := handshake(t, ServerTLSConfig(serverCert, CertPool(f.ca.Cert)), clientCfg)
			if tc.wantErr == nil {
				if res.clientErr != nil || res.serverErr != nil {
					t.Fatalf("handshake failed: client %v, server %v", res.clientErr, res.serverErr)
				}
				return
			}
			if !errors.Is(res.clientErr, tc.wantErr) {
				t.Fatalf("client error %v, want %v", res.clientErr, tc.wantErr)
			}
		})
	}
}

// TestCRLReloadedOnChange revokes a certificate in the CRL file of a running
// trust: once the poll interval has passed, new handshakes and the
// identification of existing connections refuse it.
func TestCRLReloadedOnChange(t *testing.T) {
	f := newTrustFixture(t)
	tr := f.load(t, func(c *TrustConfig) { c.CRLPollInterval = time.Minute })
	serverCfg := tr.ServerTLSConfig(f.server)
	clientCfg := ClientTLSConfig(f.client, CertPool(f.ca.Cert))
	res := handshake(t, serverCfg, clientCfg)
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("before revocation: server %v, client %v", res.serverErr, res.clientErr)
	}
	kept := res.serverState
	if _, err := tr.Peer(&kept); err != nil {
		t.Fatal(err)
	}

	// Rewrite the CRL; make sure the mtime differs even on coarse file systems.
	if _, err := RevokeInDir(f.dir, f.ca, []*big.Int{f.client.Leaf.SerialNumber}, time.Hour); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(f.dir, CRLFile), future, future); err != nil {
		t.Fatal(err)
	}
	// Within the interval the previous CRL still applies: the check is a poll.
	if res := handshake(t, serverCfg, clientCfg); res.serverErr != nil {
		t.Fatalf("before the poll interval: %v", res.serverErr)
	}
	f.clock.Advance(2 * time.Minute)
	if res := handshake(t, serverCfg, clientCfg); !errors.Is(res.serverErr, ErrRevokedCertificate) {
		t.Fatalf("after reload: server %v, want ErrRevokedCertificate", res.serverErr)
	}
	if _, err := tr.Peer(&kept); !errors.Is(err, ErrRevokedCertificate) {
		t.Fatalf("kept-alive connection: %v, want ErrRevokedCertificate", err)
	}
}

// TestCRLReloadKeepsPreviousOnBadFile: a broken or foreign CRL written over
// the file is refused, the previous CRL stays in force, and Reload says so.
func TestCRLReloadKeepsPreviousOnBadFile(t *testing.T) {
	f := newTrustFixture(t)
	if _, err := RevokeInDir(f.dir, f.ca, []*big.Int{f.client.Leaf.SerialNumber}, time.Hour); err != nil {
		t.Fatal(err)
	}
	tr := f.load(t, nil)
	other := t.TempDir()
	if _, err := RevokeInDir(other, f.partnerCA, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	foreign, err := os.ReadFile(filepath.Join(other, CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"garbage": []byte("not a CRL"), "foreign": foreign} {
		if err := os.WriteFile(filepath.Join(f.dir, CRLFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := tr.Reload(); err == nil {
			t.Errorf("%s: Reload accepted it", name)
		}
		clientCfg := ClientTLSConfig(f.client, CertPool(f.ca.Cert))
		if res := handshake(t, tr.ServerTLSConfig(f.server), clientCfg); !errors.Is(res.serverErr, ErrRevokedCertificate) {
			t.Errorf("%s: server %v, want the previous CRL's ErrRevokedCertificate", name, res.serverErr)
		}
	}
}

func TestLoadTrustRefuses(t *testing.T) {
	f := newTrustFixture(t)
	other := t.TempDir()
	if _, err := RevokeInDir(other, f.partnerCA, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*TrustConfig)
		want string
	}{
		{"nothing trusted", func(c *TrustConfig) { *c = TrustConfig{} }, "nobody would be trusted"},
		{"CRL of an unconfigured CA", func(c *TrustConfig) { c.CRLFiles = []string{filepath.Join(other, CRLFile)} }, "not signed by a configured CA"},
		{"CRL without CAs", func(c *TrustConfig) { c.CAFiles = nil }, "need the CAs"},
		{"pin without URA", func(c *TrustConfig) { c.Pinned[0].URA = "" }, "not 8 digits"},
		{"pin without certificate or hash", func(c *TrustConfig) { c.Pinned[0].CertFile = "" }, "needs certfile or sha256"},
		{"pin hash not SHA-256", func(c *TrustConfig) { c.Pinned[0].SHA256 = "abcd" }, "not a SHA-256 pin"},
		{"pin hash disagrees with the file", func(c *TrustConfig) { c.Pinned[0].SHA256 = CertThumbprintS256(f.client.Leaf) }, "does not match"},
		{"pinned file carries another URA", func(c *TrustConfig) { c.Pinned[0].URA = "55555555" }, "carries URA"},
		{"leaf as CA", func(c *TrustConfig) { c.CAFiles = []string{filepath.Join(f.dir, "partner.pem")} }, "not a CA certificate"},
		{"bad stale policy", func(c *TrustConfig) { c.StaleCRL = "maybe" }, "stalecrl"},
		{"bad serial", func(c *TrustConfig) { c.DenySerials = []string{"-5"} }, "not a positive serial"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config()
			tc.edit(&cfg)
			_, err := LoadTrust(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestTrustConfigsHardened checks the settings every listener shares and
// that no connection resumes (every handshake re-checks the peer).
func TestTrustConfigsHardened(t *testing.T) {
	f := newTrustFixture(t)
	tr := f.load(t, nil)
	for name, cfg := range map[string]*tls.Config{
		"trust server": tr.ServerTLSConfig(f.server), "trust client": tr.ClientTLSConfig(f.client),
		"server": ServerTLSConfig(f.server, nil), "client": ClientTLSConfig(f.client, nil),
	} {
		if cfg.MinVersion != tls.VersionTLS13 || !cfg.SessionTicketsDisabled || len(cfg.CurvePreferences) == 0 {
			t.Errorf("%s: MinVersion %x, tickets disabled %v, curves %v", name, cfg.MinVersion, cfg.SessionTicketsDisabled, cfg.CurvePreferences)
		}
		if cfg.VerifyConnection == nil {
			t.Errorf("%s: no VerifyConnection", name)
		}
	}
	if c := tr.ServerTLSConfig(f.server); c.ClientAuth != tls.RequireAnyClientCert || c.ClientCAs != nil {
		t.Errorf("trust server: ClientAuth %v, ClientCAs %v", c.ClientAuth, c.ClientCAs)
	}

	clientCfg := ClientTLSConfig(f.client, CertPool(f.ca.Cert))
	clientCfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		res := handshake(t, tr.ServerTLSConfig(f.server), clientCfg)
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("handshake %d: %v %v", i, res.serverErr, res.clientErr)
		}
		if res.serverState.DidResume {
			t.Fatalf("handshake %d resumed a session", i)
		}
	}
}

func TestParseSerialAndPin(t *testing.T) {
	for in, want := range map[string]int64{"42": 42, "0x2a": 42, "2A": -1, "00:2a": 42, "0": -1, "x": -1} {
		got, err := ParseSerial(in)
		if want < 0 {
			if err == nil && in != "2A" {
				t.Errorf("ParseSerial(%q) = %v, want error", in, got)
			}
			continue
		}
		if err != nil || got.Int64() != want {
			t.Errorf("ParseSerial(%q) = %v, %v", in, got, err)
		}
	}
	ca := newTestCA(t, "ca")
	b64 := CertThumbprintS256(ca.Cert)
	p1, err := ParsePin(b64)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ParsePin(strings.ToUpper(hex.EncodeToString(p1[:])))
	if err != nil || p1 != p2 {
		t.Fatalf("hex pin %v %v", p2, err)
	}
}

func TestIssueWrongURA(t *testing.T) {
	ca := newTestCA(t, "ca")
	c, err := ca.IssueWrongURA(ServerCertRequest{ID: trustClientID})
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseUZIServerID(c.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if id.URA == trustClientID.URA || id.URA != WrongURA(trustClientID.URA) {
		t.Fatalf("URA %s", id.URA)
	}
	if !strings.Contains(c.Leaf.Subject.CommonName, trustClientID.URA) {
		t.Fatalf("subject %q does not claim %s", c.Leaf.Subject.CommonName, trustClientID.URA)
	}
	if WrongURA("99999999") != "00000000" {
		t.Fatal("WrongURA does not wrap")
	}
}

func TestRevokeInDir(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	first, err := RevokeInDir(dir, ca, []*big.Int{big.NewInt(7)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	second, err := RevokeInDir(dir, ca, []*big.Int{big.NewInt(7), big.NewInt(8)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if second.Number.Cmp(new(big.Int).Add(first.Number, big.NewInt(1))) != 0 {
		t.Errorf("CRL number %v after %v", second.Number, first.Number)
	}
	if n := len(second.RevokedCertificateEntries); n != 2 {
		t.Errorf("%d entries, want 2 (no duplicates)", n)
	}
	if err := second.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatal(err)
	}
	if _, err := RevokeInDir(dir, newTestCA(t, "other"), nil, time.Hour); err == nil {
		t.Fatal("a CRL of another CA was overwritten")
	}
}

// BenchmarkTrustPeer measures the per-request identification of a client
// (Trust.Peer) once its result is cached.
func BenchmarkTrustPeer(b *testing.B) {
	f := &trustFixture{dir: b.TempDir(), ca: newTestCA(b, "dev CA"), clock: &fakeClock{now: time.Now()}}
	client, err := f.ca.IssueUZIServer(ServerCertRequest{ID: trustClientID})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := RevokeInDir(f.dir, f.ca, nil, time.Hour); err != nil {
		b.Fatal(err)
	}
	tr, err := LoadTrust(TrustConfig{CACerts: []*x509.Certificate{f.ca.Cert}, CRLFiles: []string{filepath.Join(f.dir, CRLFile)}})
	if err != nil {
		b.Fatal(err)
	}
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{client.Leaf}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Peer(cs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStaleCRLAcceptWarns: under stalecrl: accept a CRL past its nextUpdate
// keeps being used, and the operator is told so once, not silently.
func TestStaleCRLAcceptWarns(t *testing.T) {
	f := newTrustFixture(t)
	var logs bytes.Buffer
	tr := f.load(t, func(c *TrustConfig) {
		c.StaleCRL = StaleCRLAccept
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	f.clock.Advance(2 * time.Hour)
	for i := 0; i < 2; i++ {
		res := handshake(t, tr.ServerTLSConfig(f.server), ClientTLSConfig(f.client, CertPool(f.ca.Cert)))
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("handshake %d: server %v, client %v", i, res.serverErr, res.clientErr)
		}
	}
	if n := strings.Count(logs.String(), "past its nextUpdate"); n != 1 {
		t.Fatalf("%d warnings about the stale CRL, want 1; log:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), CRLFile) {
		t.Errorf("warning should be WARN and name the CRL file; log:\n%s", logs.String())
	}
}
