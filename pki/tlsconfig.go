package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// ErrDeniedCertificate: the peer presented a certificate on the deny list.
var ErrDeniedCertificate = errors.New("pki: peer certificate is revoked (deny list)")

// VerifyPeerFunc inspects a peer after its chain has been verified; returning
// an error refuses the handshake. leaf is chains[0][0].
type VerifyPeerFunc func(leaf *x509.Certificate, chains [][]*x509.Certificate) error

// Option adjusts the peer verification of ServerTLSConfig and ClientTLSConfig.
type Option func(*peerPolicy)

// peerPolicy is what the connection verifier enforces beyond the chain.
type peerPolicy struct {
	acceptNonUZI bool
	deny         map[string]struct{}
	verify       []VerifyPeerFunc
}

// WithVerifyPeer adds a check run on every handshake, resumptions included,
// after the chain and UZI identity are verified. This is where dynamic
// revocation (a deny list that changes at runtime, OCSP, CRL) plugs in.
func WithVerifyPeer(fn VerifyPeerFunc) Option {
	return func(p *peerPolicy) {
		if fn != nil {
			p.verify = append(p.verify, fn)
		}
	}
}

// WithDenySerials refuses peers whose verified chain contains a certificate
// with one of these serial numbers. Serials are only unique per issuer; the
// dev CA's are random 128-bit numbers, so a plain set suffices there.
func WithDenySerials(serials ...*big.Int) Option {
	return func(p *peerPolicy) {
		if p.deny == nil {
			p.deny = make(map[string]struct{}, len(serials))
		}
		for _, s := range serials {
			if s != nil {
				p.deny[s.String()] = struct{}{}
			}
		}
	}
}

// AcceptNonUZIPeer drops the requirement that the peer's leaf carry an UZI
// server identity. Only for clients of services that use other certificates
// (PKIoverheid server certificates of national services); never on a node's
// public listener.
func AcceptNonUZIPeer() Option {
	return func(p *peerPolicy) { p.acceptNonUZI = true }
}

// ServerTLSConfig builds the configuration of a public (mTLS) listener:
// TLS 1.3 only, a client certificate chaining to roots required, and the peer
// policy (UZI identity, deny list, hooks) enforced on every handshake. A nil
// roots trusts nobody (not the system roots).
//
// For pinned partners, CRLs and the route evidence, use Trust.ServerTLSConfig.
func ServerTLSConfig(cert tls.Certificate, roots *x509.CertPool, opts ...Option) *tls.Config {
	cfg := baseConfig(cert)
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = failClosed(roots)
	cfg.VerifyConnection = newPolicy(opts).verifyConnection
	return cfg
}

// ClientTLSConfig builds the configuration for calling a peer: TLS 1.3 only,
// the server verified against roots (and the peer policy), and cert presented
// as client certificate. A nil roots trusts nobody (not the system roots).
func ClientTLSConfig(cert tls.Certificate, roots *x509.CertPool, opts ...Option) *tls.Config {
	cfg := baseConfig(cert)
	cfg.RootCAs = failClosed(roots)
	cfg.VerifyConnection = newPolicy(opts).verifyConnection
	return cfg
}

// curvePreferences are the key exchanges of every Schakel TLS connection:
// the hybrid post-quantum X25519MLKEM768 and SecP256r1MLKEM768 first (health
// records must stay confidential for decades, so traffic recorded today must
// not be decryptable by a future quantum computer), then X25519 and P-256,
// which every TLS 1.3 stack (OpenSSL, Java, .NET) offers. P-384 and P-521 add
// cost without a security level the certificates (P-256) would match.
var curvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.X25519, tls.CurveP256}

// baseConfig is the one starting point of every tls.Config in Schakel:
// TLS 1.3 only (Go fixes its cipher suites to AES-128-GCM, AES-256-GCM and
// ChaCha20-Poly1305, all AEAD with forward secrecy), the curves above, and
// no session tickets. Without tickets every connection is a full handshake
// in which the peer proves possession of its certificate key again and is
// checked against the current deny list and CRLs; a stolen ticket cannot
// be replayed as 0-RTT data (which Go never accepts anyway), and HTTP
// keep-alive already amortizes the handshake over many requests.
func baseConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		CurvePreferences:       slices.Clone(curvePreferences),
		SessionTicketsDisabled: true,
		Certificates:           []tls.Certificate{cert},
	}
}

// failClosed turns a nil pool into an empty one: crypto/tls reads nil as
// "the system roots", which would admit any publicly trusted certificate.
func failClosed(roots *x509.CertPool) *x509.CertPool {
	if roots == nil {
		return x509.NewCertPool()
	}
	return roots
}

func newPolicy(opts []Option) *peerPolicy {
	p := &peerPolicy{}
	for _, o := range opts {
		o(p)
	}
	return p
}

// verifyConnection runs as tls.Config.VerifyConnection rather than
// VerifyPeerCertificate because only the former also runs on resumed
// sessions, where a since-revoked peer would otherwise slip through.
func (p *peerPolicy) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		// Defensive: both configs verify chains, so this means misuse
		// (InsecureSkipVerify or a weakened ClientAuth).
		return ErrNoVerifiedPeer
	}
	leaf := cs.VerifiedChains[0][0]
	if !p.acceptNonUZI {
		if _, err := ParseUZIServerID(leaf); err != nil {
			return fmt.Errorf("pki: peer %q: %w", leaf.Subject.CommonName, err)
		}
	}
	if len(p.deny) > 0 {
		for _, chain := range cs.VerifiedChains {
			for _, c := range chain {
				if _, denied := p.deny[c.SerialNumber.String()]; denied {
					return fmt.Errorf("%w: %q serial %s", ErrDeniedCertificate, c.Subject.CommonName, c.SerialNumber)
				}
			}
		}
	}
	for _, fn := range p.verify {
		if err := fn(leaf, cs.VerifiedChains); err != nil {
			return err
		}
	}
	return nil
}

// CertPool returns a pool holding exactly cas, for ServerTLSConfig and
// ClientTLSConfig; the system roots are deliberately not included.
func CertPool(cas ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range cas {
		if c != nil {
			pool.AddCert(c)
		}
	}
	return pool
}

// CertThumbprintS256 returns the RFC 8705 "x5t#S256" of cert: the base64url
// (unpadded) SHA-256 of its DER, which binds access tokens to the client
// certificate.
func CertThumbprintS256(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// BackendClientTLSConfig is for the node's connections to a participant's
// own systems inside its network (an EHR's FHIR server in proxy mode), not
// to Twiin peers: the server is verified against roots (the system roots
// when nil) and no UZI identity is asked of it. TLS 1.2 is accepted because
// hospital-internal systems do not all speak 1.3.
func BackendClientTLSConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
}
