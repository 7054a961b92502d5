package consent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
)

// Paths of the registration APIs.
const (
	RegistryPath = "/registry/registrations" // plateau 1: the provider's own system (JSON)
	PortalPath   = "/portal/fhir/Consent"    // plateau 2+: consent portals (FHIR R4 Consent)
)

// ServerConfig configures a consent service.
type ServerConfig struct {
	// DataDir holds the SQLite database (consent.db) and, unless Audit is
	// given, the audit log (consent-audit.db).
	DataDir string
	// PostgresDSN, when set, keeps the registry in PostgreSQL instead, in
	// PostgresSchema (created when missing).
	PostgresDSN    string
	PostgresSchema string
	// Store is an open store to use instead (not closed by Close).
	Store *Store
	// Audit receives a record of every decision, registration and
	// subscription (patient data); DataDir/consent-audit.db when nil.
	Audit audit.Log
	// ClientTLS is presented when delivering notifications to subscribers'
	// rest-hook endpoints (mTLS). Build it with pki.ClientTLSConfig.
	ClientTLS *tls.Config
	// PortalURAs are the URAs (from their certificates) of the consent
	// portals allowed on the portal API and to register any scope.
	PortalURAs []string
	// Issuer names the service in SAML answers; "schakel-consent" when empty.
	Issuer   string
	Delivery DeliveryConfig
	// MaxBodyBytes limits request bodies; 64 KiB when zero.
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Now is the service's clock; time.Now when nil.
	Now func() time.Time
}

// DeliveryConfig tunes notification delivery to rest-hook endpoints.
type DeliveryConfig struct {
	Attempts     int           // attempts per notification before it fails; 6 when zero
	Backoff      time.Duration // delay before the first retry, doubling after; 2s when zero
	MaxBackoff   time.Duration // longest delay between attempts; 5m when zero
	Timeout      time.Duration // per attempt; 10s when zero
	PollInterval time.Duration // how often the queue is checked; 1s when zero
}

func (d DeliveryConfig) withDefaults() DeliveryConfig {
	if d.Attempts <= 0 {
		d.Attempts = 6
	}
	if d.Backoff <= 0 {
		d.Backoff = 2 * time.Second
	}
	if d.MaxBackoff <= 0 {
		d.MaxBackoff = 5 * time.Minute
	}
	if d.Timeout <= 0 {
		d.Timeout = 10 * time.Second
	}
	if d.PollInterval <= 0 {
		d.PollInterval = time.Second
	}
	return d
}

