package consent

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

func migrationFS() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists at build time
	}
	return sub
}

// ErrNotFound: no registration or subscription with that id.
var ErrNotFound = errors.New("not found")

// Store keeps registrations, subscriptions and the notification queue in
// SQLite (default) or PostgreSQL. One SQL text serves both; only the
// placeholders differ.
type Store struct {
	db       *sql.DB
	postgres bool
	now      func() time.Time
}

// OpenSQLite opens (creating and migrating) the store at path; ":memory:"
// gives a private in-memory store.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	db, err := sqlitedb.Open(ctx, path, migrationFS())
	if err != nil {
		return nil, fmt.Errorf("consent store: %w", err)
	}
	return &Store{db: db, now: time.Now}, nil
}

// OpenPostgres opens the store in PostgreSQL at dsn, inside schema (created
// when missing; empty means the connection's default search_path), and
// migrates it. Its migration history is its own table
// (consent_goose_version), so the store shares a schema with a node's other
// stores.
func OpenPostgres(ctx context.Context, dsn, schema string) (*Store, error) {
	if err := adoptHistory(ctx, dsn, schema); err != nil {
		return nil, fmt.Errorf("consent store: %w", err)
	}
	db, err := pgdb.Open(ctx, dsn, schema, "consent_goose_version", migrationFS())
	if err != nil {
		return nil, fmt.Errorf("consent store: %w", err)
	}
	return &Store{db: db, postgres: true, now: time.Now}, nil
}

