package addressbook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/pki"
)

// tenant is the store partition the directory keeps its entries in.
const tenant = "addressbook"

// owningElement names, per mCSD resource type an organisation maintains
// itself, the reference to the Organization that owns the resource.
// Organization itself is owned through its URA identifier; Practitioner has
// no owner and is loaded by the operator only.
var owningElement = map[string]string{
	"Endpoint":                "managingOrganization",
	"HealthcareService":       "providedBy",
	"Location":                "managingOrganization",
	"PractitionerRole":        "organization",
	"OrganizationAffiliation": "organization",
}

// Server is the directory service: an R4 FHIR endpoint over a store. Any
// trusted node may read and search (ITI-90) and follow changes (ITI-91);
// an organisation may maintain only its own entries, over mTLS, with
// If-Match on changes to existing entries (ITI-130), one at a time or in a
// transaction Bundle. The operator loads entries with Load.
type Server struct {
	store store.Store
	api   *rest.Server
	base  string

	mu      sync.Mutex
	bundles map[*http.Request]*bundleView // transactions being authorized, per entry
}

// NewServer serves st at base (the absolute URL of /fhir on its listener).
func NewServer(st store.Store, base string, log *slog.Logger) *Server {
	s := &Server{store: st, base: strings.TrimSuffix(base, "/"), bundles: map[*http.Request]*bundleView{}}
	s.api = rest.New(rest.Config{Store: st, Version: fhir.R4, Logger: log, Authorize: s.authorize, Observe: s.observe})
	return s
}

// bundleView is what the per-entry authorization of a transaction or batch
// needs from the Bundle as a whole, which its entries' Requests lack.
type bundleView struct {
	peer        string
	transaction bool
	ifMatch     map[int]string    // entry (from 1) → request.ifMatch
	orgs        map[string][]byte // fullUrl or Organization/id → the Organization the transaction writes
}

func (s *Server) authorize(ctx context.Context, req *rest.Request) error {
	switch req.Interaction {
	case rest.InteractionRead, rest.InteractionVRead, rest.InteractionSearchType,
		rest.InteractionHistoryInstance, rest.InteractionHistoryType, rest.InteractionHistorySystem:
		return nil
	case rest.InteractionTransaction, rest.InteractionBatch:
		return s.authorizeBundle(req)
	case rest.InteractionCreate, rest.InteractionUpdate, rest.InteractionDelete:
		return s.authorizeWrite(ctx, req)
	}
	return fhir.Errorf(http.StatusForbidden, "forbidden", "the addressbook does not allow this interaction")
}

// peerURA is the URA of the organisation on the other end of the mTLS
// connection; changes are refused without one.
func peerURA(r *http.Request) (string, error) {
	if r == nil || r.TLS == nil {
		return "", fhir.Errorf(http.StatusForbidden, "forbidden", "changes need an mTLS connection with your organisation's certificate")
	}
	ura, err := pki.PeerURA(r.TLS)
	if err != nil {
		return "", fhir.Errorf(http.StatusForbidden, "forbidden", "changes need a client certificate that carries your URA")
	}
	return ura, nil
}

