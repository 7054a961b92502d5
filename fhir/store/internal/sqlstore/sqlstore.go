// Package sqlstore is the SQL engine the relational backends of fhir/store
// share (sqlite, postgres): the table layout, writes with their index rows,
// reads, history and the translation of a parsed search (fhir/search) to
// SQL. A backend supplies connections and transactions (Conn) and a Dialect;
// statements are written with "?" placeholders, which a PostgreSQL Conn
// rewrites to "$n".
package sqlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// Conn runs statements: a pool, a connection or a transaction.
type Conn interface {
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	Exec(ctx context.Context, query string, args ...any) error
}

// Rows is a result set being read.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Dialect is what differs between the SQL of the backends.
type Dialect struct {
	// Name prefixes error messages ("sqlite store").
	Name string
	// Postgres selects PostgreSQL spellings (strpos, FOR UPDATE, no SQLite
	// index hints).
	Postgres bool
}

// Engine runs the store operations on a Conn.
type Engine struct {
	Defs    *spec.Definitions
	Dialect Dialect
	Now     func() time.Time
}

// errNoRows is returned by queryRow for an empty result.
var errNoRows = errors.New("no rows")

// queryRow runs a query expected to return at most one row and scans it.
func queryRow(ctx context.Context, c Conn, dest []any, query string, args ...any) error {
	rs, err := c.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	if !rs.Next() {
		if err := rs.Err(); err != nil {
			return err
		}
		return errNoRows
	}
	if err := rs.Scan(dest...); err != nil {
		return err
	}
	return rs.Err()
}

func (e *Engine) wrap(err error) error {
	if err == nil {
		return nil
	}
	// Errors of the store's own kinds (a Conn may map a unique violation
	// to ErrVersionConflict) pass as they are.
	for _, k := range []error{store.ErrVersionConflict, store.ErrNotFound, store.ErrInvalid, store.ErrInvalidSearch, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, k) {
			return err
		}
	}
	return fmt.Errorf("%s: %w", e.Dialect.Name, err)
}

// Parsed is a resource body checked and decoded for indexing.
type Parsed struct {
	Type, ID string
	body     []byte
	doc      map[string]any
	// members are the members of body, as Parse split them.
	members []fhir.Member
	// fresh: ID was made for a create, so no resource has it yet.
	fresh bool
}

// Parse checks body: one JSON object of a resource type of the version,
// with a valid id if it has one. Of its members, only those a search
// parameter of the type starts from are decoded (never a Bundle's entries,
// say): the index needs no more, and the body is stored as it came.
func (e *Engine) Parse(body []byte) (*Parsed, error) {
	if !fhir.ValidJSON(body) {
		return nil, invalidJSON(body)
	}
	ms, err := fhir.SplitMembers(body)
	if err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", store.ErrInvalid, err)
	}
	// As when decoding into a map: of repeated names the last one counts.
	var typ string
	for _, m := range ms {
		if m.Key == "resourceType" {
			typ = ""
			_ = json.Unmarshal(m.Value, &typ) // not a string: no type
		}
	}
	if typ == "" {
		return nil, fmt.Errorf("%w: missing resourceType", store.ErrInvalid)
	}
	if !e.Defs.IsResourceType(typ) {
		return nil, fmt.Errorf("%w: unknown resourceType %q for FHIR %s", store.ErrInvalid, typ, e.Defs.Version)
	}
	params := e.Defs.SearchParams(typ)
	doc := make(map[string]any, 8)
	for _, m := range ms {
		if m.Key != "resourceType" && m.Key != "id" && !indexed(params, m.Key) {
			continue
		}
		v, err := decodeValid(m.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: not a JSON object: %v", store.ErrInvalid, err)
		}
		doc[m.Key] = v
	}
	p := &Parsed{Type: typ, body: body, doc: doc, members: ms}
	if id, present := doc["id"]; present {
		var ok bool
		p.ID, ok = id.(string)
		if !ok || !validate.IsID(p.ID) {
			return nil, fmt.Errorf("%w: invalid id", store.ErrInvalid)
		}
	}
	return p, nil
}

// withMeta returns the body of p as stored in version versionID (see
// withMeta), from the members Parse split it into when it did.
func (p *Parsed) withMeta(versionID string, lastUpdated time.Time) ([]byte, error) {
	if p.members == nil {
		return withMeta(p.body, p.ID, versionID, lastUpdated)
	}
	return membersWithMeta(p.members, len(p.body), p.ID, versionID, lastUpdated)
}

// indexed tells whether a path of one of params starts at member name.
func indexed(params []spec.SearchParam, name string) bool {
	for i := range params {
		for _, path := range params[i].Paths {
			if len(path) == 0 {
				continue
			}
			if s := path[0]; s.Name == name || (s.Choice && strings.HasPrefix(name, s.Name)) {
				return true
			}
		}
	}
	return false
}

