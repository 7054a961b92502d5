// Package audit keeps the node's NEN 7513 log: one record for every access
// to patient data and every refusal, in its own append-only store, never the
// application log. Records are hash-chained and the chain is anchored by
// signed checkpoints, so changes, removals, insertions and reorderings are
// detectable (Verify). Append returns only once the record is durable;
// concurrent Appends share one transaction (group commit). The design and
// threat model are in docs/audit.md.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/pki"
)

// Actions, as FHIR AuditEvent.action.
const (
	ActionCreate  = "C"
	ActionRead    = "R"
	ActionUpdate  = "U"
	ActionDelete  = "D"
	ActionExecute = "E"
)

// ErrUnavailable is returned (wrapped) by Append when the record could not be
// made durable: the store is full, read-only, broken or closed. The node
// refuses the data access on this error: no access without an audit record.
var ErrUnavailable = errors.New("audit store unavailable")

// Record is one audited event: who did what to whose data, when, under which
// protocols, and with what outcome.
type Record struct {
	Seq int64 // position in the chain; set by the store, ignored by Append

	// Event.
	EventID     string    // set by Append when empty
	Time        time.Time // set by Append when zero
	Action      string    // C R U D E
	Type        string    // event type: "rest" for FHIR interactions (the default then), else e.g. "notify", "token"
	Interaction string    // subtype: read, search-type, notify, token, refer, pull, access, ...
	Outcome     int       // HTTP status the requester got
	OutcomeText string    // the reason given for a refusal

	// Source: where the event was recorded.
	Node   string
	Tenant string // URA of the participant whose data was touched

	// User: the requesting party.
	ActorURA     string // requesting organisation
	ActorSystem  string // requesting system (UZI system number or client id)
	ActorUser    string // requesting user (UZI/Dezi number), when known
	ActorAltID   string // the user's alternate id (e.g. local account), when known
	ActorName    string // the user's name, when known
	ActorRole    string // user's role code (UZI role code), when known
	PurposeOfUse string // e.g. TREAT (v3 ActReason)
	NotRequestor bool   // the user did not initiate the event (e.g. a job on their behalf)
	Address      string // network address of the requester

	// Objects.
	Patient     string // BSN
	Types       []string
	Resources   []string // Type/id
	Query       string
	Sensitivity string // confidentiality of the data, e.g. N, R, V
	Task        string // workflow or notification Task the access was made under

	// Protocols applied.
	AuthzProtocol  string   // e.g. "np-authorization-base", "bilateral-list"
	ConsentProfile string   // e.g. "mitz", "presumed-referral", "local"
	Checks         []string // checks performed, free form (e.g. "mtls", "token-cnf", "bsn-11proef")
}

// Log is where audit records go.
type Log interface {
	Append(ctx context.Context, r Record) error
}

// Filter selects records; empty fields match everything.
type Filter struct {
	Patient  string
	Tenant   string
	Since    time.Time // recorded at or after
	Until    time.Time // recorded before
	ActorURA string
	Outcome  []string // FHIR AuditEvent.outcome codes: 0, 4, 8, 12
	Action   string
	EventID  string
	Limit    int
	Offset   int
	Newest   bool // newest first; default is the order written
	// AfterSeq selects records after this chain position: a reader that
	// follows the log (the shipper, an export) continues from where it was.
	AfterSeq int64
}

// Config opens a store. Exactly one of Path (SQLite) and Postgres is set.
type Config struct {
	Path     string // SQLite file, or ":memory:"
	Postgres string // PostgreSQL connection string
	Schema   string // PostgreSQL schema holding the tables (default "audit")

	Node string // name of the node, recorded in every record

	// Key signs checkpoints (its alg, or pki.SigningAlgorithm, and kid are
	// used). Required unless ReadOnly.
	Key jwk.Key

	// Checkpoint after this many records or this much time with unanchored
	// records, whichever comes first; defaults 1000 and 10s.
	CheckpointEvery    int
	CheckpointInterval time.Duration

	// Group commit: a batch closes when every waiting Append is in it, at
	// MaxBatch records, or MaxDelay after its first record; defaults 256, 2ms.
	MaxBatch int
	MaxDelay time.Duration
	// Siblings, when set, counts the requests under way that will append a
	// record (a node's requests on its public and internal listeners).
	// While more of them are under way than a gathering batch holds
	// records, the batch waits up to CommitDelay (default 250µs) after its
	// first record for theirs: fewer, fuller durable writes when requests
	// arrive together, as PostgreSQL's commit_delay with commit_siblings.
	// A request alone waits for nothing.
	Siblings    func() int
	CommitDelay time.Duration
	// MaxDefer bounds how long a record written with Defer, which no one
	// waits for, may stay queued for a batch someone waits on; default 50ms.
	MaxDefer time.Duration

	// NoJournal writes every batch straight into SQLite with a synchronous
	// commit, instead of into the journal with the SQLite index behind it
	// (docs/audit.md, "Journal"). Slower; for comparison and for
	// filesystems where the journal's fdatasync is not to be trusted.
	NoJournal bool

	ReadOnly bool         // open for List and Verify only (no migration, no writer)
	Logger   *slog.Logger // checkpoints are logged here as an external witness; never record content

	// Observe, when set, is told of every durable commit the writer makes:
	// how many records it carried, how long the write took and whether it
	// failed. For the node's metrics and readiness; it must not block.
	Observe func(records int, took time.Duration, err error)
}

