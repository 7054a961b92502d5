package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/policy"
)

// careContextBgZ is the care context a BgZ holding is registered under in
// the referral index (LOINC "Patient summary Document").
var careContextBgZ = index.Coding{System: "http://loinc.org", Code: "60591-5"}

// defaultConsentCacheTTL is how long answers of a consent service are kept
// when consent.cachettl is not set: short, as a withdrawal must take effect.
const defaultConsentCacheTTL = 5 * time.Second

// setupGeneric builds the consent sources and the clients of the referral
// index, as configured.
func (n *Node) setupGeneric() error {
	ttl := n.cfg.Consent.CacheTTL
	if ttl == 0 {
		ttl = defaultConsentCacheTTL
	}
	service := func(base string) (*consent.Client, error) {
		return consent.NewClient(consent.ClientConfig{BaseURL: base, HTTPClient: n.httpClient(n.trust.ClientTLSConfig(n.cert)),
			Timeout: n.cfg.Consent.Timeout, CacheTTL: ttl,
			GatewaySystem: n.cfg.Consent.GatewaySystem, SourceSystem: n.cfg.Consent.SourceSystem})
	}
	var err error
	if n.cfg.Consent.URL != "" {
		if n.mitz, err = service(n.cfg.Consent.URL); err != nil {
			return fmt.Errorf("consent.url: %w", err)
		}
	}
	if n.cfg.Consent.Regional.URL != "" {
		if n.regional, err = service(n.cfg.Consent.Regional.URL); err != nil {
			return fmt.Errorf("consent.regional.url: %w", err)
		}
		n.regionalHost = n.cfg.Consent.Regional.URL
		if u, err := url.Parse(n.cfg.Consent.Regional.URL); err == nil {
			n.regionalHost = u.Host
		}
	}
	if n.cfg.Consent.Local {
		if err := n.openConsentRegistry(context.Background()); err != nil {
			return err
		}
	}
	if n.cfg.Localization.URL == "" {
		return nil
	}
	n.hitCheck.Hits = localization.NewHitVerifier(n.cfg.Localization.URL, n.httpClient(n.trust.ClientTLSConfig(n.cert)), nil)
	for _, p := range n.parts.all() {
		if err := n.attachIndex(p); err != nil {
			return err
		}
	}
	return nil
}

// attachIndex gives participant p its client of the referral index
// (localization.url), which registers its holdings and looks up patients.
func (n *Node) attachIndex(p *participant) error {
	c, err := localization.NewClient(localization.ClientConfig{BaseURL: n.cfg.Localization.URL, HTTPClient: p.party.HTTP,
		URA: p.URA, SourceType: p.FacilityType, Consent: localization.ConsentFunc(n.localizationConsent(p))})
	if err != nil {
		return fmt.Errorf("participant %s: %w", p.URA, err)
	}
	p.index = c
	return nil
}

// consentFor picks the consent source the consent plateau agreed with
// partner requires, and names it for audit records: plateau 1 the local
// registry, plateau 2 the regional portal, plateau 3–4 Mitz. The Checker is
// nil when the partner has no agreement or the source is not configured
// (Validate prevents the latter); the caller then refuses (fail closed).
func (n *Node) consentFor(partner string) (consent.Checker, string) {
	a, ok := n.plateaus.Agreement(partner)
	if !ok {
		return nil, "no agreement with " + partner
	}
	p := a.Plateau(plateau.Consent)
	kind, _ := n.cfg.Consent.source(p)
	switch kind {
	case consentLocal:
		if n.consents != nil {
			return &consent.LocalChecker{Store: n.consents}, "plateau 1 local registry"
		}
		return nil, "plateau 1 local registry (not configured)"
	case consentRegional:
		if n.regional != nil {
			return n.regional, "plateau 2 regional portal " + n.regionalHost
		}
		return nil, "plateau 2 regional portal (not configured)"
	}
	if n.mitz != nil {
		return n.mitz, fmt.Sprintf("plateau %d Mitz closed question", p)
	}
	return nil, fmt.Sprintf("plateau %d Mitz (not configured)", p)
}

