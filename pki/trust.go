package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// Errors of peer verification under a Trust; test with errors.Is. The
// descriptions are for logs: a peer only ever sees a failed handshake.
var (
	// ErrUntrustedPeer: the certificate is neither pinned nor chains to a
	// configured CA (or the chain is otherwise invalid: expired, wrong usage).
	ErrUntrustedPeer = errors.New("pki: peer certificate is not trusted")
	// ErrRevokedCertificate: a certificate of the chain is on its issuer's CRL.
	ErrRevokedCertificate = errors.New("pki: peer certificate is revoked (CRL)")
	// ErrStaleCRL: the CRL of an issuer in the chain is past its nextUpdate
	// and the trust fails closed.
	ErrStaleCRL = errors.New("pki: CRL is past its nextUpdate")
	// ErrNoCRL: RequireCRL is set and an issuer in the chain has no CRL.
	ErrNoCRL = errors.New("pki: no CRL for the issuer of the peer certificate")
	// ErrPinnedURAMismatch: a pinned certificate carries an UZI identity
	// whose URA is not the URA the pin was configured for.
	ErrPinnedURAMismatch = errors.New("pki: pinned certificate carries another URA than its pin")
)

// Route tells by which trust list a peer was admitted: the plateau enforcer
// uses it as evidence (plateau 1–2 partners may be pinned, plateau 3–4
// require a certificate under the configured PKIoverheid/UZI CAs).
type Route int

const (
	// RouteCA: the certificate chains to a configured CA.
	RouteCA Route = iota + 1
	// RoutePinned: the exact certificate is pinned by its SHA-256.
	RoutePinned
)

// String returns "ca" or "pinned".
func (r Route) String() string {
	switch r {
	case RouteCA:
		return "ca"
	case RoutePinned:
		return "pinned"
	}
	return "unknown"
}

// Stale-CRL policies of TrustConfig.StaleCRL.
const (
	StaleCRLFailClosed = "fail-closed"
	StaleCRLAccept     = "accept"
)

// DefaultCRLPollInterval is how often CRL files are checked for changes.
const DefaultCRLPollInterval = 30 * time.Second

// TrustConfig is a node's trust list: whom it accepts on its public listener
// and when calling peers.
type TrustConfig struct {
	// CAFiles are PEM files of trusted CAs, standing in for PKIoverheid/UZI
	// (plateau 3–4): any certificate chaining to one with an UZI identity.
	CAFiles []string `koanf:"cafiles"`
	// CACerts are trusted CAs given in memory (tests, the local network).
	CACerts []*x509.Certificate `koanf:"-"`
	// Pinned are bilateral partners (plateau 1–2), trusted by their exact
	// certificate even when its CA is not in CAFiles.
	Pinned []PinConfig `koanf:"pinned"`
	// CRLFiles are PEM or DER CRLs, each issued by one of the CAs; reloaded
	// when their modification time or size changes.
	CRLFiles []string `koanf:"crlfiles"`
	// CRLPollInterval is how often CRLFiles are checked for changes
	// (default DefaultCRLPollInterval; negative disables polling).
	CRLPollInterval time.Duration `koanf:"crlpollinterval"`
	// StaleCRL says what happens once a CRL is past its nextUpdate:
	// StaleCRLFailClosed (default) refuses every certificate of that
	// issuer; StaleCRLAccept keeps using the old CRL.
	StaleCRL string `koanf:"stalecrl"`
	// RequireCRL refuses CA-route certificates whose issuer has no CRL.
	RequireCRL bool `koanf:"requirecrl"`
	// DenySerials are certificate serial numbers refused outright
	// (decimal, or hex with 0x prefix or colons).
	DenySerials []string `koanf:"denyserials"`

	// Now is the clock (default time.Now).
	Now func() time.Time `koanf:"-"`
	// Logger receives CRL reload failures (default slog.Default()).
	Logger *slog.Logger `koanf:"-"`
}

// PinConfig pins one partner certificate.
type PinConfig struct {
	// Name labels the partner in logs and evidence.
	Name string `koanf:"name"`
	// URA is the partner organisation the pin stands for. A pinned
	// certificate with an UZI identity must carry this URA.
	URA string `koanf:"ura"`
	// CertFile is the partner's certificate (PEM). Either it or SHA256.
	CertFile string `koanf:"certfile"`
	// SHA256 is the certificate's SHA-256: x5t#S256 (base64url) or hex.
	// When CertFile is given too, both must agree.
	SHA256 string `koanf:"sha256"`
}