// invalidJSON says why body, which is not valid JSON, is not one object.
func invalidJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%w: not a JSON object: %v", store.ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", store.ErrInvalid)
	}
	return fmt.Errorf("%w: not a JSON object", store.ErrInvalid)
}

// ParseCreate parses body for a create: a fresh id replaces any in body.
func (e *Engine) ParseCreate(body []byte) (*Parsed, error) {
	p, err := e.Parse(body)
	if err != nil {
		return nil, err
	}
	p.ID = uuid.NewString()
	p.fresh = true
	return p, nil
}

// ParseUpdate parses body for an update, which needs an id.
func (e *Engine) ParseUpdate(body []byte) (*Parsed, error) {
	p, err := e.Parse(body)
	if err != nil {
		return nil, err
	}
	if p.ID == "" {
		return nil, fmt.Errorf("%w: update needs an id", store.ErrInvalid)
	}
	return p, nil
}

// normalizeETag accepts a versionId as "3", `W/"3"` or `"3"`.
func normalizeETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}

// current reads the current row of a resource, locking it on PostgreSQL.
func (e *Engine) current(ctx context.Context, c Conn, tenant, typ, id string) (rid int64, version int, deleted, exists bool, err error) {
	q := `SELECT rid, version, deleted FROM resource WHERE tenant = ? AND type = ? AND id = ?`
	if e.Dialect.Postgres {
		q += ` FOR UPDATE`
	}
	err = queryRow(ctx, c, []any{&rid, &version, &deleted}, q, tenant, typ, id)
	if errors.Is(err, errNoRows) {
		return 0, 0, false, false, nil
	}
	return rid, version, deleted, err == nil, err
}

// Write stores p as the next version of its resource. c must be a
// transaction: Write runs several statements.
func (e *Engine) Write(ctx context.Context, c Conn, tenant string, p *Parsed, ifMatch string) (res store.Resource, created bool, err error) {
	var (
		rid             int64
		version         int
		deleted, exists bool
		old             []indexRow
	)
	// A create's fresh id (a random UUID) needs no lookup: were it taken,
	// the INSERTs below would fail on the keys.
	if !p.fresh {
		if rid, version, deleted, exists, old, err = e.currentIndexed(ctx, c, tenant, p.Type, p.ID); err != nil {
			return res, false, err
		}
	}
	if ifMatch != "" {
		if want := normalizeETag(ifMatch); !exists || want != strconv.Itoa(version) {
			return res, false, fmt.Errorf("%w: %s/%s is at version %d, not %s", store.ErrVersionConflict, p.Type, p.ID, version, want)
		}
	}
	version++
	now := e.Now().UTC().Truncate(time.Millisecond)
	body, err := p.withMeta(strconv.Itoa(version), now)
	if err != nil {
		return res, false, fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	lu := now.UnixMilli()
	if err = c.Exec(ctx, `INSERT INTO resource_version (tenant, type, id, version, last_updated, deleted, body) VALUES (?, ?, ?, ?, ?, FALSE, ?)`,
		tenant, p.Type, p.ID, version, lu, body); err != nil {
		return res, false, e.wrap(err)
	}
	ix := search.Extract(e.Defs, p.Type, p.doc)
	rows := indexRowsOf(&ix)
	if exists {
		if err = e.setIndex(ctx, c, rid, tenant, p.Type, old, rows); err != nil {
			return res, false, err
		}
		if err = c.Exec(ctx, `UPDATE resource SET version = ?, last_updated = ?, deleted = FALSE, body = ? WHERE rid = ?`,
			version, lu, body, rid); err != nil {
			return res, false, e.wrap(err)
		}
	} else {
		if err = queryRow(ctx, c, []any{&rid}, `INSERT INTO resource (tenant, type, id, version, last_updated, deleted, body) VALUES (?, ?, ?, ?, ?, FALSE, ?) RETURNING rid`,
			tenant, p.Type, p.ID, version, lu, body); err != nil {
			return res, false, e.wrap(err)
		}
		if err = e.insertIndex(ctx, c, rid, tenant, p.Type, rows); err != nil {
			return res, false, err
		}
	}
	return store.Resource{Type: p.Type, ID: p.ID, VersionID: strconv.Itoa(version), LastUpdated: now, Body: body}, !exists || deleted, nil
}

// Delete marks the resource deleted: a new version without body, and no
// index rows (deleted resources are never found by a search). c must be a
// transaction.
func (e *Engine) Delete(ctx context.Context, c Conn, tenant, typ, id string) error {
	rid, version, deleted, exists, old, err := e.currentIndexed(ctx, c, tenant, typ, id)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: %s/%s", store.ErrNotFound, typ, id)
	}
	if deleted {
		return nil
	}
	version++
	lu := e.Now().UTC().Truncate(time.Millisecond).UnixMilli()
	if err = c.Exec(ctx, `INSERT INTO resource_version (tenant, type, id, version, last_updated, deleted, body) VALUES (?, ?, ?, ?, ?, TRUE, ?)`,
		tenant, typ, id, version, lu, []byte{}); err != nil {
		return e.wrap(err)
	}
	if err = c.Exec(ctx, `UPDATE resource SET version = ?, last_updated = ?, deleted = TRUE, body = ? WHERE rid = ?`, version, lu, []byte{}, rid); err != nil {
		return e.wrap(err)
	}
	return e.setIndex(ctx, c, rid, tenant, typ, old, nil)
}