// retry runs fn up to four times, waiting 0.2s, 0.8s and 3.2s between
// attempts, each bounded by 10s; it stops early on an error retrying cannot
// mend (when retryable says so).
func retry(ctx context.Context, retryable func(error) bool, fn func(context.Context) error) error {
	var err error
	for attempt, wait := 0, 200*time.Millisecond; attempt < 4; attempt, wait = attempt+1, wait*4 {
		if attempt > 0 {
			time.Sleep(wait)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = fn(rctx)
		cancel()
		if err == nil || (retryable != nil && !retryable(err)) {
			return err
		}
	}
	return err
}

// holding registers, at the referral index, that a participant holds data
// of a patient, and with consent.subscribe subscribes at Mitz to the
// patient's consent changes that concern the participant. It runs beside
// the exchange (the exchange does not wait for the index); a failure does
// not undo the exchange and is retried a few times, then logged.
func (n *Node) holding(ctx context.Context, h notifiedpull.Holding) {
	tenant, bsn, application := h.Tenant, h.PatientBSN, h.Application
	p, ok := n.parts.get(tenant)
	if !ok || p.index == nil {
		return
	}
	// The index keeps a holding until it is withdrawn: registering the same
	// one again within a day adds nothing.
	key := holdingKey(tenant, bsn) + application
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
		err := retry(ctx, nil, func(ctx context.Context) error {
			_, _, err := p.index.Register(ctx, localization.Registration{BSN: bsn, CareContext: careContextBgZ})
			return err
		})
		if err != nil {
			n.log.Warn("registration at the referral index failed", "participant", tenant, "application", application, "err", err)
			return
		}
		n.remember(key)
		n.emit(eventf(n.cfg.Name, tenant, "localization", "registered at the referral index: %s holds %s data of the patient", tenant, application))
		if n.cfg.Consent.Subscribe && n.mitz != nil {
			n.subscribe(ctx, p, bsn, h.BirthDate)
		}
	}()
}

// holdingKey prefixes the keys of n.registered for one participant and patient.
func holdingKey(tenant, bsn string) string { return tenant + "|" + bsn + "|" }

func (n *Node) remember(key string) {
	n.registeredMu.Lock()
	defer n.registeredMu.Unlock()
	if len(n.registered) >= 100000 {
		clear(n.registered)
	}
	n.registered[key] = time.Now()
}

// forgetHoldings drops what n.registered remembers of a participant's
// holdings of a patient, so the next exchange registers anew.
func (n *Node) forgetHoldings(tenant, bsn string) {
	prefix := holdingKey(tenant, bsn)
	n.registeredMu.Lock()
	defer n.registeredMu.Unlock()
	for k := range n.registered {
		if strings.HasPrefix(k, prefix) {
			delete(n.registered, k)
		}
	}
}

// notificationURL is where Mitz posts a participant's consent notifications.
func (n *Node) notificationURL(tenant string) string {
	return n.publicURL + "/consent/notifications/" + tenant
}

// subscribe asks Mitz for notifications of consent changes of the patient
// that concern participant p as data holder. The service answers a repeated
// subscription with the existing one, so subscribing again is harmless. The
// subscription discloses the BSN to Mitz: it is audited.
func (n *Node) subscribe(ctx context.Context, p *participant, bsn, birthDate string) {
	var loc string
	err := retry(ctx, func(err error) bool { return errors.Is(err, consent.ErrUnavailable) }, func(ctx context.Context) error {
		var err error
		loc, err = n.mitz.Subscribe(ctx, consent.SubscriptionRequest{PatientBSN: bsn, BirthDate: birthDate, ProviderURA: p.URA,
			ProviderType: p.FacilityType, Endpoint: n.notificationURL(p.URA)})
		return err
	})
	rec := audit.Record{Action: audit.ActionCreate, Interaction: "consent-subscribe", Type: "consent", Tenant: p.URA, ActorURA: p.URA,
		ActorSystem: p.SystemUZI, Patient: bsn, PurposeOfUse: "TREAT", ConsentProfile: "Mitz subscription", Outcome: http.StatusCreated}
	if loc != "" {
		rec.Resources = []string{strings.TrimPrefix(loc, "/abonnementen/fhir/")}
	}
	if err != nil {
		rec.Outcome, rec.OutcomeText = http.StatusBadGateway, "the consent service refused or could not be reached"
	}
	n.appendAudit(ctx, rec)
	if err != nil {
		n.log.Warn("subscription at the consent service failed", "participant", p.URA, "err", err)
		return
	}
	n.emit(eventf(n.cfg.Name, p.URA, "consent", "subscribed at Mitz to the patient's consent changes that concern %s", p.URA))
}

