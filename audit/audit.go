// Package audit keeps the node's record of every access to patient data and
// every refusal: its own append-only store, never the application log. This is
// the minimal, real log; the full NEN 7513 log builds on the same sink.
package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"fmt"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

// Actions, as FHIR AuditEvent.action.
const (
	ActionCreate  = "C"
	ActionRead    = "R"
	ActionUpdate  = "U"
	ActionDelete  = "D"
	ActionExecute = "E"
)

// Record is one audited event: who did what to whose data, when, and with
// what outcome.
type Record struct {
	EventID     string    // set by Append when empty
	Time        time.Time // set by Append when zero
	Action      string
	Interaction string // read, search-type, notify, token, refer, ...
	Outcome     int    // HTTP status the requester got
	OutcomeText string // the reason given for a refusal
	Node        string
	Tenant      string // URA of the participant whose data was touched
	ActorURA    string // requesting organisation
	ActorSystem string // requesting system (UZI system number or client id)
	ActorUser   string // requesting user, when known
	ActorRole   string // user's role code, when known
	Address     string // network address of the requester
	Patient     string // BSN
	Types       []string
	Resources   []string // Type/id
	Query       string
	Task        string // workflow or notification Task the access was made under
}

// Log is where audit records go.
type Log interface {
	Append(ctx context.Context, r Record) error
}

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite audit log. Records cannot be changed or removed: the
// table refuses UPDATE and DELETE.
type Store struct {
	db   *sql.DB
	node string
	now  func() time.Time
}

// Open opens the audit store at path for the named node.
func Open(ctx context.Context, path, node string) (*Store, error) {
	sub, err := subFS()
	if err != nil {
		return nil, err
	}
	db, err := sqlitedb.Open(ctx, path, sub)
	if err != nil {
		return nil, fmt.Errorf("audit store: %w", err)
	}
	return &Store{db: db, node: node, now: time.Now}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Append writes r durably; the caller answers the requester only after it
// returns without error.
func (s *Store) Append(ctx context.Context, r Record) error {
	if r.EventID == "" {
		r.EventID = newID()
	}
	if r.Time.IsZero() {
		r.Time = s.now()
	}
	if r.Node == "" {
		r.Node = s.node
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit_event
		(event_id, recorded_at, action, interaction, outcome, outcome_text, node, tenant,
		 actor_ura, actor_system, actor_user, actor_role, network_address, patient,
		 resource_types, resources, query, task)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.EventID, r.Time.UTC().Format(time.RFC3339Nano), r.Action, r.Interaction, r.Outcome, r.OutcomeText,
		r.Node, r.Tenant, r.ActorURA, r.ActorSystem, r.ActorUser, r.ActorRole, r.Address, r.Patient,
		strings.Join(dedupe(r.Types), " "), strings.Join(r.Resources, " "), r.Query, r.Task)
	if err != nil {
		return fmt.Errorf("append audit record: %w", err)
	}
	return nil
}

// Filter selects records; empty fields match everything.
type Filter struct {
	Patient string
	Tenant  string
	Since   time.Time
	Limit   int
}

// List returns records in the order they were written.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	q := `SELECT event_id, recorded_at, action, interaction, outcome, outcome_text, node, tenant,
		actor_ura, actor_system, actor_user, actor_role, network_address, patient,
		resource_types, resources, query, task FROM audit_event WHERE 1=1`
	var args []any
	if f.Patient != "" {
		q += " AND patient = ?"
		args = append(args, f.Patient)
	}
	if f.Tenant != "" {
		q += " AND tenant = ?"
		args = append(args, f.Tenant)
	}
	if !f.Since.IsZero() {
		q += " AND recorded_at >= ?"
		args = append(args, f.Since.UTC().Format(time.RFC3339Nano))
	}
	q += " ORDER BY seq"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit records: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var at, types, resources string
		if err := rows.Scan(&r.EventID, &at, &r.Action, &r.Interaction, &r.Outcome, &r.OutcomeText, &r.Node, &r.Tenant,
			&r.ActorURA, &r.ActorSystem, &r.ActorUser, &r.ActorRole, &r.Address, &r.Patient,
			&types, &resources, &r.Query, &r.Task); err != nil {
			return nil, err
		}
		r.Time, _ = time.Parse(time.RFC3339Nano, at)
		r.Types = strings.Fields(types)
		r.Resources = strings.Fields(resources)
		out = append(out, r)
	}
	return out, rows.Err()
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
