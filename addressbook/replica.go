package addressbook

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

//go:embed pgmigrations/*.sql
var pgMigrations embed.FS

// ReplicaTypes are the mCSD resource types a replica keeps.
var ReplicaTypes = []string{"Organization", "Endpoint", "HealthcareService", "Location", "PractitionerRole", "Practitioner", "OrganizationAffiliation"}

// ErrMalformed is returned by Sync when the directory's answer is not a
// history Bundle Schakel can apply; nothing of that sync is kept.
var ErrMalformed = errors.New("malformed directory answer")

// Replica defaults.
const (
	DefaultPageSize = 1000             // the most fhir/rest serves per page
	DefaultOverlap  = 10 * time.Second // re-read of the newest changes, see ReplicaConfig.Overlap
	maxRetries      = 5
	defaultMaxWait  = time.Minute
	maxPageBytes    = 64 << 20
)

// Replica is the node's local copy of a directory, kept current with the
// mCSD "Request Care Services Updates" transaction (ITI-91): per resource
// type, _history (the first time without _since), then _history?_since
// increments, following next links. Endpoints are resolved from the copy,
// so a directory outage does not stop exchanges. See docs/addressbook.md.
type Replica struct {
	db       *sql.DB
	postgres bool
	src      *Client
	log      *slog.Logger
	holds    func(ura string) bool
	now      func() time.Time
	sleep    func(ctx context.Context, d time.Duration) error
	pageSz   int
	overlap  time.Duration
	maxWait  time.Duration
	types    []string

	syncMu sync.Mutex // one Sync at a time
}

// ReplicaConfig configures a Replica.
type ReplicaConfig struct {
	// Path of the replica's SQLite database (":memory:" for a private one).
	Path string
	// Postgres, instead of Path, keeps the copy in PostgreSQL: the tables
	// in Schema (created when missing), which a node's replicas share.
	Postgres string
	Schema   string
	// Source is the directory to copy (Base and HTTP are used).
	Source *Client
	// Holds tells whether this directory is the one that holds a URA;
	// Organizations' URAs it does not hold are not entered, so their
	// endpoints never resolve from this replica (anti-spoofing). Nil: every
	// URA (a single directory).
	Holds  func(ura string) bool
	Logger *slog.Logger
	Now    func() time.Time
	// PageSize is the _count asked per page (default DefaultPageSize).
	PageSize int
	// Overlap is subtracted from the newest meta.lastUpdated seen when the
	// next _since is asked, so a version whose timestamp was taken before,
	// but committed after, the previous read is still seen (default
	// DefaultOverlap). Re-seeing a version is harmless.
	Overlap time.Duration
	// MaxRetryWait caps the wait a Retry-After may ask (default one minute).
	MaxRetryWait time.Duration
	// Types are the resource types to copy (default ReplicaTypes).
	Types []string
}

