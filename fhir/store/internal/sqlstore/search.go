package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
)

// maxChar sorts after every valid UTF-8 string: prefix p matches the range
// [p, p+maxChar).
const maxChar = "\U0010FFFF"

// Search runs a search; see store.Store.
func (e *Engine) Search(ctx context.Context, c Conn, tenant string, q store.Query) (store.Page, error) {
	params := q.Params
	if q.LastN > 0 && params.Has("max") {
		// max is the $lastn parameter already in q.LastN.
		params = cloneWithout(params, "max")
	}
	pq, err := search.Parse(e.Defs, q.Type, params, q.Strict)
	if err != nil {
		return store.Page{}, err
	}
	page := store.Page{NextOffset: -1, Ignored: pq.Ignored}

	b := newSQLBuilder(e.Dialect.Postgres)
	b.where(tenant, pq)
	where, args := b.sql.String(), b.args

	if q.LastN > 0 {
		return e.lastN(ctx, c, tenant, pq, q.LastN, where, args, page)
	}
	if pq.SummaryCount {
		page.Total, err = e.count(ctx, c, where, args)
		return page, err
	}

	var matches []row
	if pq.Count > 0 {
		query := `SELECT r.rid, r.type, r.id, r.version, r.last_updated, r.body FROM resource r WHERE ` + where +
			` ORDER BY ` + orderBy(pq, &args) + ` LIMIT ? OFFSET ?`
		matches, err = e.rows(ctx, c, query, append(args, pq.Count, pq.Offset)...)
		if err != nil {
			return page, err
		}
	}
	// A short page tells the total without counting.
	if pq.Count > 0 && len(matches) < pq.Count && (len(matches) > 0 || pq.Offset == 0) {
		page.Total = pq.Offset + len(matches)
	} else if page.Total, err = e.count(ctx, c, where, b.args); err != nil {
		return page, err
	}
	if pq.Count > 0 && pq.Offset+pq.Count < page.Total {
		page.NextOffset = pq.Offset + pq.Count
	}
	return e.finish(ctx, c, tenant, pq, matches, page)
}

func cloneWithout(v url.Values, key string) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		if k != key {
			out[k] = vs
		}
	}
	return out
}

// finish fills the page with the matches and their includes.
func (e *Engine) finish(ctx context.Context, c Conn, tenant string, pq *search.Query, matches []row, page store.Page) (store.Page, error) {
	page.Matches = make([]store.Resource, len(matches))
	for i, m := range matches {
		page.Matches[i] = m.res
	}
	included, err := e.includes(ctx, c, tenant, pq, matches)
	if err != nil {
		return page, err
	}
	page.Included = included
	return page, nil
}

func (e *Engine) count(ctx context.Context, c Conn, where string, args []any) (int, error) {
	var n int
	if err := queryRow(ctx, c, []any{&n}, `SELECT COUNT(*) FROM resource r WHERE `+where, args...); err != nil {
		return 0, fmt.Errorf("%s: count: %w", e.Dialect.Name, err)
	}
	return n, nil
}

// row is a resource with its row id.
type row struct {
	rid int64
	res store.Resource
}

func (e *Engine) rows(ctx context.Context, c Conn, query string, args ...any) ([]row, error) {
	rs, err := c.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: search: %w", e.Dialect.Name, err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var (
			r       row
			version int
			lu      int64
		)
		if err := rs.Scan(&r.rid, &r.res.Type, &r.res.ID, &version, &lu, &r.res.Body); err != nil {
			return nil, fmt.Errorf("%s: search: %w", e.Dialect.Name, err)
		}
		r.res.VersionID = strconv.Itoa(version)
		r.res.LastUpdated = time.UnixMilli(lu).UTC()
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("%s: search: %w", e.Dialect.Name, err)
	}
	return out, nil
}

