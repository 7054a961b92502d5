package audit

import (
	"context"
	"fmt"
	"strings"
)

// backend is where a Store keeps its rows: SQLite or PostgreSQL. Only the
// committer writes; everything else reads.
type backend interface {
	// head returns the last chained record's seq and hash (0 and the zero
	// hash when there is none), continuing after legacy rows.
	head(ctx context.Context) (int64, [32]byte, error)
	lastCheckpoint(ctx context.Context) (int64, error)
	// write stores rows and cp (either may be empty) in one durable transaction.
	write(ctx context.Context, rows []row, cp *Checkpoint) error
	query(ctx context.Context, f Filter) ([]row, error)
	count(ctx context.Context, f Filter) (int, error)
	// scan calls fn for every row in seq order.
	scan(ctx context.Context, fn func(row) error) error
	// checkpoints returns the checkpoints oldest first; only the newest with last.
	checkpoints(ctx context.Context, last bool) ([]Checkpoint, error)
	close() error
}

// pinger is a backend whose commits run on a connection to a server: ping
// reaches it there (reconnecting a broken connection), writing nothing.
type pinger interface {
	ping(ctx context.Context) error
}

// where renders f as a WHERE clause; ph returns the placeholder of the n-th
// argument (1-based), so that both SQL dialects share it.
func where(f Filter, ph func(n int) string) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, strings.ReplaceAll(cond, "?", ph(len(args))))
	}
	if f.Patient != "" {
		add("patient = ?", f.Patient)
	}
	if f.Tenant != "" {
		add("tenant = ?", f.Tenant)
	}
	if !f.Since.IsZero() {
		add("recorded_at >= ?", f.Since.UTC().Format(colTime))
	}
	if !f.Until.IsZero() {
		add("recorded_at < ?", f.Until.UTC().Format(colTime))
	}
	if f.ActorURA != "" {
		add("actor_ura = ?", f.ActorURA)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.EventID != "" {
		add("event_id = ?", f.EventID)
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	if len(f.Outcome) > 0 {
		var ors []string
		for _, o := range f.Outcome {
			if lo, hi, ok := outcomeRange(o); ok {
				ors = append(ors, fmt.Sprintf("(outcome >= %d AND outcome <= %d)", lo, hi))
			}
		}
		if len(ors) == 0 {
			ors = []string{"1=0"}
		}
		conds = append(conds, "("+strings.Join(ors, " OR ")+")")
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// orderLimit renders ORDER BY, LIMIT and OFFSET; all is the dialect's "no
// limit" (SQLite needs a LIMIT before OFFSET).
func orderLimit(f Filter, all string) string {
	s := " ORDER BY seq"
	if f.Newest {
		s += " DESC"
	}
	if f.Limit > 0 {
		s += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	if f.Offset > 0 {
		if f.Limit <= 0 {
			s += " LIMIT " + all
		}
		s += fmt.Sprintf(" OFFSET %d", f.Offset)
	}
	return s
}

// outcomeRange maps a FHIR AuditEvent.outcome code to the HTTP statuses it
// stands for: 0 success, 4 minor failure (the requester was refused or erred),
// 8 serious failure (the node failed), 12 major failure (none: a node that
// could not answer at all leaves no status).
func outcomeRange(code string) (lo, hi int, ok bool) {
	switch code {
	case "0":
		return 100, 399, true
	case "4":
		return 400, 499, true
	case "8":
		return 500, 599, true
	case "12":
		return 0, 99, true
	}
	return 0, 0, false
}

// outcomeCode is the FHIR AuditEvent.outcome of an HTTP status.
func outcomeCode(status int) string {
	switch {
	case status >= 100 && status < 400:
		return "0"
	case status >= 400 && status < 500:
		return "4"
	case status >= 500 && status < 600:
		return "8"
	}
	return "12"
}

// checkpointOrder orders checkpoints oldest first, or keeps only the newest.
func checkpointOrder(last bool) string {
	if last {
		return " ORDER BY seq DESC LIMIT 1"
	}
	return " ORDER BY seq"
}
