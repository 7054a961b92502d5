// Package notifiedpull implements the Twiin TA Notified Pull (SPEC §4) on
// both sides: the sender makes a patient's data available to one receiver
// and notifies it with a Task; the receiver validates the notification, gets
// a token from the sender with the authorization base, and pulls the data.
package notifiedpull

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// OAuth scopes of the exchange.
const (
	ScopeNotify     = "twiin-ta-notification" // may POST notification Tasks
	GrantTypeJWT    = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantTypeClient = "client_credentials"
	ClaimGrant      = "twiin_grant" // access-token claim: the referral the token serves
	ClaimTask       = "twiin_task"  // access-token claim: the workflow Task
	// ApplicationBgZ names the BgZ care application; the exchange itself
	// takes its applications from Config.Applications.
	ApplicationBgZ   = "bgz"
	defaultValidity  = 7 * 24 * time.Hour
	maxResponseBytes = 32 << 20
)

// Errors of the exchange. The HTTP edges translate them once.
var (
	ErrUnknownPatient     = errors.New("patient not found")
	ErrUnknownParticipant = errors.New("not a participant of this node")
	ErrUnknownReferral    = errors.New("referral not found")
	ErrForbidden          = errors.New("not allowed by the referral")
)

// Party is a participant this node acts for, as the exchange needs it.
type Party struct {
	URA       string
	Name      string
	SystemUZI string       // UZI number of the participant's system, requester.agent
	HTTP      *http.Client // mTLS client presenting this participant's certificate
	OAuth     *oauth.Client
}

// Directory resolves a partner's endpoint (the addressbook client).
type Directory interface {
	Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error)
}

// Addressbook payload types the exchange looks up.
const (
	PayloadNotification = "Twiin-TA-notification"
	PayloadAuthServer   = "oauth-authorization-server"
	// PayloadBgZServer is BgZ's data endpoint; the exchange asks each
	// application for its own (careapp.QuerySet.ServerPayloadType).
	PayloadBgZServer = "http://nictiz.nl/fhir/CapabilityStatement/bgz2017-servercapabilities"
)

// Event is one step of an exchange, reported as it happens.
type Event struct {
	Time     time.Time
	Node     string
	Tenant   string
	Referral string
	Step     string
	Detail   string
	Err      error
}

// Config wires the service.
type Config struct {
	Node string
	// Applications are the care applications this node refers and pulls
	// for: those of the registry that run on Notified Pull. Nil: none.
	Applications *careapp.Registry
	DB           *DB
	Store        store.Store // the node's STU3 store
	// DataStore is the store pulled data of a care application of FHIR
	// version v is kept in (the node's R4 store for an R4 application);
	// nil, or nil for v: Store.
	DataStore func(v fhir.Version) store.Store
	Directory Directory
	Parties   func(ura string) (*Party, bool)
	// FHIRBase is the public STU3 FHIR base of a tenant on this node.
	FHIRBase func(tenant string) string
	// Issuer is this node's authorization server issuer (public base URL).
	Issuer   string
	PeerURA  func(r *http.Request) (string, error)
	Verify   func(r *http.Request, audience string) (*oauth.AccessToken, error)
	Audit    audit.Log
	Events   func(Event)
	Logger   *slog.Logger
	Now      func() time.Time
	Validity time.Duration
	// Lease is how long a pull worker holds a notification between
	// renewals (default DefaultLease). The worker renews it every third
	// of that while it pulls, so a slow pull keeps it; a worker that
	// stopped (its replica died) leaves the notification to another
	// worker within about one lease.
	Lease   time.Duration
	Workers int
	// Holding, when set, is told that a participant holds data of a patient
	// for a care application: the sender when it makes data available, the
	// receiver once it stored what it pulled (for the referral index).
	Holding func(ctx context.Context, h Holding)
	// Present builds the user (or system) part of the receiver's grant
	// assertion for the authentication plateau agreed with the sender;
	// nil presents at plateau 1.
	Present plateau.PresentFunc
	// NeedsUser reports whether a notification from sender to tenant waits
	// for a user to accept it (Accept) before the pull: the agreement asks
	// for user authentication and allows no system identity. Nil: never.
	NeedsUser func(tenant, sender string) bool
	// Identify, when set, holds a step that names a patient to a partner
	// to the citizen identification agreed with it: the sender before it
	// refers, the receiver before it accepts a notification. Its error
	// (a *fhir.Error) refuses the step.
	Identify func(ctx context.Context, c IdentityCheck) error
	// Faults breaks the service on purpose; only the module's tests set it
	// (internal/faults), to prove the validation kit catches each defect.
	Faults *faults.Set
	// Tracer spans each pull; none when nil.
	Tracer trace.Tracer
}