// authorizeBundle reads a transaction or batch before its entries are
// authorized one by one: the entries' ifMatch and the Organizations the
// Bundle itself writes (which its other entries may reference by fullUrl).
func (s *Server) authorizeBundle(req *rest.Request) error {
	var b struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Request  struct {
				Method  string `json:"method"`
				URL     string `json:"url"`
				IfMatch string `json:"ifMatch"`
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(req.Body, &b); err != nil {
		return fhir.Errorf(http.StatusBadRequest, "structure", "Bundle.entry must be an array of entries")
	}
	v := &bundleView{transaction: req.Interaction == rest.InteractionTransaction, ifMatch: map[int]string{}, orgs: map[string][]byte{}}
	writes := false
	for i, e := range b.Entry {
		if e.Request.Method != http.MethodGet {
			writes = true
		}
		v.ifMatch[i+1] = e.Request.IfMatch
		var head orgHead
		if (e.Request.Method == http.MethodPost || e.Request.Method == http.MethodPut) &&
			json.Unmarshal(e.Resource, &head) == nil && head.ResourceType == "Organization" {
			if e.FullURL != "" {
				v.orgs[e.FullURL] = e.Resource
			}
			u := strings.TrimPrefix(e.Request.URL, s.base+"/")
			if e.Request.Method == http.MethodPut && strings.HasPrefix(u, "Organization/") && !strings.Contains(u, "?") {
				v.orgs[u] = e.Resource
			}
		}
	}
	if writes {
		peer, err := peerURA(req.HTTP)
		if err != nil {
			return err
		}
		v.peer = peer
	}
	s.mu.Lock()
	s.bundles[req.HTTP] = v
	s.mu.Unlock()
	return nil
}

// observe forgets a Bundle once it has been answered.
func (s *Server) observe(_ context.Context, req *rest.Request, _ rest.Result) {
	if req == nil || (req.Interaction != rest.InteractionTransaction && req.Interaction != rest.InteractionBatch) {
		return
	}
	s.mu.Lock()
	delete(s.bundles, req.HTTP)
	s.mu.Unlock()
}

// authorizeWrite is the ITI-130 rule: the peer may create, update and
// delete only resources of its own URA, and must name the version it read
// when it changes an existing one.
func (s *Server) authorizeWrite(ctx context.Context, req *rest.Request) error {
	var (
		peer    string
		ifMatch string
		view    *bundleView
		err     error
	)
	if req.Entry > 0 {
		s.mu.Lock()
		view = s.bundles[req.HTTP]
		s.mu.Unlock()
		if view == nil || view.peer == "" { // fail closed: the Bundle was not seen
			return fhir.Errorf(http.StatusForbidden, "forbidden", "changes need an mTLS connection with your organisation's certificate")
		}
		peer, ifMatch = view.peer, view.ifMatch[req.Entry]
	} else {
		if peer, err = peerURA(req.HTTP); err != nil {
			return err
		}
		ifMatch = req.HTTP.Header.Get("If-Match")
	}
	if req.Type != "Organization" && owningElement[req.Type] == "" {
		return fhir.Errorf(http.StatusForbidden, "forbidden", "resource type %s is not maintained by organisations in the addressbook", req.Type)
	}
	if req.Interaction != rest.InteractionCreate && req.ID == "" {
		// A conditional update or delete would pick its target by search,
		// past the ownership check below.
		return fhir.Errorf(http.StatusBadRequest, "not-supported", "the addressbook changes entries by id only; conditional updates and deletes are not supported")
	}
	if req.Interaction != rest.InteractionCreate {
		cur, err := s.store.Read(ctx, tenant, req.Type, req.ID)
		switch {
		case err == nil:
			owned, err := s.ownedBy(ctx, cur.Type, cur.Body, peer, nil)
			if err != nil {
				return err
			}
			if !owned {
				return fhir.Errorf(http.StatusForbidden, "forbidden", "%s/%s is not maintained by URA %s", req.Type, req.ID, peer)
			}
			if ifMatch == "" {
				return fhir.Errorf(http.StatusPreconditionRequired, "required", "changes to existing entries need If-Match with the version you read")
			}
			// The store checks If-Match on updates; deletes take no version,
			// so it is checked here.
			if req.Interaction == rest.InteractionDelete && etagVersion(ifMatch) != cur.VersionID {
				return fhir.Errorf(http.StatusPreconditionFailed, "conflict", "%s/%s is at version %s, not %s", req.Type, req.ID, cur.VersionID, etagVersion(ifMatch))
			}
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrDeleted):
			// Update-as-create, or deleting what is not there: only the new
			// content (below) needs to be the peer's.
		default:
			return err
		}
	}
	if req.Interaction == rest.InteractionDelete {
		return nil
	}
	var orgs map[string][]byte
	if view != nil && view.transaction {
		orgs = view.orgs // all or nothing: an Organization this Bundle writes is checked as its own entry
	}
	if req.Type == "Organization" {
		if !onlyURA(req.Body, peer) {
			return fhir.Errorf(http.StatusForbidden, "forbidden", "an organisation may register only its own URA (%s), and no other", peer)
		}
		return nil
	}
	owned, err := s.ownedBy(ctx, req.Type, req.Body, peer, orgs)
	if err != nil {
		return err
	}
	if !owned {
		return fhir.Errorf(http.StatusForbidden, "forbidden", "%s.%s must reference an Organization of your own URA (%s)", req.Type, owningElement[req.Type], peer)
	}
	return nil
}

// etagVersion is the version in an ETag such as W/"3".
func etagVersion(etag string) string {
	return strings.Trim(strings.TrimPrefix(strings.TrimSpace(etag), "W/"), `"`)
}

// ownedBy tells whether a stored or proposed resource belongs to the
// organisation with ura. orgs holds Organizations a transaction writes,
// by fullUrl and Organization/id; they take precedence over the store.
func (s *Server) ownedBy(ctx context.Context, typ string, body []byte, ura string, orgs map[string][]byte) (bool, error) {
	if typ == "Organization" {
		var o orgHead
		if json.Unmarshal(body, &o) != nil {
			return false, nil
		}
		return slices.Contains(o.uras(), ura), nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false, nil
	}
	var ref struct {
		Reference string `json:"reference"`
	}
	if json.Unmarshal(m[owningElement[typ]], &ref) != nil || ref.Reference == "" {
		return false, nil
	}
	r := strings.TrimPrefix(ref.Reference, s.base+"/")
	if org, ok := orgs[r]; ok {
		return onlyURA(org, ura), nil
	}
	id, ok := strings.CutPrefix(r, "Organization/")
	if !ok || strings.Contains(id, "/") {
		return false, nil
	}
	org, err := s.store.Read(ctx, tenant, "Organization", id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return onlyURA(org.Body, ura), nil
}

// onlyURA tells whether the Organization carries ura and no other URA: an
// organisation that registers a second URA would speak for another.
func onlyURA(body []byte, ura string) bool {
	var o orgHead
	if json.Unmarshal(body, &o) != nil || o.ResourceType != "Organization" {
		return false
	}
	uras := o.uras()
	if len(uras) == 0 {
		return false
	}
	for _, u := range uras {
		if u != ura {
			return false
		}
	}
	return true
}

// Handler serves the directory's FHIR API under /fhir/.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir/{path...}", func(w http.ResponseWriter, r *http.Request) {
		s.api.Serve(w, r, tenant, s.base, r.PathValue("path"))
	})
	return mux
}

