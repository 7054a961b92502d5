package localization

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/localization/index/postgres"
	"github.com/schakel-nl/schakel/localization/index/sqlite"
	"github.com/schakel-nl/schakel/localization/oprf"
	"github.com/schakel-nl/schakel/pki"
)

// Defaults of ServerConfig.
const (
	DefaultMaxBodyBytes  = 64 << 10
	DefaultEvaluateRate  = 20.0 // per second and URA
	DefaultEvaluateBurst = 200
)

// ServerConfig configures the referral index service. The zero values of the
// optional fields open everything under DataDir.
type ServerConfig struct {
	// DataDir holds the SQLite index (localization.db), the OPRF key
	// (oprf-key.pem) and the audit log (audit.db), as far as the fields
	// below do not replace them.
	DataDir string
	// PostgresDSN, when set, keeps the index in PostgreSQL instead of SQLite.
	PostgresDSN string
	// KeyFile is the OPRF key (PKCS#8 PEM), created on first start when
	// missing. Keep it apart from database backups: the database and this
	// key together re-identify patients (docs/localization.md).
	KeyFile string

	// Store, Key and Audit replace what would be opened from the fields
	// above; the server does not close what it was given.
	Store index.Store
	Key   *oprf.Key
	Audit audit.Log

	// HitKeyFile is the key localization hits are signed with (PEM),
	// created on first start when missing; default hit-key.pem in DataDir.
	// HitKey replaces it. Without either and without DataDir, a fresh key
	// is made per start (hits then die with the process).
	HitKeyFile string
	HitKey     jwk.Key
	// HitLifetime is how long a hit opens a Direct Pull (default
	// DefaultHitLifetime).
	HitLifetime time.Duration
	// Regional marks the index as a collaboration's own localization
	// service (plateau 2–3); by default it plays the national one, whose
	// hits plateau 4 requires.
	Regional bool

	// Consent, when set, filters every answer at the index (fail closed). A
	// node's Client filters again with its own ConsentFilter.
	Consent ConsentFilter

	// EvaluateRate and EvaluateBurst limit pseudonym evaluations per
	// organisation (token bucket), which slows a node that tries to
	// enumerate BSNs through the index.
	EvaluateRate  float64
	EvaluateBurst int
	// MaxBodyBytes bounds request bodies (default 64 KiB).
	MaxBodyBytes int64

	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Validate checks that the server can be built from cfg.
func (c ServerConfig) Validate() error {
	var errs []error
	if c.DataDir == "" {
		if c.Store == nil {
			errs = append(errs, errors.New("localization: data dir or store required"))
		}
		if c.Key == nil && c.KeyFile == "" {
			errs = append(errs, errors.New("localization: data dir, key file or key required"))
		}
		if c.Audit == nil {
			errs = append(errs, errors.New("localization: data dir or audit log required"))
		}
	}
	if c.EvaluateRate < 0 || c.EvaluateBurst < 0 || c.MaxBodyBytes < 0 || c.HitLifetime < 0 {
		errs = append(errs, errors.New("localization: rates and sizes cannot be negative"))
	}
	return errors.Join(errs...)
}

// Server is the referral index: FHIR List registrations, Organization/$localize
// lookups and the OPRF evaluation that turns blinded BSNs into pseudonyms.
// Every caller is a GtK authenticated by its UZI server certificate.
type Server struct {
	cfg     ServerConfig
	store   index.Store
	key     *oprf.Key
	audit   audit.Log
	log     *slog.Logger
	limiter *limiter
	now     func() time.Time
	closers []func() error
	hitKey  jwk.Key
	hitJWKS []byte // the public hit keys, served at JWKSPath
}

// NewServer opens the index, key and audit log and returns the service.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.EvaluateRate == 0 {
		cfg.EvaluateRate = DefaultEvaluateRate
	}
	if cfg.EvaluateBurst == 0 {
		cfg.EvaluateBurst = DefaultEvaluateBurst
	}
	if cfg.HitLifetime == 0 {
		cfg.HitLifetime = DefaultHitLifetime
	}
	s := &Server{cfg: cfg, store: cfg.Store, key: cfg.Key, audit: cfg.Audit, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.limiter = newLimiter(cfg.EvaluateRate, cfg.EvaluateBurst, s.now)
	ctx := context.Background()
	fail := func(err error) (*Server, error) {
		s.Close()
		return nil, err
	}
	if s.key == nil {
		path := cfg.KeyFile
		if path == "" {
			path = filepath.Join(cfg.DataDir, "oprf-key.pem")
		}
		k, err := LoadOrCreateKey(path)
		if err != nil {
			return fail(err)
		}
		s.key = k
	}
	if err := s.loadHitKey(); err != nil {
		return fail(err)
	}
	if s.store == nil {
		var st index.Store
		var err error
		if cfg.PostgresDSN != "" {
			st, err = postgres.Open(ctx, cfg.PostgresDSN)
		} else {
			st, err = sqlite.Open(ctx, filepath.Join(cfg.DataDir, "localization.db"))
		}
		if err != nil {
			return fail(err)
		}
		s.store = st
		s.closers = append(s.closers, st.Close)
	}
	if s.audit == nil {
		a, err := audit.Open(ctx, filepath.Join(cfg.DataDir, "audit.db"), "localization", s.log)
		if err != nil {
			return fail(err)
		}
		s.audit = a
		s.closers = append(s.closers, a.Close)
	}
	return s, nil
}

