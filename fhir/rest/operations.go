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
	"time"

	"github.com/google/uuid"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// The operations this server serves besides the interactions.
const (
	OperationLastN      = "$lastn"      // Observation/$lastn
	OperationEverything = "$everything" // Patient/[id]/$everything
	OperationDocument   = "$document"   // Composition/[id]/$document
	OperationValidate   = "$validate"   // [type]/$validate, [type]/[id]/$validate
)

// Bounds of the operations that gather many resources: an answer larger
// than this is refused (too-costly) rather than cut short silently.
const (
	maxEverything = 10000
	maxDocument   = 1000
)

// compartmentParams are the search parameters, in order of preference, that
// link a resource type to its patient for Patient/$everything: the first
// one a type has that may point to a Patient.
var compartmentParams = []string{"patient", "subject", "beneficiary"}

// routeOperation fills in an operation on a type (id empty) or an instance.
func (s *Server) routeOperation(req *Request, method, typ, id string) error {
	op := req.Operation
	refuse := func(where string) error {
		return fhir.Errorf(http.StatusBadRequest, "not-supported", "operation %s is not supported on %s", clip(op), where)
	}
	where := typ
	if id != "" {
		where = typ + " instances"
	}
	switch op {
	case OperationLastN:
		if typ != "Observation" || id != "" {
			return refuse(where)
		}
		return allow(req, method, InteractionOperation, http.MethodGet)
	case OperationValidate:
		return allow(req, method, InteractionOperation, http.MethodPost)
	case OperationEverything:
		if typ != "Patient" {
			return refuse(where)
		}
		if id == "" {
			return fhir.Errorf(http.StatusBadRequest, "not-supported", "Patient/$everything is served per patient: Patient/[id]/$everything")
		}
		return allow(req, method, InteractionOperation, http.MethodGet)
	case OperationDocument:
		if typ != "Composition" || id == "" {
			return refuse(where)
		}
		return allow(req, method, InteractionOperation, http.MethodGet)
	}
	return refuse(where)
}

// operation runs an operation.
func (s *Server) operation(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	switch req.Operation {
	case OperationLastN:
		return s.lastN(ctx, w, req)
	case OperationValidate:
		return s.validateOp(ctx, w, req)
	case OperationEverything:
		return s.everything(ctx, w, req)
	case OperationDocument:
		return s.document(ctx, w, req)
	}
	return Result{Err: fmt.Errorf("rest: unhandled operation %q", req.Operation)}
}

// prepare reads, before Authorize runs, what the policy needs to decide on
// an operation: the patient of Patient/[id]/$everything (Request.Patient).
// A patient that is not there is left for the operation to answer, after
// Authorize: a refused client learns nothing of what the store holds.
func (s *Server) prepare(ctx context.Context, req *Request) error {
	if req.Interaction != InteractionOperation || req.Operation != OperationEverything {
		return nil
	}
	p, err := s.store.Read(ctx, req.Tenant, "Patient", req.ID)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) || (err == nil && p.Deleted):
		return nil
	case err != nil:
		return err
	}
	req.Patient = &p
	return nil
}

// validateInput is the body of $validate: the resource (absent for mode
// delete) and the mode, from a Parameters resource or the resource itself.
func (s *Server) validateInput(contentType string, body []byte, req *Request) error {
	mode := req.Params.Get("mode")
	if len(body) > 0 {
		c, err := s.requestCodec(contentType)
		if err != nil {
			return err
		}
		if body, err = c.decode(s.version, body); err != nil {
			return err
		}
		if err := checkJSON(body); err != nil {
			return err
		}
		typ, _, err := identity(body)
		if err != nil {
			return err
		}
		if typ == "Parameters" && req.Type != "Parameters" {
			if body, mode, err = validateParameters(body, mode); err != nil {
				return err
			}
		}
	}
	switch mode {
	case "", "create", "update", "delete":
	default:
		return paramError("mode", "must be create, update or delete")
	}
	if (mode == "update" || mode == "delete") && req.ID == "" {
		return paramError("mode", "mode "+mode+" applies to an instance: [type]/[id]/$validate")
	}
	if mode != "delete" {
		if len(body) == 0 {
			return fhir.Errorf(http.StatusBadRequest, "required", "$validate needs the %s resource to check, in the body or as the Parameters' resource", req.Type)
		}
		typ, id, err := identity(body)
		if err != nil {
			return err
		}
		if !spec.For(s.version).IsResourceType(typ) {
			return fhir.Errorf(http.StatusBadRequest, "not-supported", "%q is not a resource type of FHIR %s (this endpoint serves fhirVersion %s)", clip(typ), s.version, s.version.MimeVersion())
		}
		if typ != req.Type {
			return fhir.Errorf(http.StatusBadRequest, "invalid", "the body holds a %q, the URL addresses a %s", clip(typ), req.Type)
		}
		if mode == "update" && id != req.ID {
			return fhir.Errorf(http.StatusBadRequest, "invalid", "mode update: the id in the body (%q) must be the id in the URL (%q)", clip(id), req.ID)
		}
	}
	req.Body, req.mode = body, mode
	return nil
}

