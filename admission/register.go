// Package admission is the Twiin admission register (seed 004, "Toetreden
// en Valideren"): who takes part in what. The four roles admit themselves
// with a signed declaration — Deelnemer (a care provider, with its
// participant agreement), Dienstverlener, GtK Beheerder and GtK Leverancier
// — and the register keeps which GtK serves which participant and each
// proof of validation per care application and role.
//
// The register is FHIR R4 so the Twiin Monitor and other tools read it with
// any FHIR client: a party is an Organization (identifier URA, type = its
// roles, an extension naming the GtK that serves it, one carrying its
// signed declaration); a proof of validation is a VerificationResult whose
// target is that Organization, whose validationProcess names the care
// application and role, whose nextScheduled is the proof's expiry, and
// whose validator.attestationSignature carries the proof itself (a JWS the
// reader verifies against the validation authority's keys).
//
// Its storage is a fhir/store.Store (R4): the register is FHIR resources,
// and that store already has the SQLite and PostgreSQL backends with one
// contract test, history and search; a second store for the same resources
// would duplicate all of it.
package admission

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/cert"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/validation"
)

// Role is a party's role in Twiin (seed 004).
type Role string

const (
	Participant     Role = "deelnemer"       // a care provider, under a participant agreement
	ServiceProvider Role = "dienstverlener"  // provides services to participants (e.g. a GtK operated for them)
	GtKOperator     Role = "gtk-beheerder"   // operates a GtK
	GtKVendor       Role = "gtk-leverancier" // supplies a GtK product
)

// Roles lists every role.
var Roles = []Role{Participant, ServiceProvider, GtKOperator, GtKVendor}

// FHIR systems of the register's resources.
const (
	SystemRole         = "https://schakel.dev/fhir/CodeSystem/twiin-role"
	SystemCare         = "https://schakel.dev/fhir/CodeSystem/twiin-care-application"
	SystemExchangeRole = "https://schakel.dev/fhir/CodeSystem/twiin-exchange-role"
	ExtServedBy        = "https://schakel.dev/fhir/StructureDefinition/served-by-gtk"
	ExtDeclaration     = "https://schakel.dev/fhir/StructureDefinition/admission-declaration"
	ExtAgreement       = "https://schakel.dev/fhir/StructureDefinition/participant-agreement"
	// DeclarationType is the JWS typ of a declaration.
	DeclarationType = "twiin-admission+jwt"
)

// tenant is the store tenant the register's resources live under.
const tenant = "admission"

// Errors of the register.
var (
	ErrDeclaration = errors.New("admission: invalid declaration")
	ErrNoProof     = errors.New("admission: no valid proof of validation")
)

// Declaration is what a party declares when it admits itself.
type Declaration struct {
	URA   string `json:"ura"`
	Name  string `json:"name"`
	Roles []Role `json:"roles"`
	// Agreement identifies the participant agreement (Deelnemer only).
	Agreement string `json:"agreement,omitempty"`
	// ServedBy is the URA of the GtK operator whose GtK serves the party.
	ServedBy string `json:"served_by,omitempty"`
	IssuedAt int64  `json:"iat"`
}

func (d Declaration) validate() error {
	var errs []error
	if err := nl.ValidateURA(d.URA); err != nil {
		errs = append(errs, fmt.Errorf("ura: %w", err))
	}
	if d.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if len(d.Roles) == 0 {
		errs = append(errs, errors.New("at least one role is required"))
	}
	for _, r := range d.Roles {
		if !slices.Contains(Roles, r) {
			errs = append(errs, fmt.Errorf("unknown role %q", r))
		}
	}
	if slices.Contains(d.Roles, Participant) && d.Agreement == "" {
		errs = append(errs, errors.New("a deelnemer declares its participant agreement"))
	}
	if d.ServedBy != "" {
		if err := nl.ValidateURA(d.ServedBy); err != nil {
			errs = append(errs, fmt.Errorf("served_by: %w", err))
		}
	}
	return errors.Join(errs...)
}

// SignDeclaration signs d with the party's key, the UZI server
// certificate chain in x5c: the register admits what that certificate's
// URA declares.
func SignDeclaration(d Declaration, key jwk.Key, chain []*x509.Certificate) (string, error) {
	if d.IssuedAt == 0 {
		d.IssuedAt = time.Now().Unix()
	}
	payload, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, DeclarationType)
	x5c := &cert.Chain{}
	for _, c := range chain {
		if err := x5c.AddString(base64.StdEncoding.EncodeToString(c.Raw)); err != nil {
			return "", err
		}
	}
	if err := hdr.Set(jws.X509CertChainKey, x5c); err != nil {
		return "", err
	}
	alg, ok := key.Algorithm()
	sa, isSig := alg.(jwa.SignatureAlgorithm)
	if !ok || !isSig {
		sa = jwa.ES256()
	}
	s, err := jws.Sign(payload, jws.WithKey(sa, key, jws.WithProtectedHeaders(hdr)))
	return string(s), err
}