type userKey struct{}

// requester is the user on whose behalf a participant's system asks.
type requester struct{ role, uzi string }

// localizationConsent answers, for a localization result, whether the
// patient permits the requester to learn of each holder's data. The source
// is the one the consent plateau agreed with that holder requires (the
// holder makes its data consultable); failing closed. The participant's own
// holding is its own data: listed without a question.
func (n *Node) localizationConsent(p *participant) func(ctx context.Context, q localization.ConsentQuestion) (bool, error) {
	return func(ctx context.Context, q localization.ConsentQuestion) (bool, error) {
		notes, _ := ctx.Value(consentNotesKey{}).(*consentNotes)
		if q.HolderURA == p.URA {
			notes.add(q.HolderURA, "own data, not asked")
			return true, nil
		}
		checker, source := n.observedConsentFor(q.HolderURA)
		if checker == nil {
			notes.add(q.HolderURA, source+": unavailable")
			return false, fmt.Errorf("%w: %s", consent.ErrUnavailable, source)
		}
		u, _ := ctx.Value(userKey{}).(requester)
		d, err := checker.Decide(ctx, consent.Question{PatientBSN: q.Patient, DataHolderURA: q.HolderURA, DataHolderType: q.HolderType,
			RequesterURA: p.URA, RequesterType: p.FacilityType, RequesterRole: u.role, RequesterUZI: u.uzi, Purpose: "TREAT"})
		if err != nil {
			notes.add(q.HolderURA, source+": unavailable")
			return false, err
		}
		notes.add(q.HolderURA, source+": "+string(d))
		return d.Permitted(), nil
	}
}

type consentNotesKey struct{}

// consentNotes collects, during one localization, which source decided for
// each holder: the audit record's ConsentProfile.
type consentNotes struct {
	mu    sync.Mutex
	notes []string
}

func (c *consentNotes) add(holder, note string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notes = append(c.notes, holder+" "+note)
}

func (c *consentNotes) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.notes) == 0 {
		return "no holder to ask"
	}
	return strings.Join(c.notes, "; ")
}

// LocalizeRequest is the internal API's question: which organisations hold
// data of this patient that this participant may learn of?
type LocalizeRequest struct {
	Patient string `json:"patient"`
	// Role and UZI name the user asking (UZI role code and UZI number), as
	// the consent question needs them.
	Role string `json:"role,omitempty"`
	UZI  string `json:"uzi,omitempty"`
	// Application is the care application whose holders are asked for:
	// bgz (the default) or another registered one; its holders are those
	// registered under its care context (careapp.Localized).
	Application string `json:"application,omitempty"`
}

