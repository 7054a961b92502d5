package notifiedpull

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
	"github.com/schakel-nl/schakel/plateau"
)

//go:embed migrations/*.sql
var migrations embed.FS

//go:embed pgmigrations/*.sql
var pgMigrations embed.FS

// DB keeps the state of Notified Pull exchanges on both sides, in SQLite
// (OpenDB, the embedded default) or PostgreSQL (OpenPostgres, shared by a
// node's replicas). Both run the same statements; only the placeholders
// and the tie-break of "oldest first" differ.
//
// On SQLite grants are read on every request a receiver makes, so DB keeps
// them in memory too: the database is this process's own and every change
// to a grant goes through DB, which updates the copy under the same lock.
// On PostgreSQL another replica may change a grant (cancel it, complete
// it), so every read goes to the database.
type DB struct {
	db       *sql.DB
	postgres bool
	cache    grantCache
	stmts    stmtCache
}

// q adapts a statement written for SQLite to the database's dialect.
func (d *DB) q(query string) string {
	if d.postgres {
		return pgdb.Rebind(query)
	}
	return query
}

// byCreation orders rows oldest first: created_at, then the insertion
// order for rows of the same instant (SQLite's rowid, PostgreSQL's seq).
func (d *DB) byCreation() string {
	if d.postgres {
		return ` ORDER BY created_at, seq`
	}
	return ` ORDER BY created_at, rowid`
}

// stmtCache keeps the statements DB runs prepared: the same dozen run on
// every exchange, and SQLite spends as long parsing one as running it.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// stmt returns query prepared; nil (run it unprepared) when preparing fails.
func (d *DB) stmt(ctx context.Context, query string) *sql.Stmt {
	d.stmts.mu.Lock()
	defer d.stmts.mu.Unlock()
	if st, ok := d.stmts.m[query]; ok {
		return st
	}
	st, err := d.db.PrepareContext(ctx, d.q(query))
	if err != nil {
		return nil // the unprepared run reports the error
	}
	if d.stmts.m == nil {
		d.stmts.m = map[string]*sql.Stmt{}
	}
	d.stmts.m[query] = st
	return st
}

func (d *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.db.ExecContext(ctx, d.q(query), args...)
}

func (d *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.db.QueryContext(ctx, d.q(query), args...)
}

func (d *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.db.QueryRowContext(ctx, d.q(query), args...)
}

// grantCache holds recently used grants by id and by authorization base
// hash. gen counts writes so a read that raced with one is not kept.
type grantCache struct {
	off    bool // the database is shared: keep nothing
	mu     sync.Mutex
	gen    uint64
	byID   map[string]Grant
	byHash map[string]string // auth_base_hash → id
}

// maxCachedGrants bounds the cache; when full it starts afresh (the
// database stays the source, a miss costs one query).
const maxCachedGrants = 4096