// adoptHistory carries the migration history of a schema made when the
// store kept it in goose's default table over to its own table, so that
// its migrations are not applied twice.
func adoptHistory(ctx context.Context, dsn, schema string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return errors.New("invalid PostgreSQL DSN") // the DSN may hold a password: do not echo it
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	prefix := ""
	if schema != "" {
		prefix = pgx.Identifier{schema}.Sanitize() + "."
	}
	var tables, own, old bool
	if err := c.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL`,
		prefix+"consent_registration", prefix+"consent_goose_version", prefix+"goose_db_version").Scan(&tables, &own, &old); err != nil {
		// An invalid schema name: pgdb.Open names it.
		return nil
	}
	if !tables || own || !old {
		return nil
	}
	_, err = c.Exec(ctx, `CREATE TABLE `+prefix+`consent_goose_version (LIKE `+prefix+`goose_db_version INCLUDING ALL);
		INSERT INTO `+prefix+`consent_goose_version SELECT * FROM `+prefix+`goose_db_version`)
	if err != nil {
		return fmt.Errorf("adopt migration history: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// q rewrites '?' placeholders to PostgreSQL's $n.
func (s *Store) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const registrationCols = `id, patient, effect, holder_ura, holder_type, requester_ura, requester_type,
	requester_role, purpose, valid_from, valid_until, source, registered_by, created_at, revoked_at`

func scanRegistrations(rows *sql.Rows) ([]Registration, error) {
	defer rows.Close()
	var out []Registration
	for rows.Next() {
		var r Registration
		var effect string
		var from, until, created, revoked int64
		if err := rows.Scan(&r.ID, &r.PatientBSN, &effect, &r.HolderURA, &r.HolderType, &r.RequesterURA,
			&r.RequesterType, &r.RequesterRole, &r.Purpose, &from, &until, &r.Source, &r.RegisteredBy,
			&created, &revoked); err != nil {
			return nil, err
		}
		r.Effect = Effect(effect)
		r.ValidFrom, r.ValidUntil = fromMicros(from), fromMicros(until)
		r.Created, r.Revoked = fromMicros(created), fromMicros(revoked)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) registrations(ctx context.Context, db querier, bsn string, withRevoked bool) ([]Registration, error) {
	query := `SELECT ` + registrationCols + ` FROM consent_registration WHERE patient = ?`
	if !withRevoked {
		query += ` AND revoked_at = 0`
	}
	rows, err := db.QueryContext(ctx, s.q(query+` ORDER BY created_at, id`), bsn)
	if err != nil {
		return nil, fmt.Errorf("list consent registrations: %w", err)
	}
	return scanRegistrations(rows)
}

// List returns the patient's registrations in the order they were made;
// withRevoked includes revoked and superseded ones (the history).
func (s *Store) List(ctx context.Context, bsn string, withRevoked bool) ([]Registration, error) {
	return s.registrations(ctx, s.db, bsn, withRevoked)
}

// Get returns the registration with id.
func (s *Store) Get(ctx context.Context, id string) (Registration, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+registrationCols+` FROM consent_registration WHERE id = ?`), id)
	if err != nil {
		return Registration{}, fmt.Errorf("get consent registration: %w", err)
	}
	regs, err := scanRegistrations(rows)
	if err != nil {
		return Registration{}, err
	}
	if len(regs) == 0 {
		return Registration{}, ErrNotFound
	}
	return regs[0], nil
}

// Register records r (after Validate). A registration in force for the same
// patient and scope is superseded (revoked now): the latest answer counts.
// Subscribers whose scope the change touches get a notification queued in
// the same transaction, so none is lost.
func (s *Store) Register(ctx context.Context, r Registration) (Registration, error) {
	if err := r.Validate(); err != nil {
		return Registration{}, err
	}
	now := s.now().UTC()
	r.ID = uuid.NewString()
	r.Created = now
	r.Revoked = time.Time{}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE consent_registration SET revoked_at = ?
			WHERE patient = ? AND holder_ura = ? AND holder_type = ? AND requester_ura = ?
			AND requester_type = ? AND requester_role = ? AND purpose = ? AND revoked_at = 0`),
			micros(now), r.PatientBSN, r.HolderURA, r.HolderType, r.RequesterURA, r.RequesterType,
			r.RequesterRole, r.Purpose); err != nil {
			return fmt.Errorf("supersede consent registration: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO consent_registration (`+registrationCols+`)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
			r.ID, r.PatientBSN, string(r.Effect), r.HolderURA, r.HolderType, r.RequesterURA, r.RequesterType,
			r.RequesterRole, r.Purpose, micros(r.ValidFrom), micros(r.ValidUntil), r.Source, r.RegisteredBy,
			micros(r.Created), 0); err != nil {
			return fmt.Errorf("insert consent registration: %w", err)
		}
		return s.enqueueNotifications(ctx, tx, r, now)
	})
	if err != nil {
		return Registration{}, err
	}
	return r, nil
}