// IdentityCheck is a patient named to (or by) a partner in one step.
type IdentityCheck struct {
	Tenant     string // the participant
	PartnerURA string // the receiver (refer) or the sender (notification)
	PatientBSN string
	BirthDate  string // as the participant's record gives it; empty when unknown
	Step       string // "refer" or "notification"
}

// Holding is a participant's holding of a patient's data for a care
// application.
type Holding struct {
	Tenant      string // the participant's URA
	PatientBSN  string
	BirthDate   string // the patient's birth date (FHIR date) as the data gives it; empty when it does not
	Application string
}

// Service runs both sides of the Notified Pull for every participant of a node.
type Service struct {
	tokens   sync.Map // reusable notification tokens, by party|partner|scope
	metadata sync.Map // partners' token endpoints, by issuer
	// applying holds, by grant id, a channel closed once the status change
	// a first data token started is written (startInProgress, settle).
	applying sync.Map
	cfg      Config
	log      *slog.Logger
	queue    chan pullJob
	wg       sync.WaitGroup
	// process names this process in its pulls' leases (host/pid), so
	// that an operator sees which replica holds a pull.
	process string
}

// pullJob is one pull to run. trace is the context of the request that
// queued it (the notification, or the user's acceptance): the pull runs
// later, on a worker, and continues that trace so that the exchange is
// one trace across both nodes. A pull resumed at start has none and
// starts its own.
type pullJob struct {
	tenant, id string
	trace      trace.SpanContext
}

// New builds the service; Start runs its pull workers.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Validity == 0 {
		cfg.Validity = defaultValidity
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = func(Event) {}
	}
	if cfg.Present == nil {
		var none *plateau.Enforcer
		cfg.Present = func(ctx context.Context, from, partner, aud string, c *plateau.Caller) (plateau.Presentation, error) {
			return none.Present(ctx, nil, from, partner, aud, c)
		}
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if cfg.NeedsUser == nil {
		cfg.NeedsUser = func(string, string) bool { return false }
	}
	host, _ := os.Hostname()
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "notifiedpull"), queue: make(chan pullJob, 1024),
		process: fmt.Sprintf("%s/%d", host, os.Getpid())}
}

// Start runs the pull workers until ctx ends, and resumes every accepted
// notification whose pull had not finished (nothing accepted is lost) and
// every completion the sender had not yet taken.
func (s *Service) Start(ctx context.Context) error {
	for i := 0; i < s.cfg.Workers; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-s.queue:
					jctx, span := s.cfg.Tracer.Start(trace.ContextWithSpanContext(ctx, j.trace), "notifiedpull.pull")
					s.pull(jctx, j.tenant, j.id)
					span.End()
				}
			}
		}()
	}
	pending, err := s.cfg.DB.receivedList(ctx, "")
	if err != nil {
		return fmt.Errorf("resume pulls: %w", err)
	}
	for _, r := range pending {
		if !Final(r.Status) && !r.Awaiting && r.Decision != DecisionPending {
			s.enqueue(ctx, r.Tenant, r.ID)
		}
		if r.ReportPending {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.resumeReport(ctx, r)
			}()
		}
	}
	// Pulls another replica left unfinished (it stopped, its lease ran
	// out) are taken up here without waiting for this one to restart.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(s.resumeInterval())
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due, err := s.cfg.DB.unfinishedPulls(ctx, s.cfg.Now())
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("resume pulls", "err", err)
				}
				continue
			}
			for _, p := range due {
				if p.heldBy != "" {
					s.log.Info("pull taken over: the worker holding it stopped renewing its lease",
						"referral", p.id, "tenant", p.tenant, "previous_owner", p.heldBy)
				}
				s.enqueue(ctx, p.tenant, p.id)
			}
			// Completion reports a worker that stopped was making.
			orphans, err := s.cfg.DB.orphanedReports(ctx, s.cfg.Now())
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("resume completion reports", "err", err)
				}
				continue
			}
			for _, r := range orphans {
				s.log.Info("completion report taken over: the worker sending it stopped renewing its lease",
					"referral", r.ID, "tenant", r.Tenant)
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.resumeReport(ctx, r)
				}()
			}
		}
	}()
	return nil
}

// DefaultLease is a pull worker's lease on a notification when
// Config.Lease is not set.
const DefaultLease = 30 * time.Second

// leaseOwner is a new pull's token in its lease: the process's name and a
// random part of the pull's own (host/pid/uuid).
func (s *Service) leaseOwner() string { return s.process + "/" + newUUID() }

// renewInterval is how often a pull worker renews its lease: three
// renewals fit in one lease, so one that fails or is late does not lose it.
func (s *Service) renewInterval() time.Duration { return s.cfg.Lease / 3 }

// resumeInterval is how often unfinished pulls no worker holds are looked
// for: a pull whose worker stopped is taken up within a lease and a
// quarter of the worker's last renewal.
func (s *Service) resumeInterval() time.Duration { return s.cfg.Lease / 4 }

