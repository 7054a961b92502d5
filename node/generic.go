package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/nl"
)

// careContextBgZ is the care context a BgZ holding is registered under in
// the referral index (LOINC "Patient summary Document").
var careContextBgZ = index.Coding{System: "http://loinc.org", Code: "60591-5"}

// setupGeneric builds the clients of the consent service and the referral
// index, when configured.
func (n *Node) setupGeneric() error {
	if n.cfg.Consent.URL != "" {
		ttl := n.cfg.Consent.CacheTTL
		if ttl == 0 {
			ttl = 30 * time.Second
		}
		c, err := consent.NewClient(consent.ClientConfig{BaseURL: n.cfg.Consent.URL, HTTPClient: n.httpClient(n.trust.ClientTLSConfig(n.cert)),
			Timeout: n.cfg.Consent.Timeout, CacheTTL: ttl})
		if err != nil {
			return err
		}
		n.consent = c
	}
	if n.cfg.Consent.Local {
		st, err := consent.OpenSQLite(context.Background(), filepath.Join(n.cfg.DataDir, "consent.db"))
		if err != nil {
			return fmt.Errorf("local consent registry: %w", err)
		}
		n.consents = st
		n.consent = &consent.LocalChecker{Store: st}
	}
	if n.cfg.Localization.URL == "" {
		return nil
	}
	for _, p := range n.parts {
		p := p
		c, err := localization.NewClient(localization.ClientConfig{BaseURL: n.cfg.Localization.URL, HTTPClient: p.party.HTTP,
			URA: p.URA, SourceType: p.FacilityType, Consent: localization.ConsentFunc(n.localizationConsent(p))})
		if err != nil {
			return fmt.Errorf("participant %s: %w", p.URA, err)
		}
		p.index = c
	}
	return nil
}

