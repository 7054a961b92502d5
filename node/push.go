package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/push"
)

// setupPush opens the outbox and inbox and builds the Push service.
func (n *Node) setupPush(ctx context.Context) error {
	apps, err := pushApplications(n.apps)
	if err != nil {
		return err
	}
	// The outbox and inbox follow the FHIR store, as the exchange state does.
	if n.cfg.Store.Postgres != "" {
		if n.pushDB, err = push.OpenPostgres(ctx, n.cfg.Store.Postgres, n.cfg.Store.Schema); err != nil {
			return fmt.Errorf("store.postgres: push store: %w", err)
		}
	} else if n.pushDB, err = push.OpenDB(ctx, filepath.Join(n.cfg.DataDir, "push.db")); err != nil {
		return fmt.Errorf("datadir: push store: %w", err)
	}
	hc := n.httpClient(n.trust.ClientTLSConfig(n.cert))
	keys := &clientKeys{dir: n.dir, http: hc}
	tokens := &pushTokens{}
	n.push, err = push.New(push.Config{
		Node: n.cfg.Name, Store: n.pushDB, Directory: n.dir,
		Parties: func(ura string) (*push.Party, bool) {
			p, ok := n.parts.get(ura)
			if !ok {
				return nil, false
			}
			return &push.Party{URA: p.URA, Name: p.Name, SystemUZI: p.SystemUZI, HTTP: p.party.HTTP, Signing: p.signing}, true
		},
		Token: func(ctx context.Context, party *push.Party, partner string, fresh bool) (string, error) {
			p, ok := n.parts.get(party.URA)
			if !ok {
				return "", fmt.Errorf("%w: %s", push.ErrUnknownParticipant, party.URA)
			}
			return tokens.get(ctx, n, p.party, partner, fresh)
		},
		PartnerKeys: keys.ClientKeySet,
		Verify: func(r *http.Request) (string, string, []string, error) {
			tok, err := n.verify(r, n.publicURL)
			if err != nil {
				return "", "", nil, err
			}
			return tok.Subject, tok.ClientID, tok.Scope, nil
		},
		PeerURA: func(r *http.Request) (string, error) { return n.trust.PeerURA(r.TLS) },
		Identify: func(ctx context.Context, tenant, partner, bsn string) error {
			return n.identify(ctx, identityCheck{tenant: tenant, partner: partner, bsn: bsn, step: "push"})
		},
		Endpoint: func(ura string) string { return Endpoints(n.publicURL, ura).Push },
		Audit:    n.faults.auditLog(n.auditLog),
		Events: func(e push.Event) {
			if e.Step == "retry" {
				n.metrics.retries.WithLabelValues(patternPush).Inc()
			}
			n.emit(notifiedpull.Event{Time: e.Time, Node: n.cfg.Name, Tenant: e.Tenant, Referral: e.Message,
				Step: "push-" + e.Step, Detail: e.Detail, Err: e.Err})
		},
		Logger: n.log, Lifetime: n.cfg.Push.Lifetime, RetryBase: n.cfg.Push.RetryBase, RetryMax: n.cfg.Push.RetryMax, Lease: n.cfg.Lease,
		Shared:       n.cfg.Store.Postgres != "",
		Applications: apps, Faults: n.faults.Set(),
	})
	return err
}

// pushTokens keeps each participant's push token per partner until
// shortly before it expires, as any OAuth client does.
type pushTokens struct {
	mu sync.Mutex
	m  map[string]cachedPushToken
}

type cachedPushToken struct {
	token string
	until time.Time
}

// get obtains a token (RFC 7523 client assertion, client_credentials,
// scope twiin-ta-push) from the partner's authorization server.
func (t *pushTokens) get(ctx context.Context, n *Node, party *notifiedpull.Party, partner string, fresh bool) (string, error) {
	key := party.URA + "|" + partner
	t.mu.Lock()
	c, ok := t.m[key]
	t.mu.Unlock()
	if ok && !fresh && time.Now().Before(c.until) {
		return c.token, nil
	}
	issuer, err := n.dir.Endpoint(ctx, partner, notifiedpull.PayloadAuthServer, "")
	if err != nil {
		return "", fmt.Errorf("find authorization server of %s: %w", partner, err)
	}
	md, err := party.OAuth.Metadata(ctx, issuer)
	if err != nil {
		return "", err
	}
	tok, err := party.OAuth.Token(ctx, md.TokenEndpoint, oauth.TokenRequest{GrantType: notifiedpull.GrantTypeClient, Scope: []string{push.Scope}})
	if err != nil {
		return "", err
	}
	if tok.ExpiresIn > 60 {
		t.mu.Lock()
		if t.m == nil {
			t.m = map[string]cachedPushToken{}
		}
		t.m[key] = cachedPushToken{token: tok.AccessToken, until: time.Now().Add(time.Duration(tok.ExpiresIn-30) * time.Second)}
		t.mu.Unlock()
	}
	return tok.AccessToken, nil
}

