// Package rest is the FHIR RESTful API over a store.Store: it turns HTTP
// requests into store calls and store results into FHIR responses (resources,
// searchset Bundles, OperationOutcomes). Store errors are translated to HTTP
// statuses here, once, and nowhere else.
//
// Resources travel through the server as the JSON bytes the store keeps; they
// are copied into responses and Bundles as they are (only a transaction
// entry whose urn:uuid references are rewritten is re-encoded). XML is
// converted at the edge (fhir/xml); every written resource is checked
// against the structure of its definitions first (fhir/validate).
//
// The node mounts a Server under its FHIR base, one per FHIR version:
//
//	mux.HandleFunc("/fhir/stu3/{ura}/{path...}", func(w http.ResponseWriter, r *http.Request) {
//		base := "https://" + r.Host + "/fhir/stu3/" + r.PathValue("ura")
//		srv.Serve(w, r, r.PathValue("ura"), base, r.PathValue("path"))
//	})
package rest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 4 << 20

// The interactions a Request can carry (Request.Interaction). The names are
// those of the FHIR CapabilityStatement, plus "operation" and "capabilities".
const (
	InteractionRead         = "read"
	InteractionVRead        = "vread"
	InteractionSearchType   = "search-type"
	InteractionCreate       = "create"
	InteractionUpdate       = "update"
	InteractionDelete       = "delete"
	InteractionOperation    = "operation"
	InteractionCapabilities = "capabilities"
	// InteractionHistoryInstance, InteractionHistoryType and
	// InteractionHistorySystem are _history on a resource, a type and the
	// whole tenant.
	InteractionHistoryInstance = "history-instance"
	InteractionHistoryType     = "history-type"
	InteractionHistorySystem   = "history-system"
	// InteractionTransaction and InteractionBatch are a Bundle POSTed to the
	// base; Authorize also sees each of their entries as its own Request.
	InteractionTransaction = "transaction"
	InteractionBatch       = "batch"
)

// Config configures a Server.
type Config struct {
	// Store keeps the resources; required.
	Store store.Store
	// Version is the FHIR version of Store and of this endpoint; required.
	Version fhir.Version
	// MaxBodyBytes limits request bodies; larger ones are answered with 413.
	// Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Authorize, when set, is the policy hook: it runs before the store is
	// touched, for every interaction except capabilities. A returned
	// *fhir.Error is sent as it is (status 403 when it has none); any other
	// error becomes a 403 "access denied", its text kept for Observe
	// (Result.Err) and never sent.
	Authorize func(ctx context.Context, req *Request) error
	// Observe, when set, is called exactly once after every handled request,
	// errors included, with what was asked and what was answered, after the
	// response was written.
	Observe func(ctx context.Context, req *Request, res Result)
	// Commit, when set, is called exactly once for every handled request,
	// errors included, after the interaction ran and BEFORE any byte of the
	// response is sent (responses are buffered): the hook for an audit log
	// that must hold its record before data leaves. When Commit fails the
	// client gets 503 "the audit log is unavailable; nothing was returned"
	// instead, and Observe sees that 503. A write the interaction made
	// stays: it is the data holder's own record, and undoing it could fail
	// just the same; only the answer is withheld.
	Commit func(ctx context.Context, req *Request, res Result) error
	// Logger receives internal failures (the causes of 500s); the default is
	// slog.Default().
	Logger *slog.Logger
}

// Validate reports whether c can be used to build a Server.
func (c Config) Validate() error {
	if c.Store == nil {
		return errors.New("rest: Config.Store is required")
	}
	if c.Version != fhir.STU3 && c.Version != fhir.R4 {
		return fmt.Errorf("rest: Config.Version %q is not a supported FHIR version", c.Version)
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("rest: Config.MaxBodyBytes must not be negative")
	}
	return nil
}

// Request is one FHIR interaction, parsed from an HTTP request.
type Request struct {
	// Tenant is the participant (URA) whose data is addressed.
	Tenant string
	// Base is the absolute base URL of this FHIR endpoint, without a trailing
	// slash, e.g. https://127.0.0.1:8443/fhir/stu3/00000001.
	Base string
	// Interaction is one of the Interaction constants; empty when the
	// request could not be understood.
	Interaction string
	// Type, ID and VersionID are taken from the URL, as far as present.
	Type, ID, VersionID string
	// Operation is the operation name including "$", e.g. "$lastn".
	Operation string
	// Params are the URL query parameters, merged with the form body for
	// POST [type]/_search.
	Params url.Values
	// Body is the request body as FHIR JSON (create, update, the Bundle of
	// a transaction or batch, and the resource $validate checks).
	Body []byte
	// Patient is, for Patient/[id]/$everything, the patient the answer is
	// about, read before Authorize runs so that the policy can decide on
	// it (consent asks by BSN), and set for Commit and Observe; nil
	// otherwise, and when the patient is not there.
	Patient *store.Resource
	// Entry is the position (from 1) of the Bundle entry this Request stands
	// for when Authorize is asked about each entry of a transaction or batch;
	// 0 for requests of their own.
	Entry int
	// HTTP is the request as received.
	HTTP *http.Request

	format codec  // the negotiated response format
	mode   string // $validate's mode: "", create, update or delete
}

// Result is the outcome of one interaction, as reported to Config.Observe.
type Result struct {
	// Status is the HTTP status sent.
	Status int
	// Resources are the resources returned: the read, created or updated
	// resource, or every match and include of a search.
	Resources []store.Resource
	// Err is the failure, with its internal cause; nil on success.
	Err error
}

