package addressbook

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
)

// tenant is the store partition the directory keeps its entries in.
const tenant = "addressbook"

// Server is the directory service: an R4 FHIR endpoint over a store, read
// only for peers; entries are loaded by the operator (Load).
type Server struct {
	store store.Store
	api   *rest.Server
	base  string
}

// NewServer serves st at base (the absolute URL of /fhir on its listener).
func NewServer(st store.Store, base string, log *slog.Logger) *Server {
	s := &Server{store: st, base: base}
	s.api = rest.New(rest.Config{
		Store: st, Version: fhir.R4, Logger: log,
		Authorize: func(_ context.Context, req *rest.Request) error {
			switch req.Interaction {
			case rest.InteractionRead, rest.InteractionVRead, rest.InteractionSearchType:
				return nil
			}
			return fhir.Errorf(http.StatusForbidden, "forbidden", "the addressbook is read-only for peers")
		},
	})
	return s
}

// Handler serves the directory's FHIR API under /fhir/.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir/{path...}", func(w http.ResponseWriter, r *http.Request) {
		s.api.Serve(w, r, tenant, s.base, r.PathValue("path"))
	})
	return mux
}

// Load puts the entries into the directory, replacing earlier versions.
func (s *Server) Load(ctx context.Context, entries ...Entry) error {
	for _, e := range entries {
		for _, res := range e.Resources() {
			if _, _, err := s.store.Update(ctx, tenant, res, ""); err != nil {
				return fmt.Errorf("load addressbook entry %s: %w", e.URA, err)
			}
		}
	}
	return nil
}