// localize serves POST /internal/localize.
func (n *Node) localize(w http.ResponseWriter, r *http.Request, p *participant) {
	var req LocalizeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"patient": BSN, "role": UZI role code, "uzi": UZI number}`)
		return
	}
	res, lerr := n.runLocalize(r.Context(), p, req, r.RemoteAddr)
	if lerr != nil {
		writeProblem(w, lerr.status, lerr.typ, lerr.detail)
		return
	}
	if res.Holders == nil {
		res.Holders = []localization.Holder{}
	}
	writeJSON(w, http.StatusOK, res)
}

// localizeError is a localization the node did not do or could not
// complete, as the internal APIs word it.
type localizeError struct {
	status      int
	typ, detail string
}

// runLocalize asks the referral index, for participant p, which
// organisations hold data of the patient that p may learn of (the consent
// question asked per holder), audits the question, and remembers the hits
// for the Direct Pulls that follow. The localization and the Indexed Pull
// share it.
func (n *Node) runLocalize(ctx context.Context, p *participant, req LocalizeRequest, addr string) (localization.LocalizeResult, *localizeError) {
	if p.index == nil {
		return localization.LocalizeResult{}, &localizeError{http.StatusNotImplemented, "no-localization", "this node has no referral index configured"}
	}
	if err := nl.ValidateBSN(req.Patient); err != nil {
		return localization.LocalizeResult{}, &localizeError{http.StatusBadRequest, "invalid-patient", err.Error()}
	}
	// Every holder's consent question names the user: without a valid one
	// each would fail and the holder be left out, an answer that looks complete.
	if err := nl.ValidateUZI(req.UZI); err != nil || !policy.ValidRoleCode(req.Role) {
		rec := audit.Record{Action: audit.ActionExecute, Interaction: "localize", Type: "localization", Tenant: p.URA, ActorURA: p.URA,
			ActorSystem: p.SystemUZI, Address: addr, Patient: req.Patient, PurposeOfUse: "TREAT",
			Outcome: http.StatusBadRequest, OutcomeText: "the user's role or UZI number is missing or malformed"}
		if aerr := n.auditLog.Append(ctx, rec); aerr != nil {
			return localization.LocalizeResult{}, &localizeError{http.StatusServiceUnavailable, "audit-unavailable", "the audit log is unavailable; nothing was returned"}
		}
		return localization.LocalizeResult{}, &localizeError{http.StatusBadRequest, "invalid-user",
			`"role" (UZI role code, e.g. 01.015) and "uzi" (9-digit UZI number) name the user the consent question is asked for`}
	}
	notes := &consentNotes{}
	qctx := context.WithValue(ctx, userKey{}, requester{role: req.Role, uzi: req.UZI})
	qctx = context.WithValue(qctx, consentNotesKey{}, notes)
	qctx, span := n.span(qctx, "localization.query")
	start := time.Now()
	res, err := p.index.Localize(qctx, localization.LocalizeRequest{BSN: req.Patient, CareContext: n.careContextFor(req.Application)})
	n.metrics.localizeTime.Observe(time.Since(start).Seconds())
	if err == nil {
		span.SetAttributes(attribute.Int("localization.holders", len(res.Holders)))
	}
	endSpan(span, err)
	switch {
	case err != nil:
		n.metrics.localizations.WithLabelValues("error").Inc()
	case len(res.Holders) == 0:
		n.metrics.localizations.WithLabelValues("none").Inc()
	default:
		n.metrics.localizations.WithLabelValues("found").Inc()
	}
	rec := audit.Record{Action: audit.ActionExecute, Interaction: "localize", Type: "localization", Tenant: p.URA, ActorURA: p.URA,
		ActorSystem: p.SystemUZI, ActorUser: req.UZI, ActorRole: req.Role, Address: addr, Patient: req.Patient,
		PurposeOfUse: "TREAT", ConsentProfile: "per holder by its agreed consent plateau: " + notes.String(), Outcome: http.StatusOK}
	if err != nil {
		rec.Outcome, rec.OutcomeText = http.StatusBadGateway, "referral index unavailable"
	}
	for _, h := range res.Holders {
		rec.Resources = append(rec.Resources, "Organization/"+h.URA)
	}
	if aerr := n.auditLog.Append(ctx, rec); aerr != nil {
		return localization.LocalizeResult{}, &localizeError{http.StatusServiceUnavailable, "audit-unavailable", "the audit log is unavailable; nothing was returned"}
	}
	if err != nil {
		n.log.Warn("localization failed", "participant", p.URA, "err", err)
		return localization.LocalizeResult{}, &localizeError{http.StatusBadGateway, "localization-failed", "the referral index could not be asked"}
	}
	n.hits.remember(p.URA, req.Patient, res)
	return res, nil
}

// registerConsent serves POST /internal/consent (consent.local): the
// participant's system records a patient's consent about the
// participant's own data, as at plateau 1 ("recorded in the provider's own
// system").
func (n *Node) registerConsent(w http.ResponseWriter, r *http.Request, p *participant) {
	if n.consents == nil {
		writeProblem(w, http.StatusNotImplemented, "no-local-consent", "this node keeps no consent registry (consent.local); register consents at the consent service")
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
