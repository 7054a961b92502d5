// Package hosted is the shape of a care application the node hosts: one
// that serves its exchange on routes of its own (careapp.Routes), such as
// Beeldbeschikbaarheid's ImagingStudy search and DICOMweb proxy, rather than
// through a query set the exchange patterns run.
//
// The node mounts every registered Application once at start: it passes a
// Host (what the application needs of the node: its participants, token
// verification, the plateau and consent checks, the audit log, the
// referral index) and gets back the application's per-node state, whose
// optional interfaces say what the node serves for it:
//
//   - PublicRoutes: routes on the public (mTLS) listener;
//   - InternalRoutes: routes on the internal API of the participants' systems;
//   - Endpoints: a participant's addressbook Endpoints;
//   - Grants: the token requests it decides at the node's authorization server.
//
// The node holds no branch per application: it loops over the mounted ones.
package hosted

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// Application is a care application with routes of its own.
type Application interface {
	careapp.Routes
	// Mount builds the application's state on one node. It is called once
	// per node, after the node's services are built and before it serves.
	Mount(h Host) (Mounted, error)
}

// Mounted is an application's state on one node; what it implements of
// PublicRoutes, InternalRoutes, Endpoints and Grants the node serves.
type Mounted any

// PublicRoutes are routes on the node's public listener. Their patterns
// must be among the application's careapp.Routes.PublicPatterns.
type PublicRoutes interface {
	PublicRoutes() []careapp.Route
}

// InternalRoutes are routes on the node's internal API; their handlers
// authenticate the participant's system with Host.Internal.
type InternalRoutes interface {
	InternalRoutes() []careapp.Route
}

// Endpoints are a participant's addressbook Endpoints of the application
// (none when the participant does not take part).
type Endpoints interface {
	Endpoints(ura string) []addressbook.EndpointSpec
}

// Grants are the token requests the application decides.
type Grants interface {
	// HandlesGrant reports whether a token request is the application's.
	HandlesGrant(req oauth.GrantRequest) bool
	// ResolveGrant decides it.
	ResolveGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error)
	// GrantProtocol names the exchange in the token request's audit record.
	GrantProtocol() string
}

// Participant is a participant served by the node.
type Participant struct {
	URA, Name    string
	FacilityType string // its facility type code
	SystemUZI    string // its system's UZI server certificate number
	// Indexed is whether the participant has a referral index configured.
	Indexed bool
	// PACS is the participant's PACS (participants[].pacs), for an imaging
	// application; URL is empty when it has none.
	PACS PACS
}

// PACS is a participant's PACS as the node's configuration names it.
type PACS struct {
	URL     string
	CAFiles []string
	Timeout time.Duration
}

// Caller is the participant whose system called the internal API.
type Caller struct {
	URA       string
	SystemUZI string
}

// LocalizeRequest asks the referral index, for the caller, which
// organisations hold data of a patient in an application's care context
// (careapp.Localized), consent-filtered for the user.
type LocalizeRequest struct {
	Patient     string
	Role, UZI   string // the user asking
	Application string
}

// Problem is a refusal the node has already audited where needed; the
// application answers it as problem details.
type Problem struct {
	Status       int
	Type, Detail string
}

func (p *Problem) Error() string { return p.Detail }

// ErrNoIndex is returned by Host.Register for a participant without a
// referral index.
var ErrNoIndex = errors.New("this node has no referral index configured")

// Host is what a hosted application gets of the node.
type Host interface {
	// PublicURL is the node's public base URL (no trailing slash).
	PublicURL() string
	// Participants are the participants served now (the admin API changes them).
	Participants() []Participant
	Participant(ura string) (Participant, bool)
	// Party is a participant as a requester of Direct Pull.
	Party(ura string) (*consult.Party, bool)
	// Directory resolves a partner's endpoint in the addressbook.
	Directory() addressbook.EndpointResolver
	// Verify checks a request's access token for audience.
	Verify(r *http.Request, audience string) (*oauth.AccessToken, error)
	// PeerURA is the URA of the request's client certificate.
	PeerURA(r *http.Request) string
	// CheckAccess judges a data request against the partner's agreement
	// (plateaus, the application's policy, the generic functions).
	CheckAccess(ctx context.Context, ac plateau.AccessContext) error
	// IdentifyHeld verifies a patient's BSN where the agreement asks it;
	// the error is a *fhir.Error.
	IdentifyHeld(ctx context.Context, tenant, partner, bsn string) error
	// ConsentFor is the consent service for a requester's questions and
	// its name for the audit record.
	ConsentFor(requester string) (consent.Checker, string)
	// AdmitConsult decides whether tenant may ask a holder at all (the
	// localization plateau) and returns the grant assertion's claims.
	AdmitConsult(ctx context.Context, tenant string, req consult.Request) (map[string]any, error)
	// Present builds the user part of a grant assertion.
	Present(ctx context.Context, from, partner, audience string, c *plateau.Caller) (plateau.Presentation, error)
	Audit() audit.Log
	Logger() *slog.Logger
	// Internal wraps an internal API handler: the request must carry a
	// participant's internal API token (refused and audited otherwise).
	Internal(h func(w http.ResponseWriter, r *http.Request, c Caller)) http.Handler
	// WriteError answers an internal API request whose exchange failed as
	// the node answers every other (problem details; a *fhir.Error keeps
	// its status).
	WriteError(w http.ResponseWriter, err error)
	// Register records at the referral index that participant ura holds
	// data of the patient in application app's care context.
	Register(ctx context.Context, ura, bsn, app string) error
	// Localize asks the referral index (audited); a refusal is a *Problem.
	Localize(ctx context.Context, c Caller, req LocalizeRequest, addr string) (holders []string, err error)
	// Exchange counts an exchange (and its duration when it succeeded) in
	// the node's metrics.
	Exchange(app string, pattern careapp.Pattern, role string, err error, took time.Duration)
}