// Register is the admission register over an R4 store.
type Register struct {
	st        store.Store
	roots     *x509.CertPool
	authority jwk.Set
	now       func() time.Time
}

// New returns the register over st; roots are the trust list declarations'
// certificates must chain to, authority the validation authority's keys.
func New(st store.Store, roots *x509.CertPool, authority jwk.Set) *Register {
	return &Register{st: st, roots: roots, authority: authority, now: time.Now}
}

// Admit verifies a signed declaration and records the party.
func (r *Register) Admit(ctx context.Context, signed string) (Declaration, error) {
	d, err := r.verifyDeclaration(signed)
	if err != nil {
		return Declaration{}, err
	}
	org := map[string]any{"resourceType": "Organization", "id": orgID(d.URA), "active": true, "name": d.Name,
		"identifier": []any{map[string]any{"system": nl.SystemURA, "value": d.URA}}}
	var types []any
	for _, role := range d.Roles {
		types = append(types, map[string]any{"coding": []any{map[string]any{"system": SystemRole, "code": string(role)}}})
	}
	org["type"] = types
	ext := []any{map[string]any{"url": ExtDeclaration, "valueString": signed}}
	if d.ServedBy != "" {
		ext = append(ext, map[string]any{"url": ExtServedBy, "valueReference": map[string]any{
			"reference": "Organization/" + orgID(d.ServedBy), "identifier": map[string]any{"system": nl.SystemURA, "value": d.ServedBy}}})
	}
	if d.Agreement != "" {
		ext = append(ext, map[string]any{"url": ExtAgreement, "valueString": d.Agreement})
	}
	org["extension"] = ext
	body, _ := json.Marshal(org)
	if _, _, err := r.st.Update(ctx, tenant, body, ""); err != nil {
		return Declaration{}, fmt.Errorf("admission: store the declaration: %w", err)
	}
	return d, nil
}

