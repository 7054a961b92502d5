// Package consult implements the Twiin targeted query "Pull (Direct Pull)"
// (SPEC §4) on both sides. The requester asks a data holder directly for a
// patient's data of a care application (BgZ): it finds the holder's FHIR
// endpoint and authorization server in the addressbook, gets an access token
// with the jwt-bearer grant for exactly that endpoint (RFC 8707 resource),
// naming the user in the grant assertion, and runs the application's
// queries. The holder issues such tokens only for its own participants'
// endpoints, allows only the application's queries for one patient, and
// asks the consent service (Mitz closed question) before every answer: no
// referral presumes consent here (SPEC §6).
package consult

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/plateau"
)

// Protocol constants of the exchange.
const (
	// ApplicationBgZ names the BgZ care application (the default of the
	// node's internal API labels); a consult takes its applications from
	// Config.Applications.
	ApplicationBgZ = "bgz"
	// GrantTypeJWT is the grant a consult token is asked with (RFC 7523 §2.1).
	GrantTypeJWT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// ClaimConsult is the access-token claim marking a consult token; its
	// value is the URA of the participant whose data it opens.
	ClaimConsult = "twiin_consult"
	// ClaimRequesterType is the access-token claim with the requester's
	// facility type (zorgaanbiedertype), as its grant assertion stated it.
	ClaimRequesterType = "twiin_requester_type"
	// AssertionRequesterType is the grant-assertion claim in which the
	// requesting organisation states its facility type, which the consent
	// question needs. Like the user claims (docs/plateaus.md) it is the
	// organisation's signed statement.
	AssertionRequesterType = "requester_type"
)

// Addressbook payload types the requester looks up.
const (
	PayloadBgZServer  = notifiedpull.PayloadBgZServer
	PayloadAuthServer = notifiedpull.PayloadAuthServer
)

// Naming systems of the user claims in the grant assertion.
const (
	SystemUZIPerson = "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers"
	SystemUZIRole   = "http://fhir.nl/fhir/NamingSystem/uzi-rolcode"
)

// Defaults.
const (
	// MaxTokenLifetime bounds a consult token: each answer asks consent anew,
	// but a short token also bounds what a stolen one opens.
	MaxTokenLifetime   = 5 * time.Minute
	defaultParallel    = 6
	defaultMaxPages    = 50
	defaultMaxResponse = 16 << 20
	defaultMaxTotal    = 128 << 20
	defaultProfile     = "Mitz closed question"
)

// Errors of the exchange; the edges translate them once.
var (
	ErrUnknownParticipant = errors.New("not a participant of this node")
	ErrForbidden          = errors.New("not allowed in a consult")
	ErrHolder             = errors.New("the data holder could not be consulted")
)

// Party is a participant this node acts for (the same shape the Notified
// Pull uses, so the node builds it once).
type Party = notifiedpull.Party

// Directory resolves a partner's endpoint (the addressbook client).
type Directory interface {
	Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error)
}

// Config wires the service. The requester side needs Directory and
// Parties; the holder side Tenants, FHIRBase, FacilityType and Consent.
type Config struct {
	Node string
	// Applications are the care applications this node consults and
	// answers consults for: those of the registry on Direct Pull. Nil: none.
	Applications *careapp.Registry
	Directory    Directory
	Parties      func(ura string) (*Party, bool)
	// Tenants lists the participants of this node.
	Tenants func() []string
	// FHIRBase is the public STU3 FHIR base of a tenant on this node,
	// exactly as access tokens carry it in aud.
	FHIRBase func(tenant string) string
	// R4Base is the public R4 FHIR base of a tenant, where the data of
	// an R4 care application is served; a consult token may be asked
	// for it (resource) as for the STU3 base. Nil: none.
	R4Base func(tenant string) string
	// FacilityType is a participant's facility type code (e.g. Z3): the
	// data holder type of the consent question on the holder side, the
	// stated requester type on the requester side.
	FacilityType func(tenant string) string
	// RequesterType, when set, gives a partner's facility type when its
	// token does not carry one (e.g. from an agreement list).
	RequesterType func(ctx context.Context, ura string) string
	// Consent answers the closed question; required on the holder side.
	// Only Permit opens data; every failure refuses (fail closed).
	Consent consent.Checker
	// ConsentProfile names the consent check in audit records; default
	// "Mitz closed question".
	ConsentProfile string
	// ConsentSource, when set, replaces Consent and ConsentProfile: it picks
	// the Checker for each question and names it for the audit record (the
	// node chooses the source by the consent plateau agreed with the
	// requester); a name of the form "plateau N <source>" puts the consent
	// plateau in a refusal's reason. A nil Checker means no source: the
	// request is refused (503).
	ConsentSource func(q consent.Question) (consent.Checker, string)
	// Admit, when set, decides on the requester side whether tenant may
	// consult req's holder at all (the localization plateau agreed with
	// it), before anything is sent; it returns claims to add to the grant
	// assertion (the localization hit). Its error is a *plateau.Refusal or
	// a server error.
	Admit func(ctx context.Context, tenant string, req Request) (map[string]any, error)
	// Present builds the user part of the grant assertion for the
	// authentication plateau agreed with the holder (the node binds its
	// enforcer and identity issuer); nil presents at plateau 1.
	Present plateau.PresentFunc
	Audit   audit.Log
	Logger  *slog.Logger
	Now     func() time.Time
	// TokenLifetime of consult tokens; default and maximum MaxTokenLifetime.
	TokenLifetime time.Duration
	// Parallel bounds the queries a consult runs at the same time.
	Parallel int
	// MaxPages bounds the pages followed per query; MaxResponseBytes one
	// answer; MaxTotalBytes everything one consult collects.
	MaxPages         int
	MaxResponseBytes int64
	MaxTotalBytes    int64
}

// Service runs both sides of the consult for every participant of a node.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New builds the service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TokenLifetime <= 0 || cfg.TokenLifetime > MaxTokenLifetime {
		cfg.TokenLifetime = MaxTokenLifetime
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = defaultParallel
	}
	if cfg.MaxPages <= 0 {
		cfg.MaxPages = defaultMaxPages
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = defaultMaxResponse
	}
	if cfg.MaxTotalBytes <= 0 {
		cfg.MaxTotalBytes = defaultMaxTotal
	}
	if cfg.ConsentProfile == "" {
		cfg.ConsentProfile = defaultProfile
	}
	if cfg.Tenants == nil {
		cfg.Tenants = func() []string { return nil }
	}
	if cfg.FacilityType == nil {
		cfg.FacilityType = func(string) string { return "" }
	}
	if cfg.Present == nil {
		var none *plateau.Enforcer
		cfg.Present = func(ctx context.Context, from, partner, aud string, c *plateau.Caller) (plateau.Presentation, error) {
			return none.Present(ctx, nil, from, partner, aud, c)
		}
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "consult")}
}

// application is the care application app when the node runs it on
// Direct Pull (a consult, and each holder's part of an Indexed Pull).
func (s *Service) application(app string) (careapp.QuerySet, error) {
	return s.cfg.Applications.QuerySet(app, careapp.DirectPull)
}

func (s *Service) audit(ctx context.Context, r audit.Record) error {
	if s.cfg.Audit == nil {
		return nil
	}
	return s.cfg.Audit.Append(ctx, r)
}