// Server serves the FHIR RESTful API of one FHIR version over one store.
// It is safe for concurrent use.
type Server struct {
	store     store.Store
	version   fhir.Version
	maxBody   int64
	authorize func(context.Context, *Request) error
	observe   func(context.Context, *Request, Result)
	commit    func(context.Context, *Request, Result) error
	log       *slog.Logger
	types     map[string]bool // the resource types this endpoint serves
	started   time.Time       // CapabilityStatement.date
	elements  sync.Map        // resource type → its _elements names (elementNames)
	summaries sync.Map        // resource type → its summary index (summaryIndex)

	compartmentOnce  sync.Once
	compartmentLinks []compartmentLink // Patient/$everything's types (compartment)
}

// New returns a Server for cfg. It panics when cfg.Validate fails: a
// misconfigured endpoint is a programming error of the composition root.
func New(cfg Config) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := &Server{
		store:     cfg.Store,
		version:   cfg.Version,
		maxBody:   cfg.MaxBodyBytes,
		authorize: cfg.Authorize,
		observe:   cfg.Observe,
		commit:    cfg.Commit,
		log:       cfg.Logger,
		types:     resourceTypes(cfg.Version),
		started:   time.Now().UTC().Truncate(time.Second),
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Serve answers one FHIR request. tenant is the participant addressed, base
// the absolute URL of the FHIR endpoint (what path is relative to) and path
// the part of the URL after base, e.g. "Patient/123", "Observation/$lastn",
// "metadata" or "Patient/123/_history/2". Commit and Observe are called
// once each, whatever the outcome.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, tenant, base, path string) {
	req, err := s.parse(r, tenant, base, path)
	buf := getBuffer()
	defer putBuffer(buf)
	var res Result
	if err != nil {
		res.Err = err
	} else {
		res = s.handle(buf, req)
	}
	if res.Err != nil {
		buf.reset()
		res.Status = s.writeError(buf, req, res.Err)
	}
	if s.commit != nil {
		if err := s.commit(r.Context(), req, res); err != nil {
			e := fhir.Errorf(http.StatusServiceUnavailable, "transient", "the audit log is unavailable; nothing was returned")
			e.Cause = err
			res = Result{Err: e, Resources: written(req, res)}
			buf.reset()
			res.Status = s.writeError(buf, req, e)
		}
	}
	if r.Method == http.MethodHead {
		buf.body.Reset() // the headers of the GET, Content-Length included; no body
	}
	buf.flush(w)
	if s.observe != nil {
		s.observe(r.Context(), req, res)
	}
}

// written keeps the resources of res that a write interaction stored (and
// that stay stored when the answer is withheld); reads returned nothing.
func written(req *Request, res Result) []store.Resource {
	switch req.Interaction {
	case InteractionCreate, InteractionUpdate, InteractionDelete, InteractionTransaction, InteractionBatch:
		return res.Resources
	}
	return nil
}

// handle runs a parsed request. On success it writes the response and
// returns its Result; on failure it returns Result.Err (and whatever it
// wrote is discarded).
func (s *Server) handle(w http.ResponseWriter, req *Request) Result {
	ctx := req.HTTP.Context()
	if req.Interaction != InteractionCapabilities && s.authorize != nil {
		if err := s.prepare(ctx, req); err != nil {
			return Result{Err: err}
		}
		if err := s.authorize(ctx, req); err != nil {
			return Result{Err: denied(err)}
		}
	}
	switch req.Interaction {
	case InteractionRead:
		return s.read(ctx, w, req)
	case InteractionVRead:
		return s.vread(ctx, w, req)
	case InteractionSearchType:
		return s.search(ctx, w, req, 0)
	case InteractionOperation:
		return s.operation(ctx, w, req)
	case InteractionCreate:
		return s.create(ctx, w, req)
	case InteractionUpdate:
		return s.update(ctx, w, req)
	case InteractionDelete:
		return s.delete(ctx, w, req)
	case InteractionHistoryInstance, InteractionHistoryType, InteractionHistorySystem:
		return s.history(ctx, w, req)
	case InteractionTransaction, InteractionBatch:
		return s.bundleInteraction(ctx, w, req)
	case InteractionCapabilities:
		return s.capabilities(w, req)
	}
	return Result{Err: fmt.Errorf("rest: unhandled interaction %q", req.Interaction)}
}

// denied turns an Authorize failure into the error the client sees.
func denied(err error) error {
	if fe := fhir.AsError(err); fe != nil {
		if fe.Status == 0 {
			return &fhir.Error{Status: http.StatusForbidden, Issues: fe.Issues, Cause: err}
		}
		return err
	}
	e := fhir.Errorf(http.StatusForbidden, "forbidden", "access denied")
	e.Cause = err
	return e
}

// buffer holds a response until Commit has approved it.
type buffer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

var buffers = sync.Pool{New: func() any { return &buffer{header: make(http.Header)} }}

func getBuffer() *buffer { return buffers.Get().(*buffer) }

func putBuffer(b *buffer) {
	if b.body.Cap() > 1<<20 {
		return // let large buffers go rather than pin them
	}
	b.reset()
	buffers.Put(b)
}

func (b *buffer) Header() http.Header { return b.header }

func (b *buffer) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *buffer) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *buffer) reset() {
	clear(b.header)
	b.status = 0
	b.body.Reset()
}

// flush sends the buffered response.
func (b *buffer) flush(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range b.header {
		h[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	if b.body.Len() > 0 {
		w.Write(b.body.Bytes()) //nolint:errcheck // the client went away; nothing to tell it
	}
}
