// Package push implements the Twiin pattern Push (Verzenden/Ontvangen) on
// both sides. The sender's system hands its node a message; the node keeps
// it in an outbox until the receiver's node has stored it and signed a
// delivery receipt, retrying with exponential back-off and jitter, across
// restarts, until the message's lifetime ends. The receiver's node
// validates the message with the care application's rules, stores it in the
// participant's inbox before it answers, and de-duplicates by message id;
// when the receiving system has processed it, an application acknowledgement
// travels back the same way. The wire shape is FHIR messaging (STU3): a
// message Bundle POSTed to [base]/$process-message (docs/protocols.md).
package push

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/internal/faults"
)

// Statuses and kinds.
const (
	StatusQueued    = "queued"    // outbox: waiting for (another) delivery attempt
	StatusDelivered = "delivered" // outbox: the receiver stored it and signed a receipt
	StatusRefused   = "refused"   // outbox: the receiver refused it; retrying cannot help
	StatusFailed    = "failed"    // outbox: not delivered within its lifetime
	StatusReceived  = "received"  // inbox: stored, not yet processed by the receiving system
	StatusProcessed = "processed" // inbox: processed; the acknowledgement is queued to the sender

	KindMessage         = "message"
	KindAcknowledgement = "acknowledgement"

	AckAccepted = "accepted"
	AckRejected = "rejected"
)

// OAuth scope of a push token and the addressbook payload type of the
// endpoint messages are POSTed to.
const (
	Scope       = "twiin-ta-push"
	PayloadType = "Twiin-TA-push"
)

// Errors the edges translate.
var (
	ErrUnknownParticipant = errors.New("not a participant of this node")
	ErrUnknownApplication = errors.New("no push care application of that name")
	ErrNotReceived        = errors.New("the message was processed before")
)

// Application is a care application that runs on Push: the node and this
// package know it only through these methods, never by its name.
type Application interface {
	// Name is its name on the internal API and in the addressbook
	// agreements (e.g. "correspondentie").
	Name() string
	// Event is the MessageHeader.event code of its messages (system|code).
	Event() (system, code string)
	// Validate checks a payload (the resource the message's focus is) as
	// the receiver must, and names the patient; its error is a *fhir.Error.
	Validate(payload []byte) (Payload, error)
	// Consent names the consent rule that applies to a directed send of
	// it; it goes into both sides' audit records.
	Consent() string
}

// Payload is what an application's validation found in a payload.
type Payload struct {
	PatientBSN  string
	Type        string // e.g. the document's type, for the audit record
	Description string
}

// Directory resolves a partner's endpoint (the addressbook, or the
// agreement's endpoints at addressing plateau 1–2).
type Directory interface {
	Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error)
}

// Party is a participant the node sends for.
type Party struct {
	URA       string
	Name      string
	SystemUZI string
	HTTP      *http.Client // mTLS with the participant's certificate
	Signing   jwk.Key      // signs the participant's delivery receipts
}

// Event is a step of a delivery, reported as it happens.
type Event struct {
	Time    time.Time
	Tenant  string
	Message string
	Step    string
	Detail  string
	Err     error
}

// Config wires the service.
type Config struct {
	Node      string
	Store     Store
	Directory Directory
	Parties   func(ura string) (*Party, bool)
	// Token gets an access token (scope Scope) from partner's authorization
	// server for party; fresh forces a new one (the last was refused).
	Token func(ctx context.Context, party *Party, partner string, fresh bool) (string, error)
	// PartnerKeys are the keys a partner signs with (its JWKS in the
	// addressbook); receipts are verified against them.
	PartnerKeys func(ctx context.Context, ura string) (jwk.Set, error)
	// Verify checks a request's access token; PeerURA names the client
	// certificate's organisation.
	Verify  func(r *http.Request) (subject, clientID string, scopes []string, err error)
	PeerURA func(r *http.Request) (string, error)
	// Identify holds a patient named by a partner to the citizen
	// identification agreed with it (nil: the 11-proef of the
	// application's validation only).
	Identify func(ctx context.Context, tenant, partner, bsn string) error
	// Endpoint is this node's push endpoint for a participant (the
	// MessageHeader.source the receiver answers to).
	Endpoint func(tenant string) string
	Audit    audit.Log
	Events   func(Event)
	Logger   *slog.Logger
	Now      func() time.Time
	// Lifetime is how long a message may wait for delivery (default 72h);
	// RetryBase and RetryMax bound the back-off (default 1s and 10m).
	Lifetime  time.Duration
	RetryBase time.Duration
	RetryMax  time.Duration
	// Lease is how long a delivery round holds a message it claimed
	// between renewals (default 30s); it renews the lease every third of
	// that while the attempt runs, so a message whose round died (its
	// replica was killed) is claimed by another round about one lease on.
	Lease time.Duration
	// Shared says other replicas of the node work on the same Store
	// (PostgreSQL). A start then leaves the leases alone: a live replica's
	// round may hold them, and those of a replica that died run out
	// within one Lease. An unshared store's start releases every lease
	// (Resume): no other process can hold one.
	Shared bool
	// Workers deliver in parallel (default 4).
	Workers      int
	Applications []Application
	// Faults break the service on purpose in the module's own tests of the
	// validation kit (internal/faults); nil in production.
	Faults *faults.Set
}

// Service runs both sides of Push for every participant of a node.
type Service struct {
	cfg  Config
	log  *slog.Logger
	apps map[string]Application // by name
	byEv map[string]Application // by event system|code
	wake chan struct{}
	wg   sync.WaitGroup
}

// New builds the service; Start runs its delivery.
func New(cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = 72 * time.Hour
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 10 * time.Minute
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = func(Event) {}
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "push"), apps: map[string]Application{},
		byEv: map[string]Application{}, wake: make(chan struct{}, 1)}
	for _, a := range cfg.Applications {
		sys, code := a.Event()
		if _, dup := s.apps[a.Name()]; dup {
			return nil, fmt.Errorf("push: care application %q registered twice", a.Name())
		}
		s.apps[a.Name()] = a
		s.byEv[sys+"|"+code] = a
	}
	return s, nil
}

// Applications names the registered care applications.
func (s *Service) Applications() []string {
	var out []string
	for _, a := range s.cfg.Applications {
		out = append(out, a.Name())
	}
	return out
}

func (s *Service) event(tenant, msg, step, detail string, err error) {
	s.cfg.Events(Event{Time: s.cfg.Now(), Tenant: tenant, Message: msg, Step: step, Detail: detail, Err: err})
}

func (s *Service) audit(ctx context.Context, r audit.Record) error {
	if s.cfg.Audit == nil {
		return nil
	}
	r.Node = s.cfg.Node
	if r.Type == "" {
		r.Type = "push"
	}
	return s.cfg.Audit.Append(ctx, r)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