// Read returns the current version.
func (e *Engine) Read(ctx context.Context, c Conn, tenant, typ, id string) (store.Resource, error) {
	return e.scanOne(ctx, c, typ, id, `SELECT version, last_updated, deleted, body FROM resource WHERE tenant = ? AND type = ? AND id = ?`, tenant, typ, id)
}

// VRead returns one version; a deleted version is returned with ErrDeleted.
func (e *Engine) VRead(ctx context.Context, c Conn, tenant, typ, id, versionID string) (store.Resource, error) {
	v, err := strconv.Atoi(versionID)
	if err != nil || v < 1 {
		return store.Resource{}, fmt.Errorf("%w: %s/%s version %q", store.ErrNotFound, typ, id, versionID)
	}
	return e.scanOne(ctx, c, typ, id, `SELECT version, last_updated, deleted, body FROM resource_version WHERE tenant = ? AND type = ? AND id = ? AND version = ?`, tenant, typ, id, v)
}

func (e *Engine) scanOne(ctx context.Context, c Conn, typ, id, query string, args ...any) (store.Resource, error) {
	res := store.Resource{Type: typ, ID: id}
	var (
		version int
		lu      int64
		body    []byte
	)
	err := queryRow(ctx, c, []any{&version, &lu, &res.Deleted, &body}, query, args...)
	if errors.Is(err, errNoRows) {
		return res, fmt.Errorf("%w: %s/%s", store.ErrNotFound, typ, id)
	}
	if err != nil {
		return res, e.wrap(err)
	}
	res.VersionID = strconv.Itoa(version)
	res.LastUpdated = time.UnixMilli(lu).UTC()
	if res.Deleted {
		return res, fmt.Errorf("%w: %s/%s", store.ErrDeleted, typ, id)
	}
	res.Body = body
	return res, nil
}

// History lists versions newest first; see store.Historian.
func (e *Engine) History(ctx context.Context, c Conn, tenant string, q store.HistoryQuery) (store.HistoryPage, error) {
	page := store.HistoryPage{NextOffset: -1}
	if q.ID != "" && q.Type == "" {
		return page, fmt.Errorf("%w: history of an id needs its type", store.ErrInvalidSearch)
	}
	if q.Type != "" && !e.Defs.IsResourceType(q.Type) {
		return page, fmt.Errorf("%w: unknown resource type %q", store.ErrInvalidSearch, q.Type)
	}
	if q.Count < 0 || q.Offset < 0 {
		return page, fmt.Errorf("%w: negative count or offset", store.ErrInvalidSearch)
	}
	count := q.Count
	if count == 0 {
		count = search.DefaultCount
	}
	count = min(count, search.MaxCount)
	where := "tenant = ?"
	args := []any{tenant}
	if q.Type != "" {
		where += " AND type = ?"
		args = append(args, q.Type)
	}
	if q.ID != "" {
		where += " AND id = ?"
		args = append(args, q.ID)
	}
	if !q.Since.IsZero() {
		where += " AND last_updated >= ?"
		args = append(args, q.Since.UnixMilli())
	}
	if err := queryRow(ctx, c, []any{&page.Total}, `SELECT COUNT(*) FROM resource_version WHERE `+where, args...); err != nil {
		return page, e.wrap(err)
	}
	if page.Total == 0 {
		return page, nil
	}
	// One resource's versions are newest first by number, which the key
	// index gives without a sort; ordered by last_updated, SQLite would
	// walk the type's history index instead.
	order := `last_updated DESC, type DESC, id DESC, version DESC`
	if q.ID != "" {
		order = `version DESC`
	}
	rs, err := c.Query(ctx, `SELECT type, id, version, last_updated, deleted, body FROM resource_version WHERE `+where+
		` ORDER BY `+order+` LIMIT ? OFFSET ?`, append(args, count, q.Offset)...)
	if err != nil {
		return page, e.wrap(err)
	}
	defer rs.Close()
	for rs.Next() {
		var (
			r       store.Resource
			version int
			lu      int64
			body    []byte
		)
		if err := rs.Scan(&r.Type, &r.ID, &version, &lu, &r.Deleted, &body); err != nil {
			return page, e.wrap(err)
		}
		r.VersionID = strconv.Itoa(version)
		r.LastUpdated = time.UnixMilli(lu).UTC()
		if !r.Deleted {
			r.Body = body
		}
		page.Versions = append(page.Versions, r)
	}
	if err := rs.Err(); err != nil {
		return page, e.wrap(err)
	}
	if q.Offset+count < page.Total {
		page.NextOffset = q.Offset + count
	}
	return page, nil
}