// includes runs _include and _revinclude for the matches.
func (e *Engine) includes(ctx context.Context, c Conn, tenant string, pq *search.Query, matches []row) ([]store.Resource, error) {
	if len(matches) == 0 || (len(pq.Includes) == 0 && len(pq.RevIncludes) == 0) {
		return nil, nil
	}
	seen := make(map[int64]bool, len(matches))
	rids := make([]any, len(matches))
	ids := make([]any, len(matches))
	for i, m := range matches {
		seen[m.rid] = true
		rids[i], ids[i] = m.rid, m.res.ID
	}
	var out []store.Resource
	add := func(rs []row) {
		for _, r := range rs {
			if !seen[r.rid] {
				seen[r.rid] = true
				out = append(out, r.res)
			}
		}
	}
	for _, inc := range pq.Includes {
		args := append([]any{tenant}, rids...)
		args = append(args, inc.Param.Code)
		target := ""
		if inc.Target != "" {
			target = ` AND x.target_type = ?`
			args = append(args, inc.Target)
		}
		rs, err := e.rows(ctx, c, `SELECT r.rid, r.type, r.id, r.version, r.last_updated, r.body FROM idx_ref x
			JOIN resource r ON r.tenant = ? AND r.type = x.target_type AND r.id = x.target_id AND r.deleted = FALSE
			WHERE x.rid IN (`+placeholders(len(rids))+`) AND x.param = ?`+target+` ORDER BY r.rid`, args...)
		if err != nil {
			return nil, err
		}
		add(rs)
	}
	for _, inc := range pq.RevIncludes {
		args := []any{tenant, inc.Source, inc.Param.Code, pq.Type}
		args = append(args, ids...)
		rs, err := e.rows(ctx, c, `SELECT r.rid, r.type, r.id, r.version, r.last_updated, r.body FROM resource r
			WHERE r.deleted = FALSE AND r.rid IN (SELECT x.rid FROM idx_ref x WHERE x.tenant = ? AND x.type = ? AND x.param = ?
			AND x.target_type = ? AND x.target_id IN (`+placeholders(len(ids))+`)) ORDER BY r.rid`, args...)
		if err != nil {
			return nil, err
		}
		add(rs)
	}
	return out, nil
}

// lastN implements Observation/$lastn: per code (each system|code of the
// code parameter) the n most recent matches by the date parameter
// (Observation.effective), newest first.
//
// The database returns the matches' ranking keys, one row per code, and the
// ranking is done here: the same selection in SQL (a window function over
// the codes, grouped by resource and sorted again) makes SQLite fill four
// temporary tables per search. Only the page's bodies are read.
func (e *Engine) lastN(ctx context.Context, c Conn, tenant string, pq *search.Query, n int, where string, args []any, page store.Page) (store.Page, error) {
	rs, err := c.Query(ctx, `SELECT r.rid, r.last_updated, r.id, lt.system, lt.code,
		(SELECT MAX(d.low) FROM idx_date d WHERE d.rid = r.rid AND d.param = 'date')
		FROM resource r JOIN idx_token lt ON lt.rid = r.rid AND lt.param = 'code' AND lt.code <> ''
		WHERE `+where, args...)
	if err != nil {
		return page, fmt.Errorf("%s: search: %w", e.Dialect.Name, err)
	}
	type code struct{ system, code string }
	var (
		codes  []code
		byCode = map[code][]lastNKey{}
	)
	for rs.Next() {
		var (
			k   lastNKey
			cd  code
			eff sql.NullInt64
		)
		if err := rs.Scan(&k.rid, &k.lastUpdated, &k.id, &cd.system, &cd.code, &eff); err != nil {
			rs.Close()
			return page, fmt.Errorf("%s: search: %w", e.Dialect.Name, err)
		}
		k.eff, k.hasEff = eff.Int64, eff.Valid
		if _, ok := byCode[cd]; !ok {
			codes = append(codes, cd)
		}
		byCode[cd] = append(byCode[cd], k)
	}
	err = rs.Err()
	rs.Close()
	if err != nil {
		return page, fmt.Errorf("%s: search: %w", e.Dialect.Name, err)
	}
	// Each code's n newest rows; a resource is kept once, whatever number
	// of codes selected it.
	var kept []lastNKey
	seen := map[int64]bool{}
	for _, cd := range codes {
		ks := byCode[cd]
		slices.SortFunc(ks, lastNKey.compare)
		for _, k := range ks[:min(n, len(ks))] {
			if !seen[k.rid] {
				seen[k.rid] = true
				kept = append(kept, k)
			}
		}
	}
	slices.SortFunc(kept, lastNKey.compare)
	page.Total = len(kept)
	if pq.SummaryCount {
		return page, nil
	}
	start := min(pq.Offset, len(kept))
	end := min(start+pq.Count, len(kept))
	if end < len(kept) {
		page.NextOffset = end
	}
	var matches []row
	if start < end {
		rids := make([]any, end-start)
		at := make(map[int64]int, len(rids))
		for i, k := range kept[start:end] {
			rids[i] = k.rid
			at[k.rid] = i
		}
		found, err := e.rows(ctx, c, `SELECT r.rid, r.type, r.id, r.version, r.last_updated, r.body FROM resource r
			WHERE r.rid IN (`+placeholders(len(rids))+`) AND r.deleted = FALSE`, rids...)
		if err != nil {
			return page, err
		}
		slices.SortFunc(found, func(a, b row) int { return at[a.rid] - at[b.rid] })
		matches = found
	}
	return e.finish(ctx, c, tenant, pq, matches, page)
}

