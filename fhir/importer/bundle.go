package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// locError is a failure at a location inside one document.
type locError struct {
	loc string
	err error
}

// entry is one resource (or DELETE) to import, as read from the document.
type entry struct {
	loc     string
	fullURL string
	typ     string
	bodyID  string // the id in the resource, if any
	body    []byte // the resource; nil for DELETE
	method  string // PUT, POST, DELETE, or "" outside transaction/batch
	// urlID is the id of a PUT/DELETE Type/id url; cond the criteria of a
	// conditional update (PUT Type?...) or create (ifNoneExist).
	urlID string
	cond  url.Values
}

type rawEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
	} `json:"request"`
	Search *struct {
		Mode string `json:"mode"`
	} `json:"search"`
}

// importDocument imports one JSON resource or Bundle and returns the counts
// of what it wrote, per resource type, and its failures.
func (im *Importer) importDocument(ctx context.Context, d document) (map[string]Counts, []locError) {
	entries, atomic, errs := im.prepareDocument(d)
	if entries == nil {
		return nil, errs
	}
	types, werrs := im.writeAll(ctx, entries, atomic)
	return types, append(errs, werrs...)
}

// prepareDocument reads one JSON resource or Bundle into the entries to
// write and whether they are written all or nothing. errs are the entries
// that cannot be imported; entries is nil when nothing of the document is
// to be written. The document is checked to be JSON once; its parts are
// then split, not decoded again.
func (im *Importer) prepareDocument(d document) (entries []entry, atomic bool, errs []locError) {
	body := d.body
	if !d.valid && !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, false, []locError{{"", fmt.Errorf("%w: not a FHIR JSON resource: %v", ErrInput, err)}}
	}
	top, err := fhir.SplitMembers(body)
	if err != nil {
		return nil, false, []locError{{"", fmt.Errorf("%w: not a FHIR JSON resource: %v", ErrInput, err)}}
	}
	rt, err := stringMember(top, "resourceType")
	if err != nil {
		return nil, false, []locError{{"", fmt.Errorf("%w: not a FHIR JSON resource: %v", ErrInput, err)}}
	}
	// FHIR JSON has each property once; which copy a parser keeps differs,
	// so such a document is refused whole, as the REST API refuses it.
	var de *fhir.DuplicateKeyError
	if err := fhir.CheckKeys(body); errors.As(err, &de) {
		return nil, false, []locError{{de.Expression(rt), fmt.Errorf("%w: property %q appears more than once", ErrInput, de.Key)}}
	}
	if rt != "Bundle" {
		e, err := im.resourceEntry(rt, "", "", body, top)
		if err != nil {
			return nil, false, []locError{{"", err}}
		}
		return []entry{e}, true, nil
	}
	bundleType, rawEntries, err := bundleHead(top)
	if err != nil {
		return nil, false, []locError{{"", fmt.Errorf("%w: not a FHIR Bundle: %v", ErrInput, err)}}
	}
	switch bundleType {
	case "transaction", "batch", "collection", "searchset":
	case "document", "message":
		// These Bundles are resources in their own right: kept whole.
		e, err := im.resourceEntry("Bundle", "", "", body, top)
		if err != nil {
			return nil, false, []locError{{"", err}}
		}
		return []entry{e}, true, nil
	default:
		return nil, false, []locError{{"Bundle.type", fmt.Errorf("%w: Bundle of type %q", ErrUnsupported, bundleType)}}
	}
	batch := bundleType == "batch"
	entries = make([]entry, 0, len(rawEntries))
	for i, re := range rawEntries {
		loc := fmt.Sprintf("Bundle.entry[%d]", i)
		if bundleType == "searchset" && re.Search != nil && re.Search.Mode == "outcome" {
			continue // an OperationOutcome about the search, not data
		}
		e, skip, err := im.bundleEntry(bundleType, loc, re)
		if err != nil {
			errs = append(errs, locError{loc, err})
			continue
		}
		if !skip {
			entries = append(entries, e)
		}
	}
	if len(errs) > 0 && !batch {
		// Nothing of a failing transaction or collection is written.
		return nil, false, errs
	}
	return entries, !batch, errs
}