// KeyID names the OPRF key pseudonyms are currently made under.
func (s *Server) KeyID() string { return s.key.ID() }

// Close closes what NewServer opened.
func (s *Server) Close() error {
	var err error
	for i := len(s.closers) - 1; i >= 0; i-- {
		err = errors.Join(err, s.closers[i]())
	}
	s.closers = nil
	return err
}

// LoadOrCreateKey reads the OPRF key at path, creating it (mode 0600) when
// the file does not exist. An unreadable key is an error, never replaced:
// a new key would orphan every registration.
func LoadOrCreateKey(path string) (*oprf.Key, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := oprf.ParseKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("localization key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("localization key: %w", err)
	}
	k, err := oprf.GenerateKey()
	if err != nil {
		return nil, err
	}
	pemData, err := k.MarshalPEM()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("localization key: %w", err)
	}
	// O_EXCL: two processes starting at once must not each write a key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("localization key: %w", err)
	}
	if _, err := f.Write(pemData); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("localization key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("localization key: %w", err)
	}
	return k, nil
}

// caller is the authenticated peer.
type caller struct {
	URA     string
	UZI     string
	Address string
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, c caller) error

// Handler serves the index's FHIR API under /fhir/. It must sit behind a
// listener that requires client certificates (pki.ServerTLSConfig); a request
// without a verified UZI server certificate is refused.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /fhir/metadata", s.peer(s.metadata))
	mux.Handle("POST /fhir/List", s.peer(s.create))
	mux.Handle("GET /fhir/List/{id}", s.peer(s.read))
	mux.Handle("DELETE /fhir/List/{id}", s.peer(s.deleteByID))
	mux.Handle("DELETE /fhir/List", s.peer(s.deleteMatching))
	mux.Handle("POST /fhir/Organization/$localize", s.peer(s.localize))
	mux.Handle("POST /fhir/$oprf-evaluate", s.peer(s.evaluate))
	mux.Handle("GET /fhir"+JWKSPath, s.peer(s.jwks))
	mux.Handle("/", s.peer(func(http.ResponseWriter, *http.Request, caller) error {
		return fhir.Errorf(http.StatusNotFound, "not-supported", "no such interaction on the localization service")
	}))
	return mux
}

// peer authenticates the caller by its certificate and turns errors into
// OperationOutcomes.
func (s *Server) peer(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := authenticate(r)
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.writeError(w, err)
		}
	})
}

func authenticate(r *http.Request) (caller, error) {
	ura, err := pki.PeerURA(r.TLS)
	if errors.Is(err, pki.ErrNoVerifiedPeer) {
		return caller{}, fhir.Errorf(http.StatusUnauthorized, "login", "a client certificate (mutual TLS) is required")
	}
	if err != nil {
		return caller{}, fhir.Errorf(http.StatusForbidden, "forbidden", "the client certificate carries no valid UZI server identity")
	}
	id, _ := pki.ParseUZIServerID(r.TLS.VerifiedChains[0][0])
	return caller{URA: ura, UZI: id.UZI, Address: r.RemoteAddr}, nil
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	fe := fhir.AsError(err)
	if fe == nil || fe.Status >= 500 {
		s.log.Error("localization: request failed", "err", err)
	}
	if fe == nil {
		fe = fhir.Errorf(http.StatusInternalServerError, "exception", "internal error")
	}
	if fe.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, fe.Status, fhir.OperationOutcome(fe.Issues...))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion=4.0; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// readBody reads a FHIR JSON body of at most MaxBodyBytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/fhir+json" && mt != "application/json") {
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "send application/fhir+json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", "the request body exceeds %d bytes", s.cfg.MaxBodyBytes)
	}
	if err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "structure", "could not read the request body")
	}
	return body, nil
}