// Store is the audit log. Records cannot be changed or removed: the tables
// refuse UPDATE and DELETE, and Verify detects tampering below SQL.
type Store struct {
	be   backend
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	sign func(cp checkpointClaims) (string, error)

	queue    chan *pending
	inflight atomic.Int64
	mu       sync.RWMutex // held for reading while enqueueing; Close takes it to stop intake
	closed   bool
	quit     chan struct{}
	done     chan struct{}

	closeOnce sync.Once
	closeErr  error

	// Owned by the committer goroutine.
	seq       int64
	head      [32]byte
	cpSeq     int64
	cpTime    time.Time
	batches   atomic.Int64
	awaited   atomic.Int64 // batches some Append waited on
	committed atomic.Int64
	// lastSeq is the chain position of the last durable record, for readers
	// that measure how far behind the log they are (the shipper's lag).
	lastSeq atomic.Int64

	// unindexed counts, in a read-only store, the records only its journal
	// holds (the node is running, or stopped before indexing them).
	unindexed int64
}

// Open opens (creating when needed) the SQLite audit store at path for the
// named node. Checkpoints are signed with the key in the file path+".key"
// (PEM, created on first use; an in-memory key for ":memory:"). That key is
// only as safe as the directory it lives in: production passes its own key
// with OpenWith and publishes the public half for verifiers. Checkpoints are
// logged to log (slog.Default when nil).
func Open(ctx context.Context, path, node string, log *slog.Logger) (*Store, error) {
	var key jwk.Key
	var err error
	if path == ":memory:" {
		key, err = ephemeralKey()
	} else {
		key, err = pki.LoadOrCreateSigningKey(path + ".key")
	}
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	return OpenWith(ctx, Config{Path: path, Node: node, Key: key, Logger: log})
}

// OpenWith opens the store cfg describes and, unless it is read-only,
// starts its committer.
func OpenWith(ctx context.Context, cfg Config) (*Store, error) {
	if (cfg.Path == "") == (cfg.Postgres == "") {
		return nil, errors.New("audit store: set exactly one of Path and Postgres")
	}
	if cfg.Key == nil && !cfg.ReadOnly {
		return nil, errors.New("audit store: a checkpoint signing key is required")
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 1000
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 10 * time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 2 * time.Millisecond
	}
	if cfg.MaxDefer <= 0 {
		cfg.MaxDefer = 50 * time.Millisecond
	}
	if cfg.CommitDelay <= 0 {
		cfg.CommitDelay = 250 * time.Microsecond
	}
	if cfg.Schema == "" {
		cfg.Schema = "audit"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var be backend
	var err error
	switch {
	case cfg.Path != "" && (cfg.ReadOnly || cfg.NoJournal || cfg.Path == ":memory:"):
		be, err = openSQLite(ctx, cfg.Path, cfg.ReadOnly, "FULL")
	case cfg.Path != "":
		be, err = openJournaled(ctx, cfg.Path, log)
	default:
		be, err = openPostgres(ctx, cfg.Postgres, cfg.Schema, cfg.ReadOnly)
	}
	if err != nil {
		return nil, fmt.Errorf("audit store: %w", err)
	}
	s := &Store{be: be, cfg: cfg, log: log, now: time.Now, queue: make(chan *pending, cfg.MaxBatch),
		quit: make(chan struct{}), done: make(chan struct{})}
	if cfg.ReadOnly {
		s.closed = true
		close(s.done)
		if cfg.Path != "" && cfg.Path != ":memory:" {
			if s.unindexed, err = unindexed(ctx, be, cfg.Path+".journal"); err != nil {
				be.close()
				return nil, fmt.Errorf("audit store: %w", err)
			}
		}
		// What a reader sees: the last record in the index at open.
		if s.seq, s.head, err = be.head(ctx); err != nil {
			be.close()
			return nil, fmt.Errorf("audit store: %w", err)
		}
		s.lastSeq.Store(s.seq)
		return s, nil
	}
	if s.sign, err = checkpointSigner(cfg.Key); err != nil {
		be.close()
		return nil, fmt.Errorf("audit store: %w", err)
	}
	if s.seq, s.head, err = be.head(ctx); err != nil {
		be.close()
		return nil, fmt.Errorf("audit store: %w", err)
	}
	s.lastSeq.Store(s.seq)
	if s.cpSeq, err = be.lastCheckpoint(ctx); err != nil {
		be.close()
		return nil, fmt.Errorf("audit store: %w", err)
	}
	s.cpTime = s.now()
	go s.commitLoop()
	return s, nil
}

// Close stops accepting records, commits those already queued, anchors the
// chain with a final checkpoint and closes the store.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.quit)
	}
	s.mu.Unlock()
	<-s.done
	s.closeOnce.Do(func() { s.closeErr = s.be.close() })
	return s.closeErr
}

