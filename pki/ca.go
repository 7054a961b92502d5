package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CA is a certificate authority that issues UZI-style certificates. The
// development CA lives on disk (LoadOrCreateCA); tests make throwaway ones
// with NewCA, and any CA a verifier was not given is an "unknown CA".
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Validity defaults. The dev CA outlives the certificates it issues, so a
// reissue never needs a new trust anchor.
const (
	defaultCAValidity   = 10 * 365 * 24 * time.Hour
	defaultLeafValidity = 365 * 24 * time.Hour
	// backdate absorbs clock skew between processes on one machine.
	backdate = time.Minute
)

// NewCA creates an in-memory self-signed ECDSA P-256 CA. Zero times default
// to now-1m and ten years on.
func NewCA(name string, notBefore, notAfter time.Time) (*CA, error) {
	now := time.Now()
	if notBefore.IsZero() {
		notBefore = now.Add(-backdate)
	}
	if notAfter.IsZero() {
		notAfter = now.Add(defaultCAValidity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Schakel development PKI"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Leaves are issued directly under the root; no intermediates.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// File names of the CA inside its directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// LoadOrCreateCA returns the CA in dir (ca.pem, ca-key.pem), creating it on
// first use. An existing CA is never replaced: every issued certificate and
// every peer's trust list depends on it, so a broken or expired one is an
// error for the operator to resolve.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certExists, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certExists && keyExists:
		return LoadCA(dir)
	case certExists || keyExists:
		return nil, fmt.Errorf("pki: %s has only one of %s and %s; remove it or restore the other", dir, caCertFile, caKeyFile)
	}
	ca, err := NewCA("Schakel development CA", time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := encodeKeyPEM(ca.Key)
	if err != nil {
		return nil, err
	}
	// Key first: a crash in between leaves a state the next run reports
	// instead of a certificate without its key.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, encodeCertPEM(ca.Cert.Raw), 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA reads the CA in dir and checks that it is a CA, currently valid and
// that the key belongs to the certificate.
func LoadCA(dir string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: load CA from %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: load CA from %s: %w", dir, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", filepath.Join(dir, caCertFile))
	}
	if now := time.Now(); now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("pki: CA in %s is valid only %s to %s", dir, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: CA key in %s cannot sign", dir)
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// ServerCertRequest describes an UZI server certificate to issue. Empty
// DNSNames and IPs default to localhost, 127.0.0.1 and ::1, the addresses of
// a local development network; zero times to now-1m and one year on.
type ServerCertRequest struct {
	ID         UZIServerID
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	NotBefore  time.Time
	NotAfter   time.Time
}

// withDefaults fills the zero fields.
func (r ServerCertRequest) withDefaults(now time.Time) ServerCertRequest {
	if r.CommonName == "" {
		r.CommonName = "UZI server " + r.ID.UZI
	}
	if len(r.DNSNames) == 0 {
		r.DNSNames = []string{"localhost"}
	}
	if len(r.IPs) == 0 {
		r.IPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	if r.NotBefore.IsZero() {
		r.NotBefore = now.Add(-backdate)
	}
	if r.NotAfter.IsZero() {
		r.NotAfter = now.Add(defaultLeafValidity)
	}
	return r
}

// IssueUZIServer issues an UZI server certificate for req. It is valid for
// both serverAuth and clientAuth, because a node presents the same
// certificate on its public listener and as a client to its peers.
func (ca *CA) IssueUZIServer(req ServerCertRequest) (tls.Certificate, error) {
	if err := req.ID.Validate(); err != nil {
		return tls.Certificate{}, err
	}
	return ca.issue(req.withDefaults(time.Now()), true)
}

// IssueExpired issues a certificate like IssueUZIServer that expired a day
// ago, whatever req's validity says. For tests of peers that must be refused.
func (ca *CA) IssueExpired(req ServerCertRequest) (tls.Certificate, error) {
	now := time.Now()
	req.NotBefore, req.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	return ca.IssueUZIServer(req)
}

// IssueNotYetValid issues a certificate like IssueUZIServer that becomes
// valid only tomorrow. For tests of peers that must be refused.
func (ca *CA) IssueNotYetValid(req ServerCertRequest) (tls.Certificate, error) {
	now := time.Now()
	req.NotBefore, req.NotAfter = now.Add(24*time.Hour), now.Add(48*time.Hour)
	return ca.IssueUZIServer(req)
}

// IssueWrongURA issues a certificate like IssueUZIServer whose subject
// names the organisation of req.ID but whose UZI identity carries another
// URA (WrongURA(req.ID.URA)): a peer claiming one organisation with the
// certificate of another. For tests of peers that must be refused.
func (ca *CA) IssueWrongURA(req ServerCertRequest) (tls.Certificate, error) {
	if err := req.ID.Validate(); err != nil {
		return tls.Certificate{}, err
	}
	req = req.withDefaults(time.Now())
	if req.CommonName == "UZI server "+req.ID.UZI {
		req.CommonName = "UZI server " + req.ID.UZI + " (URA " + req.ID.URA + ")"
	}
	req.ID.URA = WrongURA(req.ID.URA)
	return ca.issue(req, true)
}

// WrongURA returns a valid URA that differs from ura: the next number,
// wrapping at 99999999. It is deterministic so tests and the CLI agree.
func WrongURA(ura string) string {
	n, ok := new(big.Int).SetString(ura, 10)
	if !ok {
		return "00000001"
	}
	n.Add(n, big.NewInt(1))
	n.Mod(n, big.NewInt(100_000_000))
	return fmt.Sprintf("%08d", n.Int64())
}

// IssueWithoutUZIIdentity issues an otherwise valid server/client certificate
// without the otherName 2.5.5.5, so peers cannot tell whose it is. req.ID may
// be empty. For tests of peers that must be refused.
func (ca *CA) IssueWithoutUZIIdentity(req ServerCertRequest) (tls.Certificate, error) {
	return ca.issue(req.withDefaults(time.Now()), false)
}

func (ca *CA) issue(req ServerCertRequest, withID bool) (tls.Certificate, error) {
	if !req.NotAfter.After(req.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("pki: NotAfter %s is not after NotBefore %s", req.NotAfter, req.NotBefore)
	}
	var id *UZIServerID
	if withID {
		id = &req.ID
	}
	san, err := marshalSAN(id, req.DNSNames, req.IPs)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   req.CommonName,
			Organization: []string{req.CommonName},
			SerialNumber: req.ID.UZI,
		},
		NotBefore:             req.NotBefore,
		NotAfter:              req.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		// Our own SAN replaces the one crypto/x509 would build from
		// DNSNames/IPAddresses, which cannot hold an otherName.
		ExtraExtensions: []pkix.Extension{{Id: oidSubjectAltName, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	// Only the leaf is sent: peers hold the root already, and the dev PKI
	// has no intermediates.
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// LoadOrIssueUZIServer returns the certificate in dir/name.pem and
// dir/name-key.pem, issuing and storing a new one when it is missing,
// unreadable, not (or no longer) valid, not issued by ca, or when its identity,
// names or addresses differ from req. Validity times in req only apply to a
// new certificate.
func LoadOrIssueUZIServer(dir, name string, ca *CA, req ServerCertRequest) (tls.Certificate, error) {
	if err := checkName(name); err != nil {
		return tls.Certificate{}, err
	}
	if err := req.ID.Validate(); err != nil {
		return tls.Certificate{}, err
	}
	certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && matches(pair.Leaf, ca, req.withDefaults(time.Now())) {
		return pair, nil
	}
	pair, err := ca.IssueUZIServer(req)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := WriteKeyPair(dir, name, pair); err != nil {
		return tls.Certificate{}, err
	}
	return pair, nil
}

// matches reports whether a stored leaf can be reused for req.
func matches(leaf *x509.Certificate, ca *CA, req ServerCertRequest) bool {
	if leaf == nil {
		return false
	}
	now := time.Now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return false
	}
	// A regenerated CA invalidates everything it did not sign.
	if leaf.CheckSignatureFrom(ca.Cert) != nil {
		return false
	}
	id, err := ParseUZIServerID(leaf)
	if err != nil || id != req.ID || leaf.Subject.CommonName != req.CommonName {
		return false
	}
	return slices.Equal(sortedCopy(leaf.DNSNames), sortedCopy(req.DNSNames)) &&
		slices.Equal(ipStrings(leaf.IPAddresses), ipStrings(req.IPs))
}

// WriteKeyPair stores cert as dir/name.pem (certificate chain) and
// dir/name-key.pem (PKCS#8 private key, mode 0600).
func WriteKeyPair(dir, name string, cert tls.Certificate) error {
	if err := checkName(name); err != nil {
		return err
	}
	if len(cert.Certificate) == 0 {
		return errors.New("pki: no certificate to write")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := encodeKeyPEM(cert.PrivateKey)
	if err != nil {
		return err
	}
	var certPEM []byte
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, encodeCertPEM(der)...)
	}
	if err := writeFileAtomic(filepath.Join(dir, name+"-key.pem"), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, name+".pem"), certPEM, 0o644)
}

// checkName keeps file names inside their directory.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("pki: invalid file name %q", name)
	}
	return nil
}

// randomSerial returns a positive 128-bit serial, unique in practice, which
// is what a deny list of serials relies on.
func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}