// OpenReplica opens (creating) the replica database.
func OpenReplica(ctx context.Context, cfg ReplicaConfig) (*Replica, error) {
	if cfg.Source == nil || cfg.Source.Base == "" || cfg.Source.HTTP == nil {
		return nil, errors.New("addressbook replica: Source needs Base and HTTP")
	}
	if _, err := url.Parse(cfg.Source.Base); err != nil {
		return nil, fmt.Errorf("addressbook replica: Source.Base: %w", err)
	}
	var db *sql.DB
	if cfg.Postgres != "" {
		sub, err := fs.Sub(pgMigrations, "pgmigrations")
		if err != nil {
			return nil, err
		}
		if db, err = pgdb.Open(ctx, cfg.Postgres, cfg.Schema, "addressbook_replica_goose_version", sub); err != nil {
			return nil, fmt.Errorf("addressbook replica: %w", err)
		}
	} else {
		if cfg.Path == "" {
			return nil, errors.New("addressbook replica: a database path is required")
		}
		sub, err := fs.Sub(migrations, "migrations")
		if err != nil {
			return nil, err
		}
		if db, err = sqlitedb.Open(ctx, cfg.Path, sub); err != nil {
			return nil, fmt.Errorf("addressbook replica: %w", err)
		}
	}
	r := &Replica{db: db, postgres: cfg.Postgres != "", src: cfg.Source, log: cfg.Logger, holds: cfg.Holds, now: cfg.Now, sleep: sleepCtx,
		pageSz: cfg.PageSize, overlap: cfg.Overlap, maxWait: cfg.MaxRetryWait, types: cfg.Types}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.holds == nil {
		r.holds = func(string) bool { return true }
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.pageSz <= 0 {
		r.pageSz = DefaultPageSize
	}
	if r.overlap <= 0 {
		r.overlap = DefaultOverlap
	}
	if r.maxWait <= 0 {
		r.maxWait = defaultMaxWait
	}
	if len(r.types) == 0 {
		r.types = ReplicaTypes
	}
	return r, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Close closes the replica database.
func (r *Replica) Close() error { return r.db.Close() }

// q adapts a statement written for SQLite to the database's dialect.
func (r *Replica) q(query string) string {
	if r.postgres {
		return pgdb.Rebind(query)
	}
	return query
}

// SyncStats tells what one sync did. It holds counts only: directory
// entries carry no patient data, but the log needs no more than this.
type SyncStats struct {
	Initial  bool // the first sync of this replica (no _since)
	Pages    int  // history pages fetched
	Versions int  // resource versions received
	Upserted int  // resources created or changed in the replica
	Deleted  int  // resources removed from the replica
	Ignored  int  // URAs not entered: this directory does not hold them (anti-spoofing)
	Retries  int  // requests repeated after 429 or 503
}

// version is one resource version of a history Bundle.
type version struct {
	typ, id string
	vid     string
	updated int64 // meta.lastUpdated, Unix ms; 0 when the directory gave none
	deleted bool
	body    json.RawMessage
}

// newer tells whether a is a later version of the same resource than b:
// by versionId when both are numbers (they only grow), else by time.
func (a version) newer(b version) bool {
	na, errA := strconv.ParseInt(a.vid, 10, 64)
	nb, errB := strconv.ParseInt(b.vid, 10, 64)
	if errA == nil && errB == nil && na != nb {
		return na > nb
	}
	return a.updated > b.updated
}

// Sync brings the replica up to date. Everything fetched in one sync is
// applied in one database transaction together with the new cursors, so a
// sync interrupted halfway (an error, a malformed page, a cancelled ctx)
// leaves the replica exactly as it was; the next sync starts over from the
// same cursors.
func (r *Replica) Sync(ctx context.Context) (SyncStats, error) {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	var st SyncStats
	cursors, err := r.cursors(ctx)
	if err != nil {
		return st, err
	}
	st.Initial = len(cursors) == 0
	latest := map[[2]string]version{} // newest version per resource seen in this sync
	next := map[string]int64{}
	for _, typ := range r.types {
		q := url.Values{"_count": {strconv.Itoa(r.pageSz)}}
		if c := cursors[typ]; c > 0 {
			q.Set("_since", time.UnixMilli(c).Add(-r.overlap).UTC().Format(time.RFC3339Nano))
		}
		u := strings.TrimSuffix(r.src.Base, "/") + "/" + typ + "/_history?" + q.Encode()
		newest := cursors[typ]
		for u != "" {
			vs, nextURL, err := r.fetch(ctx, u, typ, &st)
			if err != nil {
				return st, fmt.Errorf("sync %s: %w", typ, err)
			}
			st.Pages++
			st.Versions += len(vs)
			for _, v := range vs {
				k := [2]string{v.typ, v.id}
				if cur, ok := latest[k]; !ok || v.newer(cur) {
					latest[k] = v
				}
				newest = max(newest, v.updated)
			}
			u = nextURL
		}
		next[typ] = newest
	}
	if err := r.apply(ctx, latest, next, &st); err != nil {
		return st, err
	}
	return st, nil
}

func (r *Replica) cursors(ctx context.Context) (map[string]int64, error) {
	rows, err := r.db.QueryContext(ctx, r.q(`SELECT type, since FROM replica_cursor`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var t string
		var s int64
		if err := rows.Scan(&t, &s); err != nil {
			return nil, err
		}
		out[t] = s
	}
	return out, rows.Err()
}

// fetch gets one history page of typ, honouring Retry-After on 429 and 503.
func (r *Replica) fetch(ctx context.Context, u, typ string, st *SyncStats) ([]version, string, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, "", err
		}
		req.Header.Set("Accept", "application/fhir+json")
		resp, err := r.src.HTTP.Do(req)
		if err != nil {
			return nil, "", err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes+1))
		resp.Body.Close()
		if err != nil {
			return nil, "", err
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			if attempt >= maxRetries {
				return nil, "", fmt.Errorf("directory answered %s %d times", resp.Status, attempt+1)
			}
			wait := retryAfter(resp.Header.Get("Retry-After"), r.now(), attempt, r.maxWait)
			r.log.Info("addressbook asks to slow down", "status", resp.StatusCode, "wait", wait)
			st.Retries++
			if err := r.sleep(ctx, wait); err != nil {
				return nil, "", err
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return nil, "", fmt.Errorf("directory answered %s", resp.Status)
		}
		if len(body) > maxPageBytes {
			return nil, "", fmt.Errorf("%w: a page over %d bytes", ErrMalformed, maxPageBytes)
		}
		return r.parsePage(body, typ)
	}
}

// retryAfter is the wait a 429 or 503 asks: Retry-After in seconds or as an
// HTTP date, capped; without one, 1s, 2s, 4s… by attempt.
func retryAfter(v string, now time.Time, attempt int, cap time.Duration) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, cap)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), cap)
	}
	return min(time.Second<<attempt, cap)
}