// lastNKey is what $lastn ranks a match by.
type lastNKey struct {
	rid         int64
	eff         int64 // the latest start of the date parameter
	hasEff      bool
	lastUpdated int64
	id          string
}

// compare orders newest first: by eff (none last), then lastUpdated, then
// id, all descending.
func (a lastNKey) compare(b lastNKey) int {
	if a.hasEff != b.hasEff {
		if a.hasEff {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(b.eff, a.eff); c != 0 {
		return c
	}
	if c := cmp.Compare(b.lastUpdated, a.lastUpdated); c != 0 {
		return c
	}
	return strings.Compare(b.id, a.id)
}

func placeholders(n int) string {
	if n == 0 {
		return "NULL"
	}
	return strings.Repeat("?,", n-1) + "?"
}

// orderBy renders _sort, then the deterministic default order.
func orderBy(pq *search.Query, args *[]any) string {
	var keys []string
	for _, s := range pq.Sort {
		dir := " ASC"
		if s.Desc {
			dir = " DESC"
		}
		switch s.Code {
		case search.ParamID:
			keys = append(keys, "r.id"+dir)
			continue
		case search.ParamLastUpdated:
			keys = append(keys, "r.last_updated"+dir)
			continue
		}
		table, col := indexTable(s.Type)
		agg := "MIN"
		switch s.Type {
		case spec.Date:
			// Ascending by the earliest instant, descending by the latest.
			col = "low"
			if s.Desc {
				agg, col = "MAX", "high"
			}
		case spec.String:
			col = "norm"
		case spec.Token:
			col = "code"
		}
		keys = append(keys, fmt.Sprintf("(SELECT %s(s.%s) FROM %s s WHERE s.rid = r.rid AND s.param = ?)%s", agg, col, table, dir))
		*args = append(*args, s.Param.Code)
	}
	return strings.Join(append(keys, "r.last_updated ASC", "r.id ASC"), ", ")
}

// indexTable returns the index table of a parameter type and its main
// value column.
func indexTable(t spec.ParamType) (table, column string) {
	switch t {
	case spec.Token:
		return "idx_token", "code"
	case spec.Reference:
		return "idx_ref", "target_id"
	case spec.Date:
		return "idx_date", "low"
	case spec.String:
		return "idx_string", "norm"
	case spec.Quantity:
		return "idx_quantity", "value"
	case spec.URI:
		return "idx_uri", "uri"
	case spec.Number:
		return "idx_number", "value"
	}
	return "", ""
}

// sqlBuilder turns a parsed query into a WHERE clause with arguments.
type sqlBuilder struct {
	pg    bool // PostgreSQL spellings
	sql   strings.Builder
	args  []any
	alias int
	// filterOnly makes the next clause a filter, not an index lookup.
	filterOnly bool
}

// newSQLBuilder returns a builder with room for the SQL of a typical
// search (the BgZ ones are 0.5 to 1.5 kB with up to 30 arguments).
func newSQLBuilder(pg bool) *sqlBuilder {
	b := &sqlBuilder{pg: pg, args: make([]any, 0, 32)}
	b.sql.Grow(1536)
	return b
}

func (b *sqlBuilder) arg(v ...any) { b.args = append(b.args, v...) }

// f writes format with each %s replaced by the next of args (fmt.Fprintf
// without its reflection: the SQL of every search is built this way).
func (b *sqlBuilder) f(format string, args ...string) {
	for {
		i := strings.Index(format, "%s")
		if i < 0 {
			break
		}
		b.sql.WriteString(format[:i])
		b.sql.WriteString(args[0])
		args, format = args[1:], format[i+2:]
	}
	b.sql.WriteString(format)
}

// instr is the substring-position function.
func (b *sqlBuilder) instr() string {
	if b.pg {
		return "strpos"
	}
	return "instr"
}

func (b *sqlBuilder) where(tenant string, pq *search.Query) {
	b.sql.WriteString(b.scope("r", pq.Clauses))
	b.arg(tenant, pq.Type)
	// Without table statistics SQLite cannot tell which index lookup is
	// selective; let the likeliest one drive (a patient reference beats a
	// category) and check the others by rid.
	drive := -1
	for i, c := range pq.Clauses {
		if c.Param != nil && c.Modifier != "not" && c.Modifier != "missing" &&
			(drive < 0 || selectivity(c) < selectivity(pq.Clauses[drive])) {
			drive = i
		}
	}
	for i := range pq.Clauses {
		b.sql.WriteString(" AND ")
		b.filterOnly = drive >= 0 && i != drive
		b.clause(tenant, pq.Type, "r", &pq.Clauses[i])
	}
}

// selectivity ranks clauses by how few rows they are expected to match.
func selectivity(c search.Clause) int {
	switch c.Type {
	case spec.Reference:
		return 0
	case spec.Token:
		if c.Code == "identifier" {
			return 0
		}
		return 2
	case spec.String, spec.URI:
		return 1
	}
	return 3
}

// scope is the tenant, type and not-deleted condition on resource alias r.
// When an index lookup can drive the query, the unary + keeps SQLite from
// scanning the tenant's resources of the type through resource_updated and
// makes it look the index matches up by rid instead.
func (b *sqlBuilder) scope(r string, clauses []search.Clause) string {
	for _, c := range clauses {
		if !b.pg && c.Param != nil && c.Modifier != "not" && c.Modifier != "missing" {
			return "+" + r + ".tenant = ? AND +" + r + ".type = ? AND " + r + ".deleted = FALSE"
		}
	}
	return r + ".tenant = ? AND " + r + ".type = ? AND " + r + ".deleted = FALSE"
}

// clause writes the condition of c on the resource row alias r of type typ.
func (b *sqlBuilder) clause(tenant, typ, r string, c *search.Clause) {
	switch c.Code {
	case search.ParamID:
		not := ""
		if c.Modifier == "not" {
			not = "NOT "
		}
		b.sql.WriteString(r + ".id " + not + "IN (" + placeholders(len(c.Values)) + ")")
		for _, v := range c.Values {
			b.arg(v.Code)
		}
		return
	case search.ParamLastUpdated:
		b.sql.WriteString("(")
		for i, v := range c.Values {
			if i > 0 {
				b.sql.WriteString(" OR ")
			}
			b.dateCond(r+".last_updated", r+".last_updated", v)
		}
		b.sql.WriteString(")")
		return
	}
	table, _ := indexTable(c.Type)
	b.alias++
	x := "x" + strconv.Itoa(b.alias)
	if c.Modifier == "missing" {
		if c.Missing {
			b.sql.WriteString("NOT ")
		}
		b.f("EXISTS (SELECT 1 FROM %s %s WHERE %s.rid = %s.rid AND %s.param = ?)", table, x, x, r, x)
		b.arg(c.Param.Code)
		return
	}
	if len(c.Chain) > 0 && !b.filterOnly {
		// One index lookup per target type, joined with UNION ALL: an OR of
		// the target types would make the database scan every reference of
		// the parameter instead of probing idx_ref_target. Each arm is one
		// join (the chained clause's index rows, their resources, the
		// references to those) rather than nested IN subqueries: SQLite
		// builds a temporary table for every IN (SELECT ...), which costs
		// more than the lookups themselves. Duplicates of the join do not
		// matter inside the outer IN.
		b.f("%s.rid IN (", r)
		for i, ch := range c.Chain {
			if i > 0 {
				b.sql.WriteString(" UNION ALL ")
			}
			b.alias++
			t := "t" + strconv.Itoa(b.alias)
			ref := func() {
				b.f(" JOIN idx_ref %s ON %s.tenant = ? AND %s.type = ? AND %s.param = ? AND %s.target_type = ? AND %s.target_id = %s.id",
					x, x, x, x, x, x, t)
				b.arg(tenant, typ, c.Param.Code, ch.Type)
			}
			if y, ok := b.joinable(&ch.Clause); ok {
				// The chained clause's index lookup drives the arm.
				table, _ := indexTable(ch.Clause.Type)
				b.f("SELECT %s.rid FROM %s %s JOIN resource %s ON %s.rid = %s.rid AND %s",
					x, table, y, t, t, y, b.scope(t, []search.Clause{ch.Clause}))
				b.arg(tenant, ch.Type)
				ref()
				b.sql.WriteString(" WHERE ")
				b.indexRows(tenant, ch.Type, y, &ch.Clause)
				continue
			}
			b.f("SELECT %s.rid FROM resource %s", x, t)
			ref()
			b.f(" WHERE %s AND ", b.scope(t, []search.Clause{ch.Clause}))
			b.arg(tenant, ch.Type)
			b.clause(tenant, ch.Type, t, &ch.Clause)
		}
		b.sql.WriteString(")")
		return
	}
	if b.filterOnly || c.Modifier == "not" {
		// A check of this resource's own index rows (idx_*_rid).
		if c.Modifier == "not" {
			b.sql.WriteString("NOT ")
		}
		b.f("EXISTS (SELECT 1 FROM %s %s WHERE %s.rid = %s.rid AND %s.param = ? AND (", table, x, x, r, x)
		b.arg(c.Param.Code)
	} else {
		b.f("%s.rid IN (SELECT %s.rid FROM %s %s WHERE ", r, x, table, x)
		b.indexRows(tenant, typ, x, c)
		b.sql.WriteString(")")
		return
	}
	b.filterOnly = false
	if len(c.Chain) > 0 {
		for i, ch := range c.Chain {
			if i > 0 {
				b.sql.WriteString(" OR ")
			}
			b.alias++
			t := "t" + strconv.Itoa(b.alias)
			b.f("(%s.target_type = ? AND %s.target_id IN (SELECT %s.id FROM resource %s WHERE %s AND ",
				x, x, t, t, b.scope(t, []search.Clause{ch.Clause}))
			b.arg(ch.Type, tenant, ch.Type)
			b.clause(tenant, ch.Type, t, &ch.Clause)
			b.sql.WriteString("))")
		}
		b.sql.WriteString("))")
		return
	}
	for i, v := range c.Values {
		if i > 0 {
			b.sql.WriteString(" OR ")
		}
		b.value(x, c, v)
	}
	b.sql.WriteString("))")
}

// joinable reports whether c is a plain lookup in its index table (no
// chain, no :missing or :not, not _id or _lastUpdated), one that can be
// joined instead of nested; it returns a fresh alias for the index rows.
func (b *sqlBuilder) joinable(c *search.Clause) (string, bool) {
	if c.Param == nil || len(c.Chain) > 0 || c.Modifier == "missing" || c.Modifier == "not" ||
		c.Code == search.ParamID || c.Code == search.ParamLastUpdated {
		return "", false
	}
	if table, _ := indexTable(c.Type); table == "" {
		return "", false
	}
	b.alias++
	return "x" + strconv.Itoa(b.alias), true
}

// indexRows writes the condition on index row alias x of the rows of
// resources of type typ that match c.
func (b *sqlBuilder) indexRows(tenant, typ, x string, c *search.Clause) {
	b.f("%s.tenant = ? AND %s.type = ? AND %s.param = ? AND (", x, x, x)
	b.arg(tenant, typ, c.Param.Code)
	for i, v := range c.Values {
		if i > 0 {
			b.sql.WriteString(" OR ")
		}
		b.value(x, c, v)
	}
	b.sql.WriteString(")")
}

// value writes the condition of one value on index row alias x.
func (b *sqlBuilder) value(x string, c *search.Clause, v search.Value) {
	w := &b.sql
	switch c.Type {
	case spec.Token:
		switch {
		case c.Modifier == "text":
			b.f("(%s.text >= ? AND %s.text < ? OR %s(%s.text, ?) > 0)", x, x, b.instr(), x)
			b.arg(v.Str, v.Str+maxChar, " "+v.Str)
		case v.HasSystem && v.Code == "":
			b.f("%s.system = ?", x)
			b.arg(v.System)
		case v.HasSystem:
			b.f("(%s.code = ? AND %s.system = ?)", x, x)
			b.arg(v.Code, v.System)
		default:
			b.f("%s.code = ?", x)
			b.arg(v.Code)
		}
	case spec.Reference:
		if v.RefType != "" {
			b.f("(%s.target_id = ? AND %s.target_type = ?)", x, x)
			b.arg(v.RefID, v.RefType)
		} else {
			b.f("%s.target_id = ?", x)
			b.arg(v.RefID)
		}
	case spec.Date:
		b.dateCond(x+".low", x+".high", v)
	case spec.String:
		switch c.Modifier {
		case "exact":
			b.f("%s.raw = ?", x)
			b.arg(v.Str)
		case "contains":
			b.f("%s(%s.norm, ?) > 0", b.instr(), x)
			b.arg(v.Str)
		default:
			b.f("(%s.norm >= ? AND %s.norm < ?)", x, x)
			b.arg(v.Str, v.Str+maxChar)
		}
	case spec.URI:
		if c.Modifier == "below" {
			b.f("(%s.uri >= ? AND %s.uri < ?)", x, x)
			b.arg(v.Str, v.Str+maxChar)
		} else {
			b.f("%s.uri = ?", x)
			b.arg(v.Str)
		}
	case spec.Number, spec.Quantity:
		w.WriteString("(")
		b.numberCond(x+".value", v)
		if v.System != "" {
			b.f(" AND %s.system = ?", x)
			b.arg(v.System)
		}
		if v.Code != "" {
			b.f(" AND (%s.code = ? OR %s.unit = ?)", x, x)
			b.arg(v.Code, v.Code)
		}
		w.WriteString(")")
	default:
		w.WriteString("0")
	}
}

// dateCond compares the resource range [lo, hi] with the search range.
func (b *sqlBuilder) dateCond(lo, hi string, v search.Value) {
	switch v.Prefix {
	case search.Ne:
		b.f("NOT (%s >= ? AND %s <= ?)", lo, hi)
		b.arg(v.Low, v.High)
	case search.Gt:
		b.f("%s > ?", hi)
		b.arg(v.High)
	case search.Lt:
		b.f("%s < ?", lo)
		b.arg(v.Low)
	case search.Ge:
		b.f("%s >= ?", hi)
		b.arg(v.Low)
	case search.Le:
		b.f("%s <= ?", lo)
		b.arg(v.High)
	case search.Sa:
		b.f("%s > ?", lo)
		b.arg(v.High)
	case search.Eb:
		b.f("%s < ?", hi)
		b.arg(v.Low)
	case search.Ap:
		b.f("(%s <= ? AND %s >= ?)", lo, hi)
		b.arg(v.High, v.Low)
	default:
		b.f("(%s >= ? AND %s <= ?)", lo, hi)
		b.arg(v.Low, v.High)
	}
}

func (b *sqlBuilder) numberCond(col string, v search.Value) {
	switch v.Prefix {
	case search.Ne:
		b.f("NOT (%s >= ? AND %s < ?)", col, col)
		b.arg(v.NumLow, v.NumHigh)
	case search.Gt, search.Sa:
		b.f("%s > ?", col)
		b.arg(v.Num)
	case search.Lt, search.Eb:
		b.f("%s < ?", col)
		b.arg(v.Num)
	case search.Ge:
		b.f("%s >= ?", col)
		b.arg(v.Num)
	case search.Le:
		b.f("%s <= ?", col)
		b.arg(v.Num)
	case search.Ap:
		b.f("(%s >= ? AND %s <= ?)", col, col)
		b.arg(v.NumLow, v.NumHigh)
	default:
		b.f("(%s >= ? AND %s < ?)", col, col)
		b.arg(v.NumLow, v.NumHigh)
	}
}