// Wait blocks until the workers have stopped (after the Start context ended).
func (s *Service) Wait() { s.wg.Wait() }

func (s *Service) enqueue(ctx context.Context, tenant, id string) {
	select {
	case s.queue <- pullJob{tenant, id, trace.SpanContextFromContext(ctx)}:
	default:
		// Full queue: the row stays pending; the next look for unfinished
		// pulls (every quarter lease) or the next start takes it up.
		s.log.Warn("pull queue full; the notification waits for the next look for unfinished pulls", "referral", id)
	}
}

func (s *Service) event(tenant, referral, step, detail string, err error) {
	s.cfg.Events(Event{Time: s.cfg.Now(), Node: s.cfg.Node, Tenant: tenant, Referral: referral, Step: step, Detail: detail, Err: err})
}

func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// ReferRequest is the participant system's request to make a patient's data
// available to another organisation.
type ReferRequest struct {
	PatientBSN  string `json:"patient"`
	ReceiverURA string `json:"receiver"`
	// Application is the care application (default: the first one on
	// Notified Pull the node registered, "bgz").
	Application string `json:"application"`
	Description string `json:"description,omitempty"`
	// Task is the code of the kind of workflow Task, for an application
	// with several (careapp.Workflow.WorkflowTasks); default its first.
	Task string `json:"task,omitempty"`
	// Reads are single resources ("Type/id" in the participant's record)
	// the receiver may read besides the application's searches, each a
	// workflow Task input of its own.
	Reads []string `json:"reads,omitempty"`
}

// Refer runs the sender side: workflow Task, grant, notification (SPEC §4 steps 1–2).
func (s *Service) Refer(ctx context.Context, tenant string, req ReferRequest) (Grant, error) {
	return s.refer(ctx, tenant, req, nil)
}

