package node

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// resolveGrant is the authorization server's decision: the growth model
// first (is the client a partner, does its request deliver the user
// authentication the agreed plateau requires), then the exchange itself.
// Every decision is audited before the token leaves.
func (n *Node) resolveGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	rec := audit.Record{Action: audit.ActionExecute, Interaction: "token", Type: "token",
		ActorURA: req.ClientID, ActorSystem: req.ClientID, AuthzProtocol: "RFC 7523 client assertion; " + req.GrantType}
	var decision plateau.TokenDecision
	var err error
	if req.GrantType == notifiedpull.GrantTypeClient {
		// A notification token gives no access to data and carries no user.
		err = n.plateaus.CheckPartner(req.ClientID)
	} else {
		decision, err = n.plateaus.Authenticate(ctx, plateau.TokenContext{ClientURA: req.ClientID, GrantType: req.GrantType,
			Scope: req.Scope, Assertion: req.Assertion, User: plateau.UserFromIdentity(req.User), TLS: req.TLS,
			DirectPull: req.GrantType == notifiedpull.GrantTypeJWT && req.AuthorizationBase == ""})
		if err == nil && req.AuthorizationBase == "" {
			err = n.checkValidation(ctx, req.ClientID, req.Scope)
		}
		if u := decision.User; u != nil {
			rec.ActorUser, rec.ActorRole = u.ID, u.Role
		}
	}
	// Refusals are audited by auditRefusal, with every other refusal of
	// the authorization server.
	if err != nil {
		if r := plateau.AsRefusal(err); r != nil {
			return oauth.Grant{}, r.OAuthError()
		}
		return oauth.Grant{}, err
	}
	var g oauth.Grant
	apply := func() {}
	if h, ok := n.hostedGrants(req); ok {
		g, err = h.ResolveGrant(ctx, req)
		rec.AuthzProtocol = h.GrantProtocol() + "; " + req.GrantType
	} else if req.GrantType == notifiedpull.GrantTypeJWT && req.AuthorizationBase == "" {
		// No authorization base: a Direct Pull (consult); consent is asked
		// per answer at the data endpoint.
		g, err = n.consult.ResolveGrant(ctx, req)
		rec.AuthzProtocol = "Twiin Direct Pull; RFC 8707 resource; " + req.GrantType
	} else if pg, ok := pushGrant(req, n.publicURL); ok {
		g, rec.AuthzProtocol = pg, "Twiin Push; RFC 7523 client assertion; client_credentials"
	} else {
		g, apply, err = n.np.BeginGrant(ctx, req)
	}
	if err == nil && req.AuthorizationBase != "" {
		// An authorization base buys a token for its referral's own
		// application, whatever scope was asked (a receiver cannot tell
		// BgZ on STU3 from BgZ on R4 by the notification): the proof of
		// validation that counts is the one for that application.
		scope := g.Scope
		if len(scope) == 0 {
			scope = req.Scope
		}
		err = n.checkValidation(ctx, req.ClientID, scope)
	}
	if err != nil {
		return oauth.Grant{}, err
	}
	// The exchange's status change starts beside the audit record; the
	// referral's data requests wait for it, the token does not.
	applied := make(chan struct{})
	go func() { defer close(applied); apply() }()
	defer func() { <-applied }()
	if decision.Agreement != nil {
		if g.Claims == nil {
			g.Claims = map[string]any{}
		}
		for k, v := range decision.Claims() {
			g.Claims[k] = v
		}
		rec.Checks = append(rec.Checks, "plateau: authentication plateau "+strconv.Itoa(decision.Delivered)+given(decision.User))
	}
	rec.Outcome = http.StatusOK
	rec.Tenant = strings.TrimPrefix(strings.TrimPrefix(g.Audience, n.publicURL+"/fhir/stu3/"), n.publicURL+"/fhir/r4/")
	if rec.Tenant == g.Audience {
		rec.Tenant = ""
	}
	if t, ok := g.Claims[notifiedpull.ClaimTask].(string); ok {
		rec.Task = t
	}
	rec.OutcomeText = "scope " + strings.Join(g.Scope, " ")
	// No token without its audit record.
	if err := n.auditLog.Append(ctx, rec); err != nil {
		return oauth.Grant{}, err
	}
	return g, nil
}

// auditRefusal records a refused token or introspection request before the
// refusal is answered: who (by certificate) asked for what, and why not.
func (n *Node) auditRefusal(r *http.Request, ref oauth.Refusal) error {
	peer, _ := n.trust.PeerURA(r.TLS)
	rec := audit.Record{Action: audit.ActionExecute, Interaction: "token", Type: "token", Outcome: ref.Status,
		OutcomeText: ref.Code + ": " + ref.Description, ActorURA: peer, ActorSystem: peer, Address: r.RemoteAddr,
		AuthzProtocol: "RFC 6749 token endpoint"}
	if strings.HasSuffix(r.URL.Path, "/introspect") {
		rec.Interaction = "introspect"
	} else {
		n.metrics.tokenRefused(ref.Code)
	}
	if pr := plateau.AsRefusal(ref.Cause); pr != nil {
		rec.Checks = []string{fmt.Sprintf("plateau: %s refused (plateau %d required, %d delivered)", pr.Function, pr.Required, pr.Delivered)}
	}
	return n.auditLog.Append(r.Context(), rec)
}

// given says what the request presented, which may be more than the
// agreement asks: it is judged at the agreed plateau and logged as given.
func given(u *plateau.User) string {
	switch {
	case u == nil:
		return "; given: no user"
	case u.System:
		return "; given: system identity " + u.ID + ", " + u.Source.String()
	case u.Source == plateau.SignedByIdentityIssuer:
		return "; given: user identity signed by the identity issuer " + u.Issuer
	}
	return "; given: user data " + u.Source.String()
}
