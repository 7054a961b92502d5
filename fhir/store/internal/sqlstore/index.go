package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/fhir/search"
)

// IndexTables are the tables of search index values, one per parameter type.
var IndexTables = []string{"idx_token", "idx_ref", "idx_date", "idx_string", "idx_quantity", "idx_uri", "idx_number"}

// indexRow is one index row of a resource in any index table: t is the
// table's place in IndexTables, param the parameter, and the other fields
// the table's value columns as indexTableDefs lays them out (zero when the
// table has no such column).
type indexRow struct {
	t          int
	param      string
	s1, s2, s3 string
	f          float64
	i1, i2     int64
}

// indexTableDefs are the value columns of each index table (after rid,
// tenant, type and param) and where an indexRow keeps them: add appends
// them to a statement's arguments.
var indexTableDefs = [...]struct {
	cols []string
	add  func(args []any, r *indexRow) []any
}{
	{[]string{"system", "code", "text"}, func(a []any, r *indexRow) []any { return append(a, r.s1, r.s2, r.s3) }},
	{[]string{"target_type", "target_id", "url"}, func(a []any, r *indexRow) []any { return append(a, r.s1, r.s2, r.s3) }},
	{[]string{"low", "high"}, func(a []any, r *indexRow) []any { return append(a, r.i1, r.i2) }},
	{[]string{"norm", "raw"}, func(a []any, r *indexRow) []any { return append(a, r.s1, r.s2) }},
	{[]string{"value", "system", "code", "unit"}, func(a []any, r *indexRow) []any { return append(a, r.f, r.s1, r.s2, r.s3) }},
	{[]string{"uri"}, func(a []any, r *indexRow) []any { return append(a, r.s1) }},
	{[]string{"value"}, func(a []any, r *indexRow) []any { return append(a, r.f) }},
}

// updateSQL sets the values of the one row of a parameter (the values, rid
// and param given), per index table.
var updateSQL = func() (qs [len(indexTableDefs)]string) {
	for t, def := range indexTableDefs {
		qs[t] = `UPDATE ` + IndexTables[t] + ` SET ` + strings.Join(def.cols, ` = ?, `) + ` = ? WHERE rid = ? AND param = ?`
	}
	return qs
}()

// indexSQL reads the index rows of one resource, whose rid is ridExpr, from
// every index table in one statement, as indexRows.
func indexSQL(ridExpr string) string {
	const f, i = "CAST(0 AS DOUBLE PRECISION)", "CAST(0 AS BIGINT)"
	sel := [...]string{
		"system, code, text, " + f + ", " + i + ", " + i,
		"target_type, target_id, url, " + f + ", " + i + ", " + i,
		"'', '', '', " + f + ", low, high",
		"norm, raw, '', " + f + ", " + i + ", " + i,
		"system, code, unit, value, " + i + ", " + i,
		"uri, '', '', " + f + ", " + i + ", " + i,
		"'', '', '', value, " + i + ", " + i,
	}
	parts := make([]string, len(IndexTables))
	for t, table := range IndexTables {
		parts[t] = fmt.Sprintf("SELECT %d, param, %s FROM %s WHERE rid = %s", t, sel[t], table, ridExpr)
	}
	return strings.Join(parts, " UNION ALL ")
}

// indexOfSQL reads the index rows of a rid (given seven times).
var indexOfSQL = indexSQL("?")

// currentSQL reads the current row of a resource (tenant, type and id
// given eight times) and its index rows in one statement (SQLite, where
// the row needs no lock): the row comes as a row of table -1 (-2 when
// deleted) with its rid and version in i1 and i2.
var currentSQL = `SELECT CASE WHEN deleted THEN -2 ELSE -1 END, '', '', '', '', CAST(0 AS DOUBLE PRECISION), rid, version
	FROM resource WHERE tenant = ? AND type = ? AND id = ? UNION ALL ` +
	indexSQL("(SELECT rid FROM resource WHERE tenant = ? AND type = ? AND id = ?)")

// currentIndexed reads the current row of a resource, locking it on
// PostgreSQL, and its index rows. PostgreSQL reads the index rows in a
// statement of their own, after the lock: under READ COMMITTED a statement
// that waited for the lock still reads the other tables as of its start,
// and would miss the index rows of the write it waited for.
func (e *Engine) currentIndexed(ctx context.Context, c Conn, tenant, typ, id string) (rid int64, version int, deleted, exists bool, old []indexRow, err error) {
	if e.Dialect.Postgres {
		if rid, version, deleted, exists, err = e.current(ctx, c, tenant, typ, id); err != nil || !exists {
			return rid, version, deleted, exists, nil, e.wrap(err)
		}
		old, err = e.indexOf(ctx, c, rid)
		return rid, version, deleted, exists, old, err
	}
	args := make([]any, 0, 24)
	tenantV, typV, idV := any(tenant), any(typ), any(id)
	for range 8 {
		args = append(args, tenantV, typV, idV)
	}
	rs, err := c.Query(ctx, currentSQL, args...)
	if err != nil {
		return 0, 0, false, false, nil, e.wrap(err)
	}
	defer rs.Close()
	for rs.Next() {
		var r indexRow
		if err := rs.Scan(&r.t, &r.param, &r.s1, &r.s2, &r.s3, &r.f, &r.i1, &r.i2); err != nil {
			return 0, 0, false, false, nil, e.wrap(err)
		}
		switch {
		case r.t < -2 || r.t >= len(IndexTables):
			return 0, 0, false, false, nil, fmt.Errorf("%s: index row of unknown table %d", e.Dialect.Name, r.t)
		case r.t < 0:
			rid, version, deleted, exists = r.i1, int(r.i2), r.t == -2, true
		default:
			old = append(old, r)
		}
	}
	if err := rs.Err(); err != nil {
		return 0, 0, false, false, nil, e.wrap(err)
	}
	return rid, version, deleted, exists, old, nil
}