// Revoke ends the registration with id now and notifies subscribers.
func (s *Store) Revoke(ctx context.Context, id string) (Registration, error) {
	r, err := s.Get(ctx, id)
	if err != nil {
		return Registration{}, err
	}
	if !r.Revoked.IsZero() {
		return r, nil
	}
	now := s.now().UTC()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE consent_registration SET revoked_at = ? WHERE id = ? AND revoked_at = 0`),
			micros(now), id)
		if err != nil {
			return fmt.Errorf("revoke consent registration: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // revoked concurrently; that one notified
		}
		return s.enqueueNotifications(ctx, tx, r, now)
	})
	if err != nil {
		return Registration{}, err
	}
	r.Revoked = now
	return r, nil
}

func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Decide evaluates q against the patient's registrations at time t.
func (s *Store) Decide(ctx context.Context, q Question, t time.Time) (Decision, error) {
	regs, err := s.List(ctx, q.PatientBSN, false)
	if err != nil {
		return "", err
	}
	return Evaluate(regs, q, t), nil
}

// Subscription is a Mitz-style subscription of a data holder to consent
// changes of one patient.
type Subscription struct {
	ID            string
	PatientBSN    string
	ProviderURA   string // the subscribing data holder
	ProviderType  string // its facility type
	Endpoint      string // rest-hook URL
	Payload       string // mime type of notifications
	BirthDate     string
	GatewaySystem string
	SourceSystem  string
	Owner         string // URA of the peer that created it
	Created       time.Time
}

// covers reports whether a change to r concerns subscriber sub: the
// registration's data-holder scope includes the subscriber.
func (sub Subscription) covers(r Registration) bool {
	return r.PatientBSN == sub.PatientBSN &&
		(r.HolderURA == "" || r.HolderURA == sub.ProviderURA) &&
		(r.HolderType == "" || r.HolderType == sub.ProviderType)
}

const subscriptionCols = `id, patient, provider_ura, provider_type, endpoint, payload, birth_date,
	gateway_system, source_system, owner, created_at`

// Subscribe stores sub; the same patient, provider and endpoint again
// returns the existing subscription (created false).
func (s *Store) Subscribe(ctx context.Context, sub Subscription) (stored Subscription, created bool, err error) {
	existing, err := s.findSubscriptions(ctx, s.db, `patient = ? AND provider_ura = ? AND provider_type = ? AND endpoint = ?`,
		sub.PatientBSN, sub.ProviderURA, sub.ProviderType, sub.Endpoint)
	if err != nil {
		return Subscription{}, false, err
	}
	if len(existing) > 0 {
		return existing[0], false, nil
	}
	sub.ID = uuid.NewString()
	sub.Created = s.now().UTC()
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO consent_subscription (`+subscriptionCols+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?)`), sub.ID, sub.PatientBSN, sub.ProviderURA, sub.ProviderType, sub.Endpoint,
		sub.Payload, sub.BirthDate, sub.GatewaySystem, sub.SourceSystem, sub.Owner, micros(sub.Created)); err != nil {
		return Subscription{}, false, fmt.Errorf("insert subscription: %w", err)
	}
	return sub, true, nil
}

// GetSubscription returns the subscription with id.
func (s *Store) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	subs, err := s.findSubscriptions(ctx, s.db, `id = ?`, id)
	if err != nil {
		return Subscription{}, err
	}
	if len(subs) == 0 {
		return Subscription{}, ErrNotFound
	}
	return subs[0], nil
}

// Unsubscribe removes the subscription with id; queued notifications for it
// are dropped.
func (s *Store) Unsubscribe(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM consent_subscription WHERE id = ?`), id)
		if err != nil {
			return fmt.Errorf("delete subscription: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE consent_notification SET state = 'failed', updated_at = ?
			WHERE subscription_id = ? AND state = 'pending'`), micros(s.now()), id)
		return err
	})
}

func (s *Store) findSubscriptions(ctx context.Context, db querier, where string, args ...any) ([]Subscription, error) {
	rows, err := db.QueryContext(ctx, s.q(`SELECT `+subscriptionCols+` FROM consent_subscription WHERE `+where+` ORDER BY created_at, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("find subscriptions: %w", err)
	}
	defer rows.Close()
	var out []Subscription
	for rows.Next() {
		var sub Subscription
		var created int64
		if err := rows.Scan(&sub.ID, &sub.PatientBSN, &sub.ProviderURA, &sub.ProviderType, &sub.Endpoint, &sub.Payload,
			&sub.BirthDate, &sub.GatewaySystem, &sub.SourceSystem, &sub.Owner, &created); err != nil {
			return nil, err
		}
		sub.Created = fromMicros(created)
		out = append(out, sub)
	}
	return out, rows.Err()
}