// Append writes r durably; the caller answers the requester only after it
// returns without error. Errors wrap ErrUnavailable.
func (s *Store) Append(ctx context.Context, r Record) error {
	// Counted until answered, not only until queued: the committer closes
	// a batch once every waiting Append is in it.
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	p, err := s.enqueue(ctx, r, true)
	if err != nil {
		return err
	}
	// Once queued the record is committed or refused within one batch; the
	// caller must learn which, so ctx no longer applies.
	return <-p.done
}

// Defer queues r and returns without waiting for it to be durable: for the
// record of a step that answers no one yet. It goes into the next batch an
// Append waits on (or on its own after MaxDefer), and never after a record
// appended later: whatever answer follows the step waits on its own record,
// whose commit makes r durable too. A batch holding r that fails is retried
// with the next one, so no later record becomes durable without it. The
// error is only that the store is closed (or ctx ended before r was queued).
func (s *Store) Defer(ctx context.Context, r Record) error {
	_, err := s.enqueue(ctx, r, false)
	return err
}

// enqueue hands r to the committer; wait says an Append waits for it.
func (s *Store) enqueue(ctx context.Context, r Record, wait bool) (*pending, error) {
	if r.EventID == "" {
		r.EventID = newID()
	}
	if r.Time.IsZero() {
		r.Time = s.now()
	}
	if r.Node == "" {
		r.Node = s.cfg.Node
	}
	p := newPending(r)
	if wait {
		p.done = make(chan error, 1)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("%w: store closed or read-only", ErrUnavailable)
	}
	select {
	case s.queue <- p:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	return p, nil
}

// List returns the records f selects, in the order they were written (or
// newest first).
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	rows, err := s.be.query(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list audit records: %w", err)
	}
	out := make([]Record, 0, len(rows))
	for _, row := range rows {
		r, err := recordOf(row)
		if err != nil {
			return nil, fmt.Errorf("list audit records: seq %d: %w", row.seq, err)
		}
		r.Seq = row.seq
		out = append(out, r)
	}
	return out, nil
}

// Count returns how many records f selects, ignoring Limit and Offset.
func (s *Store) Count(ctx context.Context, f Filter) (int, error) {
	n, err := s.be.count(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("count audit records: %w", err)
	}
	return n, nil
}

// Stats are the group commit figures since Open.
type Stats struct {
	Records int64 // records committed
	Batches int64 // transactions (each one durable commit: one WAL fsync in SQLite)
	// Awaited counts the batches an Append waited on: the durable commits
	// that lay on some request's path (the others held only Deferred
	// records, or a checkpoint).
	Awaited int64
}

// Stats returns the group commit figures since Open.
func (s *Store) Stats() Stats {
	return Stats{Records: s.committed.Load(), Batches: s.batches.Load(), Awaited: s.awaited.Load()}
}

// recordOf decodes a stored row; legacy rows (written before the chain) have
// no body and are read from their columns.
func recordOf(rw row) (Record, error) {
	if rw.body == nil {
		c := rw.cols
		t, err := time.Parse(time.RFC3339Nano, c.RecordedAt)
		if err != nil {
			return Record{}, fmt.Errorf("legacy record time: %w", err)
		}
		return Record{EventID: c.EventID, Time: t, Action: c.Action, Interaction: c.Interaction, Outcome: c.Outcome,
			OutcomeText: c.OutcomeText, Node: c.Node, Tenant: c.Tenant, ActorURA: c.ActorURA, ActorSystem: c.ActorSystem,
			ActorUser: c.ActorUser, ActorRole: c.ActorRole, Address: c.Address, Patient: c.Patient,
			Types: strings.Fields(c.Types), Resources: strings.Fields(c.Resources), Query: c.Query, Task: c.Task}, nil
	}
	return decodeBody(rw.body)
}

// newID is a record's event id: a UUIDv7 (RFC 9562), whose leading
// timestamp makes the ids of successive records neighbours, so that the
// index on event_id fills at its end instead of at a random page per record.
func newID() string {
	if id, err := uuid.NewV7(); err == nil {
		return id.String()
	}
	return uuid.NewString() // a random (v4) id, should the clock's source fail
}