// Validate reports configuration errors without reading files.
func (c TrustConfig) Validate() error {
	var errs []error
	if len(c.CAFiles) == 0 && len(c.CACerts) == 0 && len(c.Pinned) == 0 {
		errs = append(errs, errors.New("trust: no CA and no pinned certificate: nobody would be trusted"))
	}
	if len(c.CRLFiles) > 0 && len(c.CAFiles) == 0 && len(c.CACerts) == 0 {
		errs = append(errs, errors.New("trust: CRL files need the CAs that issued them"))
	}
	switch c.StaleCRL {
	case "", StaleCRLFailClosed, StaleCRLAccept:
	default:
		errs = append(errs, fmt.Errorf("trust: stalecrl %q must be %s or %s", c.StaleCRL, StaleCRLFailClosed, StaleCRLAccept))
	}
	for i, p := range c.Pinned {
		if err := nl.ValidateURA(p.URA); err != nil {
			errs = append(errs, fmt.Errorf("trust: pinned[%d] (%s): %w", i, p.Name, err))
		}
		if p.CertFile == "" && p.SHA256 == "" {
			errs = append(errs, fmt.Errorf("trust: pinned[%d] (%s) needs certfile or sha256", i, p.Name))
		}
		if p.SHA256 != "" {
			if _, err := ParsePin(p.SHA256); err != nil {
				errs = append(errs, fmt.Errorf("trust: pinned[%d] (%s): %w", i, p.Name, err))
			}
		}
	}
	for _, s := range c.DenySerials {
		if _, err := ParseSerial(s); err != nil {
			errs = append(errs, fmt.Errorf("trust: denyserials: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ParsePin reads a SHA-256 certificate pin: base64url (x5t#S256, padded or
// not) or hex (with or without colons).
func ParsePin(s string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	h := strings.ReplaceAll(s, ":", "")
	if b, err := hex.DecodeString(h); err == nil && len(b) == sha256.Size {
		copy(out[:], b)
		return out, nil
	}
	if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); err == nil && len(b) == sha256.Size {
		copy(out[:], b)
		return out, nil
	}
	return out, fmt.Errorf("pki: %q is not a SHA-256 pin (base64url or hex)", s)
}

// ParseSerial reads a certificate serial number: decimal, 0x-prefixed hex,
// or colon-separated hex bytes as openssl prints them.
func ParseSerial(s string) (*big.Int, error) {
	n := new(big.Int)
	var ok bool
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		_, ok = n.SetString(s[2:], 16)
	case strings.Contains(s, ":"):
		_, ok = n.SetString(strings.ReplaceAll(s, ":", ""), 16)
	default:
		_, ok = n.SetString(s, 10)
	}
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("pki: %q is not a positive serial number", s)
	}
	return n, nil
}

// Peer is a verified peer: who it is and by which route it was trusted.
type Peer struct {
	Route Route
	// URA of the organisation: from the UZI identity, or the pin's URA for
	// a pinned certificate without one.
	URA string
	// ID is the certificate's UZI server identity; zero when it has none
	// (possible only for pinned certificates and AcceptNonUZIPeer).
	ID UZIServerID
	// PinName is the configured name of the pin (RoutePinned).
	PinName string
	Leaf    *x509.Certificate
	// Chain is the verified chain, leaf first; just the leaf when pinned.
	Chain []*x509.Certificate
}

// Trust is a loaded TrustConfig: it builds the tls.Configs of public
// listeners and peer clients, and identifies verified peers. It is safe for
// concurrent use; CRLs are reloaded in place.
type Trust struct {
	roots      *x509.CertPool
	cas        []*x509.Certificate
	pins       map[[sha256.Size]byte]pin
	deny       map[string]struct{}
	failClosed bool
	requireCRL bool
	now        func() time.Time
	log        *slog.Logger

	crl *crlWatcher

	cacheMu sync.Mutex
	cache   map[[sha256.Size]byte]cachedPeer
}

type pin struct {
	name, ura string
}

type cachedPeer struct {
	peer       *Peer
	generation uint64
	until      time.Time
}

// maxPeerCache bounds the identification cache; it is cleared when full.
const maxPeerCache = 4096

// LoadTrust validates cfg, reads its CA, pin and CRL files and returns the
// Trust. Every CRL must be signed by a configured CA.
func LoadTrust(cfg TrustConfig) (*Trust, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trust{
		roots:      x509.NewCertPool(),
		pins:       make(map[[sha256.Size]byte]pin),
		deny:       make(map[string]struct{}),
		failClosed: cfg.StaleCRL != StaleCRLAccept,
		requireCRL: cfg.RequireCRL,
		now:        cfg.Now,
		log:        cfg.Logger,
		cache:      make(map[[sha256.Size]byte]cachedPeer),
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	cas := append([]*x509.Certificate(nil), cfg.CACerts...)
	for _, f := range cfg.CAFiles {
		certs, err := readCertsFile(f)
		if err != nil {
			return nil, fmt.Errorf("pki: trusted CA: %w", err)
		}
		cas = append(cas, certs...)
	}
	for _, c := range cas {
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("pki: trusted CA %q is not a CA certificate", c.Subject)
		}
		t.roots.AddCert(c)
		t.cas = append(t.cas, c)
	}
	for i, p := range cfg.Pinned {
		var sum [sha256.Size]byte
		if p.SHA256 != "" {
			sum, _ = ParsePin(p.SHA256) // checked by Validate
		}
		if p.CertFile != "" {
			certs, err := readCertsFile(p.CertFile)
			if err != nil {
				return nil, fmt.Errorf("pki: pinned[%d] (%s): %w", i, p.Name, err)
			}
			fileSum := sha256.Sum256(certs[0].Raw)
			if p.SHA256 != "" && fileSum != sum {
				return nil, fmt.Errorf("pki: pinned[%d] (%s): sha256 does not match %s", i, p.Name, p.CertFile)
			}
			if id, err := ParseUZIServerID(certs[0]); err == nil && id.URA != p.URA {
				return nil, fmt.Errorf("pki: pinned[%d] (%s): certificate carries URA %s, pin says %s", i, p.Name, id.URA, p.URA)
			}
			sum = fileSum
		}
		if _, dup := t.pins[sum]; dup {
			return nil, fmt.Errorf("pki: pinned[%d] (%s): certificate pinned twice", i, p.Name)
		}
		t.pins[sum] = pin{name: p.Name, ura: p.URA}
	}
	for _, s := range cfg.DenySerials {
		n, _ := ParseSerial(s) // checked by Validate
		t.deny[n.String()] = struct{}{}
	}
	poll := cfg.CRLPollInterval
	if poll == 0 {
		poll = DefaultCRLPollInterval
	}
	var err error
	if t.crl, err = newCRLWatcher(cfg.CRLFiles, t.cas, poll, t.now, t.log); err != nil {
		return nil, err
	}
	return t, nil
}

// readCertsFile reads every certificate of a PEM file, or one DER certificate.
func readCertsFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return []*x509.Certificate{c}, nil
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return certs, nil
}

// Roots returns the pool of configured CAs (without pins).
func (t *Trust) Roots() *x509.CertPool { return t.roots }

// Reload re-reads every CRL file now, whatever its modification time. A
// file that fails to load keeps its previous CRL and is reported.
func (t *Trust) Reload() error { return t.crl.reload(true) }

// ServerTLSConfig builds the tls.Config of a public (mTLS) listener under
// this trust: TLS 1.3, a client certificate required, and every handshake
// (resumptions included) verified by pin or CA chain, deny list, CRLs and
// opts. The configured CAs are not advertised in the CertificateRequest, so
// a pinned partner's client sends its certificate from any CA; the list is
// only a hint to clients and the decision is ours.
func (t *Trust) ServerTLSConfig(cert tls.Certificate, opts ...Option) *tls.Config {
	p := newPolicy(opts)
	cfg := baseConfig(cert)
	// Go's own chain verification cannot admit a pinned certificate from an
	// unknown CA (and adding the pin as a root would let its key sign other
	// "valid" certificates), so the chain is verified by verifyPeer.
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := t.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, "", p)
		return err
	}
	return cfg
}