// historyPage is what Sync reads of a history Bundle.
type historyPage struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  *struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
		Response *struct {
			Etag         string `json:"etag"`
			LastModified string `json:"lastModified"`
		} `json:"response"`
	} `json:"entry"`
}

// parsePage reads a history page of typ. Every entry must be a version of
// typ with an id and, unless a deletion, its resource; anything else makes
// the whole page (and so the sync) fail rather than be half applied.
func (r *Replica) parsePage(body []byte, typ string) ([]version, string, error) {
	var p historyPage
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Bundle" {
		return nil, "", fmt.Errorf("%w: not a Bundle", ErrMalformed)
	}
	if p.Type != "history" {
		return nil, "", fmt.Errorf("%w: a %q Bundle where a history Bundle was asked", ErrMalformed, p.Type)
	}
	next := ""
	for _, l := range p.Link {
		if l.Relation == "next" {
			next = l.URL
		}
	}
	if next != "" {
		if err := r.sameDirectory(next); err != nil {
			return nil, "", err
		}
	}
	out := make([]version, 0, len(p.Entry))
	for i, e := range p.Entry {
		if e.Request == nil {
			return nil, "", fmt.Errorf("%w: entry %d has no request", ErrMalformed, i)
		}
		v := version{typ: typ}
		if e.Response != nil {
			v.vid = etagVersion(e.Response.Etag)
			if e.Response.LastModified != "" {
				t, err := time.Parse(time.RFC3339Nano, e.Response.LastModified)
				if err != nil {
					return nil, "", fmt.Errorf("%w: entry %d: response.lastModified is not an instant", ErrMalformed, i)
				}
				v.updated = t.UnixMilli()
			}
		}
		if e.Request.Method == http.MethodDelete {
			// request.url is Type/id (or Type/id/_history/n).
			t, id, _ := strings.Cut(strings.SplitN(strings.TrimPrefix(e.Request.URL, strings.TrimSuffix(r.src.Base, "/")+"/"), "/_history", 2)[0], "/")
			if t != typ || !validID(id) {
				return nil, "", fmt.Errorf("%w: entry %d deletes %q, not a %s", ErrMalformed, i, e.Request.URL, typ)
			}
			v.id, v.deleted = id, true
			out = append(out, v)
			continue
		}
		var h resourceHead
		if len(e.Resource) == 0 || json.Unmarshal(e.Resource, &h) != nil {
			return nil, "", fmt.Errorf("%w: entry %d has no resource", ErrMalformed, i)
		}
		if h.ResourceType != typ || !validID(h.ID) {
			return nil, "", fmt.Errorf("%w: entry %d is a %q with id %q in the history of %s", ErrMalformed, i, h.ResourceType, h.ID, typ)
		}
		v.id, v.body = h.ID, e.Resource
		if h.Meta.VersionID != "" {
			v.vid = h.Meta.VersionID
		}
		if h.Meta.LastUpdated != "" {
			t, err := time.Parse(time.RFC3339Nano, h.Meta.LastUpdated)
			if err != nil {
				return nil, "", fmt.Errorf("%w: entry %d: meta.lastUpdated is not an instant", ErrMalformed, i)
			}
			v.updated = t.UnixMilli()
		}
		out = append(out, v)
	}
	return out, next, nil
}

// sameDirectory refuses a next link that leaves the directory: a page must
// not send the replica (and its client certificate) elsewhere.
func (r *Replica) sameDirectory(link string) error {
	base, _ := url.Parse(strings.TrimSuffix(r.src.Base, "/"))
	u, err := url.Parse(link)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("%w: next link %q is not an absolute URL", ErrMalformed, link)
	}
	p := path.Clean("/" + u.Path)
	if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) ||
		u.User != nil || !strings.HasPrefix(p+"/", strings.TrimSuffix(base.Path, "/")+"/") || p != u.Path {
		return fmt.Errorf("%w: next link %q leaves the directory", ErrMalformed, link)
	}
	return nil
}

type resourceHead struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
}