// indexOf returns the index rows of rid as stored.
func (e *Engine) indexOf(ctx context.Context, c Conn, rid int64) ([]indexRow, error) {
	rs, err := c.Query(ctx, indexOfSQL, rid, rid, rid, rid, rid, rid, rid)
	if err != nil {
		return nil, e.wrap(err)
	}
	defer rs.Close()
	var rows []indexRow
	for rs.Next() {
		var r indexRow
		if err := rs.Scan(&r.t, &r.param, &r.s1, &r.s2, &r.s3, &r.f, &r.i1, &r.i2); err != nil {
			return nil, e.wrap(err)
		}
		if r.t < 0 || r.t >= len(IndexTables) {
			return nil, fmt.Errorf("%s: index row of unknown table %d", e.Dialect.Name, r.t)
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, e.wrap(err)
	}
	return rows, nil
}

// indexRowsOf lays ix out as indexRows, table by table in the order of
// IndexTables, each table's rows in the order of ix.
func indexRowsOf(ix *search.Index) []indexRow {
	rows := make([]indexRow, 0, len(ix.Tokens)+len(ix.Refs)+len(ix.Dates)+len(ix.Strings)+len(ix.Quantities)+len(ix.URIs)+len(ix.Numbers))
	for _, v := range ix.Tokens {
		rows = append(rows, indexRow{t: 0, param: v.Param, s1: v.System, s2: v.Code, s3: v.Text})
	}
	for _, v := range ix.Refs {
		rows = append(rows, indexRow{t: 1, param: v.Param, s1: v.Type, s2: v.ID, s3: v.URL})
	}
	for _, v := range ix.Dates {
		rows = append(rows, indexRow{t: 2, param: v.Param, i1: v.Low, i2: v.High})
	}
	for _, v := range ix.Strings {
		rows = append(rows, indexRow{t: 3, param: v.Param, s1: v.Norm, s2: v.Raw})
	}
	for _, v := range ix.Quantities {
		rows = append(rows, indexRow{t: 4, param: v.Param, f: v.Value, s1: v.System, s2: v.Code, s3: v.Unit})
	}
	for _, v := range ix.URIs {
		rows = append(rows, indexRow{t: 5, param: v.Param, s1: v.URI})
	}
	for _, v := range ix.Numbers {
		rows = append(rows, indexRow{t: 6, param: v.Param, f: v.Value})
	}
	return rows
}

// byParam orders index rows by table and parameter only.
func byParam(a, b indexRow) int {
	return cmp.Or(cmp.Compare(a.t, b.t), strings.Compare(a.param, b.param))
}

// byValue orders index rows completely.
func byValue(a, b indexRow) int {
	return cmp.Or(byParam(a, b),
		strings.Compare(a.s1, b.s1), strings.Compare(a.s2, b.s2), strings.Compare(a.s3, b.s3),
		cmp.Compare(a.f, b.f), cmp.Compare(a.i1, b.i1), cmp.Compare(a.i2, b.i2))
}

// sameRows tells whether a and b hold the same rows, in any order.
func sameRows(a, b []indexRow) bool {
	if len(a) != len(b) {
		return false
	}
	if slices.Equal(a, b) {
		return true
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, byValue)
	slices.SortFunc(b, byValue)
	return slices.Equal(a, b)
}

// nextGroup splits off the rows of the first table and parameter of rows,
// which are ordered byParam.
func nextGroup(rows []indexRow) (group, rest []indexRow) {
	n := 1
	for n < len(rows) && byParam(rows[n], rows[0]) == 0 {
		n++
	}
	return rows[:n], rows[n:]
}

// setIndex makes the index rows of rid, which are old, the rows of ix.
// Only the parameters whose rows differ are touched: a parameter with one
// row before and after is updated in place; otherwise its old rows are
// deleted (all of a table's in one statement when none of them stays) and
// its new ones inserted. An update that changes a Task's status so writes
// the one row of "status", not the resource's whole index.
func (e *Engine) setIndex(ctx context.Context, c Conn, rid int64, tenant, typ string, old, ix []indexRow) error {
	slices.SortStableFunc(old, byParam)
	ix = slices.Clone(ix)
	slices.SortStableFunc(ix, byParam)
	type paramRef struct {
		t     int
		param string
	}
	var (
		dels    []paramRef // parameters whose old rows go
		groups  [len(indexTableDefs)]int
		updates []indexRow
		inserts []indexRow
	)
	for len(old) > 0 || len(ix) > 0 {
		var o, n []indexRow
		switch {
		case len(ix) == 0 || (len(old) > 0 && byParam(old[0], ix[0]) < 0):
			o, old = nextGroup(old)
		case len(old) == 0 || byParam(old[0], ix[0]) > 0:
			n, ix = nextGroup(ix)
		default:
			o, old = nextGroup(old)
			n, ix = nextGroup(ix)
		}
		if len(o) > 0 {
			groups[o[0].t]++
		}
		switch {
		case sameRows(o, n):
		case len(o) == 1 && len(n) == 1:
			updates = append(updates, n[0])
		default:
			if len(o) > 0 {
				dels = append(dels, paramRef{o[0].t, o[0].param})
			}
			inserts = append(inserts, n...)
		}
	}
	var gone [len(indexTableDefs)]int
	for _, d := range dels {
		gone[d.t]++
	}
	for t, table := range IndexTables {
		if gone[t] > 1 && gone[t] == groups[t] {
			if err := c.Exec(ctx, `DELETE FROM `+table+` WHERE rid = ?`, rid); err != nil {
				return e.wrap(err)
			}
		}
	}
	for _, d := range dels {
		if gone[d.t] > 1 && gone[d.t] == groups[d.t] {
			continue
		}
		if err := c.Exec(ctx, `DELETE FROM `+IndexTables[d.t]+` WHERE rid = ? AND param = ?`, rid, d.param); err != nil {
			return e.wrap(err)
		}
	}
	for i := range updates {
		r := &updates[i]
		def := &indexTableDefs[r.t]
		args := def.add(make([]any, 0, len(def.cols)+2), r)
		if err := c.Exec(ctx, updateSQL[r.t], append(args, rid, r.param)...); err != nil {
			return e.wrap(err)
		}
	}
	return e.insertIndex(ctx, c, rid, tenant, typ, inserts)
}

// deleteIndex deletes every index row of rid, one statement per table.
func (e *Engine) deleteIndex(ctx context.Context, c Conn, rid int64) error {
	for _, t := range IndexTables {
		if err := c.Exec(ctx, `DELETE FROM `+t+` WHERE rid = ?`, rid); err != nil {
			return e.wrap(err)
		}
	}
	return nil
}

// insertBatch is the most rows one multi-row INSERT carries.
const insertBatch = 64

// insertSQL caches the INSERT statements of insertIndex by table and rows.
var insertSQL struct {
	sync.Mutex
	m map[[2]int]string
}

// insertStatement returns the INSERT of n rows into index table t.
func insertStatement(t, n int) string {
	k := [2]int{t, n}
	insertSQL.Lock()
	defer insertSQL.Unlock()
	if q, ok := insertSQL.m[k]; ok {
		return q
	}
	cols := indexTableDefs[t].cols
	one := "(" + strings.Repeat("?, ", len(cols)+3) + "?)"
	q := "INSERT INTO " + IndexTables[t] + " (rid, tenant, type, param, " + strings.Join(cols, ", ") + ") VALUES " +
		strings.Repeat(one+", ", n-1) + one
	if insertSQL.m == nil {
		insertSQL.m = make(map[[2]int]string)
	}
	insertSQL.m[k] = q
	return q
}

// insertIndex inserts rows, ordered by table, as index rows of rid: one
// multi-row INSERT (one round trip) per table and insertBatch rows.
func (e *Engine) insertIndex(ctx context.Context, c Conn, rid int64, tenant, typ string, rows []indexRow) error {
	ridV, tenantV, typV := any(rid), any(tenant), any(typ)
	var args []any
	for len(rows) > 0 {
		t := rows[0].t
		n := 1
		for n < len(rows) && n < insertBatch && rows[n].t == t {
			n++
		}
		def := &indexTableDefs[t]
		args = args[:0]
		for i := range rows[:n] {
			args = append(args, ridV, tenantV, typV, rows[i].param)
			args = def.add(args, &rows[i])
		}
		if err := c.Exec(ctx, insertStatement(t, n), args...); err != nil {
			return fmt.Errorf("%s: index: %w", e.Dialect.Name, err)
		}
		rows = rows[n:]
	}
	return nil
}

// IndexRows returns the index rows of the current version of a resource as
// text, one line per row in a fixed order, for tests that compare indexes.
func (e *Engine) IndexRows(ctx context.Context, c Conn, tenant, typ, id string) ([]string, error) {
	var rid int64
	err := queryRow(ctx, c, []any{&rid}, `SELECT rid FROM resource WHERE tenant = ? AND type = ? AND id = ?`, tenant, typ, id)
	if errors.Is(err, errNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, e.wrap(err)
	}
	rows, err := e.indexOf(ctx, c, rid)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rows, byValue)
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = fmt.Sprintf("%s %s %q %q %q %v %d %d", IndexTables[r.t], r.param, r.s1, r.s2, r.s3, r.f, r.i1, r.i2)
	}
	return out, nil
}