// refer is Refer; with prev, the referral is an update of prev: it keeps
// prev's group, and prev's grant ends once the new grant is stored.
func (s *Service) refer(ctx context.Context, tenant string, req ReferRequest, prev *Grant) (Grant, error) {
	party, ok := s.cfg.Parties(tenant)
	if !ok {
		return Grant{}, fmt.Errorf("%w: %s", ErrUnknownParticipant, tenant)
	}
	if req.Application == "" {
		if apps := s.cfg.Applications.On(careapp.NotifiedPull); len(apps) > 0 {
			req.Application = apps[0].Name()
		}
	}
	app, err := s.cfg.Applications.Workflow(req.Application)
	if err != nil {
		return Grant{}, fhir.Errorf(http.StatusBadRequest, "not-supported", "%v", err)
	}
	if err := nl.ValidateBSN(req.PatientBSN); err != nil {
		return Grant{}, fhir.Errorf(http.StatusBadRequest, "value", "patient: %v", err)
	}
	if err := nl.ValidateURA(req.ReceiverURA); err != nil {
		return Grant{}, fhir.Errorf(http.StatusBadRequest, "value", "receiver: %v", err)
	}
	// The receiver must be reachable before anything is created: a receiver
	// no addressbook lists is the participant's mistake, not a failed exchange.
	if _, err := s.cfg.Directory.Endpoint(ctx, req.ReceiverURA, PayloadNotification, "3.0"); err != nil {
		if errors.Is(err, addressbook.ErrNotFound) {
			// The error names where the node looked (the addressing plateau
			// agreed with the receiver); it holds no internal detail.
			return Grant{}, fhir.Errorf(http.StatusUnprocessableEntity, "not-found",
				"receiver %s has no notification endpoint: %v", req.ReceiverURA, err)
		}
		return Grant{}, fmt.Errorf("find receiver's notification endpoint: %w", err)
	}
	page, err := s.cfg.Store.Search(ctx, tenant, store.Query{Type: "Patient", Params: url.Values{"identifier": {nl.SystemBSN + "|" + req.PatientBSN}}})
	if err != nil {
		return Grant{}, fmt.Errorf("find patient: %w", err)
	}
	if len(page.Matches) == 0 {
		return Grant{}, fhir.Errorf(http.StatusNotFound, "not-found", "no patient with this BSN in the participant's record")
	}
	patientID := page.Matches[0].ID
	_, born, _ := nl.Patient(page.Matches[0].Body)
	if s.cfg.Identify != nil {
		if err := s.cfg.Identify(ctx, IdentityCheck{Tenant: tenant, PartnerURA: req.ReceiverURA, PatientBSN: req.PatientBSN,
			BirthDate: born, Step: "refer"}); err != nil {
			return Grant{}, err
		}
	}
	now := s.cfg.Now()
	expires := now.Add(s.cfg.Validity)
	id := "urn:uuid:" + newUUID()
	group := id
	if prev != nil {
		group = prev.Group
	}
	secret := newSecret()

	inputs, queries, err := s.workflowInputs(ctx, tenant, app, req)
	if err != nil {
		return Grant{}, err
	}
	kind, err := taskKind(app, req.Task)
	if err != nil {
		return Grant{}, err
	}
	wf := BuildWorkflowTask(WorkflowSpec{
		Identifier: id, PatientID: patientID, PatientBSN: req.PatientBSN,
		SenderURA: tenant, SenderName: party.Name, SenderSystem: party.SystemUZI,
		ReceiverURA: req.ReceiverURA, Profile: kind.Profile, Code: coding(kind.Code),
		Expires: expires, Authored: now, Inputs: inputs,
	})
	wfRes, err := s.cfg.Store.Create(ctx, tenant, wf)
	if err != nil {
		return Grant{}, fmt.Errorf("store workflow Task: %w", err)
	}
	g := Grant{ID: id, Group: group, Tenant: tenant, ReceiverURA: req.ReceiverURA, PatientBSN: req.PatientBSN, WorkflowTask: wfRes.ID,
		AuthBaseHash: hashSecret(secret), Application: req.Application, Queries: queries, Expires: expires,
		Status: StatusRequested, Created: now, Updated: now}
	if err := s.cfg.DB.insertGrant(ctx, g); err != nil {
		return Grant{}, fmt.Errorf("store grant: %w", err)
	}
	// The record becomes durable while the receiver is notified; Refer
	// returns only after both.
	audited := s.background(func() error {
		s.audit(ctx, audit.Record{Action: audit.ActionCreate, Interaction: "refer", Outcome: http.StatusCreated, Tenant: tenant,
			ActorURA: tenant, ActorSystem: party.SystemUZI, Patient: req.PatientBSN, Types: []string{"Task"},
			Resources: []string{"Task/" + wfRes.ID}, Task: id})
		return nil
	})
	defer func() { <-audited }()
	s.event(tenant, id, "workflow-task", fmt.Sprintf("workflow Task/%s created with %d queries for receiver %s", wfRes.ID, len(inputs), req.ReceiverURA), nil)

	notification := NotificationSpec{Identifier: id, GroupIdentifier: group, PatientBSN: req.PatientBSN, SenderURA: tenant,
		SenderName: party.Name, SenderSystem: party.SystemUZI, ReceiverURA: req.ReceiverURA,
		WorkflowTask: s.cfg.FHIRBase(tenant) + "/Task/" + wfRes.ID, AuthBase: secret, Expires: expires, Authored: now,
		Description: req.Description}
	taskURL, err := s.notify(ctx, party, req.ReceiverURA, http.MethodPost, "", BuildNotification(notification))
	if err != nil {
		s.fail(ctx, g, err)
		return g, err
	}
	_ = s.cfg.DB.setGrantNotificationURL(ctx, g.ID, taskURL)
	if prev != nil {
		// The receiver took the new notification (and superseded the
		// earlier one); the earlier grant ends now, so that only the
		// newest referral can be pulled. Had the notification failed,
		// the earlier referral would have stood.
		s.settle(prev.ID)
		if err := s.cfg.DB.setGrantStatus(ctx, prev.ID, StatusCancelled, "superseded by "+id, s.cfg.Now()); err != nil {
			return Grant{}, fmt.Errorf("end the superseded grant: %w", err)
		}
		s.setWorkflowStatus(ctx, tenant, prev.WorkflowTask, StatusCancelled)
		s.event(tenant, prev.ID, "superseded", fmt.Sprintf("referral superseded by %s; tokens for it are refused from now on", id), nil)
	}
	if s.cfg.Holding != nil {
		s.cfg.Holding(ctx, Holding{Tenant: tenant, PatientBSN: req.PatientBSN, BirthDate: born, Application: req.Application})
	}
	return s.cfg.DB.grant(ctx, tenant, g.ID)
}

