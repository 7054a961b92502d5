package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/careapp/hosted"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// mountApplications mounts every registered care application with routes
// of its own (careapp/hosted): each gets the node as its Host once; what it
// returns the node serves (publicRoutes, internalRoutes, the addressbook
// entries, the authorization server's grants).
func (n *Node) mountApplications() error {
	for _, a := range n.apps.All() {
		h, ok := a.(hosted.Application)
		if !ok {
			continue
		}
		m, err := h.Mount(nodeHost{n})
		if err != nil {
			return fmt.Errorf("care application %s: %w", a.Name(), err)
		}
		if pr, ok := m.(hosted.PublicRoutes); ok {
			for _, r := range pr.PublicRoutes() {
				if !slices.Contains(h.PublicPatterns(), r.Pattern) {
					return fmt.Errorf("care application %s: public route %q is not among its PublicPatterns", a.Name(), r.Pattern)
				}
			}
		}
		n.mounted = append(n.mounted, m)
	}
	return nil
}

// hostedPublicRoutes mounts the public routes of the hosted applications.
func (n *Node) hostedPublicRoutes(mux *http.ServeMux) {
	for _, m := range n.mounted {
		if pr, ok := m.(hosted.PublicRoutes); ok {
			for _, r := range pr.PublicRoutes() {
				mux.Handle(r.Pattern, r.Handler)
			}
		}
	}
}

// hostedInternalRoutes mounts the internal API routes of the hosted
// applications.
func (n *Node) hostedInternalRoutes(mux *http.ServeMux) {
	for _, m := range n.mounted {
		if ir, ok := m.(hosted.InternalRoutes); ok {
			for _, r := range ir.InternalRoutes() {
				mux.Handle(r.Pattern, r.Handler)
			}
		}
	}
}

// hostedEndpoints are participant ura's addressbook Endpoints of the
// hosted applications.
func (n *Node) hostedEndpoints(ura string) []addressbook.EndpointSpec {
	var out []addressbook.EndpointSpec
	for _, m := range n.mounted {
		if e, ok := m.(hosted.Endpoints); ok {
			out = append(out, e.Endpoints(ura)...)
		}
	}
	return out
}

// hostedGrants is the hosted application that decides a token request.
func (n *Node) hostedGrants(req oauth.GrantRequest) (hosted.Grants, bool) {
	for _, m := range n.mounted {
		if g, ok := m.(hosted.Grants); ok && g.HandlesGrant(req) {
			return g, true
		}
	}
	return nil, false
}

// careContextFor is the referral index's care context of a care
// application: its own (careapp.Localized), else BgZ's.
func (n *Node) careContextFor(app string) index.Coding {
	if a, ok := n.apps.Get(app); ok {
		if l, ok := a.(careapp.Localized); ok {
			c := l.CareContext()
			return index.Coding{System: c.System, Code: c.Code}
		}
	}
	return careContextBgZ
}

// nodeHost is the node as a hosted application sees it.
type nodeHost struct{ n *Node }

// Faults is what the module's own tests broke in the node; nil otherwise.
func (h nodeHost) Faults() *faults.Set { return h.n.faults.Set() }

func (h nodeHost) PublicURL() string { return strings.TrimSuffix(h.n.publicURL, "/") }

func hostedParticipant(p *participant) hosted.Participant {
	return hosted.Participant{URA: p.URA, Name: p.Name, FacilityType: p.FacilityType, SystemUZI: p.SystemUZI,
		Indexed: p.index != nil, PACS: hosted.PACS{URL: p.PACS.URL, CAFiles: p.PACS.CAFiles, Timeout: p.PACS.Timeout}}
}

func (h nodeHost) Participants() []hosted.Participant {
	var out []hosted.Participant
	for _, p := range h.n.parts.all() {
		out = append(out, hostedParticipant(p))
	}
	return out
}

func (h nodeHost) Participant(ura string) (hosted.Participant, bool) {
	p, ok := h.n.parts.get(ura)
	if !ok {
		return hosted.Participant{}, false
	}
	return hostedParticipant(p), true
}

func (h nodeHost) Party(ura string) (*consult.Party, bool) {
	p, ok := h.n.parts.get(ura)
	if !ok {
		return nil, false
	}
	return p.party, true
}

func (h nodeHost) Directory() addressbook.EndpointResolver { return h.n.dir }

func (h nodeHost) Verify(r *http.Request, audience string) (*oauth.AccessToken, error) {
	return h.n.verify(r, audience)
}

func (h nodeHost) PeerURA(r *http.Request) string { u, _ := h.n.trust.PeerURA(r.TLS); return u }

func (h nodeHost) CheckAccess(ctx context.Context, ac plateau.AccessContext) error {
	return h.n.plateaus.CheckAccess(ctx, ac)
}

func (h nodeHost) IdentifyHeld(ctx context.Context, tenant, partner, bsn string) error {
	return h.n.identifyHeld(ctx, tenant, partner, bsn)
}

func (h nodeHost) ConsentFor(requester string) (consent.Checker, string) {
	return h.n.observedConsentFor(requester)
}

func (h nodeHost) AdmitConsult(ctx context.Context, tenant string, req consult.Request) (map[string]any, error) {
	return h.n.admitConsult(ctx, tenant, req)
}

func (h nodeHost) Present(ctx context.Context, from, partner, audience string, c *plateau.Caller) (plateau.Presentation, error) {
	return h.n.present(ctx, from, partner, audience, c)
}

func (h nodeHost) Audit() audit.Log     { return h.n.auditAppender() }
func (h nodeHost) Logger() *slog.Logger { return h.n.log }

func (h nodeHost) Internal(f func(http.ResponseWriter, *http.Request, hosted.Caller)) http.Handler {
	return h.n.authInternal(func(w http.ResponseWriter, r *http.Request, p *participant) {
		f(w, r, hosted.Caller{URA: p.URA, SystemUZI: p.SystemUZI})
	})
}

func (h nodeHost) WriteError(w http.ResponseWriter, err error) { h.n.internalError(w, err) }

func (h nodeHost) Register(ctx context.Context, ura, bsn, app string) error {
	p, ok := h.n.parts.get(ura)
	if !ok || p.index == nil {
		return hosted.ErrNoIndex
	}
	_, _, err := p.index.Register(ctx, localization.Registration{BSN: bsn, CareContext: h.n.careContextFor(app)})
	return err
}

func (h nodeHost) Localize(ctx context.Context, c hosted.Caller, req hosted.LocalizeRequest, addr string) ([]string, error) {
	p, ok := h.n.parts.get(c.URA)
	if !ok {
		return nil, &hosted.Problem{Status: http.StatusNotFound, Type: "not-found", Detail: "unknown participant"}
	}
	res, lerr := h.n.runLocalize(ctx, p, LocalizeRequest{Patient: req.Patient, Role: req.Role, UZI: req.UZI,
		Application: req.Application}, addr)
	if lerr != nil {
		return nil, &hosted.Problem{Status: lerr.status, Type: lerr.typ, Detail: lerr.detail}
	}
	out := make([]string, 0, len(res.Holders))
	for _, hd := range res.Holders {
		out = append(out, hd.URA)
	}
	return out, nil
}

func (h nodeHost) Exchange(app string, pattern careapp.Pattern, role string, err error, took time.Duration) {
	h.n.metrics.exchange(app, string(pattern), role, err)
	if err == nil {
		h.n.metrics.exchangeTook(app, string(pattern), role, took)
	}
}
