package plateau

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/schakel-nl/schakel/nl"
)

// Plateaus is the plateau agreed per generic function. A function that is
// not listed stands at the plateau of the agreement's fallback (see
// Config.Default), or at plateau 1.
type Plateaus map[Function]int

// Uniform returns the same plateau p for every function.
func Uniform(p int) Plateaus {
	out := make(Plateaus, len(Functions))
	for _, f := range Functions {
		out[f] = p
	}
	return out
}

// PartnerConfig is the agreement with one partner organisation (URA) or
// with one collaboration (a set of URAs that share a trust domain).
type PartnerConfig struct {
	// URA is the partner organisation; set either URA or Collaboration.
	URA string `koanf:"ura"`
	// Collaboration lists the URAs of a collaboration (samenwerkingsverband).
	Collaboration []string `koanf:"collaboration"`
	// Name is shown in refusals, logs and the scan.
	Name string `koanf:"name"`
	// Plateaus is the plateau agreed per generic function.
	Plateaus Plateaus `koanf:"plateaus"`
	// Applications, when set, limits the care applications (policy names,
	// e.g. "bgz") the partner may ask for: the bilateral list of plateau 1.
	Applications []string `koanf:"applications"`
	// Endpoints are the partner's addresses by own configuration, the
	// addressing of plateaus 1–2 ("own mechanism"). From addressing plateau 3
	// on, the national addressbook is the only source and configured
	// endpoints are refused. Only for an agreement with one organisation.
	Endpoints Endpoints `koanf:"endpoints"`
	// SystemIdentity lets the participant's system stand in for a user at
	// authentication plateaus 2–3, e.g. for the receiver's pull of a
	// Notified Pull: both sides read it, the receiver to pull without a
	// user's acceptance, the sender to accept such a pull.
	SystemIdentity bool `koanf:"systemidentity"`
	// RequireValidation refuses to exchange a care application with the
	// partner unless its GtK holds a valid proof of validation for it in
	// the admission register. Unset: required when the agreement's network
	// plateau is 3 or 4 (validation.go).
	RequireValidation *bool `koanf:"requirevalidation"`
}

// Endpoints are one organisation's addresses, as its addressbook entry
// would give them. Each is an absolute https URL; empty ones are looked up
// in the addressbook.
type Endpoints struct {
	// Notification is its Notified Pull Task endpoint (payload type
	// Twiin-TA-notification), e.g. https://gtk.example/fhir/stu3/<URA>/Task.
	Notification string `koanf:"notification"`
	// BgZ is the FHIR STU3 base of its BgZ server.
	BgZ string `koanf:"bgz"`
	// R4 is the FHIR R4 base of its data endpoints (the care applications
	// on R4, e.g. BgZ on R4), e.g. https://gtk.example/fhir/r4/<URA>.
	R4 string `koanf:"r4"`
	// AuthServer is the issuer of its authorization server (RFC 8414).
	AuthServer string `koanf:"authserver"`
	// JWKS is the key set its client assertions are signed with.
	JWKS string `koanf:"jwks"`
	// Push is where it receives Push messages (payload type Twiin-TA-push),
	// e.g. https://gtk.example/fhir/stu3/<URA>/$process-message.
	Push string `koanf:"push"`
}

// IsZero reports whether no endpoint is configured.
func (e Endpoints) IsZero() bool { return e == Endpoints{} }

func (e Endpoints) validate(where string) error {
	var errs []error
	for _, f := range []struct{ key, v string }{{"notification", e.Notification}, {"bgz", e.BgZ}, {"r4", e.R4},
		{"authserver", e.AuthServer}, {"jwks", e.JWKS}, {"push", e.Push}} {
		if f.v == "" {
			continue
		}
		if u, err := url.Parse(f.v); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("%s.endpoints.%s: %q is not an absolute https URL", where, f.key, f.v))
		}
	}
	return errors.Join(errs...)
}