// workflowInputs are a referral's workflow Task inputs and the normalised
// forms its grant allows: the application's queries for the patient, then
// the single resources the request names, each of which must be in the
// participant's record.
func (s *Service) workflowInputs(ctx context.Context, tenant string, app careapp.Workflow, req ReferRequest) ([]WorkflowInput, []string, error) {
	var inputs []WorkflowInput
	var allowed []string
	for _, q := range app.Queries(req.PatientBSN) {
		in := WorkflowInput{System: q.Code.System, Code: q.Code.Code, Display: q.Name, Query: q.Search, Reference: q.Read}
		n, err := allowedForm(app, in)
		if err != nil {
			return nil, nil, fmt.Errorf("care application %s: %s: %w", app.Name(), q.Name, err)
		}
		inputs = append(inputs, in)
		allowed = append(allowed, n)
	}
	for i, r := range req.Reads {
		typ, id, err := ParseRead(r)
		if err != nil {
			return nil, nil, fhir.Errorf(http.StatusBadRequest, "value", "reads[%d]: %v", i, err)
		}
		res, err := s.cfg.Store.Read(ctx, tenant, typ, id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
				return nil, nil, fhir.Errorf(http.StatusUnprocessableEntity, "not-found", "reads[%d]: %s is not in the participant's record", i, r)
			}
			return nil, nil, fmt.Errorf("reads[%d]: %w", i, err)
		}
		in := WorkflowInput{System: SystemResourceTypes, Code: typ, Display: typ, Reference: typ + "/" + id}
		if t, ok := app.(careapp.Transfer); ok {
			// The application types the input by what the resource is,
			// and refuses one it cannot carry.
			c, err := t.ReadInput(res.Body)
			if err != nil {
				var fe *fhir.Error
				if errors.As(err, &fe) {
					return nil, nil, err
				}
				return nil, nil, fhir.Errorf(http.StatusUnprocessableEntity, "invalid", "reads[%d]: %s: %v", i, r, err)
			}
			in.System, in.Code, in.Display = c.System, c.Code, c.Display
			if t.DocumentOperation(typ) != "" {
				// What the document references is readable on its own.
				refs, err := s.documentReads(ctx, tenant, res.Body)
				if err != nil {
					return nil, nil, fmt.Errorf("reads[%d]: %w", i, err)
				}
				for _, ref := range refs {
					if !slices.Contains(allowed, ref) {
						allowed = append(allowed, ref)
					}
				}
			}
		}
		inputs = append(inputs, in)
		allowed = append(allowed, typ+"/"+id)
	}
	return inputs, allowed, nil
}

// allowedForm is the form of a workflow input a grant keeps: a search
// normalised by its application, or a read's "Type/id".
func allowedForm(app careapp.QuerySet, in WorkflowInput) (string, error) {
	if in.Reference != "" {
		typ, id, err := ParseRead(in.Reference)
		if err != nil {
			return "", err
		}
		return typ + "/" + id, nil
	}
	return app.Normalize(in.Query)
}

// taskKind is the kind of workflow Task with this code among the
// application's; its first when code is empty.
func taskKind(app careapp.Workflow, code string) (careapp.TaskKind, error) {
	kinds := app.WorkflowTasks()
	if len(kinds) == 0 {
		return careapp.TaskKind{}, fmt.Errorf("care application %s has no workflow Task", app.Name())
	}
	if code == "" {
		return kinds[0], nil
	}
	var codes []string
	for _, k := range kinds {
		if k.Code.Code == code {
			return k, nil
		}
		codes = append(codes, k.Code.Code)
	}
	return careapp.TaskKind{}, fhir.Errorf(http.StatusBadRequest, "not-supported", "task: care application %s refers with workflow Task codes %s, not %q",
		app.Name(), strings.Join(codes, ", "), code)
}

// ErrReferralEnded refuses the update of a referral that was withdrawn,
// failed or refused: there is nothing left to supersede.
var ErrReferralEnded = errors.New("referral has ended")

// Update announces a changed data set of a referral (TA Notified Pull): a
// new workflow Task and grant with a fresh authorization base, and a new
// notification with the same groupIdentifier, which supersedes the earlier
// one at the receiver. The earlier grant ends (cancelled, "superseded by
// <new id>"). The update is made for the same patient, receiver, care
// application and single-resource reads; description, when given,
// replaces the earlier one.
func (s *Service) Update(ctx context.Context, tenant, id, description string) (Grant, error) {
	prev, err := s.cfg.DB.grant(ctx, tenant, id)
	if errors.Is(err, errNoRow) {
		return Grant{}, fmt.Errorf("%w: %s", ErrUnknownReferral, id)
	}
	if err != nil {
		return Grant{}, err
	}
	s.settle(prev.ID)
	if prev, err = s.cfg.DB.grant(ctx, tenant, id); err != nil {
		return Grant{}, err
	}
	switch prev.Status {
	case StatusCancelled, StatusFailed, StatusRejected:
		e := fhir.Errorf(http.StatusConflict, "conflict", "referral %s is %s (%s) and cannot be updated; make a new referral", id, prev.Status, prev.StatusReason)
		e.Cause = ErrReferralEnded
		return Grant{}, e
	}
	req := ReferRequest{PatientBSN: prev.PatientBSN, ReceiverURA: prev.ReceiverURA, Application: prev.Application, Description: description}
	// The same kind of workflow Task as before.
	if wf, err := s.cfg.Store.Read(ctx, tenant, "Task", prev.WorkflowTask); err == nil {
		var t task
		if json.Unmarshal(wf.Body, &t) == nil && t.Code != nil && len(t.Code.Coding) > 0 {
			req.Task = t.Code.Coding[0].Code
		}
	}
	for _, q := range prev.Queries {
		if typ, rid, err := ParseRead(q); err == nil {
			req.Reads = append(req.Reads, typ+"/"+rid)
		}
	}
	return s.refer(ctx, tenant, req, &prev)
}