// pushGrant answers a client_credentials request for scope twiin-ta-push
// (RFC 6749 §4.4): a token that may deliver messages, nothing else; ok is
// false for other requests.
func pushGrant(req oauth.GrantRequest, issuer string) (oauth.Grant, bool) {
	if req.GrantType != notifiedpull.GrantTypeClient || len(req.Scope) != 1 || req.Scope[0] != push.Scope {
		return oauth.Grant{}, false
	}
	return oauth.Grant{Audience: issuer, Scope: []string{push.Scope}, Subject: req.ClientID}, true
}

// pushRoutes are the internal API of Push.
func (n *Node) pushRoutes(mux *http.ServeMux) {
	mux.Handle("POST /internal/messages", n.authInternal(n.sendMessage))
	mux.Handle("GET /internal/messages", n.authInternal(n.listMessages))
	mux.Handle("GET /internal/messages/{id}", n.authInternal(n.getMessage))
	mux.Handle("POST /internal/messages/{id}/processed", n.authInternal(n.processedMessage))
}

// sendMessage serves POST /internal/messages: 202 once the message is
// durable in the outbox (200 when its id was sent before).
func (n *Node) sendMessage(w http.ResponseWriter, r *http.Request, p *participant) {
	var req push.SendRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, push.MaxMessageBytes)).Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"receiver": URA, "application": "correspondentie", "payload": FHIR resource, "id": optional UUID}`)
		return
	}
	m, created, err := n.push.Send(r.Context(), p.URA, req)
	if err != nil {
		n.pushError(w, err)
		return
	}
	status := http.StatusAccepted
	if !created {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/internal/messages/"+m.ID)
	writeJSON(w, status, m)
}

// MessageView is a message on the internal API, either direction.
type MessageView struct {
	Direction string `json:"direction"`
	*push.OutMessage
	In      *push.InMessage `json:"received,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (n *Node) listMessages(w http.ResponseWriter, r *http.Request, p *participant) {
	switch r.URL.Query().Get("direction") {
	case "sent", "":
		out, err := n.push.Sent(r.Context(), p.URA)
		if err != nil {
			n.pushError(w, err)
			return
		}
		if status := r.URL.Query().Get("status"); status != "" {
			var keep []push.OutMessage
			for _, m := range out {
				if m.Status == status {
					keep = append(keep, m)
				}
			}
			out = keep
		}
		writeJSON(w, http.StatusOK, map[string]any{"direction": "sent", "messages": nonNil(out)})
	case "received":
		in, err := n.push.Received(r.Context(), p.URA)
		if err != nil {
			n.pushError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"direction": "received", "messages": nonNil(in)})
	default:
		writeProblem(w, http.StatusBadRequest, "invalid-query", "direction is sent or received")
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// getMessage returns one message: an outbox message by its message id, or
// an inbox message (with its payload) by its local id.
func (n *Node) getMessage(w http.ResponseWriter, r *http.Request, p *participant) {
	id := r.PathValue("id")
	if m, err := n.push.SentOne(r.Context(), p.URA, id); err == nil {
		writeJSON(w, http.StatusOK, MessageView{Direction: "sent", OutMessage: &m})
		return
	}
	in, err := n.push.ReceivedOne(r.Context(), p.URA, id)
	if err != nil {
		n.pushError(w, err)
		return
	}
	payload, _ := push.PayloadOf(in)
	writeJSON(w, http.StatusOK, MessageView{Direction: "received", In: &in, Payload: payload})
}

// processedMessage serves POST /internal/messages/{id}/processed with
// {"acknowledgement": "accepted"|"rejected", "note": "..."}.
func (n *Node) processedMessage(w http.ResponseWriter, r *http.Request, p *participant) {
	var body struct {
		Ack  string `json:"acknowledgement"`
		Note string `json:"note"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"acknowledgement": "accepted"|"rejected", "note": text}`)
		return
	}
	in, err := n.push.Processed(r.Context(), p.URA, r.PathValue("id"), body.Ack, body.Note)
	if err != nil {
		n.pushError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, MessageView{Direction: "received", In: &in})
}

func (n *Node) pushError(w http.ResponseWriter, err error) {
	switch {
	case fhir.AsError(err) != nil:
		fe := fhir.AsError(err)
		writeProblem(w, fe.Status, "rejected", strings.TrimSpace(fe.Error()))
	case errors.Is(err, push.ErrNotFound):
		writeProblem(w, http.StatusNotFound, "not-found", "no such message for this participant")
	case errors.Is(err, push.ErrNotReceived):
		writeProblem(w, http.StatusConflict, "processed", err.Error())
	default:
		n.internalError(w, err)
	}
}