// get returns the cached grant with id, or with auth base hash when id is "".
func (c *grantCache) get(id, hash string) (Grant, uint64, bool) {
	if c.off {
		return Grant{}, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == "" {
		id = c.byHash[hash]
	}
	g, ok := c.byID[id]
	if ok {
		g.Queries = slices.Clone(g.Queries)
	}
	return g, c.gen, ok
}

// put keeps g when no write happened since gen was read.
func (c *grantCache) put(g Grant, gen uint64) {
	if c.off {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.byID == nil || len(c.byID) >= maxCachedGrants {
		c.byID, c.byHash = map[string]Grant{}, map[string]string{}
	}
	g.Queries = slices.Clone(g.Queries)
	c.byID[g.ID] = g
	c.byHash[g.AuthBaseHash] = g.ID
}

// forget drops grant id after a write to it; later reads go to the database.
func (c *grantCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if g, ok := c.byID[id]; ok {
		delete(c.byHash, g.AuthBaseHash)
		delete(c.byID, id)
	}
}

// OpenDB opens the exchange state database at path.
func OpenDB(ctx context.Context, path string) (*DB, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	db, err := sqlitedb.Open(ctx, path, sub)
	if err != nil {
		return nil, fmt.Errorf("notified pull store: %w", err)
	}
	return &DB{db: db}, nil
}

// OpenPostgres opens the exchange state in the PostgreSQL database at dsn,
// its tables in schema (created when missing; "" keeps the connection's
// search_path), migrated on open.
func OpenPostgres(ctx context.Context, dsn, schema string) (*DB, error) {
	sub, err := fs.Sub(pgMigrations, "pgmigrations")
	if err != nil {
		return nil, err
	}
	db, err := pgdb.Open(ctx, dsn, schema, "notifiedpull_goose_version", sub)
	if err != nil {
		return nil, fmt.Errorf("notified pull store: %w", err)
	}
	return &DB{db: db, postgres: true, cache: grantCache{off: true}}, nil
}

// Close closes the database and its prepared statements.
func (d *DB) Close() error {
	d.stmts.mu.Lock()
	var errs []error
	for _, st := range d.stmts.m {
		errs = append(errs, st.Close())
	}
	d.stmts.m = nil
	d.stmts.mu.Unlock()
	return errors.Join(append(errs, d.db.Close())...)
}

var errNoRow = errors.New("not found")

// Grant is the sender's record of a referral: who may pull what until when.
type Grant struct {
	ID string
	// Group is the notification's groupIdentifier: the first referral's
	// identifier, kept by every update of it.
	Group           string
	Tenant          string
	ReceiverURA     string
	PatientBSN      string
	WorkflowTask    string
	AuthBaseHash    string
	Application     string
	Queries         []string
	Expires         time.Time
	Status          string
	StatusReason    string
	NotificationURL string
	Created         time.Time
	Updated         time.Time
}

const ts = time.RFC3339Nano

func (d *DB) insertGrant(ctx context.Context, g Grant) error {
	q, _ := json.Marshal(g.Queries)
	defer d.cache.forget(g.ID)
	_, err := d.exec(ctx, `INSERT INTO np_grant (id, tenant, receiver_ura, patient_bsn, workflow_task,
		auth_base_hash, application, queries, expires_at, status, status_reason, notification_url, created_at, updated_at, group_identifier)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		g.ID, g.Tenant, g.ReceiverURA, g.PatientBSN, g.WorkflowTask, g.AuthBaseHash, g.Application, string(q),
		g.Expires.UTC().Format(ts), g.Status, g.StatusReason, g.NotificationURL, g.Created.UTC().Format(ts), g.Updated.UTC().Format(ts), g.Group)
	return err
}

const grantCols = `id, tenant, receiver_ura, patient_bsn, workflow_task, auth_base_hash, application, queries,
	expires_at, status, status_reason, notification_url, created_at, updated_at, group_identifier`

func scanGrant(row interface{ Scan(...any) error }) (Grant, error) {
	var g Grant
	var q, exp, created, updated string
	err := row.Scan(&g.ID, &g.Tenant, &g.ReceiverURA, &g.PatientBSN, &g.WorkflowTask, &g.AuthBaseHash, &g.Application,
		&q, &exp, &g.Status, &g.StatusReason, &g.NotificationURL, &created, &updated, &g.Group)
	if errors.Is(err, sql.ErrNoRows) {
		return g, errNoRow
	}
	if err != nil {
		return g, err
	}
	_ = json.Unmarshal([]byte(q), &g.Queries)
	if g.Group == "" {
		g.Group = g.ID // a referral from before groups were kept
	}
	g.Expires, _ = time.Parse(ts, exp)
	g.Created, _ = time.Parse(ts, created)
	g.Updated, _ = time.Parse(ts, updated)
	return g, nil
}

func (d *DB) grantByHash(ctx context.Context, hash string) (Grant, error) {
	g, gen, ok := d.cache.get("", hash)
	if ok && g.AuthBaseHash == hash {
		return g, nil
	}
	g, err := scanGrant(d.queryRow(ctx, `SELECT `+grantCols+` FROM np_grant WHERE auth_base_hash = ?`, hash))
	if err == nil {
		d.cache.put(g, gen)
	}
	return g, err
}

func (d *DB) grantByTask(ctx context.Context, tenant, taskID string) (Grant, error) {
	return scanGrant(d.queryRow(ctx, `SELECT `+grantCols+` FROM np_grant WHERE tenant = ? AND workflow_task = ?`, tenant, taskID))
}

func (d *DB) grant(ctx context.Context, tenant, id string) (Grant, error) {
	g, gen, ok := d.cache.get(id, "")
	if ok {
		if g.Tenant != tenant {
			return Grant{}, errNoRow
		}
		return g, nil
	}
	g, err := scanGrant(d.queryRow(ctx, `SELECT `+grantCols+` FROM np_grant WHERE tenant = ? AND id = ?`, tenant, id))
	if err == nil {
		d.cache.put(g, gen)
	}
	return g, err
}

func (d *DB) grants(ctx context.Context, tenant string) ([]Grant, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+grantCols+` FROM np_grant WHERE tenant = ?`+d.byCreation()), tenant)
	return collect(rows, err, scanGrant)
}

func (d *DB) setGrantStatus(ctx context.Context, id, status, reason string, now time.Time) error {
	defer d.cache.forget(id)
	_, err := d.exec(ctx, `UPDATE np_grant SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?`,
		status, reason, now.UTC().Format(ts), id)
	return err
}

func (d *DB) setGrantNotificationURL(ctx context.Context, id, u string) error {
	defer d.cache.forget(id)
	_, err := d.exec(ctx, `UPDATE np_grant SET notification_url = ? WHERE id = ?`, u, id)
	return err
}

// Received is the receiver's record of a notification.
type Received struct {
	ID string
	// Group is the notification's groupIdentifier: notifications of one
	// group are versions of one referral, the newest superseding the rest.
	Group           string
	GetWorkflowTask bool   // the notification's get-workflow-task input
	Application     string // the care application of the pulled data; set when completed
	Tenant          string
	Identifier      string
	SenderURA       string
	SenderSystem    string
	PatientBSN      string
	WorkflowTask    string
	AuthBase        string
	Expires         time.Time
	Status          string
	StatusReason    string
	ResultBundle    string
	Summary         []QueryResult
	Created         time.Time
	Updated         time.Time
	// Awaiting is set while the pull waits for a user to accept the
	// notification (Service.Accept).
	Awaiting bool
	// AcceptedBy is the user who accepted it; nil when none did (a system
	// identity pulls, or none is needed).
	AcceptedBy *plateau.Caller
	// ReportPending: completed, and the sender has not yet taken the report.
	ReportPending bool
	// Decision is the receiving organisation's decision on a Transfer
	// request (careapp.Decision): "" when none is asked, DecisionPending,
	// DecisionAccepted or DecisionRejected.
	Decision string
	// DecisionReason is why the request was rejected (Task.statusReason).
	DecisionReason string
	// RequestBundle is the local Bundle of the documents read before the
	// decision (the aanmeldbericht), once read.
	RequestBundle string

	// lease is the token of the pull that loaded the row under its lease
	// (not stored): the pull's status writes apply only while it holds it.
	lease string
}

// The states of a receiving organisation's decision on a Transfer request.
const (
	DecisionPending  = "pending"
	DecisionAccepted = "accepted"
	DecisionRejected = "rejected"
)

// QueryResult is what one query of a pull returned.
type QueryResult struct {
	Block    string `json:"block"`
	Code     string `json:"code"`
	Query    string `json:"query"`
	Matches  int    `json:"matches"`
	Included int    `json:"included"`
	Status   int    `json:"status"`
}

const receivedCols = `id, tenant, identifier, sender_ura, sender_system, patient_bsn, workflow_task, auth_base,
	expires_at, status, status_reason, result_bundle, summary, created_at, updated_at, awaiting, accepted_by, report_pending,
	group_identifier, get_workflow_task, application, decision, decision_reason, request_bundle`

func scanReceived(row interface{ Scan(...any) error }) (Received, error) {
	var r Received
	var exp, summary, created, updated, acceptedBy string
	err := row.Scan(&r.ID, &r.Tenant, &r.Identifier, &r.SenderURA, &r.SenderSystem, &r.PatientBSN, &r.WorkflowTask,
		&r.AuthBase, &exp, &r.Status, &r.StatusReason, &r.ResultBundle, &summary, &created, &updated, &r.Awaiting, &acceptedBy, &r.ReportPending,
		&r.Group, &r.GetWorkflowTask, &r.Application, &r.Decision, &r.DecisionReason, &r.RequestBundle)
	if errors.Is(err, sql.ErrNoRows) {
		return r, errNoRow
	}
	if err != nil {
		return r, err
	}
	if summary != "" {
		_ = json.Unmarshal([]byte(summary), &r.Summary)
	}
	if r.Group == "" {
		r.Group = r.Identifier
	}
	if acceptedBy != "" {
		r.AcceptedBy = &plateau.Caller{}
		if err := json.Unmarshal([]byte(acceptedBy), r.AcceptedBy); err != nil {
			return r, fmt.Errorf("np_received %s: accepted_by: %w", r.ID, err)
		}
	}
	r.Expires, _ = time.Parse(ts, exp)
	r.Created, _ = time.Parse(ts, created)
	r.Updated, _ = time.Parse(ts, updated)
	return r, nil
}

// insertReceived stores r; false when the sender already notified this
// identifier. A notification without a group is a group of its own.
func (d *DB) insertReceived(ctx context.Context, r Received) (bool, error) {
	if r.Group == "" {
		r.Group = r.Identifier
	}
	res, err := d.exec(ctx, `INSERT INTO np_received (id, tenant, identifier, sender_ura, sender_system, patient_bsn,
		workflow_task, auth_base, expires_at, status, status_reason, created_at, updated_at, awaiting, group_identifier, get_workflow_task)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (sender_ura, identifier) DO NOTHING`,
		r.ID, r.Tenant, r.Identifier, r.SenderURA, r.SenderSystem, r.PatientBSN, r.WorkflowTask, r.AuthBase,
		r.Expires.UTC().Format(ts), r.Status, r.StatusReason, r.Created.UTC().Format(ts), r.Updated.UTC().Format(ts), flag(r.Awaiting),
		r.Group, flag(r.GetWorkflowTask))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (d *DB) received(ctx context.Context, tenant, id string) (Received, error) {
	return scanReceived(d.queryRow(ctx, `SELECT `+receivedCols+` FROM np_received WHERE tenant = ? AND id = ?`, tenant, id))
}

func (d *DB) receivedByIdentifier(ctx context.Context, senderURA, identifier string) (Received, error) {
	return scanReceived(d.queryRow(ctx, `SELECT `+receivedCols+` FROM np_received WHERE sender_ura = ? AND identifier = ?`, senderURA, identifier))
}

// receivedInGroup lists the notifications of one group a sender made to
// a participant, oldest first.
func (d *DB) receivedInGroup(ctx context.Context, tenant, senderURA, group string) ([]Received, error) {
	rows, err := d.query(ctx, `SELECT `+receivedCols+` FROM np_received
		WHERE tenant = ? AND sender_ura = ? AND group_identifier = ?`+d.byCreation(),
		tenant, senderURA, group)
	return collect(rows, err, scanReceived)
}

func (d *DB) receivedList(ctx context.Context, tenant string) ([]Received, error) {
	q := `SELECT ` + receivedCols + ` FROM np_received WHERE tenant = ?` + d.byCreation()
	args := []any{tenant}
	if tenant == "" {
		q = `SELECT ` + receivedCols + ` FROM np_received` + d.byCreation()
		args = nil
	}
	rows, err := d.db.QueryContext(ctx, d.q(q), args...)
	return collect(rows, err, scanReceived)
}

func (d *DB) setReceivedStatus(ctx context.Context, id, status, reason string, now time.Time) error {
	return d.setReceivedStatusLeased(ctx, id, "", status, reason, now)
}

// setReceivedStatusLeased is setReceivedStatus by the pull that holds the
// lease owner ("": any writer); errLeaseLost when owner no longer holds it.
func (d *DB) setReceivedStatusLeased(ctx context.Context, id, owner, status, reason string, now time.Time) error {
	clear := ""
	if Final(status) {
		// The secret and the accepting user's identity are of no further
		// use once the exchange has ended.
		clear = ", auth_base = '', accepted_by = '', awaiting = 0, report_pending = 0"
	}
	if owner == "" {
		_, err := d.exec(ctx, `UPDATE np_received SET status = ?, status_reason = ?, updated_at = ?`+clear+` WHERE id = ?`,
			status, reason, now.UTC().Format(ts), id)
		return err
	}
	res, err := d.exec(ctx, `UPDATE np_received SET status = ?, status_reason = ?, updated_at = ?`+clear+` WHERE id = ? AND lease_owner = ?`,
		status, reason, now.UTC().Format(ts), id, owner)
	return leased(res, err)
}

// leased is errLeaseLost for a write of a lease holder that changed no row.
func leased(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errLeaseLost
	}
	return nil
}

// completeReceived records a pull's result and moves it to completed, in
// one statement, with the report to the sender pending: what the report
// needs (the authorization base, the accepting user) stays until
// reportDone.
//
// owner is the pull that holds the lease ("": any writer): a pull that no
// longer holds it completes nothing (errLeaseLost), so a notification a
// worker took over is completed once, by that worker.
func (d *DB) completeReceived(ctx context.Context, id, owner, application, bundleID string, summary []QueryResult, now time.Time) error {
	s, _ := json.Marshal(summary)
	q := `UPDATE np_received SET result_bundle = ?, summary = ?, status = ?, status_reason = '', updated_at = ?,
		awaiting = 0, report_pending = 1, application = ? WHERE id = ?`
	args := []any{bundleID, string(s), StatusCompleted, now.UTC().Format(ts), application, id}
	if owner == "" {
		_, err := d.exec(ctx, q, args...)
		return err
	}
	res, err := d.exec(ctx, q+` AND lease_owner = ?`, append(args, owner)...)
	return leased(res, err)
}

// reportDone ends the report of a completion (taken, or given up), and
// clears what only it needed.
func (d *DB) reportDone(ctx context.Context, id string) error {
	_, err := d.exec(ctx, `UPDATE np_received SET report_pending = 0, auth_base = '', accepted_by = '' WHERE id = ?`, id)
	return err
}

// acceptReceived records the user who accepted a notification that waits
// for one; false when it no longer waits (accepted before, or ended).
func (d *DB) acceptReceived(ctx context.Context, id string, by plateau.Caller, now time.Time) (bool, error) {
	b, err := json.Marshal(by)
	if err != nil {
		return false, err
	}
	res, err := d.exec(ctx, `UPDATE np_received SET awaiting = 0, accepted_by = ?, status_reason = '', updated_at = ?
		WHERE id = ? AND awaiting = 1 AND status = ?`, string(b), now.UTC().Format(ts), id, StatusRequested)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// awaitDecision records that the documents of a Transfer request were
// read (kept as Bundle bundleID) and the request waits for the
// participant's system to decide.
func (d *DB) awaitDecision(ctx context.Context, id, application, bundleID, reason string, now time.Time) error {
	_, err := d.exec(ctx, `UPDATE np_received SET decision = ?, request_bundle = ?, status_reason = ?, updated_at = ?, application = ?
		WHERE id = ? AND decision IN ('', ?)`, DecisionPending, bundleID, reason, now.UTC().Format(ts), application, id, DecisionPending)
	return err
}

// dropRequest forgets the documents kept for a decision (their Bundle is
// deleted by the caller).
func (d *DB) dropRequest(ctx context.Context, id string) error {
	_, err := d.exec(ctx, `UPDATE np_received SET request_bundle = '' WHERE id = ?`, id)
	return err
}

// decide records the participant's decision on a request that waits for
// one; false when it no longer waits (decided before, or ended).
func (d *DB) decide(ctx context.Context, id, decision, reason string, now time.Time) (bool, error) {
	res, err := d.exec(ctx, `UPDATE np_received SET decision = ?, decision_reason = ?, status_reason = '', updated_at = ?
		WHERE id = ? AND decision = ? AND status NOT IN (?, ?, ?, ?)`, decision, reason, now.UTC().Format(ts), id, DecisionPending,
		StatusCompleted, StatusRejected, StatusFailed, StatusCancelled)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// errLeaseLost: the pull no longer holds its notification's lease (it ran
// out and another worker took the notification over); what it would
// write is not written.
var errLeaseLost = errors.New("pull lease lost to another worker")

// leasePull makes owner (a token of one pull) the one pulling notification
// id until until, unless another holds an unexpired lease on it (false).
// Two workers, on two replicas sharing the database, never pull one
// notification at once; the lease of a worker that stopped runs out.
func (d *DB) leasePull(ctx context.Context, id, owner string, now, until time.Time) (bool, error) {
	res, err := d.exec(ctx, `UPDATE np_received SET lease_until = ?, lease_owner = ? WHERE id = ? AND lease_until <= ?`,
		until.UnixMilli(), owner, id, now.UnixMilli())
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// renewPull moves owner's lease on notification id to until; false when
// owner no longer holds it (another worker took it over). A lease that ran
// out but that no one took is owner's still: renewing it is safe.
func (d *DB) renewPull(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	res, err := d.exec(ctx, `UPDATE np_received SET lease_until = ? WHERE id = ? AND lease_owner = ?`,
		until.UnixMilli(), id, owner)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// duePull is a notification whose pull is due and that no worker holds;
// heldBy is the lease owner whose lease ran out (a worker that stopped
// renewing: its replica died), empty when the last worker released it.
type duePull struct {
	tenant, id, heldBy string
}

// unfinishedPulls lists the notifications whose pull is due and no worker
// holds: neither final nor waiting for a user or a decision, lease run out.
func (d *DB) unfinishedPulls(ctx context.Context, now time.Time) ([]duePull, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT tenant, id, lease_owner FROM np_received
		WHERE status NOT IN (?, ?, ?, ?) AND awaiting = 0 AND decision <> ? AND lease_until <= ?`+d.byCreation()),
		StatusCompleted, StatusRejected, StatusFailed, StatusCancelled, DecisionPending, now.UnixMilli())
	return collect(rows, err, func(r interface{ Scan(...any) error }) (p duePull, err error) {
		return p, r.Scan(&p.tenant, &p.id, &p.heldBy)
	})
}

// releasePull ends owner's lease: another worker may take the notification
// up at once (a pull that stopped short of a final status). A lease owner
// no longer holds stays with its holder. With reporting, a completion
// whose report to the sender is pending keeps the lease: the report holds
// it on, and releases it when it ends.
func (d *DB) releasePull(ctx context.Context, id, owner string, reporting bool) error {
	q := `UPDATE np_received SET lease_until = 0, lease_owner = '' WHERE id = ? AND lease_owner = ?`
	if reporting {
		q += ` AND report_pending = 0`
	}
	_, err := d.exec(ctx, q, id, owner)
	return err
}

// orphanedReports are the completions whose report to the sender is
// pending under a lease that ran out: the worker reporting it stopped
// without releasing it (its replica died). A report that ended and left
// the report pending (the sender could not take it) released its lease:
// it is tried again at the next start, not here.
func (d *DB) orphanedReports(ctx context.Context, now time.Time) ([]Received, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+receivedCols+` FROM np_received
		WHERE report_pending = 1 AND lease_owner <> '' AND lease_until <= ?`+d.byCreation()), now.UnixMilli())
	return collect(rows, err, scanReceived)
}

// flag is a boolean column's value: 0 or 1 in both databases (SQLite's own
// form), so the statements comparing them are the same on both.
func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// collect scans every row of a query's rows with scan; err is the
// query's own error.
func collect[T any](rows *sql.Rows, err error, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