// notify delivers a notification Task to the receiver's Task endpoint with a
// token from the receiver's authorization server; it returns the endpoint URL.
func (s *Service) notify(ctx context.Context, party *Party, receiverURA, method, query string, body []byte) (string, error) {
	taskURL, err := s.cfg.Directory.Endpoint(ctx, receiverURA, PayloadNotification, "3.0")
	if err != nil {
		return "", fmt.Errorf("find receiver's notification endpoint: %w", err)
	}
	s.event(party.URA, "", "resolve", fmt.Sprintf("addressbook: %s receives notifications at %s", receiverURA, taskURL), nil)
	target := taskURL
	if query != "" {
		target += "?" + query
	}
	var status string
	for attempt := 0; ; attempt++ {
		tok, err := s.token(ctx, party, receiverURA, oauth.TokenRequest{GrantType: GrantTypeClient, Scope: []string{ScopeNotify}}, nil)
		if err != nil {
			return "", fmt.Errorf("token for notification: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, method, target, bytesReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/fhir+json; fhirVersion=3.0")
		req.Header.Set("Accept", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := party.HTTP.Do(req)
		if err != nil {
			return "", fmt.Errorf("deliver notification: %w", err)
		}
		answer, _ := readLimited(resp, 1<<20)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			// A reused token the receiver no longer accepts (its keys
			// rotated, or it restarted): get a fresh one, once.
			s.forgetToken(party.URA, receiverURA, ScopeNotify)
			continue
		}
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("receiver refused the notification: %s: %s", resp.Status, outcomeText(answer))
		}
		status = resp.Status
		break
	}
	s.event(party.URA, "", "notify", fmt.Sprintf("%s %s → %s", method, taskURL, status), nil)
	return taskURL, nil
}

// token gets an access token from a partner's authorization server. With
// a caller, the grant assertion carries what the authentication plateau
// agreed with the partner asks of it (Config.Present).
func (s *Service) token(ctx context.Context, party *Party, partnerURA string, req oauth.TokenRequest, caller *plateau.Caller) (*oauth.Token, error) {
	// A notification token carries no referral: it is reused until shortly
	// before it expires, as any OAuth client does. Pull tokens are not.
	reusable := req.GrantType == GrantTypeClient
	key := party.URA + "|" + partnerURA + "|" + strings.Join(req.Scope, " ")
	if reusable {
		if c, ok := s.tokens.Load(key); ok && s.cfg.Now().Before(c.(cachedToken).until) {
			return c.(cachedToken).tok, nil
		}
	}
	issuer, err := s.cfg.Directory.Endpoint(ctx, partnerURA, PayloadAuthServer, "")
	if err != nil {
		return nil, fmt.Errorf("find authorization server of %s: %w", partnerURA, err)
	}
	tokenEndpoint, err := s.tokenEndpoint(ctx, party, issuer)
	if err != nil {
		return nil, err
	}
	if caller != nil {
		pres, err := s.cfg.Present(ctx, party.URA, partnerURA, tokenEndpoint, caller)
		if err != nil {
			return nil, err
		}
		req.AssertionClaims, req.UserIdentity = pres.Claims, pres.UserIdentity
	}
	tok, err := party.OAuth.Token(ctx, tokenEndpoint, req)
	if err != nil {
		return nil, err
	}
	if reusable && tok.ExpiresIn > 60 {
		s.tokens.Store(key, cachedToken{tok: tok, until: s.cfg.Now().Add(time.Duration(tok.ExpiresIn-30) * time.Second)})
	}
	s.event(party.URA, "", "token", fmt.Sprintf("access token from %s (grant %s, scope %s, %ds)", tokenEndpoint, shortGrant(req.GrantType), tok.Scope, tok.ExpiresIn), nil)
	return tok, nil
}

// forgetToken drops a reused token the partner refused.
func (s *Service) forgetToken(partyURA, partnerURA string, scope ...string) {
	s.tokens.Delete(partyURA + "|" + partnerURA + "|" + strings.Join(scope, " "))
}

type cachedToken struct {
	tok   *oauth.Token
	until time.Time
}

// tokenEndpoint reads a partner's RFC 8414 metadata, kept for a few minutes.
func (s *Service) tokenEndpoint(ctx context.Context, party *Party, issuer string) (string, error) {
	if c, ok := s.metadata.Load(issuer); ok && s.cfg.Now().Before(c.(cachedEndpoint).until) {
		return c.(cachedEndpoint).endpoint, nil
	}
	md, err := party.OAuth.Metadata(ctx, issuer)
	if err != nil {
		return "", err
	}
	s.metadata.Store(issuer, cachedEndpoint{endpoint: md.TokenEndpoint, until: s.cfg.Now().Add(5 * time.Minute)})
	return md.TokenEndpoint, nil
}

type cachedEndpoint struct {
	endpoint string
	until    time.Time
}

