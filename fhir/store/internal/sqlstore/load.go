package sqlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// Copier is a Conn that can put many rows into a table in one go
// (PostgreSQL's COPY). Load uses it when the Conn has it, and multi-row
// INSERTs of prepared statements otherwise.
type Copier interface {
	CopyRows(ctx context.Context, table string, cols []string, rows [][]any) error
}

// ParseAll reads the type and id of bodies for Load, spread over the CPUs.
// The full decoding, which the index needs, waits until Load knows which
// bodies it writes: loading unchanged content again decodes nothing more.
func (e *Engine) ParseAll(bodies []json.RawMessage) ([]*Parsed, error) {
	ps := make([]*Parsed, len(bodies))
	errs := make([]error, len(bodies))
	parallel(len(bodies), func(i int) {
		p, err := e.parseHead(bodies[i])
		if err != nil {
			errs[i] = fmt.Errorf("load item %d: %w", i, err)
		}
		ps[i] = p
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ps, nil
}

// parseHead checks body as Parse does (one JSON object, a resource type of
// the version, a valid id, here required) without decoding the rest. It
// splits the top level without checking the values: a body Load writes is
// parsed in full before, and one it leaves alone equals the stored one.
func (e *Engine) parseHead(body []byte) (*Parsed, error) {
	typ, id, err := headOf(body)
	if err != nil {
		// Parse words it the way the single write path does.
		_, perr := e.Parse(body)
		if perr == nil {
			perr = fmt.Errorf("%w: %v", store.ErrInvalid, err)
		}
		return nil, perr
	}
	if typ == "" {
		return nil, fmt.Errorf("%w: missing resourceType", store.ErrInvalid)
	}
	if !e.Defs.IsResourceType(typ) {
		return nil, fmt.Errorf("%w: unknown resourceType %q for FHIR %s", store.ErrInvalid, typ, e.Defs.Version)
	}
	if id == "" {
		return nil, fmt.Errorf("%w: update needs an id", store.ErrInvalid)
	}
	if !validate.IsID(id) {
		return nil, fmt.Errorf("%w: invalid id", store.ErrInvalid)
	}
	return &Parsed{Type: typ, ID: id, body: body}, nil
}

// headOf returns the resourceType and id members of a resource, "" when
// absent; an error when body is no object or either member no string.
func headOf(body []byte) (typ, id string, err error) {
	ms, err := fhir.SplitMembers(body)
	if err != nil {
		return "", "", err
	}
	for _, m := range ms {
		var dst *string
		switch m.Key {
		case "resourceType":
			dst = &typ
		case "id":
			dst = &id
		default:
			continue
		}
		v := m.Value
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
			*dst = string(v[1 : len(v)-1])
		} else if err := json.Unmarshal(v, dst); err != nil {
			return "", "", fmt.Errorf("%s: %v", m.Key, err)
		}
	}
	return typ, id, nil
}

// loadRow is the current row of one resource of a Load.
type loadRow struct {
	rid     int64
	version int
	lu      int64
	deleted bool
	exists  bool
	body    []byte
}

// Load writes ps as the next versions of their resources; see store.Loader.
// c must be a transaction. The statements are set-based on PostgreSQL (one
// per table) and prepared, reused statements on SQLite, where a statement
// costs no round trip.
func (e *Engine) Load(ctx context.Context, c Conn, tenant string, ps []*Parsed) ([]store.LoadResult, error) {
	seen := make(map[[2]string]bool, len(ps))
	for _, p := range ps {
		if p.ID == "" {
			return nil, fmt.Errorf("%w: a loaded %s needs an id", store.ErrInvalid, p.Type)
		}
		k := [2]string{p.Type, p.ID}
		if seen[k] {
			return nil, fmt.Errorf("%w: %s/%s twice in one load", store.ErrInvalid, p.Type, p.ID)
		}
		seen[k] = true
	}
	cur, err := e.currentRows(ctx, c, tenant, ps)
	if err != nil {
		return nil, e.wrap(err)
	}
	now := e.Now().UTC().Truncate(time.Millisecond)
	lu := now.UnixMilli()
	res := make([]store.LoadResult, len(ps))
	bodies := make([][]byte, len(ps))
	errs := make([]error, len(ps))
	// Comparing with the stored version and stamping meta are independent
	// per resource.
	parallel(len(ps), func(i int) {
		p, r := ps[i], cur[i]
		res[i] = store.LoadResult{Type: p.Type, ID: p.ID}
		if r.exists && !r.deleted && sameStored(r, p) {
			res[i].Outcome, res[i].Version = store.Unchanged, strconv.Itoa(r.version)
			return
		}
		res[i].Version = strconv.Itoa(r.version + 1)
		res[i].Outcome = store.Updated
		if !r.exists || r.deleted {
			res[i].Outcome = store.Created
		}
		full, err := e.Parse(p.body)
		if err != nil {
			errs[i] = fmt.Errorf("load item %d: %w", i, err)
			return
		}
		p.doc, p.members = full.doc, full.members
		b, err := p.withMeta(res[i].Version, now)
		if err != nil {
			errs[i] = fmt.Errorf("%w: %s/%s: %v", store.ErrInvalid, p.Type, p.ID, err)
		}
		bodies[i] = b
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var written, fresh, old []int
	for i := range ps {
		switch {
		case res[i].Outcome == store.Unchanged:
			continue
		case cur[i].exists:
			old = append(old, i)
		default:
			fresh = append(fresh, i)
		}
		written = append(written, i)
	}
	if len(written) == 0 {
		return res, nil
	}
	versions := make([][]any, 0, len(written))
	for _, i := range written {
		versions = append(versions, []any{tenant, ps[i].Type, ps[i].ID, cur[i].version + 1, lu, bodies[i]})
	}
	if err := e.putRows(ctx, c, "resource_version", []string{"tenant", "type", "id", "version", "last_updated", "body"}, versions); err != nil {
		return nil, err
	}
	rids := make([]int64, len(ps))
	if err := e.updateRows(ctx, c, old, cur, bodies, lu, rids); err != nil {
		return nil, err
	}
	if err := e.insertResources(ctx, c, tenant, fresh, ps, bodies, lu, rids); err != nil {
		return nil, err
	}
	// The index rows of every written resource, table by table.
	ixs := make([]search.Index, len(written))
	parallel(len(written), func(k int) {
		p := ps[written[k]]
		ixs[k] = search.Extract(e.Defs, p.Type, p.doc)
	})
	rows := indexRows(tenant, ps, written, rids, ixs)
	for _, t := range indexColumns {
		if err := e.putRows(ctx, c, t.table, t.cols, rows[t.table]); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// sameStored tells whether p has the content of the stored version r. A
// resource loaded again as it was is byte for byte what the store made of
// it then; anything else gets the full comparison.
func sameStored(r loadRow, p *Parsed) bool {
	if b, err := withMeta(p.body, p.ID, strconv.Itoa(r.version), time.UnixMilli(r.lu)); err == nil && bytes.Equal(b, r.body) {
		return true
	}
	return fhir.SameContent(r.body, p.body)
}

// currentRows reads the current rows of ps, locking them on PostgreSQL.
func (e *Engine) currentRows(ctx context.Context, c Conn, tenant string, ps []*Parsed) ([]loadRow, error) {
	cur := make([]loadRow, len(ps))
	if !e.Dialect.Postgres {
		return cur, e.currentRowsSQLite(ctx, c, tenant, ps, cur)
	}
	at := make(map[[2]string]int, len(ps))
	types, ids := make([]string, len(ps)), make([]string, len(ps))
	for i, p := range ps {
		types[i], ids[i] = p.Type, p.ID
		at[[2]string{p.Type, p.ID}] = i
	}
	rs, err := c.Query(ctx, `SELECT r.rid, r.type, r.id, r.version, r.last_updated, r.deleted, r.body FROM resource r
		JOIN unnest(?::text[], ?::text[]) AS u(type, id) ON r.type = u.type AND r.id = u.id
		WHERE r.tenant = ? FOR UPDATE OF r`, types, ids, tenant)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	for rs.Next() {
		var (
			r        loadRow
			typ, id  string
			lastUpdt int64
		)
		if err := rs.Scan(&r.rid, &typ, &id, &r.version, &lastUpdt, &r.deleted, &r.body); err != nil {
			return nil, err
		}
		r.lu, r.exists = lastUpdt, true
		if i, ok := at[[2]string{typ, id}]; ok {
			cur[i] = r
		}
	}
	return cur, rs.Err()
}

// lookupBatch is how many ids of one type one SQLite lookup of Load asks
// for.
const lookupBatch = 64

// lookupSQL reads the current rows of up to lookupBatch ids of one type
// through the (tenant, type, id) index.
var lookupSQL = `SELECT rid, id, version, last_updated, deleted, body FROM resource WHERE tenant = ? AND type = ? AND id IN (` +
	strings.Repeat("?, ", lookupBatch-1) + `?)`

// currentRowsSQLite fills cur with the current rows of ps, lookupBatch ids
// of one type per statement: one prepared statement for every lookup, the
// last of a type filled up by repeating an id.
func (e *Engine) currentRowsSQLite(ctx context.Context, c Conn, tenant string, ps []*Parsed, cur []loadRow) error {
	byType := make(map[string][]int)
	var order []string
	for i, p := range ps {
		if _, ok := byType[p.Type]; !ok {
			order = append(order, p.Type)
		}
		byType[p.Type] = append(byType[p.Type], i)
	}
	args := make([]any, 2+lookupBatch)
	at := make(map[string]int, lookupBatch)
	for _, typ := range order {
		idx := byType[typ]
		for len(idx) > 0 {
			chunk := idx[:min(lookupBatch, len(idx))]
			idx = idx[len(chunk):]
			clear(at)
			args[0], args[1] = tenant, typ
			for k := range lookupBatch {
				i := chunk[min(k, len(chunk)-1)]
				args[2+k] = ps[i].ID
				at[ps[i].ID] = i
			}
			if err := e.scanCurrent(ctx, c, args, at, cur); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *Engine) scanCurrent(ctx context.Context, c Conn, args []any, at map[string]int, cur []loadRow) error {
	rs, err := c.Query(ctx, lookupSQL, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var (
			r  loadRow
			id string
		)
		if err := rs.Scan(&r.rid, &id, &r.version, &r.lu, &r.deleted, &r.body); err != nil {
			return err
		}
		if i, ok := at[id]; ok {
			r.exists = true
			cur[i] = r
		}
	}
	return rs.Err()
}

// updateRows makes the written versions of existing resources (old) their
// current rows and removes their index rows; rids gets their rids.
func (e *Engine) updateRows(ctx context.Context, c Conn, old []int, cur []loadRow, bodies [][]byte, lu int64, rids []int64) error {
	if len(old) == 0 {
		return nil
	}
	if !e.Dialect.Postgres {
		for _, i := range old {
			rids[i] = cur[i].rid
			if err := e.deleteIndex(ctx, c, cur[i].rid); err != nil {
				return err
			}
			if err := c.Exec(ctx, `UPDATE resource SET version = ?, last_updated = ?, deleted = FALSE, body = ? WHERE rid = ?`,
				cur[i].version+1, lu, bodies[i], cur[i].rid); err != nil {
				return e.wrap(err)
			}
		}
		return nil
	}
	ridv, verv, bodyv := make([]int64, len(old)), make([]int32, len(old)), make([][]byte, len(old))
	for k, i := range old {
		rids[i] = cur[i].rid
		ridv[k], verv[k], bodyv[k] = cur[i].rid, int32(cur[i].version+1), bodies[i]
	}
	for _, t := range IndexTables {
		if err := c.Exec(ctx, `DELETE FROM `+t+` WHERE rid = ANY(?::bigint[])`, ridv); err != nil {
			return e.wrap(err)
		}
	}
	return e.wrap(c.Exec(ctx, `UPDATE resource AS r SET version = u.version, last_updated = ?, deleted = FALSE, body = u.body
		FROM unnest(?::bigint[], ?::integer[], ?::bytea[]) AS u(rid, version, body) WHERE r.rid = u.rid`, lu, ridv, verv, bodyv))
}

// insertResources inserts the current rows of new resources (fresh); rids gets
// their rids.
func (e *Engine) insertResources(ctx context.Context, c Conn, tenant string, fresh []int, ps []*Parsed, bodies [][]byte, lu int64, rids []int64) error {
	if len(fresh) == 0 {
		return nil
	}
	if err := e.newRids(ctx, c, fresh, rids); err != nil {
		return e.wrap(err)
	}
	rows := make([][]any, len(fresh))
	for k, i := range fresh {
		rows[k] = []any{rids[i], tenant, ps[i].Type, ps[i].ID, 1, lu, false, bodies[i]}
	}
	// COPY on PostgreSQL (which, unlike INSERT, writes the given rid into
	// the identity column), multi-row INSERTs on SQLite.
	return e.putRows(ctx, c, "resource", []string{"rid", "tenant", "type", "id", "version", "last_updated", "deleted", "body"}, rows)
}

// newRids sets rids[i] for every i of fresh to an unused rid. On
// PostgreSQL they come from the identity column's sequence, as an INSERT
// would take them. On SQLite the single writer holds the database, so the
// rids SQLite would pick, the largest plus one onwards, are free.
func (e *Engine) newRids(ctx context.Context, c Conn, fresh []int, rids []int64) error {
	if !e.Dialect.Postgres {
		var last int64
		if err := queryRow(ctx, c, []any{&last}, `SELECT COALESCE(MAX(rid), 0) FROM resource`); err != nil {
			return err
		}
		for _, i := range fresh {
			last++
			rids[i] = last
		}
		return nil
	}
	rs, err := c.Query(ctx, `SELECT nextval(pg_get_serial_sequence('resource', 'rid')) FROM generate_series(1, ?::integer)`, len(fresh))
	if err != nil {
		return err
	}
	defer rs.Close()
	k := 0
	for rs.Next() {
		if k == len(fresh) {
			return fmt.Errorf("%s: load: more rids than asked for", e.Dialect.Name)
		}
		if err := rs.Scan(&rids[fresh[k]]); err != nil {
			return err
		}
		k++
	}
	if err := rs.Err(); err != nil {
		return err
	}
	if k != len(fresh) {
		return fmt.Errorf("%s: load: %d of %d rids", e.Dialect.Name, k, len(fresh))
	}
	return nil
}

// indexColumns are the columns of each index table, rid, tenant and type
// first.
var indexColumns = []struct {
	table string
	cols  []string
}{
	{"idx_token", []string{"rid", "tenant", "type", "param", "system", "code", "text"}},
	{"idx_ref", []string{"rid", "tenant", "type", "param", "target_type", "target_id", "url"}},
	{"idx_date", []string{"rid", "tenant", "type", "param", "low", "high"}},
	{"idx_string", []string{"rid", "tenant", "type", "param", "norm", "raw"}},
	{"idx_quantity", []string{"rid", "tenant", "type", "param", "value", "system", "code", "unit"}},
	{"idx_uri", []string{"rid", "tenant", "type", "param", "uri"}},
	{"idx_number", []string{"rid", "tenant", "type", "param", "value"}},
}

// indexRows lays out the index values ixs of the written resources as rows
// per index table. The rows of a table share one backing array, and the
// rid, tenant and type of a resource are boxed once for all its rows: a
// resource has ~9 index rows, and boxing each value of each row was the
// largest source of allocations of a load.
func indexRows(tenant string, ps []*Parsed, written []int, rids []int64, ixs []search.Index) map[string][][]any {
	var n [7]int
	for k := range written {
		ix := &ixs[k]
		n[0] += len(ix.Tokens)
		n[1] += len(ix.Refs)
		n[2] += len(ix.Dates)
		n[3] += len(ix.Strings)
		n[4] += len(ix.Quantities)
		n[5] += len(ix.URIs)
		n[6] += len(ix.Numbers)
	}
	rows := make(map[string][][]any, len(indexColumns))
	tables := make([]table, len(indexColumns))
	for t, ic := range indexColumns {
		tables[t] = table{rows: make([][]any, 0, n[t]), vals: make([]any, 0, n[t]*len(ic.cols))}
	}
	tenantV := any(tenant)
	for k, i := range written {
		ridV, typV, ix := any(rids[i]), any(ps[i].Type), &ixs[k]
		for _, v := range ix.Tokens {
			tables[0].add(ridV, tenantV, typV, v.Param, v.System, v.Code, v.Text)
		}
		for _, v := range ix.Refs {
			tables[1].add(ridV, tenantV, typV, v.Param, v.Type, v.ID, v.URL)
		}
		for _, v := range ix.Dates {
			tables[2].add(ridV, tenantV, typV, v.Param, v.Low, v.High)
		}
		for _, v := range ix.Strings {
			tables[3].add(ridV, tenantV, typV, v.Param, v.Norm, v.Raw)
		}
		for _, v := range ix.Quantities {
			tables[4].add(ridV, tenantV, typV, v.Param, v.Value, v.System, v.Code, v.Unit)
		}
		for _, v := range ix.URIs {
			tables[5].add(ridV, tenantV, typV, v.Param, v.URI)
		}
		for _, v := range ix.Numbers {
			tables[6].add(ridV, tenantV, typV, v.Param, v.Value)
		}
	}
	for t, ic := range indexColumns {
		if len(tables[t].rows) > 0 {
			rows[ic.table] = tables[t].rows
		}
	}
	return rows
}

// table collects the rows of one index table in one backing array.
type table struct {
	rows [][]any
	vals []any
}

func (t *table) add(vals ...any) {
	at := len(t.vals)
	t.vals = append(t.vals, vals...)
	t.rows = append(t.rows, t.vals[at:len(t.vals):len(t.vals)])
}

// putRows puts rows into table: by COPY when c is a Copier, otherwise
// by multi-row INSERTs of one prepared statement (insertBatch rows) and
// single-row INSERTs for the rest, so the statement texts stay few. On
// SQLite a failing INSERT rolls the whole transaction back.
func (e *Engine) putRows(ctx context.Context, c Conn, table string, cols []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if cp, ok := c.(Copier); ok {
		if err := cp.CopyRows(ctx, table, cols, rows); err != nil {
			return fmt.Errorf("%s: load %s: %w", e.Dialect.Name, table, err)
		}
		return nil
	}
	one := "(" + strings.Repeat("?, ", len(cols)-1) + "?)"
	// A Load is all or nothing: OR ROLLBACK spares SQLite the statement
	// journal an INSERT that may fail halfway needs.
	head := "INSERT OR ROLLBACK INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES "
	full := head + strings.Repeat(one+", ", insertBatch-1) + one
	args := make([]any, 0, insertBatch*len(cols))
	for len(rows) >= insertBatch {
		args = args[:0]
		for _, r := range rows[:insertBatch] {
			args = append(args, r...)
		}
		if err := c.Exec(ctx, full, args...); err != nil {
			return fmt.Errorf("%s: load %s: %w", e.Dialect.Name, table, err)
		}
		rows = rows[insertBatch:]
	}
	for _, r := range rows {
		if err := c.Exec(ctx, head+one, r...); err != nil {
			return fmt.Errorf("%s: load %s: %w", e.Dialect.Name, table, err)
		}
	}
	return nil
}

// parallel runs fn(0) … fn(n-1) on as many goroutines as there are CPUs
// for Go; fn must only touch index i of shared slices.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
