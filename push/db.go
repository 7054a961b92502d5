package push

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps the outbox and the inbox. It is small on purpose: a
// PostgreSQL backend implements the same methods (each one statement or
// one transaction), so a node scaled out shares one.
type Store interface {
	// Enqueue stores m in the outbox; when the tenant already has a message
	// with m's id it returns that one and false (a message is queued once).
	Enqueue(ctx context.Context, m OutMessage) (OutMessage, bool, error)
	// Claim returns up to limit queued messages due at now and moves their
	// next attempt to lease, so that no other round takes them meanwhile;
	// each returned message's Lease is lease.
	Claim(ctx context.Context, now, lease time.Time, limit int) ([]OutMessage, error)
	// Renew moves the lease of the tenant's message id from lease to
	// until; false when the message no longer holds that lease (claimed
	// again after it ran out, released, or its delivery state written).
	Renew(ctx context.Context, tenant, id string, lease, until time.Time) (bool, error)
	// NextDue is the earliest next attempt of a queued message; false when none.
	NextDue(ctx context.Context) (time.Time, bool, error)
	// Release makes every queued message due at now (after a restart:
	// the leases of the process that died are void).
	Release(ctx context.Context, now time.Time) error
	// UpdateOut writes m's delivery state (status, reason, attempts, next
	// attempt, receipt, delivered time). With m.Lease set, only while m
	// still holds that lease: else nothing is written and the error is
	// ErrLeaseLost.
	UpdateOut(ctx context.Context, m OutMessage) error
	// Acknowledge records the receiver's application acknowledgement of
	// the tenant's message id; false when there is no such message.
	Acknowledge(ctx context.Context, tenant, id, ack, note string, at time.Time) (bool, error)
	Out(ctx context.Context, tenant, id string) (OutMessage, error)
	OutList(ctx context.Context, tenant string) ([]OutMessage, error)

	// Receive stores m in the inbox; when its sender's message id is
	// there already it returns the stored one and false.
	Receive(ctx context.Context, m InMessage) (InMessage, bool, error)
	// Process marks an inbox message processed and queues the
	// acknowledgement to its sender, in one transaction; false when the
	// message was processed before.
	Process(ctx context.Context, in InMessage, ack OutMessage) (bool, error)
	In(ctx context.Context, tenant, id string) (InMessage, error)
	InList(ctx context.Context, tenant string) ([]InMessage, error)
	Close() error
}

// ErrNotFound: no such message for this participant.
var ErrNotFound = errors.New("message not found")

// ErrLeaseLost: the delivery round no longer holds the message's lease (it
// ran out and another round claimed the message); its outcome is not
// written.
var ErrLeaseLost = errors.New("outbox lease lost to another delivery round")

// OutMessage is a message in the outbox.
type OutMessage struct {
	ID           string    `json:"id"`
	Tenant       string    `json:"sender"`
	ReceiverURA  string    `json:"receiver"`
	Application  string    `json:"application"`
	Kind         string    `json:"kind"`
	ResponseTo   string    `json:"responseTo,omitempty"`
	PatientBSN   string    `json:"patient,omitempty"`
	Body         []byte    `json:"-"`
	BodySHA256   string    `json:"payloadSha256"`
	Status       string    `json:"status"`
	StatusReason string    `json:"statusReason,omitempty"`
	Attempts     int       `json:"attempts"`
	NextAttempt  time.Time `json:"nextAttempt"`
	Expires      time.Time `json:"expires"`
	Receipt      string    `json:"receipt,omitempty"`
	Delivered    time.Time `json:"delivered,omitzero"`
	Ack          string    `json:"acknowledgement,omitempty"`
	AckNote      string    `json:"acknowledgementNote,omitempty"`
	AckAt        time.Time `json:"acknowledged,omitzero"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
	// Lease is the lease under which a delivery round holds the message
	// (set by Claim, moved by Renew; not stored apart: it is the message's
	// next attempt while held); zero when none.
	Lease time.Time `json:"-"`
}

// InMessage is a message in the inbox.
type InMessage struct {
	ID           string    `json:"id"`
	Tenant       string    `json:"receiver"`
	MessageID    string    `json:"messageId"`
	SenderURA    string    `json:"sender"`
	SenderSystem string    `json:"senderSystem,omitempty"`
	Application  string    `json:"application"`
	Kind         string    `json:"kind"`
	ResponseTo   string    `json:"responseTo,omitempty"`
	PatientBSN   string    `json:"patient,omitempty"`
	Body         []byte    `json:"-"`
	BodySHA256   string    `json:"payloadSha256"`
	Receipt      string    `json:"receipt"`
	Status       string    `json:"status"`
	Ack          string    `json:"acknowledgement,omitempty"`
	AckNote      string    `json:"acknowledgementNote,omitempty"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
}