// record appends an audit record; a failure fails the request, because an
// access that cannot be logged must not happen.
func (s *Server) record(ctx context.Context, c caller, rec audit.Record) error {
	rec.ActorURA, rec.ActorSystem, rec.Address = c.URA, c.UZI, c.Address
	if err := s.audit.Append(ctx, rec); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// refuse audits a refusal and returns it; an audit failure is logged only,
// since the request fails anyway.
func (s *Server) refuse(ctx context.Context, c caller, rec audit.Record, fe *fhir.Error) error {
	rec.Outcome = fe.Status
	rec.OutcomeText = fe.Issues[0].Diagnostics
	if err := s.record(ctx, c, rec); err != nil {
		s.log.Error("localization: audit refusal", "err", err)
	}
	return fe
}

// checkKey refuses pseudonyms made under another key: they cannot match.
func (s *Server) checkKey(p Pseudonym) error {
	if p.KeyID != s.key.ID() {
		return fhir.Errorf(http.StatusConflict, "conflict", "pseudonym made under key %q; the index uses key %q: derive it again", p.KeyID, s.key.ID())
	}
	return nil
}

// create registers a localization List (FHIR create).
func (s *Server) create(w http.ResponseWriter, r *http.Request, c caller) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var l listResource
	if err := decodeResource(body, "List", &l); err != nil {
		return err
	}
	reg, err := parseList(&l)
	if err != nil {
		return err
	}
	rec := audit.Record{Action: audit.ActionCreate, Interaction: "register", Tenant: reg.HolderURA,
		Patient: reg.Pseudonym.String(), Types: []string{"List"}, Query: reg.CareContext.System + "|" + reg.CareContext.Code}
	if reg.HolderURA != c.URA {
		return s.refuse(r.Context(), c, rec, fhir.Errorf(http.StatusForbidden, "forbidden",
			"an organisation registers only its own data: the custodian must be URA %s, the URA of the client certificate", c.URA))
	}
	if err := s.checkKey(reg.Pseudonym); err != nil {
		return err
	}
	e, created, err := s.store.Register(r.Context(), index.Entry{
		Pseudonym: reg.Pseudonym.Value, HolderURA: reg.HolderURA, CareContext: reg.CareContext,
		SourceType: reg.SourceType, Device: c.UZI, Created: s.now(),
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	rec.Outcome, rec.Resources = status, []string{"List/" + e.ID}
	if err := s.record(r.Context(), c, rec); err != nil {
		return err
	}
	if created {
		w.Header().Set("Location", "List/"+e.ID)
	}
	writeJSON(w, status, listJSON(e))
	return nil
}

// ownEntry returns the entry id if the caller registered it.
func (s *Server) ownEntry(ctx context.Context, c caller, id string, rec audit.Record) (index.Entry, error) {
	e, err := s.store.Get(ctx, id)
	if errors.Is(err, index.ErrNotFound) {
		return e, fhir.Errorf(http.StatusNotFound, "not-found", "no List %s", id)
	}
	if err != nil {
		return e, err
	}
	if e.HolderURA != c.URA {
		rec.Tenant = e.HolderURA
		return e, s.refuse(ctx, c, rec, fhir.Errorf(http.StatusForbidden, "forbidden", "List %s belongs to another organisation", id))
	}
	return e, nil
}

// read returns one of the caller's own Lists.
func (s *Server) read(w http.ResponseWriter, r *http.Request, c caller) error {
	id := r.PathValue("id")
	rec := audit.Record{Action: audit.ActionRead, Interaction: "read", Types: []string{"List"}, Resources: []string{"List/" + id}}
	e, err := s.ownEntry(r.Context(), c, id, rec)
	if err != nil {
		return err
	}
	rec.Tenant, rec.Outcome = e.HolderURA, http.StatusOK
	rec.Patient = Pseudonym{KeyID: s.key.ID(), Value: e.Pseudonym}.String()
	if err := s.record(r.Context(), c, rec); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listJSON(e))
	return nil
}

// deleteByID withdraws one of the caller's Lists.
func (s *Server) deleteByID(w http.ResponseWriter, r *http.Request, c caller) error {
	id := r.PathValue("id")
	rec := audit.Record{Action: audit.ActionDelete, Interaction: "withdraw", Types: []string{"List"}, Resources: []string{"List/" + id}}
	e, err := s.ownEntry(r.Context(), c, id, rec)
	if err != nil {
		return err
	}
	if _, err := s.store.Delete(r.Context(), c.URA, id); err != nil {
		return err
	}
	rec.Tenant, rec.Outcome = e.HolderURA, http.StatusNoContent
	rec.Patient = Pseudonym{KeyID: s.key.ID(), Value: e.Pseudonym}.String()
	if err := s.record(r.Context(), c, rec); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteMatching is the conditional delete
// DELETE List?subject:identifier=<system>|<pseudonym>[&code=<system>|<code>]:
// it withdraws the caller's own entries for a patient.
func (s *Server) deleteMatching(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	for k := range q {
		if k != "subject:identifier" && k != "code" {
			return invalid("", "unsupported search parameter %q: use subject:identifier and code", k)
		}
	}
	if len(q["subject:identifier"]) != 1 || len(q["code"]) > 1 {
		return invalid("", "give subject:identifier once, and code at most once")
	}
	sys, val, _ := strings.Cut(q.Get("subject:identifier"), "|")
	if sys != SystemPseudonym {
		return invalid("", "subject:identifier must be %s|<pseudonym>", SystemPseudonym)
	}
	p, err := ParsePseudonym(val)
	if err != nil {
		return invalid("", "subject:identifier: %v", err)
	}
	var cc index.Coding
	if code := q.Get("code"); code != "" {
		sys, val, ok := strings.Cut(code, "|")
		if !ok || sys == "" || !validCode(val) {
			return invalid("", "code must be <system>|<code>")
		}
		cc = index.Coding{System: sys, Code: val}
	}
	if err := s.checkKey(p); err != nil {
		return err
	}
	n, err := s.store.DeleteMatching(r.Context(), c.URA, p.Value, cc)
	if err != nil {
		return err
	}
	rec := audit.Record{Action: audit.ActionDelete, Interaction: "withdraw", Tenant: c.URA, Outcome: http.StatusOK,
		Patient: p.String(), Types: []string{"List"}, Query: r.URL.RawQuery}
	if err := s.record(r.Context(), c, rec); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fhir.OperationOutcome(fhir.Issue{Severity: "information", Code: "informational",
		Diagnostics: fmt.Sprintf("withdrew %d registration(s)", n)}))
	return nil
}

// localize answers Organization/$localize: the organisations holding data
// of a care context for a pseudonym, after the consent filter.
func (s *Server) localize(w http.ResponseWriter, r *http.Request, c caller) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var p parameters
	if err := decodeResource(body, "Parameters", &p); err != nil {
		return err
	}
	req, err := parseLocalize(&p)
	if err != nil {
		return err
	}
	rec := audit.Record{Action: audit.ActionExecute, Interaction: "localize", Patient: req.Pseudonym.String(),
		Types: []string{"Organization"}, Query: req.CareContext.System + "|" + req.CareContext.Code}
	if req.RequesterURA != c.URA {
		return s.refuse(r.Context(), c, rec, fhir.Errorf(http.StatusForbidden, "forbidden",
			"the requester must be URA %s, the URA of the client certificate", c.URA))
	}
	if err := s.checkKey(req.Pseudonym); err != nil {
		return err
	}
	holders, err := s.store.Lookup(r.Context(), index.Query{Pseudonym: req.Pseudonym.Value, CareContext: req.CareContext, SourceTypes: req.SourceTypes})
	if err != nil {
		return err
	}
	var warnings []fhir.Issue
	if s.cfg.Consent != nil && len(holders) > 0 {
		holders, warnings = filterHolders(r.Context(), s.cfg.Consent, holders, func(h index.Holder) ConsentQuestion {
			return ConsentQuestion{PatientSystem: SystemPseudonym, Patient: req.Pseudonym.String(), HolderURA: h.URA,
				HolderType: h.SourceType, RequesterURA: c.URA, CareContext: req.CareContext}
		})
		for _, wi := range warnings {
			s.log.Warn("localization: consent check failed; holder left out", "requester", c.URA, "reason", wi.Diagnostics)
		}
	}
	rec.Outcome = http.StatusOK
	for _, h := range holders {
		rec.Resources = append(rec.Resources, "Organization/"+h.URA)
	}
	if err := s.record(r.Context(), c, rec); err != nil {
		return err
	}
	var hits map[string]string
	if req.Binding != "" {
		hits = map[string]string{}
		cc := req.CareContext.System + "|" + req.CareContext.Code
		for _, h := range holders {
			if _, done := hits[h.URA]; done {
				continue
			}
			if hits[h.URA], err = s.signHit(c.URA, h.URA, req.Binding, cc, s.now()); err != nil {
				return err
			}
		}
	}
	writeJSON(w, http.StatusOK, organizationsBundle(holders, hits, publicWarnings(warnings), s.now().UTC().Format(time.RFC3339)))
	return nil
}