// Config is the growth-model configuration of a node; the node embeds it
// under `partners`.
type Config struct {
	// Default is the agreement with partners that are not listed. Unset, an
	// unlisted organisation is refused: plateau 1 authorization is a
	// bilateral list of who may ask.
	Default Plateaus `koanf:"default"`
	// Agreements are the partners and collaborations with their plateaus.
	Agreements []PartnerConfig `koanf:"agreements"`
	// PolicyDir holds policy files (<application>.yaml) that replace the
	// embedded defaults of the same application.
	PolicyDir string `koanf:"policydir"`
	// IdentityIssuers are the issuers (iss) whose signed user identities
	// count at plateau 4 (e.g. the Dezi issuer).
	IdentityIssuers []string `koanf:"identityissuers"`
}

// Validate checks the configuration and names every fault.
func (c *Config) Validate() error {
	var errs []error
	if c.Default != nil {
		if err := c.Default.validate("partners.default", false); err != nil {
			errs = append(errs, err)
		}
	}
	seen := map[string]int{}
	for i, a := range c.Agreements {
		where := AgreementPath(i, a)
		uras := a.URAs()
		switch {
		case a.URA != "" && len(a.Collaboration) > 0:
			errs = append(errs, fmt.Errorf("%s: set ura or collaboration, not both", where))
		case len(uras) == 0:
			errs = append(errs, fmt.Errorf("%s: ura or collaboration is required", where))
		}
		for _, u := range uras {
			if err := nl.ValidateURA(u); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			if j, dup := seen[u]; dup {
				errs = append(errs, fmt.Errorf("%s: URA %s is already in partners.agreements[%d]; a URA has one agreement", where, u, j))
			}
			seen[u] = i
		}
		if len(a.Plateaus) == 0 && c.Default == nil {
			errs = append(errs, fmt.Errorf("%s: plateaus are required when there is no partners.default", where))
		}
		if err := a.Plateaus.validate(where+".plateaus", true); err != nil {
			errs = append(errs, err)
		}
		if err := c.resolve(a.Plateaus).coherent(where); err != nil {
			errs = append(errs, err)
		}
		if !a.Endpoints.IsZero() {
			switch p := c.resolve(a.Plateaus)[Addressing]; {
			case len(a.Collaboration) > 0:
				errs = append(errs, fmt.Errorf("%s: endpoints belong to one organisation; give them in an agreement with its ura", where))
			case p > 2:
				errs = append(errs, fmt.Errorf("%s: endpoints are configured, but addressing is agreed at plateau %d: from plateau 3 on the partner's endpoints come from the national addressbook only", where, p))
			}
			if err := a.Endpoints.validate(where); err != nil {
				errs = append(errs, err)
			}
		}
		if a.SystemIdentity && c.resolve(a.Plateaus)[Authentication] >= Highest {
			errs = append(errs, fmt.Errorf("%s.systemidentity: authentication is agreed at plateau 4, where only a user identity signed by the identity issuer counts", where))
		}
		for _, app := range a.Applications {
			if !validName(app) {
				errs = append(errs, fmt.Errorf("%s.applications: %q is not a care application name (lower-case letters, digits, '-')", where, app))
			}
		}
	}
	if c.Default != nil {
		if err := c.resolve(nil).coherent("partners.default"); err != nil {
			errs = append(errs, err)
		}
	}
	for i, iss := range c.IdentityIssuers {
		if u, err := url.Parse(iss); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("partners.identityissuers[%d]: %q is not an https URL", i, iss))
		}
	}
	return errors.Join(errs...)
}

// AgreementPath names agreement i in configuration errors:
// partners.agreements[i], with its name when it has one.
func AgreementPath(i int, a PartnerConfig) string {
	where := fmt.Sprintf("partners.agreements[%d]", i)
	if a.Name != "" {
		where += " (" + a.Name + ")"
	}
	return where
}

// Plateau is the plateau agreement a stands at for f, filled in as the
// enforcer does: the agreement's own, else partners.default's, else plateau 1.
func (c *Config) Plateau(a PartnerConfig, f Function) int {
	return c.resolve(a.Plateaus)[f]
}

// URAs are the organisations the agreement covers.
func (a PartnerConfig) URAs() []string {
	if a.URA != "" {
		return []string{a.URA}
	}
	return a.Collaboration
}