// Server is the consent service: registry APIs, the Mitz-compatible closed
// question and subscriptions with notification delivery. Its Handler
// expects to sit behind an mTLS listener (pki.ServerTLSConfig): every
// request is identified by the peer's UZI server certificate.
type Server struct {
	cfg       ServerConfig
	store     *Store
	ownStore  bool
	audit     audit.Log
	ownAudit  *audit.Store
	log       *slog.Logger
	now       func() time.Time
	delivery  DeliveryConfig
	hc        *http.Client
	kick      chan struct{}
	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewServer opens the store, migrates it and starts notification delivery.
func NewServer(cfg ServerConfig) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, delivery: cfg.Delivery.withDefaults()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.Issuer == "" {
		s.cfg.Issuer = "schakel-consent"
	}
	if s.cfg.MaxBodyBytes <= 0 {
		s.cfg.MaxBodyBytes = 64 << 10
	}
	for _, u := range cfg.PortalURAs {
		if err := nl.ValidateURA(u); err != nil {
			return nil, fmt.Errorf("consent: portal: %w", err)
		}
	}
	ctx := context.Background()
	var err error
	switch {
	case cfg.Store != nil:
		s.store = cfg.Store
	case cfg.PostgresDSN != "":
		s.store, err = OpenPostgres(ctx, cfg.PostgresDSN, cfg.PostgresSchema)
		s.ownStore = true
	case cfg.DataDir != "":
		s.store, err = OpenSQLite(ctx, filepath.Join(cfg.DataDir, "consent.db"))
		s.ownStore = true
	default:
		return nil, errors.New("consent: ServerConfig needs DataDir, PostgresDSN or Store")
	}
	if err != nil {
		return nil, err
	}
	s.store.now = s.now
	s.audit = cfg.Audit
	if s.audit == nil {
		if cfg.DataDir == "" {
			s.closeStore()
			return nil, errors.New("consent: ServerConfig needs Audit or DataDir for the audit log")
		}
		if s.ownAudit, err = audit.Open(ctx, filepath.Join(cfg.DataDir, "consent-audit.db"), "consent", s.log); err != nil {
			s.closeStore()
			return nil, err
		}
		s.audit = s.ownAudit
	}
	s.hc = &http.Client{
		Timeout: s.delivery.Timeout,
		Transport: &http.Transport{
			TLSClientConfig:     cfg.ClientTLS,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.stop, s.kick, s.done = cancel, make(chan struct{}, 1), make(chan struct{})
	go s.deliverLoop(wctx)
	return s, nil
}

func (s *Server) closeStore() {
	if s.ownStore {
		s.store.Close()
	}
}

// Store returns the server's registry.
func (s *Server) Store() *Store { return s.store }

// Close stops notification delivery (waiting for an attempt under way) and
// closes what NewServer opened. Undelivered notifications stay queued.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done
		if s.ownAudit != nil {
			err = errors.Join(err, s.ownAudit.Close())
		}
		if s.ownStore {
			err = errors.Join(err, s.store.Close())
		}
	})
	return err
}

// Handler serves every API of the service.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ClosedQuestionPath, s.closedQuestion)
	mux.HandleFunc("POST "+SubscriptionPath, s.createSubscription)
	mux.HandleFunc("GET "+SubscriptionPath+"/Subscription/{id}", s.readSubscription)
	mux.HandleFunc("DELETE "+SubscriptionPath+"/Subscription/{id}", s.deleteSubscription)
	mux.HandleFunc("POST "+RegistryPath, s.registryCreate)
	mux.HandleFunc("GET "+RegistryPath, s.registryList)
	mux.HandleFunc("GET "+RegistryPath+"/{id}", s.registryRead)
	mux.HandleFunc("DELETE "+RegistryPath+"/{id}", s.registryRevoke)
	mux.HandleFunc("POST "+PortalPath, s.portalCreate)
	mux.HandleFunc("GET "+PortalPath, s.portalSearch)
	mux.HandleFunc("GET "+PortalPath+"/{id}", s.portalRead)
	mux.HandleFunc("DELETE "+PortalPath+"/{id}", s.portalRevoke)
	return mux
}

// peer returns the URA of the mTLS peer, or an error when the request did
// not come over a verified mTLS connection with an UZI certificate.
func peer(r *http.Request) (string, error) {
	if r.TLS == nil {
		return "", pki.ErrNoVerifiedPeer
	}
	return pki.PeerURA(r.TLS)
}

func (s *Server) isPortal(ura string) bool { return slices.Contains(s.cfg.PortalURAs, ura) }

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
}

func (s *Server) record(ctx context.Context, r *http.Request, rec audit.Record) error {
	if rec.Address == "" {
		rec.Address = r.RemoteAddr
	}
	if err := s.audit.Append(ctx, rec); err != nil {
		s.log.Error("consent: audit append failed", "interaction", rec.Interaction, "err", err)
		return err
	}
	return nil
}

// ---- the closed question ----

