package localization

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/pki"
)

// A localization hit is the index's signed statement "I named holder H to
// requester R for the patient bound by B, at time T". The requester presents
// it to H in its grant assertion, so H can refuse a Direct Pull that no
// localization preceded without asking the index anything: the hit carries
// its own proof. See docs/localization.md.
const (
	// HitIssuer is the iss of every hit.
	HitIssuer = "schakel-localization"
	// HitType is the JWS typ of a hit.
	HitType = "localization-hit+jwt"
	// ExtHit is the Organization extension of a $localize answer that
	// carries the hit for that holder (valueString, compact JWS).
	ExtHit = "https://schakel.dev/fhir/StructureDefinition/localization-hit"
	// JWKSPath, under the index's FHIR base, publishes its hit keys.
	JWKSPath = "/.well-known/jwks.json"
	// ScopeNational and ScopeRegional tell whether the index that signed a
	// hit plays the national localization service (plateau 4) or a
	// collaboration's own (plateau 2–3).
	ScopeNational = "national"
	ScopeRegional = "regional"
	// DefaultHitLifetime bounds how long after a localization its hits
	// open a Direct Pull.
	DefaultHitLifetime = 10 * time.Minute

	maxHitSize    = 4 << 10
	bindingDomain = "schakel/localization/hit/v1\x00"
)

// Hit claims, besides iss, sub (requester URA), aud (holder URA), iat, exp, jti.
const (
	claimBinding     = "twiin_pbd"
	claimCareContext = "twiin_cc"
	claimScope       = "twiin_scope"
)

// NewSalt returns a fresh random salt for PatientBinding.
func NewSalt() []byte {
	s := make([]byte, 16)
	_, _ = rand.Read(s) // crypto/rand.Read never fails (Go 1.24+)
	return s
}

// PatientBinding binds a hit to a patient without telling the index who it
// is: base64url(SHA-256(domain ‖ salt ‖ BSN)). The requester chooses the
// salt per localization and reveals it to the holder only, which knows the
// BSN from the query; without the salt the binding cannot be tested against
// the ~10⁸ possible BSNs.
func PatientBinding(salt []byte, bsn string) string {
	h := sha256.New()
	h.Write([]byte(bindingDomain))
	h.Write(salt)
	h.Write([]byte(bsn))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Hit is a verified localization hit.
type Hit struct {
	Requester, Holder string
	Binding           string
	CareContext       string // system|code
	Scope             string // ScopeNational or ScopeRegional
	Issued, Expires   time.Time
}

// Names reports whether the hit is for the patient bsn under salt.
func (h Hit) Names(salt []byte, bsn string) bool {
	return h.Binding != "" && PatientBinding(salt, bsn) == h.Binding
}

// signHit signs a hit for holder, as answered to requester.
func (s *Server) signHit(requester, holder, binding, careContext string, now time.Time) (string, error) {
	scope := ScopeNational
	if s.cfg.Regional {
		scope = ScopeRegional
	}
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	payload, err := json.Marshal(map[string]any{
		"iss": HitIssuer, "sub": requester, "aud": holder, "iat": now.Unix(), "exp": now.Add(s.cfg.HitLifetime).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti), claimBinding: binding, claimCareContext: careContext, claimScope: scope,
	})
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, HitType); err != nil {
		return "", err
	}
	alg, _ := s.hitKey.Algorithm()
	out, err := jws.Sign(payload, jws.WithKey(alg, s.hitKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("localization: sign hit: %w", err)
	}
	return string(out), nil
}

// jwks serves the public hit keys.
func (s *Server) jwks(w http.ResponseWriter, _ *http.Request, _ caller) error {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=300")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.hitJWKS)
	return nil
}

// ErrInvalidHit is wrapped by every reason VerifyHit refuses a hit.
var ErrInvalidHit = errors.New("invalid localization hit")

// HitVerifier checks hits against the keys the index publishes at its
// FHIR base + JWKSPath, fetched over the node's mutual TLS client. Keys are
// cached; an unknown key triggers a new fetch at most once a minute.
type HitVerifier struct {
	base string
	http *http.Client
	now  func() time.Time

	mu      sync.Mutex
	keys    jwk.Set
	fetched time.Time
}

// NewHitVerifier returns a verifier for the hits of the index at base.
func NewHitVerifier(base string, hc *http.Client, now func() time.Time) *HitVerifier {
	if now == nil {
		now = time.Now
	}
	return &HitVerifier{base: strings.TrimSuffix(base, "/"), http: hc, now: now}
}