// Load puts the entries into the directory, replacing earlier versions, all
// or none.
func (s *Server) Load(ctx context.Context, entries ...Entry) error {
	var res []json.RawMessage
	for _, e := range entries {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("load addressbook: %w", err)
		}
		res = append(res, e.Resources()...)
	}
	return s.LoadResources(ctx, res...)
}

// LoadResources puts mCSD resources (each with its id) into the directory,
// replacing earlier versions: the operator's way to maintain entries,
// including the types Entry does not describe. A resource whose content is
// what the directory holds already is left alone (no new version for
// consumers to sync), as `schakel import` does. All or none are stored when
// the store is transactional.
func (s *Server) LoadResources(ctx context.Context, resources ...json.RawMessage) error {
	for i, r := range resources {
		var h struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(r, &h); err != nil {
			return fmt.Errorf("load addressbook: resource %d is not JSON", i+1)
		}
		if !slices.Contains(ReplicaTypes, h.ResourceType) || !validID(h.ID) {
			return fmt.Errorf("load addressbook: resource %d: need an mCSD resource (%s) with an id, not %q/%q", i+1, strings.Join(ReplicaTypes, ", "), h.ResourceType, h.ID)
		}
	}
	if txs, ok := s.store.(store.Transactional); ok {
		return txs.InTx(ctx, tenant, func(tx store.Tx) error {
			for i, r := range resources {
				if err := loadOne(ctx, tx.Read, tx.Update, r); err != nil {
					return fmt.Errorf("load addressbook: resource %d: %w", i+1, err)
				}
			}
			return nil
		})
	}
	read := func(ctx context.Context, typ, id string) (store.Resource, error) {
		return s.store.Read(ctx, tenant, typ, id)
	}
	update := func(ctx context.Context, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
		return s.store.Update(ctx, tenant, body, ifMatch)
	}
	for i, r := range resources {
		if err := loadOne(ctx, read, update, r); err != nil {
			return fmt.Errorf("load addressbook: resource %d: %w", i+1, err)
		}
	}
	return nil
}

// loadOne writes r unless the directory holds its content already.
func loadOne(ctx context.Context,
	read func(ctx context.Context, typ, id string) (store.Resource, error),
	update func(ctx context.Context, body json.RawMessage, ifMatch string) (store.Resource, bool, error),
	r json.RawMessage,
) error {
	var h struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal(r, &h); err != nil {
		return err
	}
	cur, err := read(ctx, h.ResourceType, h.ID)
	switch {
	case err == nil:
		if fhir.SameContent(cur.Body, r) {
			return nil
		}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrDeleted):
	default:
		return err
	}
	_, _, err = update(ctx, r, "")
	return err
}

// DecodeLoadFile reads what `schakel addressbook load` takes: a JSON array
// of entries ({"id","ura","name","endpoints":[{"id","payloadType",
// "address","fhirVersion","status","start","end"}]}), or a FHIR Bundle of
// mCSD resources. It returns the resources to store.
func DecodeLoadFile(data []byte) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if json.Valid(data) {
		// FHIR JSON has each property once; a second copy is refused, not
		// silently preferred.
		var de *fhir.DuplicateKeyError
		if err := fhir.CheckKeys(data); errors.As(err, &de) {
			return nil, fmt.Errorf("property %q appears more than once at %s", de.Key, de.Expression(""))
		}
	}
	if len(data) > 0 && data[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var entries []Entry
		if err := dec.Decode(&entries); err != nil {
			return nil, fmt.Errorf("entries: %w", err)
		}
		var out []json.RawMessage
		for _, e := range entries {
			if err := e.Validate(); err != nil {
				return nil, err
			}
			out = append(out, e.Resources()...)
		}
		return out, nil
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil || b.ResourceType != "Bundle" {
		return nil, errors.New("expected a JSON array of entries or a FHIR Bundle")
	}
	out := make([]json.RawMessage, 0, len(b.Entry))
	for i, e := range b.Entry {
		if len(e.Resource) == 0 {
			return nil, fmt.Errorf("Bundle.entry[%d] has no resource", i)
		}
		out = append(out, e.Resource)
	}
	return out, nil
}
