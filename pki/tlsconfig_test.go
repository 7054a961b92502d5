package pki

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// handshakeResult is what both ends of one connection saw.
type handshakeResult struct {
	serverErr   error
	clientErr   error
	serverState tls.ConnectionState
}

// handshake runs one real TLS handshake over 127.0.0.1, the way a peer
// would, and reports both ends. The server writes "ok" after a successful
// handshake; in TLS 1.3 a client learns that its certificate was refused
// only on its first read, so the client reads before reporting success.
func handshake(t testing.TB, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type serverOut struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan serverOut, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- serverOut{err: err}
			return
		}
		defer conn.Close()
		srv := tls.Server(conn, serverCfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.HandshakeContext(ctx); err != nil {
			done <- serverOut{err: err}
			return
		}
		_, err = srv.Write([]byte("ok"))
		done <- serverOut{err: err, state: srv.ConnectionState()}
	}()

	var res handshakeResult
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: clientCfg}
	conn, err := dialer.Dial("tcp", ln.Addr().String())
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		if _, err = io.ReadFull(conn, buf); err == nil && string(buf) != "ok" {
			err = errors.New("unexpected server greeting")
		}
		conn.Close()
	}
	res.clientErr = err
	out := <-done
	res.serverErr, res.serverState = out.err, out.state
	return res
}

// forceClientCert makes the client present cert even when the server's
// CertificateRequest names other CAs, so the server's own check is tested
// rather than the client's politeness.
func forceClientCert(cfg *tls.Config, cert tls.Certificate) *tls.Config {
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "dev CA")
	unknownCA := newTestCA(t, "unknown CA")
	roots := CertPool(ca.Cert)

	serverID := UZIServerID{UZI: "900000001", URA: "11111111", AGB: "00000001"}
	clientID := UZIServerID{UZI: "900000002", URA: "22222222", AGB: "00000002"}
	issue := func(t *testing.T, f func(ServerCertRequest) (tls.Certificate, error), id UZIServerID) tls.Certificate {
		t.Helper()
		c, err := f(ServerCertRequest{ID: id, CommonName: "node " + id.URA})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	tests := []struct {
		name string
		// configs builds the fixtures of this case.
		configs    func(t *testing.T) (server, client *tls.Config)
		wantOK     bool
		wantClient bool  // the client, not the server, must refuse
		wantErr    error // when set, the refusing side's error must wrap it
	}{
		{
			name: "valid client certificate",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots),
					ClientTLSConfig(issue(t, ca.IssueUZIServer, clientID), roots)
			},
			wantOK: true,
		},
		{
			name: "no client certificate",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				client := ClientTLSConfig(tls.Certificate{}, roots)
				client.Certificates = nil
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots), client
			},
		},
		{
			name: "client certificate from an unknown CA",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				bad := issue(t, unknownCA.IssueUZIServer, clientID)
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots),
					forceClientCert(ClientTLSConfig(bad, roots), bad)
			},
		},
		{
			name: "expired client certificate",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots),
					ClientTLSConfig(issue(t, ca.IssueExpired, clientID), roots)
			},
		},
		{
			name: "not yet valid client certificate",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots),
					ClientTLSConfig(issue(t, ca.IssueNotYetValid, clientID), roots)
			},
		},
		{
			name: "client certificate without UZI otherName",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots),
					ClientTLSConfig(issue(t, ca.IssueWithoutUZIIdentity, clientID), roots)
			},
			wantErr: ErrNoUZIIdentity,
		},
		{
			name: "denied client serial",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				client := issue(t, ca.IssueUZIServer, clientID)
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots, WithDenySerials(big.NewInt(42), client.Leaf.SerialNumber)),
					ClientTLSConfig(client, roots)
			},
			wantErr: ErrDeniedCertificate,
		},
		{
			name: "VerifyPeer hook refuses",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				refuse := WithVerifyPeer(func(leaf *x509.Certificate, _ [][]*x509.Certificate) error {
					if id, _ := ParseUZIServerID(leaf); id.URA == clientID.URA {
						return errors.New("URA not admitted")
					}
					return nil
				})
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots, refuse),
					ClientTLSConfig(issue(t, ca.IssueUZIServer, clientID), roots)
			},
		},
		{
			name: "TLS 1.2 client",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				client := ClientTLSConfig(issue(t, ca.IssueUZIServer, clientID), roots)
				client.MinVersion, client.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return ServerTLSConfig(issue(t, ca.IssueUZIServer, serverID), roots), client
			},
		},
		{
			name: "server certificate without UZI otherName",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				return ServerTLSConfig(issue(t, ca.IssueWithoutUZIIdentity, serverID), roots),
					ClientTLSConfig(issue(t, ca.IssueUZIServer, clientID), roots)
			},
			wantClient: true,
			wantErr:    ErrNoUZIIdentity,
		},
		{
			name: "server certificate from an unknown CA",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				return ServerTLSConfig(issue(t, unknownCA.IssueUZIServer, serverID), roots),
					ClientTLSConfig(issue(t, ca.IssueUZIServer, clientID), roots)
			},
			wantClient: true,
		},
		{
			name: "non-UZI server accepted only when allowed",
			configs: func(t *testing.T) (*tls.Config, *tls.Config) {
				return ServerTLSConfig(issue(t, ca.IssueWithoutUZIIdentity, serverID), roots),
					ClientTLSConfig(issue(t, ca.IssueUZIServer, clientID), roots, AcceptNonUZIPeer())
			},
			wantOK: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			serverCfg, clientCfg := tc.configs(t)
			res := handshake(t, serverCfg, clientCfg)
			if tc.wantOK {
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("handshake failed: server %v, client %v", res.serverErr, res.clientErr)
				}
				if res.serverState.Version != tls.VersionTLS13 {
					t.Errorf("version = %x, want TLS 1.3", res.serverState.Version)
				}
				return
			}
			if res.clientErr == nil {
				t.Fatal("client completed a connection that must be refused")
			}
			refusal := res.clientErr
			if !tc.wantClient {
				if res.serverErr == nil {
					t.Fatal("server accepted a handshake it must refuse")
				}
				refusal = res.serverErr
			}
			if tc.wantErr != nil && !errors.Is(refusal, tc.wantErr) {
				t.Fatalf("refused with %v, want %v", refusal, tc.wantErr)
			}
			t.Logf("refused: %v", refusal)
		})
	}
}