func (s *Server) closedQuestion(w http.ResponseWriter, r *http.Request) {
	peerURA, err := peer(r)
	var q Question // as far as understood, for the audit record of a fault
	// Every fault refuses a question about a patient: it is audited with the
	// asker and whatever of the question was understood.
	fault := func(status int, relatesTo string, f *soapFault) {
		s.record(r.Context(), r, audit.Record{Action: audit.ActionExecute, Interaction: "consent-decision", //nolint:errcheck // logged; the fault is the answer either way
			Outcome: status, OutcomeText: f.Error(), Tenant: q.DataHolderURA, ActorURA: peerURA,
			ActorUser: q.RequesterUZI, ActorRole: q.RequesterRole, Patient: q.PatientBSN})
		w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
		w.WriteHeader(status)
		w.Write(buildFault(relatesTo, f)) //nolint:errcheck // the peer went away
	}
	if err != nil {
		fault(http.StatusForbidden, "", senderFault("", "a client certificate with an UZI server identity is required"))
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/soap+xml" && mt != "text/xml") {
		fault(http.StatusUnsupportedMediaType, "", senderFault("", "Content-Type must be application/soap+xml"))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fault(http.StatusRequestEntityTooLarge, "", senderFault("", "request too large"))
			return
		}
		fault(http.StatusBadRequest, "", senderFault("", "request body could not be read"))
		return
	}
	var msgID string
	msgID, q, err = parseQuery(body)
	var sf *soapFault
	var ind *indeterminate
	switch {
	case errors.As(err, &sf):
		// SOAP 1.2 HTTP binding: a Sender fault is a 400.
		fault(http.StatusBadRequest, msgID, sf)
		return
	case errors.As(err, &ind):
		// Audited too: the refusal is an answer about a request for patient data.
		if s.record(r.Context(), r, audit.Record{Action: audit.ActionExecute, Interaction: "consent-decision",
			Outcome: http.StatusOK, OutcomeText: string(DecisionIndeterminate) + ": " + ind.message, ActorURA: peerURA}) != nil {
			fault(http.StatusInternalServerError, msgID, &soapFault{code: "Receiver", reason: "the decision could not be recorded"})
			return
		}
		s.writeAnswer(w, msgID, DecisionIndeterminate, ind.status, ind.message)
		return
	}
	now := s.now()
	d, err := s.store.Decide(r.Context(), q, now)
	if err != nil {
		s.log.Error("consent: decision failed", "err", err)
		fault(http.StatusInternalServerError, msgID, &soapFault{code: "Receiver", reason: "the consent registry is unavailable"})
		return
	}
	if s.record(r.Context(), r, audit.Record{Action: audit.ActionExecute, Interaction: "consent-decision",
		Outcome: http.StatusOK, OutcomeText: string(d), Tenant: q.DataHolderURA, ActorURA: peerURA,
		ActorUser: q.RequesterUZI, ActorRole: q.RequesterRole, Patient: q.PatientBSN,
		Query: "requester=" + q.RequesterURA + " requesterType=" + q.RequesterType + " holderType=" + q.DataHolderType}) != nil {
		fault(http.StatusInternalServerError, msgID, &soapFault{code: "Receiver", reason: "the decision could not be recorded"})
		return
	}
	s.writeAnswer(w, msgID, d, statusOK, "")
}

func (s *Server) writeAnswer(w http.ResponseWriter, relatesTo string, d Decision, status, message string) {
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(buildResponse(relatesTo, s.cfg.Issuer, d, status, message, s.now())) //nolint:errcheck // the peer went away
}

// ---- FHIR and JSON answers ----

func writeFHIR(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", mimeFHIRJSON+"; fhirVersion=4.0; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the peer went away
}

func writeOutcome(w http.ResponseWriter, e *fhir.Error) {
	w.Header().Set("Content-Type", mimeFHIRJSON+"; fhirVersion=4.0; charset=utf-8")
	w.WriteHeader(e.Status)
	w.Write(fhir.OperationOutcome(e.Issues...)) //nolint:errcheck // the peer went away
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the peer went away
}

// writeProblem answers the (non-FHIR) registry API with RFC 9457
// problem+json.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck // the peer went away
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail,
	})
}

// requestError classifies an error of a registration or subscription for
// the peer: its status and a message without internals.
func requestError(err error) (int, string) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "request too large"
	case errors.Is(err, ErrInvalidRegistration), errors.Is(err, errInvalidResource):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, errUnsupportedPayload):
		return http.StatusUnprocessableEntity, err.Error()
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "not found"
	}
	return http.StatusInternalServerError, "the consent registry could not process the request"
}