func (p Plateaus) validate(where string, partial bool) error {
	var errs []error
	keys := make([]string, 0, len(p))
	for f := range p {
		keys = append(keys, string(f))
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := Function(k)
		if !f.Valid() {
			errs = append(errs, fmt.Errorf("%s: unknown generic function %q (known: %s)", where, k, functionList()))
			continue
		}
		if !ValidPlateau(p[f]) {
			errs = append(errs, fmt.Errorf("%s.%s: plateau %d is not 1–4", where, f, p[f]))
		}
	}
	if !partial {
		for _, f := range Functions {
			if _, ok := p[f]; !ok {
				errs = append(errs, fmt.Errorf("%s: %s is missing; the default names a plateau for every function", where, f))
			}
		}
	}
	return errors.Join(errs...)
}

// coherent refuses combinations the enforcer cannot honour: authorization
// decides on the user's role, so it cannot stand above the plateau at which
// that role is authenticated.
func (p Plateaus) coherent(where string) error {
	if p[Authorization] > p[Authentication] {
		return fmt.Errorf("%s: authorization at plateau %d needs the user's role authenticated at plateau %d or higher, but authentication is at plateau %d",
			where, p[Authorization], p[Authorization], p[Authentication])
	}
	return nil
}

// resolve fills in the functions an agreement leaves out.
func (c *Config) resolve(p Plateaus) Plateaus {
	out := make(Plateaus, len(Functions))
	for _, f := range Functions {
		switch v, ok := p[f]; {
		case ok:
			out[f] = v
		case c.Default != nil && c.Default[f] != 0:
			out[f] = c.Default[f]
		default:
			out[f] = Lowest
		}
	}
	return out
}

func functionList() string {
	s := make([]string, len(Functions))
	for i, f := range Functions {
		s[i] = string(f)
	}
	return strings.Join(s, ", ")
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Agreement is a resolved PartnerConfig: every function has its plateau.
type Agreement struct {
	Name         string
	URAs         []string
	Plateaus     [numFunctions]int // indexed by function order
	Applications []string          // empty: every application with a policy
	Default      bool              // the fallback agreement for unlisted partners
	Endpoints    Endpoints         // configured addresses (addressing plateau 1–2)
	// SystemIdentity: a system may stand in for a user (plateaus 2–3).
	SystemIdentity bool
	// RequireValidation: the partner's GtK needs a proof of validation per
	// care application (PartnerConfig.RequireValidation, resolved).
	RequireValidation bool
}

// numFunctions is the number of generic functions.
const numFunctions = 8

// Plateau returns the plateau agreed for f.
func (a *Agreement) Plateau(f Function) int {
	if i := index(f); i >= 0 {
		return a.Plateaus[i]
	}
	return 0
}

// MayUse reports whether the agreement covers care application app.
func (a *Agreement) MayUse(app string) bool {
	return len(a.Applications) == 0 || slices.Contains(a.Applications, app)
}

func index(f Function) int {
	switch f {
	case Identification:
		return 0
	case Authentication:
		return 1
	case Authorization:
		return 2
	case Consent:
		return 3
	case Localization:
		return 4
	case Addressing:
		return 5
	case Logging:
		return 6
	case Network:
		return 7
	}
	return -1
}

// Agreements resolves the configuration into a lookup by URA. The
// configuration must be valid.
func (c *Config) agreements() (map[string]*Agreement, *Agreement) {
	byURA := map[string]*Agreement{}
	for _, pc := range c.Agreements {
		a := &Agreement{Name: pc.Name, URAs: pc.URAs(), Applications: pc.Applications, Endpoints: pc.Endpoints, SystemIdentity: pc.SystemIdentity}
		r := c.resolve(pc.Plateaus)
		for _, f := range Functions {
			a.Plateaus[index(f)] = r[f]
		}
		a.RequireValidation = requireValidation(pc.RequireValidation, a.Plateau(Network))
		for _, u := range a.URAs {
			byURA[u] = a
		}
	}
	var def *Agreement
	if c.Default != nil {
		def = &Agreement{Name: "default agreement", Default: true}
		r := c.resolve(nil)
		for _, f := range Functions {
			def.Plateaus[index(f)] = r[f]
		}
		def.RequireValidation = requireValidation(nil, def.Plateau(Network))
	}
	return byURA, def
}