func TestPeerURA(t *testing.T) {
	ca := newTestCA(t, "dev CA")
	roots := CertPool(ca.Cert)
	server, err := ca.IssueUZIServer(ServerCertRequest{ID: UZIServerID{UZI: "1", URA: "11111111", AGB: "00000001"}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueUZIServer(ServerCertRequest{ID: UZIServerID{UZI: "2", URA: "22222222", AGB: "00000002"}})
	if err != nil {
		t.Fatal(err)
	}
	res := handshake(t, ServerTLSConfig(server, roots), ClientTLSConfig(client, roots))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", res.serverErr, res.clientErr)
	}
	ura, err := PeerURA(&res.serverState)
	if err != nil {
		t.Fatal(err)
	}
	if ura != "22222222" {
		t.Fatalf("PeerURA = %q, want 22222222", ura)
	}

	// PeerCertificates alone are not proof: only verified chains count.
	unverified := tls.ConnectionState{PeerCertificates: []*x509.Certificate{client.Leaf}}
	if _, err := PeerURA(&unverified); !errors.Is(err, ErrNoVerifiedPeer) {
		t.Fatalf("err = %v, want ErrNoVerifiedPeer", err)
	}
	if _, err := PeerURA(nil); !errors.Is(err, ErrNoVerifiedPeer) {
		t.Fatalf("err = %v, want ErrNoVerifiedPeer", err)
	}
}

func TestCertThumbprintS256(t *testing.T) {
	ca := newTestCA(t, "dev CA")
	sum := sha256.Sum256(ca.Cert.Raw)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	if got := CertThumbprintS256(ca.Cert); got != want || len(got) != 43 {
		t.Fatalf("CertThumbprintS256 = %q, want %q", got, want)
	}
}

func TestConfigsAreTLS13Only(t *testing.T) {
	for name, cfg := range map[string]*tls.Config{
		"server": ServerTLSConfig(tls.Certificate{}, nil),
		"client": ClientTLSConfig(tls.Certificate{}, nil),
	} {
		if cfg.MinVersion != tls.VersionTLS13 {
			t.Errorf("%s MinVersion = %x", name, cfg.MinVersion)
		}
		if cfg.InsecureSkipVerify {
			t.Errorf("%s skips verification", name)
		}
		if cfg.ClientCAs == nil && cfg.RootCAs == nil {
			t.Errorf("%s: nil roots fell back to the system roots", name)
		}
	}
	if ServerTLSConfig(tls.Certificate{}, nil).ClientAuth != tls.RequireAndVerifyClientCert {
		t.Error("server does not require client certificates")
	}
}

// BenchmarkHandshake measures one full (non-resumed) mTLS 1.3 handshake over
// loopback, both ends verifying chain and UZI identity.
func BenchmarkHandshake(b *testing.B) {
	ca := newTestCA(b, "dev CA")
	roots := CertPool(ca.Cert)
	server, err := ca.IssueUZIServer(ServerCertRequest{ID: UZIServerID{UZI: "1", URA: "11111111", AGB: "00000001"}})
	if err != nil {
		b.Fatal(err)
	}
	client, err := ca.IssueUZIServer(ServerCertRequest{ID: UZIServerID{UZI: "2", URA: "22222222", AGB: "00000002"}})
	if err != nil {
		b.Fatal(err)
	}
	serverCfg := ServerTLSConfig(server, roots, WithDenySerials(big.NewInt(1)))
	clientCfg := ClientTLSConfig(client, roots)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	results := make(chan error, 1)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			srv := tls.Server(conn, serverCfg)
			err = srv.Handshake()
			conn.Close()
			results <- err
		}
	}()

	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		conn, err := tls.Dial("tcp", ln.Addr().String(), clientCfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := <-results; err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
