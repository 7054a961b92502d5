package validation

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/pki"
)

// Files of the validation authority in the development PKI's directory.
const (
	AuthorityKeyFile  = "validation-authority.pem"
	AuthorityJWKSFile = "validation-authority.jwks.json"
	// AuthorityName is the development stand-in for the Twiin board, who
	// issues proofs of validation (seed 004: "Bewijs van Validatie — Twiin Bestuur").
	AuthorityName = "Schakel development validation authority"
	// ProofType is the JWS typ of a proof.
	ProofType = "twiin-validation+jwt"
	// DefaultProofValidity is how long a proof holds.
	DefaultProofValidity = 365 * 24 * time.Hour
)

// Errors of VerifyProof.
var (
	ErrProofInvalid  = errors.New("the proof of validation is not valid")
	ErrProofExpired  = errors.New("the proof of validation has expired")
	ErrReportChanged = errors.New("the report is not the one the proof was issued for")
	ErrNotConformant = errors.New("not every mandatory case passed: no proof of validation")
)

// LoadOrCreateAuthority returns the validation authority's signing key in
// the development PKI directory, creating it (and its public JWKS, which
// verifiers use) on first use.
func LoadOrCreateAuthority(pkiDir string) (jwk.Key, error) {
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(pkiDir, AuthorityKeyFile))
	if err != nil {
		return nil, err
	}
	set, err := pki.PublicJWKS(key)
	if err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(set, "", "  ")
	if err := os.WriteFile(filepath.Join(pkiDir, AuthorityJWKSFile), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("validation authority: %w", err)
	}
	return key, nil
}

// ProofClaims is what a proof of validation states.
type ProofClaims struct {
	Issuer            string `json:"iss"`
	Subject           string `json:"sub"` // the node's URL
	ID                string `json:"jti"`
	IssuedAt          int64  `json:"iat"`
	Expiry            int64  `json:"exp"`
	NodeURL           string `json:"node_url"`
	NodeURA           string `json:"node_ura"`
	CertificateSHA256 string `json:"certificate_sha256"`
	Vendor            string `json:"vendor,omitempty"`
	Version           string `json:"version,omitempty"`
	Role              Role   `json:"role"`
	Care              string `json:"care"`
	Plateau           int    `json:"plateau"`
	Date              string `json:"date"` // the day of the run, YYYY-MM-DD
	ReportSHA256      string `json:"report_sha256"`
	Cases             int    `json:"cases"`
	Kit               string `json:"kit"`
}

// IssueProof signs a proof of validation for a conformant report; report
// is the report's JSON exactly as handed over (its hash is in the proof).
func IssueProof(report []byte, key jwk.Key, validity time.Duration, now time.Time) (string, error) {
	rep, err := ReadReport(report)
	if err != nil {
		return "", err
	}
	if !rep.Summary.Conformant || rep.Summary.MandatoryNotPass > 0 {
		return "", ErrNotConformant
	}
	if validity <= 0 {
		validity = DefaultProofValidity
	}
	sum := sha256.Sum256(report)
	var id [16]byte
	_, _ = rand.Read(id[:])
	c := ProofClaims{Issuer: AuthorityName, Subject: rep.Target.URL, ID: hex.EncodeToString(id[:]), IssuedAt: now.Unix(),
		Expiry: now.Add(validity).Unix(), NodeURL: rep.Target.URL, NodeURA: rep.Target.URA, CertificateSHA256: rep.Target.CertificateSHA256,
		Vendor: rep.Vendor, Version: rep.Version, Role: rep.Role, Care: rep.Care, Plateau: rep.Plateau,
		Date: rep.Finished.UTC().Format(time.DateOnly), ReportSHA256: hex.EncodeToString(sum[:]), Cases: rep.Summary.Total, Kit: rep.Kit}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	alg, ok := key.Algorithm()
	sa, isSig := alg.(jwa.SignatureAlgorithm)
	if !ok || !isSig {
		return "", errors.New("validation: the authority key has no signature algorithm")
	}
	kid, _ := key.KeyID()
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, kid)
	_ = hdr.Set(jws.TypeKey, ProofType)
	s, err := jws.Sign(payload, jws.WithKey(sa, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("validation: sign proof: %w", err)
	}
	return string(s), nil
}

// VerifyProof checks a proof's signature against the authority's keys and
// its expiry; with a report, that the report is the one it was issued for.
func VerifyProof(proof string, authority jwk.Set, report []byte, now time.Time) (*ProofClaims, error) {
	proof = strings.TrimSpace(proof)
	payload, err := jws.Verify([]byte(proof), jws.WithKeySet(authority, jws.WithRequireKid(true)))
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrProofInvalid, err)
	}
	msg, err := jws.Parse([]byte(proof))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, fmt.Errorf("%w: not a single-signature JWS", ErrProofInvalid)
	}
	if typ, _ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != ProofType {
		return nil, fmt.Errorf("%w: typ %q, want %s", ErrProofInvalid, typ, ProofType)
	}
	var c ProofClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrProofInvalid, err)
	}
	if c.Issuer != AuthorityName || c.ReportSHA256 == "" || c.NodeURL == "" {
		return nil, fmt.Errorf("%w: incomplete claims", ErrProofInvalid)
	}
	if !now.Before(time.Unix(c.Expiry, 0)) {
		return &c, fmt.Errorf("%w on %s", ErrProofExpired, time.Unix(c.Expiry, 0).UTC().Format(time.DateOnly))
	}
	if report != nil {
		sum := sha256.Sum256(report)
		if hex.EncodeToString(sum[:]) != c.ReportSHA256 {
			return &c, ErrReportChanged
		}
	}
	return &c, nil
}

// ReadAuthorityJWKS reads the authority's public keys.
func ReadAuthorityJWKS(path string) (jwk.Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return jwk.Parse(b)
}