// bundleHead returns Bundle.type and the entries of a Bundle's top-level
// members, split from the document, not copied.
func bundleHead(top []fhir.Member) (bundleType string, entries []rawEntry, err error) {
	if bundleType, err = stringMember(top, "type"); err != nil {
		return "", nil, err
	}
	raw := member(top, "entry")
	if raw == nil || string(raw) == "null" {
		return bundleType, nil, nil
	}
	items, err := fhir.SplitElements(raw)
	if err != nil {
		return "", nil, fmt.Errorf("entry: %v", err)
	}
	entries = make([]rawEntry, len(items))
	for i, it := range items {
		if string(it) == "null" {
			continue
		}
		ms, err := fhir.SplitMembers(it)
		if err != nil {
			return "", nil, fmt.Errorf("entry[%d]: %v", i, err)
		}
		re := &entries[i]
		if re.FullURL, err = stringMember(ms, "fullUrl"); err != nil {
			return "", nil, fmt.Errorf("entry[%d]: %v", i, err)
		}
		re.Resource = member(ms, "resource")
		for _, m := range ms {
			switch m.Key {
			case "request":
				err = json.Unmarshal(m.Value, &re.Request)
			case "search":
				err = json.Unmarshal(m.Value, &re.Search)
			}
			if err != nil {
				return "", nil, fmt.Errorf("entry[%d].%s: %v", i, m.Key, err)
			}
		}
	}
	return bundleType, entries, nil
}

// member returns the value of the member named key, nil when absent.
func member(ms []fhir.Member, key string) json.RawMessage {
	for _, m := range ms {
		if m.Key == key {
			return m.Value
		}
	}
	return nil
}

// stringMember returns the string value of the member named key, "" when
// absent or null, and an error when it is no string.
func stringMember(ms []fhir.Member, key string) (string, error) {
	v := member(ms, key)
	if v == nil {
		return "", nil
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s: %v", key, err)
	}
	return s, nil
}

// bundleEntry reads one Bundle entry; skip is set for entries that import
// nothing (GET, HEAD).
func (im *Importer) bundleEntry(bundleType, loc string, re rawEntry) (e entry, skip bool, err error) {
	method := ""
	if bundleType == "transaction" || bundleType == "batch" {
		if re.Request == nil || re.Request.Method == "" {
			return e, false, fmt.Errorf("%w: %s entry without request.method", ErrInput, bundleType)
		}
		method = strings.ToUpper(re.Request.Method)
	}
	switch method {
	case "GET", "HEAD":
		return e, true, nil
	case "DELETE":
		typ, id, cond, err := im.requestURL(re.Request.URL)
		if err != nil {
			return e, false, err
		}
		if cond != nil {
			return e, false, fmt.Errorf("%w: conditional delete", ErrUnsupported)
		}
		return entry{loc: loc, fullURL: re.FullURL, typ: typ, urlID: id, method: method}, false, nil
	case "", "PUT", "POST":
	default:
		return e, false, fmt.Errorf("%w: request.method %q", ErrInput, re.Request.Method)
	}
	if len(re.Resource) == 0 || string(re.Resource) == "null" {
		return e, false, fmt.Errorf("%w: entry without resource", ErrInput)
	}
	top, err := fhir.SplitMembers(re.Resource)
	if err != nil {
		return e, false, fmt.Errorf("%w: resource: %v", ErrInput, err)
	}
	typ, err := stringMember(top, "resourceType")
	if err != nil {
		return e, false, fmt.Errorf("%w: resource: %v", ErrInput, err)
	}
	e, err = im.resourceEntry(typ, loc, re.FullURL, re.Resource, top)
	if err != nil {
		return e, false, err
	}
	e.method = method
	switch method {
	case "PUT":
		typ, id, cond, err := im.requestURL(re.Request.URL)
		if err != nil {
			return e, false, err
		}
		if typ != e.typ {
			return e, false, fmt.Errorf("%w: request.url is for %s, the resource is a %s", ErrInput, typ, e.typ)
		}
		e.urlID, e.cond = id, cond
	case "POST":
		if q := re.Request.IfNoneExist; q != "" {
			q = strings.TrimPrefix(q, e.typ+"?")
			q = strings.TrimPrefix(q, "?")
			cond, err := url.ParseQuery(q)
			if err != nil || len(cond) == 0 {
				return e, false, fmt.Errorf("%w: request.ifNoneExist %q", ErrInput, re.Request.IfNoneExist)
			}
			e.cond = cond
		}
	}
	return e, false, nil
}