// jsonContent reports whether the request body is (FHIR) JSON.
func jsonContent(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && (mt == mimeFHIRJSON || mt == "application/json")
}

// ---- subscriptions ----

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) {
	peerURA, err := peer(r)
	if err != nil {
		writeOutcome(w, fhir.Errorf(http.StatusForbidden, "security", "a client certificate with an UZI server identity is required"))
		return
	}
	if !jsonContent(r) {
		writeOutcome(w, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type must be %s", mimeFHIRJSON))
		return
	}
	body, err := s.readBody(w, r)
	var sub Subscription
	if err == nil {
		sub, err = parseSubscription(body)
	}
	if err != nil {
		status, msg := requestError(err)
		writeOutcome(w, fhir.Errorf(status, issueCode(status), "%s", msg))
		return
	}
	sub.Owner = peerURA
	stored, created, err := s.store.Subscribe(r.Context(), sub)
	if err != nil {
		s.log.Error("consent: store subscription", "err", err)
		writeOutcome(w, fhir.Errorf(http.StatusInternalServerError, "exception", "the subscription could not be stored"))
		return
	}
	if s.record(r.Context(), r, audit.Record{Action: audit.ActionCreate, Interaction: "consent-subscribe",
		Outcome: http.StatusCreated, Tenant: stored.ProviderURA, ActorURA: peerURA, Patient: stored.PatientBSN,
		Types: []string{"Subscription"}, Resources: []string{"Subscription/" + stored.ID}}) != nil {
		writeOutcome(w, fhir.Errorf(http.StatusInternalServerError, "exception", "the subscription could not be recorded"))
		return
	}
	w.Header().Set("Location", SubscriptionPath+"/Subscription/"+stored.ID)
	status := http.StatusCreated
	if !created {
		status = http.StatusOK // the same subscription again
	}
	writeFHIR(w, status, subscriptionJSON(stored))
}

func (s *Server) ownedSubscription(w http.ResponseWriter, r *http.Request) (Subscription, string, bool) {
	peerURA, err := peer(r)
	if err != nil {
		writeOutcome(w, fhir.Errorf(http.StatusForbidden, "security", "a client certificate with an UZI server identity is required"))
		return Subscription{}, "", false
	}
	sub, err := s.store.GetSubscription(r.Context(), r.PathValue("id"))
	if err != nil || sub.Owner != peerURA {
		// Another peer's subscription is as invisible as a missing one.
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Error("consent: read subscription", "err", err)
			writeOutcome(w, fhir.Errorf(http.StatusInternalServerError, "exception", "the subscription could not be read"))
			return Subscription{}, "", false
		}
		writeOutcome(w, fhir.Errorf(http.StatusNotFound, "not-found", "no such Subscription"))
		return Subscription{}, "", false
	}
	return sub, peerURA, true
}

func (s *Server) readSubscription(w http.ResponseWriter, r *http.Request) {
	sub, peerURA, ok := s.ownedSubscription(w, r)
	if !ok {
		return
	}
	if s.record(r.Context(), r, audit.Record{Action: audit.ActionRead, Interaction: "read", Outcome: http.StatusOK,
		Tenant: sub.ProviderURA, ActorURA: peerURA, Patient: sub.PatientBSN, Types: []string{"Subscription"},
		Resources: []string{"Subscription/" + sub.ID}}) != nil {
		writeOutcome(w, fhir.Errorf(http.StatusInternalServerError, "exception", "the read could not be recorded"))
		return
	}
	writeFHIR(w, http.StatusOK, subscriptionJSON(sub))
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	sub, peerURA, ok := s.ownedSubscription(w, r)
	if !ok {
		return
	}
	if err := s.store.Unsubscribe(r.Context(), sub.ID); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("consent: delete subscription", "err", err)
		writeOutcome(w, fhir.Errorf(http.StatusInternalServerError, "exception", "the subscription could not be removed"))
		return
	}
	s.record(r.Context(), r, audit.Record{Action: audit.ActionDelete, Interaction: "delete", Outcome: http.StatusNoContent, //nolint:errcheck // logged; the removal stands
		Tenant: sub.ProviderURA, ActorURA: peerURA, Patient: sub.PatientBSN, Types: []string{"Subscription"},
		Resources: []string{"Subscription/" + sub.ID}})
	w.WriteHeader(http.StatusNoContent)
}