//go:embed pgmigrations/*.sql
var pgMigrations embed.FS

// DB is the Store on SQLite (OpenDB, the embedded default) or PostgreSQL
// (OpenPostgres, shared by a node's replicas). Both run the same
// statements; only the placeholders, the tie-break of "oldest first" and
// the row locks of Claim differ.
type DB struct {
	db       *sql.DB
	postgres bool
	w        *outboxWriter // group-commits Enqueue
	// stmts are the hot statements, prepared once: SQLite spends as long
	// parsing a statement of twenty columns as running it.
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt
}

// prepared is query (in SQLite's dialect) prepared on the database once.
// Call it outside a transaction: on SQLite preparing needs the connection.
func (d *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	d.stmtMu.Lock()
	defer d.stmtMu.Unlock()
	if st, ok := d.stmts[query]; ok {
		return st, nil
	}
	st, err := d.db.PrepareContext(ctx, d.q(query))
	if err != nil {
		return nil, err
	}
	if d.stmts == nil {
		d.stmts = map[string]*sql.Stmt{}
	}
	d.stmts[query] = st
	return st, nil
}

var _ Store = (*DB)(nil)

// q adapts a statement written for SQLite to the database's dialect.
func (d *DB) q(query string) string {
	if d.postgres {
		return pgdb.Rebind(query)
	}
	return query
}

// insertion is the column giving the order rows were stored in (SQLite's
// rowid, PostgreSQL's seq): what orders rows of the same instant.
func (d *DB) insertion() string {
	if d.postgres {
		return "seq"
	}
	return "rowid"
}

// byCreation orders rows oldest first, those of the same instant as stored.
func (d *DB) byCreation() string { return ` ORDER BY created_at, ` + d.insertion() }

// OpenDB opens (creating and migrating) the push store at path.
func OpenDB(ctx context.Context, path string) (*DB, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	db, err := sqlitedb.Open(ctx, path, sub)
	if err != nil {
		return nil, fmt.Errorf("push store: %w", err)
	}
	d := &DB{db: db}
	d.w = newOutboxWriter(d)
	return d, nil
}

// OpenPostgres opens the push store in the PostgreSQL database at dsn, its
// tables in schema (created when missing; "" keeps the connection's
// search_path), migrated on open.
func OpenPostgres(ctx context.Context, dsn, schema string) (*DB, error) {
	sub, err := fs.Sub(pgMigrations, "pgmigrations")
	if err != nil {
		return nil, err
	}
	db, err := pgdb.Open(ctx, dsn, schema, "push_goose_version", sub)
	if err != nil {
		return nil, fmt.Errorf("push store: %w", err)
	}
	d := &DB{db: db, postgres: true}
	d.w = newOutboxWriter(d)
	return d, nil
}

// Close commits the messages waiting to be queued and closes the database.
func (d *DB) Close() error {
	d.w.close()
	d.stmtMu.Lock()
	for q, st := range d.stmts {
		_ = st.Close()
		delete(d.stmts, q)
	}
	d.stmtMu.Unlock()
	return d.db.Close()
}

// ts has a fixed width, so that the stored times sort as text.
const ts = "2006-01-02T15:04:05.000000000Z07:00"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(ts)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(ts, s)
	return t
}

const outCols = `id, tenant, receiver_ura, application, kind, response_to, patient_bsn, body, body_sha256, status,
	status_reason, attempts, next_attempt_at, expires_at, receipt, delivered_at, ack, ack_note, ack_at, created_at, updated_at`