// apply writes what a sync collected, and the new cursors, in one
// transaction. A version older than what the replica holds (an overlap
// re-read) changes nothing.
func (r *Replica) apply(ctx context.Context, latest map[[2]string]version, cursors map[string]int64, st *SyncStats) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	del, err := tx.PrepareContext(ctx, r.q(`DELETE FROM replica_resource WHERE type = ? AND id = ? AND (CAST(? AS BIGINT) = 0 OR updated <= ?)`))
	if err != nil {
		return err
	}
	defer del.Close()
	up, err := tx.PrepareContext(ctx, r.q(`INSERT INTO replica_resource (type, id, version, updated, body) VALUES (?,?,?,?,?)
		ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, updated = excluded.updated, body = excluded.body
		WHERE excluded.updated > replica_resource.updated
		   OR (excluded.updated = replica_resource.updated AND excluded.version <> replica_resource.version)`))
	if err != nil {
		return err
	}
	defer up.Close()
	unmap, err := tx.PrepareContext(ctx, r.q(`DELETE FROM replica_org_ura WHERE org_id = ?`))
	if err != nil {
		return err
	}
	defer unmap.Close()
	mapURA, err := tx.PrepareContext(ctx, r.q(`INSERT INTO replica_org_ura (ura, org_id) VALUES (?, ?) ON CONFLICT DO NOTHING`))
	if err != nil {
		return err
	}
	defer mapURA.Close()

	// A stable order keeps the transaction's work the same from run to run.
	keys := make([][2]string, 0, len(latest))
	for k := range latest {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	for _, k := range keys {
		v := latest[k]
		if v.deleted {
			res, err := del.ExecContext(ctx, v.typ, v.id, v.updated, v.updated)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				st.Deleted++
				if v.typ == "Organization" {
					if _, err := unmap.ExecContext(ctx, v.id); err != nil {
						return err
					}
				}
			}
			continue
		}
		res, err := up.ExecContext(ctx, v.typ, v.id, v.vid, v.updated, []byte(v.body))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // what the replica holds is as new
		}
		st.Upserted++
		if v.typ != "Organization" {
			continue
		}
		if _, err := unmap.ExecContext(ctx, v.id); err != nil {
			return err
		}
		var o orgHead
		_ = json.Unmarshal(v.body, &o) // parsed before as a resourceHead
		for _, u := range o.uras() {
			if !r.holds(u) {
				st.Ignored++
				r.log.Warn("addressbook entry for a URA this directory does not hold ignored", "organization", v.id, "ura", u)
				continue
			}
			if _, err := mapURA.ExecContext(ctx, u, v.id); err != nil {
				return err
			}
		}
	}
	for typ, since := range cursors {
		if _, err := tx.ExecContext(ctx, r.q(`INSERT INTO replica_cursor (type, since) VALUES (?, ?)
			ON CONFLICT (type) DO UPDATE SET since = excluded.since`), typ, since); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, r.q(`INSERT INTO replica_sync (id, synced_at) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET synced_at = excluded.synced_at`), r.now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// LastSync is when the last sync completed; zero when none has.
func (r *Replica) LastSync(ctx context.Context) (time.Time, error) {
	var ms int64
	err := r.db.QueryRowContext(ctx, r.q(`SELECT synced_at FROM replica_sync WHERE id = 1`)).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}

// Counts returns the number of resources per type in the replica.
func (r *Replica) Counts(ctx context.Context) (map[string]int, error) {
	rows, err := r.db.QueryContext(ctx, r.q(`SELECT type, COUNT(*) FROM replica_resource GROUP BY type`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

// Endpoint resolves like Client.Endpoint, from the replica: only
// Organizations whose URA this directory holds, only Endpoints they
// reference and that name them (or nobody) as managingOrganization.
func (r *Replica) Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error) {
	rows, err := r.db.QueryContext(ctx, r.q(`SELECT o.id, o.body FROM replica_org_ura u JOIN replica_resource o
		ON o.type = 'Organization' AND o.id = u.org_id WHERE u.ura = ? ORDER BY o.id`), ura)
	if err != nil {
		return "", err
	}
	type org struct {
		id   string
		body []byte
	}
	var orgs []org
	for rows.Next() {
		var o org
		if err := rows.Scan(&o.id, &o.body); err != nil {
			rows.Close()
			return "", err
		}
		orgs = append(orgs, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	if len(orgs) == 0 {
		return "", fmt.Errorf("%w: organisation %s is not in the addressbook", ErrNotFound, ura)
	}
	var eps []endpoint
	for _, o := range orgs {
		var head orgHead
		if json.Unmarshal(o.body, &head) != nil {
			continue
		}
		for _, ref := range head.Endpoint {
			id, ok := strings.CutPrefix(ref.Reference, "Endpoint/")
			if !ok {
				continue
			}
			var b []byte
			err := r.db.QueryRowContext(ctx, r.q(`SELECT body FROM replica_resource WHERE type = 'Endpoint' AND id = ?`), id).Scan(&b)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return "", err
			}
			if ep, ok := parseEndpoint(b); ok && managedBy(ep, "Organization/"+o.id) {
				eps = append(eps, ep)
			}
		}
	}
	return pick(eps, ura, payloadType, fhirVersion, r.now())
}