// enqueueNotifications queues, for every subscription the change to r
// concerns, a Bundle with the patient's current registrations for that
// subscriber.
func (s *Store) enqueueNotifications(ctx context.Context, tx *sql.Tx, r Registration, now time.Time) error {
	subs, err := s.findSubscriptions(ctx, tx, `patient = ?`, r.PatientBSN)
	if err != nil {
		return err
	}
	var regs []Registration
	for _, sub := range subs {
		if !sub.covers(r) {
			continue
		}
		if regs == nil {
			if regs, err = s.registrations(ctx, tx, r.PatientBSN, false); err != nil {
				return err
			}
		}
		var mine []Registration
		for _, x := range regs {
			if sub.covers(x) {
				mine = append(mine, x)
			}
		}
		body, err := notificationBundle(sub, mine, now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO consent_notification
			(id, subscription_id, endpoint, body, state, attempts, next_attempt_at, created_at, updated_at)
			VALUES (?,?,?,?,'pending',0,?,?,?)`), uuid.NewString(), sub.ID, sub.Endpoint, string(body),
			micros(time.Now()), micros(now), micros(now)); err != nil { // the queue runs on the wall clock
			return fmt.Errorf("queue notification: %w", err)
		}
	}
	return nil
}

// Notification is one queued notification and its delivery state.
type Notification struct {
	ID             string
	SubscriptionID string
	Endpoint       string
	Body           []byte
	State          string // pending | delivered | failed
	Attempts       int
	NextAttempt    time.Time
}

// Delivery is one attempt to deliver a notification (the delivery log).
type Delivery struct {
	NotificationID string
	SubscriptionID string
	Attempt        int
	At             time.Time
	HTTPStatus     int    // 0 when no HTTP answer came
	Error          string // empty on success
}

const notificationCols = `id, subscription_id, endpoint, body, state, attempts, next_attempt_at`

func (s *Store) scanNotifications(rows *sql.Rows) ([]Notification, error) {
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var body string
		var next int64
		if err := rows.Scan(&n.ID, &n.SubscriptionID, &n.Endpoint, &body, &n.State, &n.Attempts, &next); err != nil {
			return nil, err
		}
		n.Body, n.NextAttempt = []byte(body), fromMicros(next)
		out = append(out, n)
	}
	return out, rows.Err()
}

// due returns pending notifications whose next attempt is at or before t.
func (s *Store) due(ctx context.Context, t time.Time, limit int) ([]Notification, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+notificationCols+` FROM consent_notification
		WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?`), micros(t), limit)
	if err != nil {
		return nil, fmt.Errorf("due notifications: %w", err)
	}
	return s.scanNotifications(rows)
}

// Notifications returns the notifications queued for a subscription.
func (s *Store) Notifications(ctx context.Context, subscriptionID string) ([]Notification, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+notificationCols+` FROM consent_notification
		WHERE subscription_id = ? ORDER BY created_at, id`), subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	return s.scanNotifications(rows)
}

// recordAttempt logs delivery attempt d and moves the notification to
// state, with the next attempt at next when it stays pending.
func (s *Store) recordAttempt(ctx context.Context, d Delivery, state string, next time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO consent_delivery
			(id, notification_id, subscription_id, attempt, at, http_status, error) VALUES (?,?,?,?,?,?,?)`),
			uuid.NewString(), d.NotificationID, d.SubscriptionID, d.Attempt, micros(d.At), d.HTTPStatus, d.Error); err != nil {
			return fmt.Errorf("log delivery: %w", err)
		}
		_, err := tx.ExecContext(ctx, s.q(`UPDATE consent_notification SET state = ?, attempts = ?, next_attempt_at = ?, updated_at = ?
			WHERE id = ?`), state, d.Attempt, micros(next), micros(d.At), d.NotificationID)
		if err != nil {
			return fmt.Errorf("update notification: %w", err)
		}
		return nil
	})
}

// Deliveries returns the delivery log of a subscription, oldest first.
func (s *Store) Deliveries(ctx context.Context, subscriptionID string) ([]Delivery, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT notification_id, subscription_id, attempt, at, http_status, error
		FROM consent_delivery WHERE subscription_id = ? ORDER BY at, attempt`), subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("delivery log: %w", err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var at int64
		if err := rows.Scan(&d.NotificationID, &d.SubscriptionID, &d.Attempt, &at, &d.HTTPStatus, &d.Error); err != nil {
			return nil, err
		}
		d.At = fromMicros(at)
		out = append(out, d)
	}
	return out, rows.Err()
}