func scanOut(row interface{ Scan(...any) error }) (OutMessage, error) {
	var m OutMessage
	var next, exp, deliv, ackAt, created, updated string
	err := row.Scan(&m.ID, &m.Tenant, &m.ReceiverURA, &m.Application, &m.Kind, &m.ResponseTo, &m.PatientBSN, &m.Body,
		&m.BodySHA256, &m.Status, &m.StatusReason, &m.Attempts, &next, &exp, &m.Receipt, &deliv, &m.Ack, &m.AckNote, &ackAt,
		&created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return m, ErrNotFound
	}
	m.NextAttempt, m.Expires, m.Delivered, m.AckAt = parseTime(next), parseTime(exp), parseTime(deliv), parseTime(ackAt)
	m.Created, m.Updated = parseTime(created), parseTime(updated)
	return m, err
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

const insertOutSQL = `INSERT INTO push_out (` + outCols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (tenant, id) DO NOTHING`

func (d *DB) insertOut(ctx context.Context, db execer, m OutMessage) (bool, error) {
	return insertOutWith(ctx, stmtOn{db, d.q(insertOutSQL)}, m)
}

// stmtOn runs one statement on db, as a prepared *sql.Stmt does.
type stmtOn struct {
	db execer
	q  string
}

func (s stmtOn) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.q, args...)
}

func insertOutWith(ctx context.Context, ins interface {
	ExecContext(ctx context.Context, args ...any) (sql.Result, error)
}, m OutMessage) (bool, error) {
	res, err := ins.ExecContext(ctx,
		m.ID, m.Tenant, m.ReceiverURA, m.Application, m.Kind, m.ResponseTo, m.PatientBSN, m.Body, m.BodySHA256, m.Status,
		m.StatusReason, m.Attempts, fmtTime(m.NextAttempt), fmtTime(m.Expires), m.Receipt, fmtTime(m.Delivered), m.Ack,
		m.AckNote, fmtTime(m.AckAt), fmtTime(m.Created), fmtTime(m.Updated))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Enqueue waits for the group commit of the outbox (commit.go): the message
// is durable when it returns.
func (d *DB) Enqueue(ctx context.Context, m OutMessage) (OutMessage, bool, error) {
	return d.w.enqueue(ctx, m)
}

func (d *DB) Claim(ctx context.Context, now, lease time.Time, limit int) ([]OutMessage, error) {
	// Prepared before the transaction takes SQLite's one connection.
	sel, err := d.prepared(ctx, `SELECT `+outCols+` FROM push_out WHERE status = ? AND next_attempt_at <= ?
		ORDER BY next_attempt_at, `+d.insertion()+` LIMIT ?`+d.claimLock())
	if err != nil {
		return nil, err
	}
	upd, err := d.prepared(ctx, `UPDATE push_out SET next_attempt_at = ? WHERE tenant = ? AND id = ?`)
	if err != nil {
		return nil, err
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.StmtContext(ctx, sel).QueryContext(ctx, StatusQueued, fmtTime(now), limit)
	if err != nil {
		return nil, err
	}
	var out []OutMessage
	for rows.Next() {
		m, err := scanOut(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	lease1 := tx.StmtContext(ctx, upd)
	for i, m := range out {
		if _, err := lease1.ExecContext(ctx, fmtTime(lease), m.Tenant, m.ID); err != nil {
			return nil, err
		}
		out[i].Lease = lease
	}
	return out, tx.Commit()
}

func (d *DB) Renew(ctx context.Context, tenant, id string, lease, until time.Time) (bool, error) {
	st, err := d.prepared(ctx, `UPDATE push_out SET next_attempt_at = ? WHERE tenant = ? AND id = ? AND status = ? AND next_attempt_at = ?`)
	if err != nil {
		return false, err
	}
	res, err := st.ExecContext(ctx, fmtTime(until), tenant, id, StatusQueued, fmtTime(lease))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// claimLock makes two replicas' rounds take different messages: on
// PostgreSQL a round locks the rows it claims and skips those another round
// holds until it commits. SQLite's one writer needs nothing.
func (d *DB) claimLock() string {
	if d.postgres {
		return ` FOR UPDATE SKIP LOCKED`
	}
	return ""
}

func (d *DB) NextDue(ctx context.Context) (time.Time, bool, error) {
	var s sql.NullString
	st, err := d.prepared(ctx, `SELECT MIN(next_attempt_at) FROM push_out WHERE status = ?`)
	if err == nil {
		err = st.QueryRowContext(ctx, StatusQueued).Scan(&s)
	}
	if err != nil || !s.Valid {
		return time.Time{}, false, err
	}
	return parseTime(s.String), true, nil
}

func (d *DB) Release(ctx context.Context, now time.Time) error {
	_, err := d.db.ExecContext(ctx, d.q(`UPDATE push_out SET next_attempt_at = ? WHERE status = ? AND next_attempt_at > ?`),
		fmtTime(now), StatusQueued, fmtTime(now))
	return err
}

func (d *DB) UpdateOut(ctx context.Context, m OutMessage) error {
	q := `UPDATE push_out SET status = ?, status_reason = ?, attempts = ?, next_attempt_at = ?,
		receipt = ?, delivered_at = ?, updated_at = ? WHERE tenant = ? AND id = ?`
	args := []any{m.Status, m.StatusReason, m.Attempts, fmtTime(m.NextAttempt), m.Receipt, fmtTime(m.Delivered), fmtTime(m.Updated),
		m.Tenant, m.ID}
	if !m.Lease.IsZero() {
		q += ` AND status = ? AND next_attempt_at = ?`
		args = append(args, StatusQueued, fmtTime(m.Lease))
	}
	st, err := d.prepared(ctx, q)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil || m.Lease.IsZero() {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrLeaseLost
	}
	return nil
}

func (d *DB) Acknowledge(ctx context.Context, tenant, id, ack, note string, at time.Time) (bool, error) {
	var n int64
	err := d.durable(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`UPDATE push_out SET ack = ?, ack_note = ?, ack_at = ?, updated_at = ?
		WHERE tenant = ? AND id = ? AND kind = ?`), ack, note, fmtTime(at), fmtTime(at), tenant, id, KindMessage)
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	return n == 1, err
}

func (d *DB) Out(ctx context.Context, tenant, id string) (OutMessage, error) {
	st, err := d.prepared(ctx, `SELECT `+outCols+` FROM push_out WHERE tenant = ? AND id = ?`)
	if err != nil {
		return OutMessage{}, err
	}
	return scanOut(st.QueryRowContext(ctx, tenant, id))
}

func (d *DB) OutList(ctx context.Context, tenant string) ([]OutMessage, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+outCols+` FROM push_out WHERE tenant = ?`+d.byCreation()), tenant)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutMessage
	for rows.Next() {
		m, err := scanOut(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

const inCols = `id, tenant, message_id, sender_ura, sender_system, application, kind, response_to, patient_bsn, body,
	body_sha256, receipt, status, ack, ack_note, created_at, updated_at`

func scanIn(row interface{ Scan(...any) error }) (InMessage, error) {
	var m InMessage
	var created, updated string
	err := row.Scan(&m.ID, &m.Tenant, &m.MessageID, &m.SenderURA, &m.SenderSystem, &m.Application, &m.Kind, &m.ResponseTo,
		&m.PatientBSN, &m.Body, &m.BodySHA256, &m.Receipt, &m.Status, &m.Ack, &m.AckNote, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return m, ErrNotFound
	}
	m.Created, m.Updated = parseTime(created), parseTime(updated)
	return m, err
}

// Receive's insert is durable before it returns: the receiver signs a
// receipt saying the message is stored.
func (d *DB) Receive(ctx context.Context, m InMessage) (InMessage, bool, error) {
	var n int64
	err := d.durable(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`INSERT INTO push_in (`+inCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (sender_ura, message_id) DO NOTHING`),
			m.ID, m.Tenant, m.MessageID, m.SenderURA, m.SenderSystem, m.Application, m.Kind, m.ResponseTo, m.PatientBSN, m.Body,
			m.BodySHA256, m.Receipt, m.Status, m.Ack, m.AckNote, fmtTime(m.Created), fmtTime(m.Updated))
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return InMessage{}, false, err
	}
	if n == 1 {
		return m, true, nil
	}
	prev, err := scanIn(d.db.QueryRowContext(ctx, d.q(`SELECT `+inCols+` FROM push_in WHERE sender_ura = ? AND message_id = ?`),
		m.SenderURA, m.MessageID))
	return prev, false, err
}

func (d *DB) Process(ctx context.Context, in InMessage, ack OutMessage) (bool, error) {
	var done bool
	err := d.durable(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`UPDATE push_in SET status = ?, ack = ?, ack_note = ?, updated_at = ?
		WHERE tenant = ? AND id = ? AND status = ?`), StatusProcessed, in.Ack, in.AckNote, fmtTime(in.Updated),
			in.Tenant, in.ID, StatusReceived)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		if _, err := d.insertOut(ctx, tx, ack); err != nil {
			return err
		}
		done = true
		return nil
	})
	return done && err == nil, err
}

func (d *DB) In(ctx context.Context, tenant, id string) (InMessage, error) {
	return scanIn(d.db.QueryRowContext(ctx, d.q(`SELECT `+inCols+` FROM push_in WHERE tenant = ? AND id = ?`), tenant, id))
}

func (d *DB) InList(ctx context.Context, tenant string) ([]InMessage, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+inCols+` FROM push_in WHERE tenant = ? AND kind = ?`+d.byCreation()),
		tenant, KindMessage)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []InMessage
	for rows.Next() {
		m, err := scanIn(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