func (r *Register) verifyDeclaration(signed string) (Declaration, error) {
	msg, err := jws.Parse([]byte(signed))
	if err != nil || len(msg.Signatures()) != 1 {
		return Declaration{}, fmt.Errorf("%w: not a single-signature JWS", ErrDeclaration)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if typ, _ := h.Type(); typ != DeclarationType {
		return Declaration{}, fmt.Errorf("%w: typ %q, want %s", ErrDeclaration, typ, DeclarationType)
	}
	chain, ok := h.X509CertChain()
	if !ok || chain == nil || chain.Len() == 0 {
		return Declaration{}, fmt.Errorf("%w: no x5c certificate", ErrDeclaration)
	}
	var certs []*x509.Certificate
	for i := range chain.Len() {
		b, _ := chain.Get(i)
		der, err := base64.StdEncoding.DecodeString(string(b))
		if err != nil {
			return Declaration{}, fmt.Errorf("%w: x5c: %v", ErrDeclaration, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Declaration{}, fmt.Errorf("%w: x5c: %v", ErrDeclaration, err)
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: r.roots, Intermediates: inter, CurrentTime: r.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Declaration{}, fmt.Errorf("%w: the certificate is not trusted: %v", ErrDeclaration, err)
	}
	alg, _ := h.Algorithm()
	payload, err := jws.Verify([]byte(signed), jws.WithKey(alg, certs[0].PublicKey))
	if err != nil {
		return Declaration{}, fmt.Errorf("%w: signature: %v", ErrDeclaration, err)
	}
	var d Declaration
	if err := json.Unmarshal(payload, &d); err != nil {
		return Declaration{}, fmt.Errorf("%w: claims: %v", ErrDeclaration, err)
	}
	if err := d.validate(); err != nil {
		return Declaration{}, fmt.Errorf("%w: %v", ErrDeclaration, err)
	}
	id, err := pki.ParseUZIServerID(certs[0])
	if err != nil || id.URA != d.URA {
		return Declaration{}, fmt.Errorf("%w: the declaration is for URA %s, its certificate is not", ErrDeclaration, d.URA)
	}
	return d, nil
}

// Record verifies a proof of validation against the authority's keys and
// stores it as the VerificationResult of its node's URA, care application
// and role (replacing an earlier one).
func (r *Register) Record(ctx context.Context, proof string) (*validation.ProofClaims, error) {
	c, err := validation.VerifyProof(proof, r.authority, nil, r.now())
	if err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	body, _ := json.Marshal(VerificationResult(c, proof))
	if _, _, err := r.st.Update(ctx, tenant, body, ""); err != nil {
		return nil, fmt.Errorf("admission: store the proof: %w", err)
	}
	return c, nil
}

// VerificationResult is the register's resource for a proof.
func VerificationResult(c *validation.ProofClaims, proof string) map[string]any {
	issued := time.Unix(c.IssuedAt, 0).UTC()
	return map[string]any{
		"resourceType": "VerificationResult",
		"id":           fmt.Sprintf("proof-%s-%s-%s", c.NodeURA, c.Care, c.Role),
		"target": []any{map[string]any{"reference": "Organization/" + orgID(c.NodeURA),
			"identifier": map[string]any{"system": nl.SystemURA, "value": c.NodeURA}}},
		"need":   coded("http://terminology.hl7.org/CodeSystem/need", "periodic"),
		"status": "validated", "statusDate": issued.Format(time.RFC3339),
		"validationType": coded("http://terminology.hl7.org/CodeSystem/validation-type", "primary"),
		"validationProcess": []any{map[string]any{"coding": []any{
			map[string]any{"system": SystemCare, "code": c.Care},
			map[string]any{"system": SystemExchangeRole, "code": string(c.Role)}},
			"text": fmt.Sprintf("%s, %s, plateau %d: %s %s (%s, %d cases)", c.Care, c.Role, c.Plateau, c.Vendor, c.Version, c.Kit, c.Cases)}},
		"lastPerformed": issued.Format(time.RFC3339),
		"nextScheduled": time.Unix(c.Expiry, 0).UTC().Format(time.DateOnly),
		"validator": []any{map[string]any{
			"organization":        map[string]any{"display": c.Issuer},
			"identityCertificate": c.CertificateSHA256,
			"attestationSignature": map[string]any{
				"type": []any{map[string]any{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.5"}},
				"when": issued.Format(time.RFC3339), "who": map[string]any{"display": c.Issuer},
				"sigFormat": "application/jose", "data": base64.StdEncoding.EncodeToString([]byte(proof))}}},
	}
}

func coded(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

func orgID(ura string) string { return "ura-" + ura }

// Proofs returns the valid proofs of ura's GtK for care, verified again
// against the authority's keys (the register is read, not trusted); the
// error names why there is none.
func (r *Register) Proofs(ctx context.Context, ura, care string) ([]*validation.ProofClaims, error) {
	page, err := r.st.Search(ctx, tenant, store.Query{Type: "VerificationResult",
		Params: url.Values{"target": {"Organization/" + orgID(ura)}, "_count": {"100"}}})
	if err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	var bodies []json.RawMessage
	for _, m := range page.Matches {
		bodies = append(bodies, m.Body)
	}
	return ValidProofs(bodies, r.authority, ura, care, r.now())
}

// ValidProofs picks from VerificationResults those whose proof verifies,
// is for ura and care, and has not expired.
func ValidProofs(results []json.RawMessage, authority jwk.Set, ura, care string, now time.Time) ([]*validation.ProofClaims, error) {
	var out []*validation.ProofClaims
	var last error
	for _, b := range results {
		var vr struct {
			Status    string `json:"status"`
			Validator []struct {
				AttestationSignature struct {
					Data string `json:"data"`
				} `json:"attestationSignature"`
			} `json:"validator"`
		}
		if json.Unmarshal(b, &vr) != nil || vr.Status != "validated" {
			continue
		}
		for _, v := range vr.Validator {
			proof, err := base64.StdEncoding.DecodeString(v.AttestationSignature.Data)
			if err != nil {
				continue
			}
			c, err := validation.VerifyProof(string(proof), authority, nil, now)
			switch {
			case err != nil:
				last = err
			case c.NodeURA != ura:
				last = fmt.Errorf("a proof for URA %s filed under %s", c.NodeURA, ura)
			case c.Care == care:
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		if last != nil {
			return nil, fmt.Errorf("%w for %s of URA %s: %v", ErrNoProof, care, ura, last)
		}
		return nil, fmt.Errorf("%w for %s of URA %s in the admission register", ErrNoProof, care, ura)
	}
	return out, nil
}