// ClientTLSConfig builds the tls.Config for calling a peer under this trust:
// TLS 1.3, cert as client certificate, and the server verified by pin or CA
// chain (with its host name), deny list, CRLs and opts.
func (t *Trust) ClientTLSConfig(cert tls.Certificate, opts ...Option) *tls.Config {
	p := newPolicy(opts)
	cfg := baseConfig(cert)
	// crypto/tls's verification is replaced, not weakened: VerifyConnection
	// runs on every handshake and refuses what verifyPeer does not admit,
	// host name included.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := t.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, cs.ServerName, p)
		return err
	}
	return cfg
}

// Peer identifies the client of an incoming connection accepted by a
// ServerTLSConfig of this trust: URA, UZI identity and the route by which
// it is trusted. It re-checks the certificate against the current CRLs, so
// a revocation also ends kept-alive connections; results are cached until
// the CRLs change.
func (t *Trust) Peer(cs *tls.ConnectionState) (*Peer, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, ErrNoVerifiedPeer
	}
	h := sha256.New()
	for _, c := range cs.PeerCertificates {
		h.Write(c.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	t.crl.poll()
	gen, now := t.crl.generation(), t.now()
	t.cacheMu.Lock()
	if e, ok := t.cache[key]; ok && e.generation == gen && now.Before(e.until) {
		t.cacheMu.Unlock()
		return e.peer, nil
	}
	t.cacheMu.Unlock()
	peer, err := t.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, "", &peerPolicy{})
	if err != nil {
		return nil, err
	}
	until := t.crl.validUntil(peer.Chain)
	for _, c := range peer.Chain {
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	t.cacheMu.Lock()
	if len(t.cache) >= maxPeerCache {
		clear(t.cache)
	}
	t.cache[key] = cachedPeer{peer: peer, generation: gen, until: until}
	t.cacheMu.Unlock()
	return peer, nil
}

// PeerURA returns the URA of the verified client of cs; it has the shape of
// oauth.ServerConfig.PeerURA, for listeners built by this trust.
func (t *Trust) PeerURA(cs *tls.ConnectionState) (string, error) {
	p, err := t.Peer(cs)
	if err != nil {
		return "", err
	}
	return p.URA, nil
}

// verifyPeer is the one peer check of Trust configs. usage is the extended
// key usage the peer's role needs; serverName, when set, must match the leaf.
func (t *Trust) verifyPeer(certs []*x509.Certificate, usage x509.ExtKeyUsage, serverName string, p *peerPolicy) (*Peer, error) {
	if len(certs) == 0 {
		return nil, ErrNoVerifiedPeer
	}
	t.crl.poll()
	now := t.now()
	leaf := certs[0]
	peer := &Peer{Leaf: leaf}
	if pn, ok := t.pins[sha256.Sum256(leaf.Raw)]; ok {
		// A pin replaces the chain, not the rest: validity, usage and host
		// name still hold.
		if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
			return nil, fmt.Errorf("%w: pinned certificate %q is valid only %s to %s", ErrUntrustedPeer, pn.name,
				leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
		}
		if !hasUsage(leaf, usage) {
			return nil, fmt.Errorf("%w: pinned certificate %q lacks the extended key usage for its role", ErrUntrustedPeer, pn.name)
		}
		if serverName != "" {
			if err := leaf.VerifyHostname(serverName); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUntrustedPeer, err)
			}
		}
		peer.Route, peer.PinName, peer.URA, peer.Chain = RoutePinned, pn.name, pn.ura, []*x509.Certificate{leaf}
		if id, err := ParseUZIServerID(leaf); err == nil {
			if id.URA != pn.ura {
				return nil, fmt.Errorf("%w: pin %q is for URA %s, certificate carries %s", ErrPinnedURAMismatch, pn.name, pn.ura, id.URA)
			}
			peer.ID = id
		} else if !errors.Is(err, ErrNoUZIIdentity) {
			return nil, err
		}
	} else {
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots:         t.roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{usage},
			DNSName:       serverName,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUntrustedPeer, err)
		}
		peer.Route, peer.Chain = RouteCA, chains[0]
		id, err := ParseUZIServerID(leaf)
		switch {
		case err == nil:
			peer.ID, peer.URA = id, id.URA
		case !p.acceptNonUZI:
			return nil, fmt.Errorf("pki: peer %q: %w", leaf.Subject.CommonName, err)
		}
	}
	for _, c := range peer.Chain {
		s := c.SerialNumber.String()
		if _, denied := t.deny[s]; denied {
			return nil, fmt.Errorf("%w: %q serial %s", ErrDeniedCertificate, c.Subject.CommonName, s)
		}
		if _, denied := p.deny[s]; denied {
			return nil, fmt.Errorf("%w: %q serial %s", ErrDeniedCertificate, c.Subject.CommonName, s)
		}
	}
	if err := t.crl.check(peer, now, t.failClosed, t.requireCRL); err != nil {
		return nil, err
	}
	for _, fn := range p.verify {
		if err := fn(leaf, [][]*x509.Certificate{peer.Chain}); err != nil {
			return nil, err
		}
	}
	return peer, nil
}

// hasUsage mirrors crypto/x509: no extended key usage means any.
func hasUsage(c *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == usage || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// LoadCertPool reads CA certificates (PEM, or one DER certificate per file)
// into a pool. A file without a certificate is an error: a silently empty
// pool would refuse every peer.
func LoadCertPool(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		certs, err := readCertsFile(f)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	return pool, nil
}

// CheckFreshCRL refuses a peer whose chain is not covered by fresh CRLs:
// each certificate but the trust anchor needs its issuer's CRL, loaded and
// before its nextUpdate. The plateau enforcer asks it of partners at
// network plateau 3–4 (revocation status required), while the listener's
// own StaleCRL and RequireCRL settings may be laxer for plateau 1–2.
func (t *Trust) CheckFreshCRL(peer *Peer) error {
	if peer == nil {
		return ErrNoVerifiedPeer
	}
	t.crl.poll()
	return t.crl.fresh(peer, t.now())
}