// holding registers, at the referral index, that a participant holds data
// of a patient. It runs beside the exchange (the exchange does not wait for
// the index); a failure does not undo the exchange and is retried a few
// times, then logged.
func (n *Node) holding(ctx context.Context, tenant, bsn, application string) {
	p, ok := n.parts[tenant]
	if !ok || p.index == nil {
		return
	}
	// The index keeps a holding until it is withdrawn: registering the same
	// one again within a day adds nothing.
	key := tenant + "|" + bsn + "|" + application
	n.registeredMu.Lock()
	if at, ok := n.registered[key]; ok && time.Since(at) < 24*time.Hour {
		n.registeredMu.Unlock()
		return
	}
	n.registeredMu.Unlock()
	n.background.Add(1)
	go func() {
		defer n.background.Done()
		ctx := context.WithoutCancel(ctx)
		var err error
		for attempt, wait := 0, 200*time.Millisecond; attempt < 4; attempt, wait = attempt+1, wait*4 {
			if attempt > 0 {
				time.Sleep(wait)
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _, err = p.index.Register(rctx, localization.Registration{BSN: bsn, CareContext: careContextBgZ})
			cancel()
			if err == nil {
				n.registeredMu.Lock()
				if len(n.registered) >= 100000 {
					clear(n.registered)
				}
				n.registered[key] = time.Now()
				n.registeredMu.Unlock()
				n.emit(eventf(n.cfg.Name, tenant, "localization", "registered at the referral index: %s holds %s data of the patient", tenant, application))
				return
			}
		}
		n.log.Warn("registration at the referral index failed", "participant", tenant, "application", application, "err", err)
	}()
}

type userKey struct{}

// requester is the user on whose behalf a participant's system asks.
type requester struct{ role, uzi string }

// localizationConsent answers, for a localization result, whether the
// patient permits the requester to learn of each holder's data: the closed
// question to the consent service, failing closed.
func (n *Node) localizationConsent(p *participant) func(ctx context.Context, q localization.ConsentQuestion) (bool, error) {
	return func(ctx context.Context, q localization.ConsentQuestion) (bool, error) {
		if n.consent == nil {
			return false, errors.New("no consent service configured")
		}
		u, _ := ctx.Value(userKey{}).(requester)
		d, err := n.consent.Decide(ctx, consent.Question{PatientBSN: q.Patient, DataHolderURA: q.HolderURA, DataHolderType: q.HolderType,
			RequesterURA: p.URA, RequesterType: p.FacilityType, RequesterRole: u.role, RequesterUZI: u.uzi, Purpose: "TREAT"})
		if err != nil {
			return false, err
		}
		return d.Permitted(), nil
	}
}

// LocalizeRequest is the internal API's question: which organisations hold
// data of this patient that this participant may learn of?
type LocalizeRequest struct {
	Patient string `json:"patient"`
	// Role and UZI name the user asking (UZI role code and UZI number), as
	// the consent question needs them.
	Role string `json:"role,omitempty"`
	UZI  string `json:"uzi,omitempty"`
}

// localize serves POST /internal/localize.
func (n *Node) localize(w http.ResponseWriter, r *http.Request, p *participant) {
	if p.index == nil {
		writeProblem(w, http.StatusNotImplemented, "no-localization", "this node has no referral index configured")
		return
	}
	var req LocalizeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"patient": BSN, "role": UZI role code, "uzi": UZI number}`)
		return
	}
	if err := nl.ValidateBSN(req.Patient); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-patient", err.Error())
		return
	}
	ctx := context.WithValue(r.Context(), userKey{}, requester{role: req.Role, uzi: req.UZI})
	res, err := p.index.Localize(ctx, localization.LocalizeRequest{BSN: req.Patient, CareContext: careContextBgZ})
	rec := audit.Record{Action: audit.ActionExecute, Interaction: "localize", Type: "localization", Tenant: p.URA, ActorURA: p.URA,
		ActorSystem: p.SystemUZI, ActorUser: req.UZI, ActorRole: req.Role, Address: r.RemoteAddr, Patient: req.Patient,
		PurposeOfUse: "TREAT", ConsentProfile: "Mitz closed question per holder", Outcome: http.StatusOK}
	if err != nil {
		rec.Outcome, rec.OutcomeText = http.StatusBadGateway, "referral index unavailable"
	}
	for _, h := range res.Holders {
		rec.Resources = append(rec.Resources, "Organization/"+h.URA)
	}
	if aerr := n.auditLog.Append(r.Context(), rec); aerr != nil {
		writeProblem(w, http.StatusServiceUnavailable, "audit-unavailable", "the audit log is unavailable; nothing was returned")
		return
	}
	if err != nil {
		n.log.Warn("localization failed", "participant", p.URA, "err", err)
		writeProblem(w, http.StatusBadGateway, "localization-failed", "the referral index could not be asked")
		return
	}
	if res.Holders == nil {
		res.Holders = []localization.Holder{}
	}
	writeJSON(w, http.StatusOK, res)
}

// registerConsent serves POST /internal/consent (consent.local): the
// participant's system records a patient's consent about the
// participant's own data, as at plateau 1 ("recorded in the provider's own
// system").
func (n *Node) registerConsent(w http.ResponseWriter, r *http.Request, p *participant) {
	if n.consents == nil {
		writeProblem(w, http.StatusNotImplemented, "no-local-consent", "this node asks a consent service; register consents there")
		return
	}
	var reg consent.Registration
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&reg); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", "expected a consent registration in JSON (see docs/consent.md)")
		return
	}
	// A provider records consent about its own data only.
	if reg.HolderURA != "" && reg.HolderURA != p.URA {
		writeProblem(w, http.StatusForbidden, "not-own-data", "a participant registers consent about its own data only")
		return
	}
	reg.HolderURA, reg.RegisteredBy, reg.Source = p.URA, p.URA, "internal API"
	saved, err := n.consents.Register(r.Context(), reg)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-consent", err.Error())
		return
	}
	if err := n.auditLog.Append(r.Context(), audit.Record{Action: audit.ActionCreate, Interaction: "consent", Type: "consent",
		Outcome: http.StatusCreated, Tenant: p.URA, ActorURA: p.URA, ActorSystem: p.SystemUZI, Address: r.RemoteAddr,
		Patient: reg.PatientBSN, ConsentProfile: "local registry: " + string(reg.Effect)}); err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "audit-unavailable", "the audit log is unavailable")
		return
	}
	writeJSON(w, http.StatusCreated, saved)
}