// validateParameters takes the resource and mode out of a $validate
// Parameters body; a profile is refused, since only the base definitions
// are checked.
func validateParameters(body []byte, mode string) ([]byte, string, error) {
	var p struct {
		Parameter []struct {
			Name      string          `json:"name"`
			Resource  json.RawMessage `json:"resource"`
			ValueCode string          `json:"valueCode"`
			ValueURI  string          `json:"valueUri"`
			ValueCan  string          `json:"valueCanonical"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", fhir.Errorf(http.StatusBadRequest, "structure", "the Parameters resource is malformed")
	}
	var res []byte
	for _, pp := range p.Parameter {
		switch pp.Name {
		case "resource":
			if res != nil || len(pp.Resource) == 0 {
				return nil, "", fhir.Errorf(http.StatusBadRequest, "invalid", "Parameters: give one parameter resource, with a resource")
			}
			res = pp.Resource
		case "mode":
			mode = pp.ValueCode
		case "profile":
			return nil, "", fhir.Errorf(http.StatusBadRequest, "not-supported", "$validate checks the base FHIR definitions only; profile %s cannot be validated against", clip(pp.ValueURI+pp.ValueCan))
		default:
			return nil, "", fhir.Errorf(http.StatusBadRequest, "not-supported", "Parameters: unknown $validate parameter %q", clip(pp.Name))
		}
	}
	return res, mode, nil
}

// validateOp answers $validate: 200 with an OperationOutcome that lists
// every structural problem, or says there are none. For mode update and
// delete the resource must exist.
func (s *Server) validateOp(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	if req.mode == "update" || req.mode == "delete" {
		cur, err := s.store.Read(ctx, req.Tenant, req.Type, req.ID)
		if err == nil && cur.Deleted {
			err = store.ErrDeleted
		}
		if err != nil && !(req.mode == "update" && errors.Is(err, store.ErrNotFound)) { // update may create
			return Result{Err: err}
		}
	}
	var issues []fhir.Issue
	if req.mode != "delete" {
		issues = validate.Resource(s.version, req.Body)
	}
	if len(issues) == 0 {
		what := req.Type + " resource"
		if req.mode != "" {
			what = "the " + req.mode + " of this " + req.Type
		}
		issues = []fhir.Issue{{Severity: "information", Code: "informational", Diagnostics: "no issues found: " + what + " is valid against the FHIR " + string(s.version) + " definitions"}}
	}
	return s.write(w, req, http.StatusOK, fhir.OperationOutcome(issues...), nil)
}

// everything answers Patient/[id]/$everything: a searchset Bundle with the
// patient first, then every resource of its compartment (the types with a
// patient, subject or beneficiary parameter pointing to it), then the
// resources those reference that are not in it yet (practitioners,
// organisations, medications). _type limits the types; _since the last
// update.
func (s *Server) everything(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	v, err := s.view(req, false)
	if err != nil {
		return Result{Err: err}
	}
	var types []string
	for _, list := range req.Params["_type"] {
		for _, t := range strings.Split(list, ",") {
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			if !s.types[t] {
				return Result{Err: paramError("_type", fmt.Sprintf("%q is not a resource type", clip(t)))}
			}
			types = append(types, t)
		}
	}
	var since string
	if vs := req.Params["_since"]; len(vs) > 0 {
		if len(vs) > 1 {
			return Result{Err: paramError("_since", "may be given once")}
		}
		if _, err := time.Parse(time.RFC3339, vs[0]); err != nil {
			return Result{Err: paramError("_since", "must be an instant such as 2025-01-01T00:00:00Z")}
		}
		since = "ge" + vs[0]
	}
	for k := range req.Params {
		switch k {
		case "_type", "_since", "_format", "_pretty", "_summary", "_elements":
		default:
			return Result{Err: paramError(k, "is not a parameter of Patient/$everything (use _type, _since, _summary)")}
		}
	}
	if v.elements != nil {
		return Result{Err: paramError("_elements", "does not apply to Patient/$everything, whose resources are of many types")}
	}
	at := time.Now()
	patient := req.Patient
	if patient == nil { // not found by prepare, or no Authorize ran it
		p, err := s.store.Read(ctx, req.Tenant, "Patient", req.ID)
		if err == nil && p.Deleted {
			err = store.ErrDeleted
		}
		if err != nil {
			return Result{Err: err}
		}
		patient = &p
		req.Patient = patient // for Commit and Observe: whose record this was
	}
	c := newCollector(maxEverything)
	if len(types) == 0 || slices.Contains(types, "Patient") {
		c.add(*patient)
	}
	ref := "Patient/" + req.ID
	for _, link := range s.compartment() {
		if len(types) > 0 && !slices.Contains(types, link.typ) {
			continue
		}
		t, param := link.typ, link.param
		params := url.Values{param: {ref}, "_count": {strconv.Itoa(1000)}}
		if since != "" {
			params["_lastUpdated"] = []string{since}
		}
		if err := s.searchAll(ctx, req.Tenant, t, params, c); err != nil {
			return Result{Err: err}
		}
	}
	// One level of references out of the compartment.
	if err := s.resolveReferences(ctx, req.Tenant, c, 1, types); err != nil {
		return Result{Err: err}
	}
	doc, err := s.collectionBundle(req, "searchset", c.list, v, at)
	if err != nil {
		return Result{Err: err}
	}
	return s.write(w, req, http.StatusOK, doc, c.list)
}

// compartmentParam is the parameter linking type t to a patient, or "".
func (s *Server) compartmentParam(t string) string {
	defs := spec.For(s.version)
	for _, code := range compartmentParams {
		if p := defs.SearchParam(t, code); p != nil && p.Type == spec.Reference &&
			(len(p.Targets) == 0 || slices.Contains(p.Targets, "Patient")) {
			return code
		}
	}
	return ""
}

// compartmentLink is a resource type of the patient compartment and the
// parameter that links it to the patient.
type compartmentLink struct{ typ, param string }

// compartment lists the patient compartment's types, sorted, with their
// parameter; computed once per server.
func (s *Server) compartment() []compartmentLink {
	s.compartmentOnce.Do(func() {
		for t := range s.types {
			if p := s.compartmentParam(t); p != "" {
				s.compartmentLinks = append(s.compartmentLinks, compartmentLink{t, p})
			}
		}
		slices.SortFunc(s.compartmentLinks, func(a, b compartmentLink) int { return strings.Compare(a.typ, b.typ) })
	})
	return s.compartmentLinks
}

// searchAll adds every page of a search to c.
func (s *Server) searchAll(ctx context.Context, tenant, typ string, params url.Values, c *collector) error {
	for {
		page, err := s.store.Search(ctx, tenant, store.Query{Type: typ, Params: params, Strict: true})
		if err != nil {
			return err
		}
		for _, r := range page.Matches {
			if err := c.add(r); err != nil {
				return err
			}
		}
		if page.NextOffset < 0 || len(page.Matches) == 0 {
			return nil
		}
		params.Set("_offset", strconv.Itoa(page.NextOffset))
	}
}

// document answers Composition/[id]/$document: a document Bundle with the
// Composition first, then every resource it references, and what those
// reference in turn, as far as this store holds them.
func (s *Server) document(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	for k := range req.Params {
		switch k {
		case "_format", "_pretty":
		case "persist":
			if req.Params.Get("persist") == "true" {
				return Result{Err: fhir.Errorf(http.StatusBadRequest, "not-supported", "persist=true is not supported: the document is assembled, not stored")}
			}
		default:
			return Result{Err: paramError(k, "is not a parameter of Composition/$document")}
		}
	}
	comp, err := s.store.Read(ctx, req.Tenant, "Composition", req.ID)
	if err == nil && comp.Deleted {
		err = store.ErrDeleted
	}
	if err != nil {
		return Result{Err: err}
	}
	c := newCollector(maxDocument)
	c.add(comp)
	if err := s.resolveReferences(ctx, req.Tenant, c, -1, nil); err != nil {
		return Result{Err: err}
	}
	doc, err := s.collectionBundle(req, "document", c.list, view{}, time.Now())
	if err != nil {
		return Result{Err: err}
	}
	return s.write(w, req, http.StatusOK, doc, c.list)
}

// collector gathers resources once each, up to a limit.
type collector struct {
	list  []store.Resource
	seen  map[string]bool
	limit int
}

func newCollector(limit int) *collector {
	return &collector{seen: map[string]bool{}, limit: limit}
}

func (c *collector) add(r store.Resource) error {
	key := r.Type + "/" + r.ID
	if c.seen[key] {
		return nil
	}
	if len(c.list) >= c.limit {
		return fhir.Errorf(http.StatusBadRequest, "too-costly", "the answer would hold more than %d resources; narrow it (e.g. _type)", c.limit)
	}
	c.seen[key] = true
	c.list = append(c.list, r)
	return nil
}

// resolveReferences adds the resources that the collected ones reference
// by relative reference ([type]/[id]) and the store holds, level by level:
// depth levels, or until nothing new is found when depth < 0. With types
// set, only references to those types are followed.
func (s *Server) resolveReferences(ctx context.Context, tenant string, c *collector, depth int, types []string) error {
	from := 0
	for level := 0; depth < 0 || level < depth; level++ {
		to := len(c.list)
		if from == to {
			return nil
		}
		for _, r := range c.list[from:to] {
			for _, ref := range references(r.Body) {
				typ, id, _ := strings.Cut(ref, "/")
				if c.seen[ref] || !s.types[typ] || !validID(id) || (len(types) > 0 && !slices.Contains(types, typ)) {
					continue
				}
				res, err := s.store.Read(ctx, tenant, typ, id)
				if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) || (err == nil && res.Deleted) {
					c.seen[ref] = true // held elsewhere or gone: not part of the answer
					continue
				}
				if err != nil {
					return err
				}
				if err := c.add(res); err != nil {
					return err
				}
			}
		}
		from = to
	}
	return nil
}

// references lists the relative references ([type]/[id], without a
// _history part) anywhere in a resource, in order, once each.
func references(body []byte) []string {
	var out []string
	key := []byte(`"reference"`)
	for i := bytes.Index(body, key); i >= 0; {
		j := skipSpace(body, i+len(key))
		if j < len(body) && body[j] == ':' {
			j = skipSpace(body, j+1)
			if j < len(body) && body[j] == '"' {
				end := skipValue(body, j)
				if ref, err := unquote(body[j:end]); err == nil {
					ref, _, _ = strings.Cut(ref, "/_history/")
					if strings.Count(ref, "/") == 1 && !strings.Contains(ref, ":") && !slices.Contains(out, ref) {
						out = append(out, ref)
					}
				}
			}
		}
		next := bytes.Index(body[i+len(key):], key)
		if next < 0 {
			break
		}
		i += len(key) + next
	}
	return out
}

// collectionBundle writes a Bundle of type searchset (every entry a match)
// or document (with identifier and timestamp) of the resources, in order.
func (s *Server) collectionBundle(req *Request, typ string, list []store.Resource, v view, at time.Time) ([]byte, error) {
	size := 512
	for _, r := range list {
		size += len(r.Body) + len(req.Base) + 96
	}
	var buf bytes.Buffer
	buf.Grow(size)
	buf.WriteString(`{"resourceType":"Bundle"`)
	if typ == "document" {
		id := uuid.NewString()
		// STU3's Bundle has no timestamp; its meta.lastUpdated says when.
		s.answeredAt(&buf, at)
		buf.WriteString(`,"identifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:` + id + `"},"type":"document"`)
	} else {
		s.answeredAt(&buf, at)
		buf.WriteString(`,"type":"searchset","total":` + strconv.Itoa(len(list)))
		buf.WriteString(`,"link":[{"relation":"self","url":`)
		appendString(&buf, withQuery(req.Base+"/"+req.Type+"/"+req.ID+"/"+req.Operation, req.Params))
		buf.WriteString(`}]`)
	}
	buf.WriteString(`,"entry":[`)
	for i, r := range list {
		if i > 0 {
			buf.WriteByte(',')
		}
		body := []byte(r.Body)
		if v.subsets() {
			var err error
			if body, err = s.shape(r.Type, body, v); err != nil {
				return nil, err
			}
		}
		buf.WriteString(`{"fullUrl":`)
		appendString(&buf, req.Base+"/"+r.Type+"/"+r.ID)
		buf.WriteString(`,"resource":`)
		buf.Write(body)
		if typ == "searchset" {
			buf.WriteString(`,"search":{"mode":"match"}`)
		}
		buf.WriteByte('}')
	}
	buf.WriteString("]}")
	return buf.Bytes(), nil
}