func shortGrant(g string) string {
	if g == GrantTypeJWT {
		return "jwt-bearer"
	}
	return g
}

func (s *Service) fail(ctx context.Context, g Grant, cause error) {
	now := s.cfg.Now()
	_ = s.cfg.DB.setGrantStatus(ctx, g.ID, StatusFailed, cause.Error(), now)
	s.setWorkflowStatus(ctx, g.Tenant, g.WorkflowTask, StatusFailed)
	s.event(g.Tenant, g.ID, "failed", "", cause)
}

func (s *Service) setWorkflowStatus(ctx context.Context, tenant, taskID, status string) {
	cur, err := s.cfg.Store.Read(ctx, tenant, "Task", taskID)
	if err != nil {
		s.log.Error("read workflow Task", "task", taskID, "err", err)
		return
	}
	body, err := SetStatus(cur.Body, status)
	if err == nil {
		_, _, err = s.cfg.Store.Update(ctx, tenant, body, "")
	}
	if err != nil {
		s.log.Error("update workflow Task status", "task", taskID, "err", err)
	}
}

// Cancel withdraws a referral: the grant ends, the workflow Task is cancelled,
// and the receiver's notification Task is set to cancelled by a conditional update.
func (s *Service) Cancel(ctx context.Context, tenant, id string) (Grant, error) {
	party, ok := s.cfg.Parties(tenant)
	if !ok {
		return Grant{}, fmt.Errorf("%w: %s", ErrUnknownParticipant, tenant)
	}
	g, err := s.cfg.DB.grant(ctx, tenant, id)
	if errors.Is(err, errNoRow) {
		return Grant{}, fmt.Errorf("%w: %s", ErrUnknownReferral, id)
	}
	if err != nil {
		return Grant{}, err
	}
	s.settle(g.ID) // a pull starting now must not move it back to in-progress
	now := s.cfg.Now()
	if err := s.cfg.DB.setGrantStatus(ctx, g.ID, StatusCancelled, "withdrawn by the sender", now); err != nil {
		return Grant{}, err
	}
	s.setWorkflowStatus(ctx, tenant, g.WorkflowTask, StatusCancelled)
	s.event(tenant, id, "cancel", "referral withdrawn; tokens for it are refused from now on", nil)
	body := BuildNotification(NotificationSpec{Identifier: g.ID, GroupIdentifier: g.ID, PatientBSN: g.PatientBSN,
		SenderURA: tenant, SenderName: party.Name, SenderSystem: party.SystemUZI, ReceiverURA: g.ReceiverURA,
		WorkflowTask: s.cfg.FHIRBase(tenant) + "/Task/" + g.WorkflowTask, Expires: g.Expires, Authored: g.Created})
	body, _ = SetStatus(body, StatusCancelled)
	q := url.Values{"identifier": {SystemRFC3986 + "|" + g.ID}}.Encode()
	if _, err := s.notify(ctx, party, g.ReceiverURA, http.MethodPut, q, body); err != nil {
		// The grant is cancelled regardless: the receiver can no longer pull.
		s.log.Warn("receiver not told of the cancellation", "referral", g.ID, "err", err)
	}
	return s.cfg.DB.grant(ctx, tenant, id)
}

// Sent lists the referrals a participant made.
func (s *Service) Sent(ctx context.Context, tenant string) ([]Grant, error) {
	return s.cfg.DB.grants(ctx, tenant)
}

// SentOne returns one referral a participant made.
func (s *Service) SentOne(ctx context.Context, tenant, id string) (Grant, error) {
	g, err := s.cfg.DB.grant(ctx, tenant, id)
	if errors.Is(err, errNoRow) {
		return g, fmt.Errorf("%w: %s", ErrUnknownReferral, id)
	}
	return g, err
}

// Received lists the notifications a participant received.
func (s *Service) Received(ctx context.Context, tenant string) ([]Received, error) {
	return s.cfg.DB.receivedList(ctx, tenant)
}

// ReceivedOne returns one received notification.
func (s *Service) ReceivedOne(ctx context.Context, tenant, id string) (Received, error) {
	r, err := s.cfg.DB.received(ctx, tenant, id)
	if errors.Is(err, errNoRow) {
		return r, fmt.Errorf("%w: %s", ErrUnknownReferral, id)
	}
	return r, err
}

// ResolveGrant is the authorization server's decision on a token request
// (oauth.GrantResolver): notification tokens for any authenticated partner,
// data tokens only against a valid authorization base (SPEC §4 step 4).
func (s *Service) ResolveGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	g, apply, err := s.BeginGrant(ctx, req)
	if err == nil {
		apply()
		if id, ok := g.Claims[ClaimGrant].(string); ok {
			s.settle(id)
		}
	}
	return g, err
}