func issueCode(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not-found"
	case http.StatusRequestEntityTooLarge:
		return "too-costly"
	case http.StatusUnprocessableEntity:
		return "not-supported"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusInternalServerError:
		return "exception"
	}
	return "invalid"
}

// ---- registrations (shared by both APIs) ----

// register authorizes and stores r for peerURA: a provider registers consent
// about its own data only (the holder URA is its own), a portal any scope.
func (s *Server) register(ctx context.Context, r *http.Request, peerURA string, reg Registration) (Registration, int, error) {
	reg.ID, reg.Revoked, reg.Created = "", time.Time{}, time.Time{}
	reg.RegisteredBy = peerURA
	if s.isPortal(peerURA) && strings.HasPrefix(r.URL.Path, PortalPath) {
		reg.Source = SourcePortal
	} else {
		reg.Source = SourceProvider
		if reg.HolderURA != "" && reg.HolderURA != peerURA {
			return reg, http.StatusForbidden, errors.New("a provider registers consent for its own data only (holder URA must be its own)")
		}
		reg.HolderURA = peerURA
	}
	if err := reg.Validate(); err != nil {
		return reg, http.StatusBadRequest, err
	}
	stored, err := s.store.Register(ctx, reg)
	if err != nil {
		status, msg := requestError(err)
		if status == http.StatusInternalServerError {
			s.log.Error("consent: register", "err", err)
		}
		return reg, status, errors.New(msg)
	}
	if err := s.record(ctx, r, audit.Record{Action: audit.ActionCreate, Interaction: "consent-register",
		Outcome: http.StatusCreated, OutcomeText: string(stored.Effect), Tenant: stored.HolderURA, ActorURA: peerURA,
		Patient: stored.PatientBSN, Types: []string{"Consent"}, Resources: []string{"Consent/" + stored.ID}}); err != nil {
		return stored, http.StatusInternalServerError, errors.New("the registration could not be recorded")
	}
	s.wake()
	return stored, http.StatusCreated, nil
}

// visible reports whether peerURA may see reg: a portal sees all, a
// provider what it registered or what concerns its own data.
func (s *Server) visible(peerURA string, portal bool, reg Registration) bool {
	return portal || reg.RegisteredBy == peerURA || reg.HolderURA == peerURA
}

// revocable reports whether peerURA may withdraw reg: its own registration,
// or, for a portal, any registration made through a portal.
func (s *Server) revocable(peerURA string, portal bool, reg Registration) bool {
	return reg.RegisteredBy == peerURA || (portal && reg.Source == SourcePortal)
}