// resourceEntry checks a resource, whose top-level members are top,
// against the store's FHIR version.
func (im *Importer) resourceEntry(typ, loc, fullURL string, body []byte, top []fhir.Member) (entry, error) {
	e := entry{loc: loc, fullURL: fullURL, typ: typ, body: body}
	if typ == "" {
		return e, fmt.Errorf("%w: missing resourceType", ErrInput)
	}
	if !im.defs.IsResourceType(typ) {
		if o := other(im.version); fits(o, typ, nil) {
			return e, fmt.Errorf("%w: %s is a FHIR %s resource type, the store is FHIR %s", ErrVersion, typ, o, im.version)
		}
		return e, fmt.Errorf("%w: unknown resourceType %q", ErrInput, typ)
	}
	if versionMismatch(im.version, typ, top) {
		return e, fmt.Errorf("%w: this %s is FHIR %s, the store is FHIR %s", ErrVersion, typ, other(im.version), im.version)
	}
	if v := member(top, "id"); v != nil && string(v) != "null" {
		id, err := stringMember(top, "id")
		if err != nil {
			return e, fmt.Errorf("%w: %v", ErrInput, err)
		}
		if !validate.IsID(id) {
			return e, fmt.Errorf("%w: invalid id %q", ErrInput, id)
		}
		e.bodyID = id
	}
	return e, nil
}

// requestURL parses a request.url "Type/id" or "Type?criteria" (relative,
// or absolute ending in either).
func (im *Importer) requestURL(raw string) (typ, id string, cond url.Values, err error) {
	path, query, hasQuery := strings.Cut(raw, "?")
	segs := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case hasQuery && len(segs) >= 1:
		typ = segs[len(segs)-1]
		cond, err = url.ParseQuery(query)
		if err != nil || len(cond) == 0 {
			return "", "", nil, fmt.Errorf("%w: request.url %q: bad search criteria", ErrInput, raw)
		}
	case !hasQuery && len(segs) >= 2:
		typ, id = segs[len(segs)-2], segs[len(segs)-1]
		if !validate.IsID(id) {
			return "", "", nil, fmt.Errorf("%w: request.url %q: invalid id", ErrInput, raw)
		}
	default:
		return "", "", nil, fmt.Errorf("%w: request.url %q is not Type/id or Type?criteria", ErrInput, raw)
	}
	if !im.defs.IsResourceType(typ) {
		return "", "", nil, fmt.Errorf("%w: request.url %q: unknown resource type", ErrInput, raw)
	}
	return typ, id, cond, nil
}

// derivedID is the id a resource gets from its fullUrl: a name-based UUID,
// so that every import of the same Bundle assigns the same ids.
func derivedID(fullURL string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(fullURL)).String()
}

// backend is what writing needs of a store, bound to one tenant: the store
// itself or a transaction.
type backend interface {
	Read(ctx context.Context, typ, id string) (store.Resource, error)
	Update(ctx context.Context, body json.RawMessage) (store.Resource, bool, error)
	Delete(ctx context.Context, typ, id string) error
	Search(ctx context.Context, q store.Query) (store.Page, error)
}

type storeBackend struct {
	st     store.Store
	tenant string
}

func (b storeBackend) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	return b.st.Read(ctx, b.tenant, typ, id)
}
func (b storeBackend) Update(ctx context.Context, body json.RawMessage) (store.Resource, bool, error) {
	return b.st.Update(ctx, b.tenant, body, "")
}
func (b storeBackend) Delete(ctx context.Context, typ, id string) error {
	return b.st.Delete(ctx, b.tenant, typ, id)
}
func (b storeBackend) Search(ctx context.Context, q store.Query) (store.Page, error) {
	return b.st.Search(ctx, b.tenant, q)
}

type txBackend struct{ tx store.Tx }

func (b txBackend) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	return b.tx.Read(ctx, typ, id)
}
func (b txBackend) Update(ctx context.Context, body json.RawMessage) (store.Resource, bool, error) {
	return b.tx.Update(ctx, body, "")
}
func (b txBackend) Delete(ctx context.Context, typ, id string) error {
	return b.tx.Delete(ctx, typ, id)
}
func (b txBackend) Search(ctx context.Context, q store.Query) (store.Page, error) {
	return b.tx.Search(ctx, q)
}

// writeAll writes entries. atomic asks for all-or-nothing: in one store
// transaction when the store has them, and otherwise stopping at the first
// failure (what was written before it stays, and the error says so).
// Without atomic, every entry is written or fails on its own.
func (im *Importer) writeAll(ctx context.Context, entries []entry, atomic bool) (map[string]Counts, []locError) {
	if !atomic {
		return im.write(ctx, storeBackend{im.st, im.tenant}, entries, false)
	}
	if txs, ok := im.st.(store.Transactional); ok && len(entries) > 1 {
		var types map[string]Counts
		var errs []locError
		err := txs.InTx(ctx, im.tenant, func(tx store.Tx) error {
			types, errs = im.write(ctx, txBackend{tx}, entries, true)
			if len(errs) > 0 {
				return errs[0].err
			}
			return nil
		})
		if len(errs) > 0 {
			return nil, errs
		}
		if err != nil {
			return nil, []locError{{"", err}}
		}
		return types, nil
	}
	types, errs := im.write(ctx, storeBackend{im.st, im.tenant}, entries, true)
	if len(errs) > 0 && len(entries) > 1 && types != nil {
		written := 0
		for _, c := range types {
			written += c.Sum()
		}
		if written > 0 {
			errs[0].err = fmt.Errorf("%w (the store has no transactions: %d entries before it were imported)", errs[0].err, written)
		}
	}
	return types, errs
}