// BeginGrant decides like ResolveGrant but leaves the exchange's status
// change (a first data token moves the referral and its workflow Task to
// in-progress) to apply, which the caller must call before the token
// leaves. apply only starts the writes: the token need not wait for them,
// and every data request and status report under the referral waits for
// them before it is served (settle). apply is never nil.
func (s *Service) BeginGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, func(), error) {
	none := func() {}
	switch req.GrantType {
	case GrantTypeClient:
		if len(req.Scope) != 1 || req.Scope[0] != ScopeNotify {
			return oauth.Grant{}, none, fmt.Errorf("%w: client_credentials grants only scope %s", oauth.ErrInvalidScope, ScopeNotify)
		}
		return oauth.Grant{Audience: s.cfg.Issuer, Scope: []string{ScopeNotify}, Subject: req.ClientID}, none, nil
	case GrantTypeJWT:
		if req.AuthorizationBase == "" {
			return oauth.Grant{}, none, fmt.Errorf("%w: authorization_base is required", oauth.ErrInvalidGrant)
		}
		g, err := s.cfg.DB.grantByHash(ctx, hashSecret(req.AuthorizationBase))
		if errors.Is(err, errNoRow) {
			return oauth.Grant{}, none, fmt.Errorf("%w: unknown authorization_base", oauth.ErrInvalidGrant)
		}
		if err != nil {
			return oauth.Grant{}, none, err
		}
		if g.ReceiverURA != req.ClientID {
			return oauth.Grant{}, none, fmt.Errorf("%w: authorization_base was not issued to this client", oauth.ErrInvalidGrant)
		}
		if g.Status == StatusCancelled || g.Status == StatusFailed || g.Status == StatusRejected {
			return oauth.Grant{}, none, fmt.Errorf("%w: the referral is %s", oauth.ErrInvalidGrant, g.Status)
		}
		if !s.cfg.Now().Before(g.Expires) {
			return oauth.Grant{}, none, fmt.Errorf("%w: the referral has expired", oauth.ErrInvalidGrant)
		}
		apply := func() {
			if g.Status == StatusRequested {
				s.startInProgress(ctx, g)
			}
			s.event(g.Tenant, g.ID, "grant", fmt.Sprintf("authorization_base accepted: %s may pull until %s", req.ClientID, g.Expires.Format(time.RFC3339)), nil)
		}
		return oauth.Grant{
			Audience: s.cfg.FHIRBase(g.Tenant),
			Scope:    []string{g.Application},
			Subject:  req.ClientID,
			Claims:   map[string]any{ClaimGrant: g.ID, ClaimTask: "Task/" + g.WorkflowTask},
			NotAfter: g.Expires,
		}, apply, nil
	}
	return oauth.Grant{}, none, fmt.Errorf("%w: grant type %s", oauth.ErrInvalidGrant, req.GrantType)
}

// startInProgress moves a referral and its workflow Task to in-progress
// beside the token that starts the pull (the writes are no part of the
// token's answer); settle waits for them. A crash between the two leaves
// the referral at requested, which the next status change moves on.
func (s *Service) startInProgress(ctx context.Context, g Grant) {
	done := make(chan struct{})
	if _, busy := s.applying.LoadOrStore(g.ID, done); busy {
		return
	}
	ctx = context.WithoutCancel(ctx) // the token's request ends before the writes
	go func() {
		defer func() {
			s.applying.Delete(g.ID)
			close(done)
		}()
		// Two stores, independent of each other.
		written := s.background(func() error { return s.cfg.DB.setGrantStatus(ctx, g.ID, StatusInProgress, "", s.cfg.Now()) })
		if _, isT := s.transferOf(g.Application); !isT {
			// A Transfer's workflow Task is the receiver's to move:
			// it stays requested until the receiver decides.
			s.setWorkflowStatus(ctx, g.Tenant, g.WorkflowTask, StatusInProgress)
		}
		if err := <-written; err != nil {
			s.log.Error("referral status in-progress not written", "referral", g.ID, "err", err)
		}
	}()
}

// settle waits until the status change a token for referral id started
// (startInProgress) is written, so what follows reads it and is not
// overwritten by it.
func (s *Service) settle(id string) {
	if ch, ok := s.applying.Load(id); ok {
		<-ch.(chan struct{})
	}
}

func (s *Service) audit(ctx context.Context, r audit.Record) {
	if s.cfg.Audit == nil {
		return
	}
	if err := s.cfg.Audit.Append(ctx, r); err != nil {
		s.log.Error("audit append failed", "interaction", r.Interaction, "err", err)
	}
}

func outcomeText(body []byte) string {
	var oo struct {
		ResourceType string
		Issue        []struct{ Diagnostics string }
		Error        string `json:"error"`
		Description  string `json:"error_description"`
	}
	if json.Unmarshal(body, &oo) == nil {
		if len(oo.Issue) > 0 {
			return oo.Issue[0].Diagnostics
		}
		if oo.Error != "" {
			return oo.Error + ": " + oo.Description
		}
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return string(body)
}