// Verify checks the hit's signature, issuer and validity period and returns
// its claims. The caller checks requester, holder, scope and patient.
func (v *HitVerifier) Verify(ctx context.Context, raw string) (Hit, error) {
	if len(raw) > maxHitSize || strings.Count(raw, ".") != 2 {
		return Hit{}, fmt.Errorf("%w: not a compact JWS of at most %d bytes", ErrInvalidHit, maxHitSize)
	}
	payload, err := v.verifySignature(ctx, []byte(raw))
	if err != nil {
		return Hit{}, err
	}
	h, err := decodeHit(payload)
	if err != nil {
		return Hit{}, err
	}
	now := v.now()
	switch {
	case !now.Before(h.Expires):
		return Hit{}, fmt.Errorf("%w: expired at %s", ErrInvalidHit, h.Expires.UTC().Format(time.RFC3339))
	case h.Issued.After(now.Add(time.Minute)):
		return Hit{}, fmt.Errorf("%w: issued in the future", ErrInvalidHit)
	}
	return h, nil
}

func (v *HitVerifier) verifySignature(ctx context.Context, raw []byte) ([]byte, error) {
	for attempt := 0; attempt < 2; attempt++ {
		set, err := v.keySet(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		if set != nil {
			if payload, err := jws.Verify(raw, jws.WithKeySet(set)); err == nil {
				return payload, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: not signed by the localization service's keys", ErrInvalidHit)
}

// keySet returns the cached keys; refresh fetches them again when the last
// fetch is more than a minute old (a rotated key, not a flood of bad hits).
func (v *HitVerifier) keySet(ctx context.Context, refresh bool) (jwk.Set, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys != nil && (!refresh || v.now().Sub(v.fetched) < time.Minute) {
		return v.keys, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.base+JWKSPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return v.keys, fmt.Errorf("localization: hit keys: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return v.keys, fmt.Errorf("localization: hit keys: %s", resp.Status)
	}
	set, err := jwk.Parse(body)
	if err != nil {
		return v.keys, fmt.Errorf("localization: hit keys: %w", err)
	}
	v.keys, v.fetched = set, v.now()
	return set, nil
}

// loadHitKey loads (or creates) the hit signing key and renders its JWKS.
func (s *Server) loadHitKey() error {
	k := s.cfg.HitKey
	if k == nil {
		path := s.cfg.HitKeyFile
		if path == "" && s.cfg.DataDir != "" {
			path = filepath.Join(s.cfg.DataDir, "hit-key.pem")
		}
		var err error
		if path != "" {
			k, err = pki.LoadOrCreateSigningKey(path)
		} else {
			k, err = ephemeralSigningKey()
		}
		if err != nil {
			return fmt.Errorf("localization: hit key: %w", err)
		}
	}
	set, err := pki.PublicJWKS(k)
	if err != nil {
		return fmt.Errorf("localization: hit key: %w", err)
	}
	if s.hitJWKS, err = json.Marshal(set); err != nil {
		return err
	}
	s.hitKey = k
	return nil
}

func ephemeralSigningKey() (jwk.Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return pki.SigningJWK(priv)
}

// decodeHit reads and checks a hit's claims, all but its times.
func decodeHit(payload []byte) (Hit, error) {
	var c struct {
		Iss, Sub, Aud string
		Iat, Exp      int64
		Binding       string `json:"twiin_pbd"`
		CareContext   string `json:"twiin_cc"`
		Scope         string `json:"twiin_scope"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return Hit{}, fmt.Errorf("%w: malformed claims", ErrInvalidHit)
	}
	switch {
	case c.Iss != HitIssuer:
		return Hit{}, fmt.Errorf("%w: issuer %q", ErrInvalidHit, c.Iss)
	case c.Exp == 0:
		return Hit{}, fmt.Errorf("%w: no expiry", ErrInvalidHit)
	case c.Binding == "" || c.Sub == "" || c.Aud == "":
		return Hit{}, fmt.Errorf("%w: requester, holder or patient binding missing", ErrInvalidHit)
	case c.Scope != ScopeNational && c.Scope != ScopeRegional:
		return Hit{}, fmt.Errorf("%w: scope %q", ErrInvalidHit, c.Scope)
	}
	return Hit{Requester: c.Sub, Holder: c.Aud, Binding: c.Binding, CareContext: c.CareContext, Scope: c.Scope,
		Issued: time.Unix(c.Iat, 0), Expires: time.Unix(c.Exp, 0)}, nil
}