// write resolves the ids of entries, rewrites the references between them
// and writes them through b. stopAtFirst ends at the first failure.
func (im *Importer) write(ctx context.Context, b backend, entries []entry, stopAtFirst bool) (map[string]Counts, []locError) {
	types := make(map[string]Counts)
	var errs []locError
	ids := make([]string, len(entries))
	done := make([]bool, len(entries)) // a conditional create that found its match
	refs := make(map[string]string)
	for i, e := range entries {
		id, found, err := im.resolveID(ctx, b, e)
		if err != nil {
			errs = append(errs, locError{e.loc, err})
			if stopAtFirst {
				return types, errs
			}
			continue
		}
		ids[i], done[i] = id, found
		if e.fullURL != "" {
			refs[e.fullURL] = e.typ + "/" + id
		}
	}
	for i, e := range entries {
		if ids[i] == "" {
			continue // failed above
		}
		c := types[e.typ]
		var err error
		switch {
		case done[i]:
			c.Unchanged++
		case e.method == "DELETE":
			err = im.deleteOne(ctx, b, e.typ, ids[i], &c)
		default:
			err = im.putOne(ctx, b, e, ids[i], refs, &c)
		}
		if err != nil {
			errs = append(errs, locError{e.loc, err})
			if stopAtFirst {
				return types, errs
			}
			continue
		}
		types[e.typ] = c
	}
	return types, errs
}

// resolveID decides the id an entry is written under. found is set when a
// conditional create (ifNoneExist) matched an existing resource.
func (im *Importer) resolveID(ctx context.Context, b backend, e entry) (id string, found bool, err error) {
	if e.cond != nil {
		page, err := b.Search(ctx, store.Query{Type: e.typ, Params: e.cond, Strict: true})
		if err != nil {
			return "", false, fmt.Errorf("conditional %s: %w", strings.ToLower(e.method), err)
		}
		switch {
		case page.Total > 1 || len(page.Matches) > 1:
			return "", false, fmt.Errorf("%w: conditional %s matches %d resources", ErrInput, strings.ToLower(e.method), page.Total)
		case len(page.Matches) == 1:
			return page.Matches[0].ID, e.method == "POST", nil
		}
	}
	switch {
	case e.urlID != "":
		return e.urlID, false, nil
	case e.method == "POST" && e.fullURL != "":
		// A create ignores the resource's id: the fullUrl names it.
		return derivedID(e.fullURL), false, nil
	case e.bodyID != "":
		return e.bodyID, false, nil
	case e.fullURL != "":
		return derivedID(e.fullURL), false, nil
	}
	// Nothing to derive an id from: this resource is new on every run.
	return uuid.NewString(), false, nil
}

// finalBody is the body e is written with: under id, with the references
// to other entries of its Bundle (refs, by fullUrl) rewritten to Type/id.
func finalBody(e entry, id string, refs map[string]string) ([]byte, error) {
	body := e.body
	if len(refs) > 0 && bytes.Contains(body, []byte(`"reference"`)) {
		nb, _, err := rewriteReferences(body, refs)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInput, err)
		}
		body = nb
	}
	if id != e.bodyID {
		nb, err := withID(body, id)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInput, err)
		}
		body = nb
	}
	return body, nil
}

func (im *Importer) putOne(ctx context.Context, b backend, e entry, id string, refs map[string]string, c *Counts) error {
	body, err := finalBody(e, id, refs)
	if err != nil {
		return err
	}
	cur, err := b.Read(ctx, e.typ, id)
	switch {
	case err == nil:
		if fhir.SameContent(cur.Body, body) {
			c.Unchanged++
			return nil
		}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrDeleted):
	default:
		return err
	}
	_, created, err := b.Update(ctx, body)
	if err != nil {
		return err
	}
	if created {
		c.Created++
	} else {
		c.Updated++
	}
	return nil
}

func (im *Importer) deleteOne(ctx context.Context, b backend, typ, id string, c *Counts) error {
	if _, err := b.Read(ctx, typ, id); errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
		c.Unchanged++ // already gone: deleting again changes nothing
		return nil
	} else if err != nil {
		return err
	}
	if err := b.Delete(ctx, typ, id); err != nil {
		return err
	}
	c.Deleted++
	return nil
}