func (s *Server) list(ctx context.Context, r *http.Request, peerURA, bsn string, portal bool) ([]Registration, error) {
	regs, err := s.store.List(ctx, bsn, r.URL.Query().Get("history") == "true")
	if err != nil {
		return nil, err
	}
	out := regs[:0]
	for _, reg := range regs {
		if s.visible(peerURA, portal, reg) {
			out = append(out, reg)
		}
	}
	if err := s.record(ctx, r, audit.Record{Action: audit.ActionRead, Interaction: "search-type", Outcome: http.StatusOK,
		ActorURA: peerURA, Patient: bsn, Types: []string{"Consent"}}); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) revoke(ctx context.Context, r *http.Request, peerURA string, portal bool) (int, error) {
	reg, err := s.store.Get(ctx, r.PathValue("id"))
	if err != nil || !s.visible(peerURA, portal, reg) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Error("consent: read registration", "err", err)
			return http.StatusInternalServerError, errors.New("the registration could not be read")
		}
		return http.StatusNotFound, errors.New("no such registration")
	}
	if !s.revocable(peerURA, portal, reg) {
		return http.StatusForbidden, errors.New("only whoever registered a consent (or, for portal registrations, a portal) may withdraw it")
	}
	if _, err := s.store.Revoke(ctx, reg.ID); err != nil {
		s.log.Error("consent: revoke", "err", err)
		return http.StatusInternalServerError, errors.New("the registration could not be withdrawn")
	}
	s.record(ctx, r, audit.Record{Action: audit.ActionDelete, Interaction: "consent-revoke", Outcome: http.StatusNoContent, //nolint:errcheck // logged; the withdrawal stands
		Tenant: reg.HolderURA, ActorURA: peerURA, Patient: reg.PatientBSN, Types: []string{"Consent"}, Resources: []string{"Consent/" + reg.ID}})
	s.wake()
	return http.StatusNoContent, nil
}

func (s *Server) readOne(ctx context.Context, r *http.Request, peerURA string, portal bool) (Registration, int, error) {
	reg, err := s.store.Get(ctx, r.PathValue("id"))
	if err != nil || !s.visible(peerURA, portal, reg) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Error("consent: read registration", "err", err)
			return reg, http.StatusInternalServerError, errors.New("the registration could not be read")
		}
		return reg, http.StatusNotFound, errors.New("no such registration")
	}
	if err := s.record(ctx, r, audit.Record{Action: audit.ActionRead, Interaction: "read", Outcome: http.StatusOK,
		Tenant: reg.HolderURA, ActorURA: peerURA, Patient: reg.PatientBSN, Types: []string{"Consent"}, Resources: []string{"Consent/" + reg.ID}}); err != nil {
		return reg, http.StatusInternalServerError, errors.New("the read could not be recorded")
	}
	return reg, http.StatusOK, nil
}

// ---- plateau 1: the provider's registry API (JSON, problem+json) ----

func (s *Server) registryPeer(w http.ResponseWriter, r *http.Request) (string, bool) {
	peerURA, err := peer(r)
	if err != nil {
		writeProblem(w, http.StatusForbidden, "a client certificate with an UZI server identity is required")
		return "", false
	}
	return peerURA, true
}

func (s *Server) registryCreate(w http.ResponseWriter, r *http.Request) {
	peerURA, ok := s.registryPeer(w, r)
	if !ok {
		return
	}
	if !jsonContent(r) {
		writeProblem(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, err := s.readBody(w, r)
	var reg Registration
	if err == nil {
		err = decodeStrict(body, &reg)
	}
	if err != nil {
		status, msg := requestError(err)
		writeProblem(w, status, msg)
		return
	}
	stored, status, err := s.register(r.Context(), r, peerURA, reg)
	if err != nil {
		writeProblem(w, status, err.Error())
		return
	}
	w.Header().Set("Location", RegistryPath+"/"+stored.ID)
	writeJSON(w, http.StatusCreated, stored)
}

func (s *Server) registryList(w http.ResponseWriter, r *http.Request) {
	peerURA, ok := s.registryPeer(w, r)
	if !ok {
		return
	}
	bsn := r.URL.Query().Get("patient")
	if nl.ValidateBSN(bsn) != nil {
		writeProblem(w, http.StatusBadRequest, "query parameter patient must be a valid BSN")
		return
	}
	regs, err := s.list(r.Context(), r, peerURA, bsn, false)
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, "the registrations could not be listed")
		return
	}
	if regs == nil {
		regs = []Registration{}
	}
	writeJSON(w, http.StatusOK, regs)
}