// filterHolders keeps the holders the consent filter permits. An error for a
// holder leaves it out (fail closed) and adds a warning whose text is for
// the log only.
func filterHolders(ctx context.Context, f ConsentFilter, holders []index.Holder, question func(index.Holder) ConsentQuestion) ([]index.Holder, []fhir.Issue) {
	var kept []index.Holder
	var warnings []fhir.Issue
	for _, h := range holders {
		ok, err := f.Permitted(ctx, question(h))
		if err != nil {
			warnings = append(warnings, fhir.Issue{Severity: "warning", Code: "incomplete", Diagnostics: err.Error()})
			continue
		}
		if ok {
			kept = append(kept, h)
		}
	}
	return kept, warnings
}

// publicWarnings collapses consent failures into one warning safe for a
// peer: it neither names holders nor passes on the consent service's error.
func publicWarnings(internal []fhir.Issue) []fhir.Issue {
	if len(internal) == 0 {
		return nil
	}
	return []fhir.Issue{{Severity: "warning", Code: "incomplete",
		Diagnostics: "consent could not be verified for every organisation; those are left out of this answer"}}
}

// evaluate is $oprf-evaluate: the index's half of deriving a pseudonym. The
// caller sends a blinded element and gets it multiplied by the index key.
func (s *Server) evaluate(w http.ResponseWriter, r *http.Request, c caller) error {
	if !s.limiter.allow(c.URA) {
		return fhir.Errorf(http.StatusTooManyRequests, "throttled", "too many pseudonym evaluations; slow down")
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var p parameters
	if err := decodeResource(body, "Parameters", &p); err != nil {
		return err
	}
	el, err := parseEvaluate(&p)
	if err != nil {
		return err
	}
	out, err := s.key.Evaluate(el)
	if errors.Is(err, oprf.ErrInvalidElement) {
		return invalid("Parameters.parameter[0]", "blindedElement is not a valid P-256 element")
	}
	if err != nil {
		return err
	}
	// No patient in this record: the index cannot know whose BSN it was.
	if err := s.record(r.Context(), c, audit.Record{Action: audit.ActionExecute, Interaction: "pseudonymize", Outcome: http.StatusOK}); err != nil {
		return err
	}
	ev := base64.StdEncoding.EncodeToString(out)
	kid := s.key.ID()
	resp, _ := json.Marshal(parameters{ResourceType: "Parameters", Parameter: []parameter{
		{Name: "evaluatedElement", ValueBase64Binary: &ev},
		{Name: "keyId", ValueString: &kid},
	}})
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// metadata is the CapabilityStatement of the service.
func (s *Server) metadata(w http.ResponseWriter, _ *http.Request, _ caller) error {
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         "2026-01-01",
		"kind":         "instance",
		"fhirVersion":  "4.0.1",
		"format":       []string{"application/fhir+json"},
		"software":     map[string]string{"name": "Schakel localization (referral index)"},
		"rest": []map[string]any{{
			"mode": "server",
			"security": map[string]any{
				"description": "Mutual TLS with an UZI server certificate; the caller's URA comes from the certificate.",
			},
			"resource": []map[string]any{
				{
					"type":              "List",
					"interaction":       []map[string]string{{"code": "create"}, {"code": "read"}, {"code": "delete"}},
					"conditionalDelete": "multiple",
					"searchParam": []map[string]string{
						{"name": "subject:identifier", "type": "token"}, {"name": "code", "type": "token"},
					},
				},
				{
					"type":      "Organization",
					"operation": []map[string]string{{"name": "localize", "definition": "https://schakel.dev/fhir/OperationDefinition/Organization-localize"}},
				},
			},
			"operation": []map[string]string{{"name": "oprf-evaluate", "definition": "https://schakel.dev/fhir/OperationDefinition/oprf-evaluate"}},
		}},
	}
	b, _ := json.Marshal(cs)
	writeJSON(w, http.StatusOK, b)
	return nil
}
