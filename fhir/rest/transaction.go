package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// maxEntries bounds the entries of one transaction or batch.
const maxEntries = 1000

// entryOp is one entry of a transaction or batch: what it asks and, once
// processed, what came of it.
type entryOp struct {
	index   int // position in the Bundle, from 0
	method  string
	req     *Request // the entry as an interaction (for Authorize and views)
	fullURL string
	body    []byte
	ifMatch string
	ifNone  url.Values // ifNoneExist

	// results
	status   int
	res      store.Resource
	created  bool
	doc      []byte // the response resource of a GET (a resource or a searchset)
	returned []store.Resource
	err      error // batch: this entry's failure
}

// methodOrder is the order FHIR processes entries in: DELETE, POST, PUT,
// then GET.
var methodOrder = map[string]int{http.MethodDelete: 0, http.MethodPost: 1, http.MethodPut: 2, http.MethodGet: 3}

// bundleInteraction serves a transaction or batch Bundle POSTed to the base.
func (s *Server) bundleInteraction(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	tx := req.Interaction == InteractionTransaction
	if _, ok := s.store.(store.Transactional); tx && !ok {
		return Result{Err: fhir.Errorf(http.StatusBadRequest, "not-supported", "transactions are not supported by this endpoint; send a batch")}
	}
	var b struct {
		Entry []json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(req.Body, &b); err != nil {
		return Result{Err: fhir.Errorf(http.StatusBadRequest, "structure", "Bundle.entry must be an array of entries")}
	}
	if len(b.Entry) > maxEntries {
		return Result{Err: fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", "a Bundle may hold at most %d entries", maxEntries)}
	}
	ops := make([]*entryOp, len(b.Entry))
	var (
		issues []fhir.Issue
		status int
	)
	for i, raw := range b.Entry {
		op, err := s.parseEntry(req, i, raw)
		ops[i] = op
		if err != nil {
			if tx {
				e := outcome(op.req, err)
				if status == 0 {
					status = e.Status
				}
				issues = append(issues, entryIssues(i, e)...)
			} else {
				op.err = err
			}
			continue
		}
		if s.authorize != nil {
			if err := s.authorize(ctx, op.req); err != nil {
				if tx {
					return Result{Err: entryError(i, op.req, denied(err))}
				}
				op.err = denied(err)
			}
		}
	}
	if len(issues) > 0 { // nothing was written; every problem is listed
		return Result{Err: &fhir.Error{Status: status, Issues: issues}}
	}
	order := slices.Clone(ops)
	slices.SortStableFunc(order, func(a, b *entryOp) int { return methodOrder[a.method] - methodOrder[b.method] })
	if tx {
		err := s.store.(store.Transactional).InTx(ctx, req.Tenant, func(t store.Tx) error {
			return s.transaction(ctx, t, order)
		})
		if err != nil {
			return Result{Err: err}
		}
	} else {
		t := direct{s.store, req.Tenant}
		for _, op := range order {
			if op.err == nil {
				op.err = s.execute(ctx, t, op, nil)
			}
		}
	}
	doc, returned := s.responseBundle(req, ops)
	return s.write(w, req, http.StatusOK, doc, returned)
}

// parseEntry reads one Bundle entry into an entryOp; the returned op is
// never nil (its req is there for the messages).
func (s *Server) parseEntry(bundle *Request, i int, raw json.RawMessage) (*entryOp, error) {
	op := &entryOp{index: i, req: &Request{Tenant: bundle.Tenant, Base: bundle.Base, HTTP: bundle.HTTP, Entry: i + 1, Params: url.Values{}, format: bundle.format}}
	var e struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  *struct {
			Method      string `json:"method"`
			URL         string `json:"url"`
			IfMatch     string `json:"ifMatch"`
			IfNoneExist string `json:"ifNoneExist"`
		} `json:"request"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return op, fhir.Errorf(http.StatusBadRequest, "structure", "the entry is malformed")
	}
	if e.Request == nil || e.Request.Method == "" || e.Request.URL == "" {
		return op, fhir.Errorf(http.StatusBadRequest, "required", "the entry needs request.method and request.url")
	}
	op.method, op.fullURL = e.Request.Method, e.FullURL
	if _, ok := methodOrder[op.method]; !ok {
		return op, fhir.Errorf(http.StatusBadRequest, "not-supported", "request.method %s is not supported in a Bundle (GET, POST, PUT, DELETE)", clip(op.method))
	}
	u := strings.TrimPrefix(e.Request.URL, bundle.Base+"/")
	path, rawQuery, _ := strings.Cut(u, "?")
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return op, fhir.Errorf(http.StatusBadRequest, "invalid", "request.url has a malformed query")
	}
	op.req.Params = query
	if path == "" || path == "metadata" || path == "_history" || strings.HasPrefix(path, "$") {
		return op, fhir.Errorf(http.StatusBadRequest, "not-supported", "request.url %q is not supported in a Bundle", clip(u))
	}
	if err := s.route(op.req, op.method, path); err != nil {
		return op, err
	}
	switch op.req.Interaction {
	case InteractionRead, InteractionVRead, InteractionCreate, InteractionUpdate, InteractionDelete:
	case InteractionSearchType:
		if op.method != http.MethodGet { // POST [type]/_search
			return op, fhir.Errorf(http.StatusBadRequest, "not-supported", "search entries use GET")
		}
	default:
		return op, fhir.Errorf(http.StatusBadRequest, "not-supported", "request.url %q is not supported in a Bundle", clip(u))
	}
	if op.ifMatch, err = entryIfMatch(e.Request.IfMatch); err != nil {
		return op, err
	}
	if e.Request.IfNoneExist != "" {
		if op.method != http.MethodPost {
			return op, fhir.Errorf(http.StatusBadRequest, "invalid", "ifNoneExist applies to POST entries only")
		}
		if op.ifNone, err = conditionQuery(e.Request.IfNoneExist, op.req.Type); err != nil {
			return op, err
		}
	}
	if op.method != http.MethodPost && op.method != http.MethodPut {
		if len(e.Resource) > 0 && string(e.Resource) != "null" {
			return op, fhir.Errorf(http.StatusBadRequest, "invalid", "a %s entry takes no resource", op.method)
		}
		return op, nil
	}
	if len(e.Resource) == 0 {
		return op, fhir.Errorf(http.StatusBadRequest, "required", "a %s entry needs a resource", op.method)
	}
	typ, id, err := identity(e.Resource)
	switch {
	case err != nil:
		return op, err
	case typ != op.req.Type:
		return op, fhir.Errorf(http.StatusBadRequest, "invalid", "the resource is a %q, request.url addresses a %s", clip(typ), op.req.Type)
	case op.req.ID != "" && id != "" && id != op.req.ID:
		return op, fhir.Errorf(http.StatusBadRequest, "invalid", "the id in the resource (%q) differs from the id in request.url (%q)", clip(id), op.req.ID)
	}
	op.body = e.Resource
	if op.req.ID != "" && id == "" {
		if op.body, err = withID(op.body, op.req.ID); err != nil {
			return op, err
		}
	}
	if issues := validate.Resource(s.version, op.body); len(issues) > 0 {
		return op, &fhir.Error{Status: http.StatusBadRequest, Issues: issues}
	}
	op.req.Body = op.body
	return op, nil
}

// entryIfMatch reads request.ifMatch (W/"3").
func entryIfMatch(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	h := http.Header{}
	h.Set("If-Match", v)
	return ifMatch(h)
}

// transaction runs the entries (in processing order) inside one store
// transaction: ids are given to created resources first, so that
// references to the entries' fullUrls (urn:uuid:…) can be rewritten before
// anything is written.
func (s *Server) transaction(ctx context.Context, tx store.Tx, order []*entryOp) error {
	ids := map[string]string{} // fullUrl → Type/id
	for _, op := range order {
		var err error
		switch {
		case op.method == http.MethodPost && op.ifNone != nil:
			var n int
			op.res, n, err = matchOne(ctx, tx, op.req.Type, op.ifNone)
			switch {
			case err != nil:
			case n > 1:
				err = fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", "ifNoneExist matches %d %s resources", n, op.req.Type)
			case n == 1:
				op.status = http.StatusOK
			default:
				op.req.ID = uuid.NewString()
			}
		case op.method == http.MethodPost:
			op.req.ID = uuid.NewString()
		case op.method == http.MethodPut && op.req.ID == "":
			var n int
			var m store.Resource
			m, n, err = matchOne(ctx, tx, op.req.Type, criteria(op.req.Params))
			switch {
			case err != nil:
			case n > 1:
				err = fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", "the conditional update matches %d %s resources", n, op.req.Type)
			case n == 1:
				op.req.ID = m.ID
			default:
				if _, id, _ := identity(op.body); id != "" {
					op.req.ID = id
				} else {
					op.req.ID = uuid.NewString()
				}
			}
		}
		if err != nil {
			return entryError(op.index, op.req, err)
		}
		if op.fullURL != "" && (op.method == http.MethodPost || op.method == http.MethodPut) {
			id := op.req.ID
			if op.status == http.StatusOK {
				id = op.res.ID
			}
			ids[op.fullURL] = op.req.Type + "/" + id
		}
	}
	for _, op := range order {
		if err := s.execute(ctx, tx, op, ids); err != nil {
			return entryError(op.index, op.req, err)
		}
	}
	return nil
}

// execute runs one entry through tx; ids, in a transaction, maps fullUrls
// to the references that replace them.
func (s *Server) execute(ctx context.Context, tx store.Tx, op *entryOp, ids map[string]string) error {
	req := op.req
	var err error
	switch op.method {
	case http.MethodDelete:
		if req.ID == "" {
			var m store.Resource
			var n int
			if m, n, err = matchOne(ctx, tx, req.Type, criteria(req.Params)); err != nil {
				return err
			}
			if n > 1 {
				return fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", "the conditional delete matches %d %s resources", n, req.Type)
			}
			if n == 0 {
				op.status = http.StatusNoContent
				return nil
			}
			req.ID = m.ID
			op.returned = []store.Resource{m}
		}
		if err = tx.Delete(ctx, req.Type, req.ID); err != nil && !errors.Is(err, store.ErrDeleted) {
			return err
		}
		op.status = http.StatusNoContent
		return nil
	case http.MethodPost, http.MethodPut:
		if op.status == http.StatusOK && op.method == http.MethodPost { // ifNoneExist matched
			op.returned = []store.Resource{op.res}
			return nil
		}
		body := op.body
		if ids != nil {
			if body, err = rewriteReferences(body, ids); err != nil {
				return err
			}
		}
		switch {
		case op.method == http.MethodPost && ids == nil && op.ifNone == nil:
			op.res, err = tx.Create(ctx, body)
			op.created = true
		case op.method == http.MethodPost && ids == nil: // batch with ifNoneExist
			var n int
			op.res, n, err = matchOne(ctx, tx, req.Type, op.ifNone)
			switch {
			case err != nil:
			case n > 1:
				err = fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", "ifNoneExist matches %d %s resources", n, req.Type)
			case n == 1:
				op.status, op.returned = http.StatusOK, []store.Resource{op.res}
				return nil
			default:
				op.res, err = tx.Create(ctx, body)
				op.created = true
			}
		case req.ID == "": // batch conditional update
			op.res, op.created, err = conditionalUpdate(ctx, tx, req.Type, criteria(req.Params), body, op.ifMatch)
		default:
			if body, err = withID(body, req.ID); err != nil {
				return err
			}
			op.res, op.created, err = tx.Update(ctx, body, op.ifMatch)
		}
		if err != nil {
			return err
		}
		op.status = http.StatusOK
		if op.created {
			op.status = http.StatusCreated
		}
		op.returned = []store.Resource{op.res}
		return nil
	}
	// GET
	switch req.Interaction {
	case InteractionRead, InteractionVRead:
		v, err := s.view(req, false)
		if err != nil {
			return err
		}
		var res store.Resource
		if req.Interaction == InteractionRead {
			res, err = tx.Read(ctx, req.Type, req.ID)
		} else if vr, ok := tx.(versionReader); ok {
			res, err = vr.VRead(ctx, req.Type, req.ID, req.VersionID)
		} else {
			// The store's own VRead must not run inside its transaction
			// (it may need the connection the transaction holds).
			return fhir.Errorf(http.StatusBadRequest, "not-supported", "vread is not supported inside a transaction; use a batch")
		}
		if err == nil && res.Deleted {
			err = store.ErrDeleted
		}
		if err != nil {
			return err
		}
		op.res, op.doc = res, res.Body
		if v.subsets() {
			if op.doc, err = s.shape(res.Type, res.Body, v); err != nil {
				return err
			}
		}
		op.returned = []store.Resource{res}
	default: // search
		if op.doc, op.returned, err = s.searchDoc(ctx, tx, req, 0); err != nil {
			return err
		}
	}
	op.status = http.StatusOK
	return nil
}

// versionReader is a store.Tx that can also read old versions.
type versionReader interface {
	VRead(ctx context.Context, typ, id, versionID string) (store.Resource, error)
}

// rewriteReferences replaces every Reference.reference that names a
// fullUrl of the transaction by the resource's Type/id. Other values (an
// identifier that happens to hold the same urn:uuid) are left alone.
func rewriteReferences(body []byte, ids map[string]string) ([]byte, error) {
	found := false
	for k := range ids {
		if bytes.Contains(body, []byte(k)) {
			found = true
			break
		}
	}
	if !found {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "structure", "the resource is not valid JSON")
	}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				if s, ok := c.(string); ok && k == "reference" {
					if to, ok := ids[s]; ok {
						t[k] = to
					}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(doc)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("rest: re-encode resource: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// entryError is err of entry i, located in the Bundle for the client.
func entryError(i int, req *Request, err error) error {
	e := outcome(req, err)
	c := *e
	c.Issues = entryIssues(i, e)
	return &c
}

func entryIssues(i int, e *fhir.Error) []fhir.Issue {
	at := "Bundle.entry[" + strconv.Itoa(i) + "]"
	out := make([]fhir.Issue, len(e.Issues))
	for j, is := range e.Issues {
		is.Diagnostics = at + ": " + is.Diagnostics
		if len(is.Expression) == 0 {
			is.Expression = []string{at}
		} else {
			exprs := make([]string, len(is.Expression))
			for k, x := range is.Expression {
				// Patient.name[0] → Bundle.entry[i].resource.name[0]
				if _, rest, ok := strings.Cut(x, "."); ok {
					exprs[k] = at + ".resource." + rest
				} else {
					exprs[k] = at + ".resource"
				}
			}
			is.Expression = exprs
		}
		out[j] = is
	}
	return out
}

// responseBundle is the transaction-response or batch-response, entries in
// the order of the request.
func (s *Server) responseBundle(req *Request, ops []*entryOp) ([]byte, []store.Resource) {
	ret, _ := preferences(req.HTTP.Header)
	typ := "transaction-response"
	if req.Interaction == InteractionBatch {
		typ = "batch-response"
	}
	var returned []store.Resource
	var buf bytes.Buffer
	buf.WriteString(`{"resourceType":"Bundle","type":"` + typ + `","entry":[`)
	for i, op := range ops {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteByte('{')
		if op.err != nil {
			e := outcome(op.req, op.err)
			buf.WriteString(`"response":{"status":`)
			appendString(&buf, statusLine(e.Status))
			buf.WriteString(`,"outcome":`)
			buf.Write(fhir.OperationOutcome(e.Issues...))
			buf.WriteString(`}}`)
			continue
		}
		returned = append(returned, op.returned...)
		res := op.res
		if res.ID != "" {
			buf.WriteString(`"fullUrl":`)
			appendString(&buf, req.Base+"/"+res.Type+"/"+res.ID)
			buf.WriteByte(',')
		}
		switch {
		case op.method == http.MethodGet:
			buf.WriteString(`"resource":`)
			buf.Write(op.doc)
			buf.WriteByte(',')
		case (op.method == http.MethodPost || op.method == http.MethodPut) && ret != "minimal" && len(res.Body) > 0:
			buf.WriteString(`"resource":`)
			buf.Write(res.Body)
			buf.WriteByte(',')
		}
		buf.WriteString(`"response":{"status":`)
		appendString(&buf, statusLine(op.status))
		if op.method != http.MethodDelete && op.method != http.MethodGet && res.ID != "" {
			buf.WriteString(`,"location":`)
			appendString(&buf, res.Type+"/"+res.ID+"/_history/"+res.VersionID)
		}
		if op.method != http.MethodDelete && res.VersionID != "" && !(op.method == http.MethodGet && op.req.Interaction == InteractionSearchType) {
			buf.WriteString(`,"etag":`)
			appendString(&buf, `W/"`+res.VersionID+`"`)
			if !res.LastUpdated.IsZero() {
				buf.WriteString(`,"lastModified":"` + res.LastUpdated.UTC().Format("2006-01-02T15:04:05.999999999Z07:00") + `"`)
			}
		}
		buf.WriteString(`}}`)
	}
	buf.WriteString(`]}`)
	return buf.Bytes(), returned
}

func statusLine(code int) string {
	return strconv.Itoa(code) + " " + http.StatusText(code)
}