func (s *Server) registryRead(w http.ResponseWriter, r *http.Request) {
	peerURA, ok := s.registryPeer(w, r)
	if !ok {
		return
	}
	reg, status, err := s.readOne(r.Context(), r, peerURA, false)
	if err != nil {
		writeProblem(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, reg)
}

func (s *Server) registryRevoke(w http.ResponseWriter, r *http.Request) {
	peerURA, ok := s.registryPeer(w, r)
	if !ok {
		return
	}
	if status, err := s.revoke(r.Context(), r, peerURA, false); err != nil {
		writeProblem(w, status, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- plateau 2+: the portal API (FHIR R4 Consent, OperationOutcome) ----

func (s *Server) portalPeer(w http.ResponseWriter, r *http.Request) (string, bool) {
	peerURA, err := peer(r)
	if err != nil || !s.isPortal(peerURA) {
		writeOutcome(w, fhir.Errorf(http.StatusForbidden, "forbidden", "this API is for registered consent portals only"))
		return "", false
	}
	return peerURA, true
}

func (s *Server) portalCreate(w http.ResponseWriter, r *http.Request) {
	peerURA, ok := s.portalPeer(w, r)
	if !ok {
		return
	}
	if !jsonContent(r) {
		writeOutcome(w, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type must be %s", mimeFHIRJSON))
		return
	}
	body, err := s.readBody(w, r)
	var c consentResource
	if err == nil {
		err = decodeStrict(body, &c)
	}
	var reg Registration
	if err == nil {
		reg, err = registrationFromConsent(c, true)
	}
	if err != nil {
		status, msg := requestError(err)
		writeOutcome(w, fhir.Errorf(status, issueCode(status), "%s", msg))
		return
	}
	stored, status, err := s.register(r.Context(), r, peerURA, reg)
	if err != nil {
		writeOutcome(w, fhir.Errorf(status, issueCode(status), "%s", err.Error()))
		return
	}
	w.Header().Set("Location", PortalPath+"/"+stored.ID)
	writeFHIR(w, http.StatusCreated, consentJSON(stored, s.now()))
}

func (s *Server) portalSearch(w http.ResponseWriter, r *http.Request) {
	peerURA, ok := s.portalPeer(w, r)
	if !ok {
		return
	}
	v := r.URL.Query().Get("patient.identifier")
	if v == "" {
		v = r.URL.Query().Get("patient:identifier")
	}
	system, bsn, found := strings.Cut(v, "|")
	if !found || nl.CanonicalSystem(system) != nl.SystemBSN || nl.ValidateBSN(bsn) != nil {
		writeOutcome(w, fhir.Errorf(http.StatusBadRequest, "invalid", "search by patient.identifier=%s|<BSN>", nl.SystemBSN))
		return
	}
	regs, err := s.list(r.Context(), r, peerURA, bsn, true)
	if err != nil {
		writeOutcome(w, fhir.Errorf(http.StatusInternalServerError, "exception", "the consents could not be listed"))
		return
	}
	now := s.now()
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource consentResource `json:"resource"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Total        int     `json:"total"`
		Entry        []entry `json:"entry,omitempty"`
	}{ResourceType: "Bundle", Type: "searchset", Total: len(regs)}
	for _, reg := range regs {
		b.Entry = append(b.Entry, entry{FullURL: PortalPath + "/" + reg.ID, Resource: consentJSON(reg, now)})
	}
	writeFHIR(w, http.StatusOK, b)
}

func (s *Server) portalRead(w http.ResponseWriter, r *http.Request) {
	peerURA, ok := s.portalPeer(w, r)
	if !ok {
		return
	}
	reg, status, err := s.readOne(r.Context(), r, peerURA, true)
	if err != nil {
		writeOutcome(w, fhir.Errorf(status, issueCode(status), "%s", err.Error()))
		return
	}
	writeFHIR(w, http.StatusOK, consentJSON(reg, s.now()))
}

func (s *Server) portalRevoke(w http.ResponseWriter, r *http.Request) {
	peerURA, ok := s.portalPeer(w, r)
	if !ok {
		return
	}
	if status, err := s.revoke(r.Context(), r, peerURA, true); err != nil {
		writeOutcome(w, fhir.Errorf(status, issueCode(status), "%s", err.Error()))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
