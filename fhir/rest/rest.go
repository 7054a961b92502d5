// Package rest is the FHIR RESTful API over a store.Store: it turns HTTP
// requests into store calls and store results into FHIR responses (resources,
// searchset Bundles, OperationOutcomes). Store errors are translated to HTTP
// statuses here, once, and nowhere else.
//
// Resources travel through the server as the JSON bytes the store keeps; they
// are copied into responses and Bundles as they are, never re-encoded.
//
// The node mounts a Server under its FHIR base, one per FHIR version:
//
//	mux.HandleFunc("/fhir/stu3/{ura}/{path...}", func(w http.ResponseWriter, r *http.Request) {
//		base := "https://" + r.Host + "/fhir/stu3/" + r.PathValue("ura")
//		srv.Serve(w, r, r.PathValue("ura"), base, r.PathValue("path"))
//	})
package rest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
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
	// errors included, with what was asked and what was answered: the hook
	// for the audit log.
	Observe func(ctx context.Context, req *Request, res Result)
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
	// Body is the request body as FHIR JSON (create and update).
	Body []byte
	// HTTP is the request as received.
	HTTP *http.Request

	format codec // the negotiated response format
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
	log       *slog.Logger
	types     map[string]bool // the resource types this endpoint serves
	started   time.Time       // CapabilityStatement.date
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
// "metadata" or "Patient/123/_history/2". Observe is called once, whatever
// the outcome.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, tenant, base, path string) {
	req, err := s.parse(r, tenant, base, path)
	var res Result
	if err != nil {
		res.Err = err
	} else {
		res = s.handle(w, req)
	}
	if res.Err != nil {
		res.Status = s.writeError(w, req, res.Err)
	}
	if s.observe != nil {
		s.observe(r.Context(), req, res)
	}
}

// handle runs a parsed request. On success it writes the response and
// returns its Result; on failure it writes nothing and returns Result.Err.
func (s *Server) handle(w http.ResponseWriter, req *Request) Result {
	ctx := req.HTTP.Context()
	if req.Interaction != InteractionCapabilities && s.authorize != nil {
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
	case InteractionOperation: // only $lastn gets past parse
		return s.lastN(ctx, w, req)
	case InteractionCreate:
		return s.create(ctx, w, req)
	case InteractionUpdate:
		return s.update(ctx, w, req)
	case InteractionDelete:
		return s.delete(ctx, w, req)
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
