package node

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/oauth"
)

// The node keeps a FHIR store per version, beside each other on the same
// backend: fhir-stu3.db and fhir-r4.db in the data directory, or, with
// store.postgres, the STU3 tables in store.schema and the R4 tables in a
// schema of their own (r4Schema). The R4 store is always local: proxy mode
// puts the STU3 store in front of a participant's EHR.

// servedVersions are the FHIR versions of the unversioned bases, in the
// order that breaks a tie in negotiation; STU3 first, what a client that
// names no version has always been answered in.
var servedVersions = []fhir.Version{fhir.STU3, fhir.R4}

// r4Schema is the PostgreSQL schema of the R4 store: "fhir_r4", or
// "<store.schema>_r4".
func r4Schema(schema string) string {
	if schema == "" {
		return "fhir_r4"
	}
	return schema + "_r4"
}

// StoreSchema is the PostgreSQL schema a node with store.schema schema
// keeps its FHIR store of version v in ("" is the connection's default):
// for loading data into it from outside the node (schakel import).
func StoreSchema(v fhir.Version, schema string) string {
	if v == fhir.R4 {
		return r4Schema(schema)
	}
	return schema
}

// openR4Store opens the R4 store on the backend the STU3 store uses.
func (n *Node) openR4Store(ctx context.Context) error {
	if n.cfg.Store.Postgres != "" {
		if len(n.cfg.Store.Schema) > 60 {
			return fmt.Errorf("store.schema: %d characters leave no room for the R4 store's schema %s_r4 (PostgreSQL names have at most 63; give at most 60)", len(n.cfg.Store.Schema), n.cfg.Store.Schema)
		}
		st, err := postgres.Open(ctx, n.cfg.Store.Postgres, fhir.R4, postgres.WithSchema(r4Schema(n.cfg.Store.Schema)))
		if err != nil {
			return fmt.Errorf("store.postgres: R4 store (schema %s): %w", r4Schema(n.cfg.Store.Schema), err)
		}
		n.r4 = timedStore{st, n.metrics.series, n.tracing.tracer}
		return nil
	}
	st, err := sqlite.Open(ctx, filepath.Join(n.cfg.DataDir, "fhir-r4.db"), fhir.R4)
	if err != nil {
		return fmt.Errorf("datadir: FHIR R4 store: %w", err)
	}
	n.r4 = timedStore{st, n.metrics.series, n.tracing.tracer}
	return nil
}

// R4Store is the node's FHIR R4 store (for loading a participant's data).
func (n *Node) R4Store() store.Store { return n.r4 }

// StoreFor is the node's FHIR store of version v; nil for a version the
// node does not keep.
func (n *Node) StoreFor(v fhir.Version) store.Store {
	switch v {
	case fhir.STU3:
		return n.stu3
	case fhir.R4:
		return n.r4
	}
	return nil
}

// mountInternalFHIR serves the participant's own FHIR stores on the
// internal listener: /internal/fhir/stu3 and /internal/fhir/r4, and
// /internal/fhir, where the request's fhirVersion media type parameter
// chooses (STU3 when it names none).
func (n *Node) mountInternalFHIR(mux *http.ServeMux) {
	servers := map[fhir.Version]*rest.Server{}
	for _, v := range servedVersions {
		servers[v] = rest.New(rest.Config{
			Store: n.StoreFor(v), Version: v, MaxBodyBytes: n.cfg.MaxBodyBytes, Logger: n.log,
			Commit: func(ctx context.Context, req *rest.Request, res rest.Result) error {
				p := ctx.Value(participantKey{}).(*participant)
				return n.auditFHIR(ctx, req, res, actor{ura: p.URA, system: p.SystemUZI, protocol: "internal API, participant token",
					checks: []string{"internal-token: the participant's bearer token"}})
			},
		})
	}
	versioned := func(v fhir.Version) http.Handler {
		base := n.InternalURL() + "/internal/fhir/" + string(v)
		return n.authInternal(func(w http.ResponseWriter, r *http.Request, p *participant) {
			servers[v].Serve(w, r, p.URA, base, r.PathValue("path"))
		})
	}
	negotiated := n.authInternal(func(w http.ResponseWriter, r *http.Request, p *participant) {
		v, err := rest.SelectVersion(r, servedVersions, fhir.STU3)
		if err != nil {
			n.refuseVersion(w, r, p.URA, err)
			return
		}
		servers[v].Serve(w, r, p.URA, n.InternalURL()+"/internal/fhir", r.PathValue("path"))
	})
	// Each base itself takes transactions and batches; ServeMux would redirect it to ".../".
	mux.Handle("/internal/fhir", negotiated)
	mux.Handle("/internal/fhir/{path...}", negotiated)
	for _, v := range servedVersions {
		mux.Handle("/internal/fhir/"+string(v), versioned(v))
		mux.Handle("/internal/fhir/"+string(v)+"/{path...}", versioned(v))
	}
}

// refuseVersion answers a request on a negotiating base whose FHIR version
// is not served, after auditing the refusal like any FHIR request.
func (n *Node) refuseVersion(w http.ResponseWriter, r *http.Request, tenant string, err error) {
	fe := fhir.AsError(err)
	rec := n.auditRecordForRefusal(r, tenant, fe)
	if aerr := n.auditLog.Append(r.Context(), rec); aerr != nil {
		writeOutcome(w, auditUnavailable(aerr))
		return
	}
	writeOutcome(w, fe)
}

// auditRecordForRefusal is the audit record of a FHIR request refused
// before a FHIR server saw it: the participant, the source and what it
// named.
func (n *Node) auditRecordForRefusal(r *http.Request, tenant string, fe *fhir.Error) audit.Record {
	rec := audit.Record{Action: actionFor(r.Method), Interaction: "access", Outcome: fe.Status, Tenant: tenant,
		ActorURA: tenant, Address: r.RemoteAddr, AuthzProtocol: "internal API, participant token"}
	if len(fe.Issues) > 0 {
		rec.OutcomeText = fe.Issues[0].Diagnostics
	}
	rec.Patient, rec.Query = refusedNames(r, true, n.patientBSN)
	return rec
}

// mountPublicR4 serves each participant's R4 store on the public listener
// at /fhir/r4/{ura}: the same chain as /fhir/stu3/{ura} (token, plateau,
// care application policy, referral or consult, audit). The Task and
// Push endpoints stay on the STU3 base, where the agreements put them.
//
// /fhir/{ura} serves either version's data endpoint, chosen per request by
// the fhirVersion of its media types as on /internal/fhir (STU3 when none
// is named).
func (n *Node) mountPublicR4(mux *http.ServeMux, stu3 *rest.Server) {
	data := map[fhir.Version]*rest.Server{fhir.STU3: stu3, fhir.R4: rest.New(n.dataConfig(n.r4, fhir.R4))}
	participant := func(w http.ResponseWriter, ura string) bool {
		if _, ok := n.parts.get(ura); !ok {
			writeOutcome(w, fhir.Errorf(http.StatusNotFound, "not-found", "no participant %s on this node", ura))
			return false
		}
		return true
	}
	r4 := func(w http.ResponseWriter, r *http.Request) {
		if ura := r.PathValue("ura"); participant(w, ura) {
			n.serveData(w, r, data[fhir.R4], ura, n.fhirBaseR4(ura), r.PathValue("path"))
		}
	}
	mux.HandleFunc("/fhir/r4/{ura}", r4)
	mux.HandleFunc("/fhir/r4/{ura}/{path...}", r4)
	negotiated := func(w http.ResponseWriter, r *http.Request) {
		ura := r.PathValue("ura")
		if !participant(w, ura) {
			return
		}
		v, err := rest.SelectVersion(r, servedVersions, fhir.STU3)
		if err != nil {
			fe := fhir.AsError(err)
			peer, _ := n.trust.PeerURA(r.TLS)
			rec := n.auditRecordForRefusal(r, ura, fe)
			rec.ActorURA, rec.AuthzProtocol = peer, "public data endpoint, before the access token"
			if aerr := n.auditAppender().Append(r.Context(), rec); aerr != nil {
				writeOutcome(w, auditUnavailable(aerr))
				return
			}
			writeOutcome(w, fe)
			return
		}
		n.serveData(w, r, data[v], ura, n.publicURL+"/fhir/"+ura, r.PathValue("path"))
	}
	mux.HandleFunc("/fhir/{ura}", negotiated)
	mux.HandleFunc("/fhir/{ura}/{path...}", negotiated)
}

// fhirBaseR4 is the public R4 FHIR base of a participant.
func (n *Node) fhirBaseR4(tenant string) string { return n.publicURL + "/fhir/r4/" + tenant }

// verifyData checks the access token of a data request for participant
// ura. A token is issued for the participant's data endpoint, whose
// address in the addressbook is its STU3 base (the audience); the R4 base
// serves the same participant under the same policies, so that token holds
// on both.
//
// A token asked for the R4 base itself (a consult of an R4 care
// application names it as its resource) holds there too, when it is for
// an application the data endpoint serves (one with a query set): an
// application with routes of its own (careapp.Routes: an imaging token,
// whose resource is the R4 base too) holds on its own routes only.
func (n *Node) verifyData(r *http.Request, ura, base string) (*oauth.AccessToken, error) {
	tok, err := n.verify(r, n.fhirBase(ura))
	if err != nil && base == n.fhirBaseR4(ura) {
		if t, rerr := n.verify(r, base); rerr == nil && n.servesData(t) {
			return t, nil
		}
	}
	return tok, err
}

// servesData reports whether a token's scope is a care application whose
// data the FHIR data endpoint serves (one with a query set).
func (n *Node) servesData(tok *oauth.AccessToken) bool {
	for _, s := range tok.Scope {
		a, ok := n.apps.Get(s)
		if _, isQ := a.(careapp.QuerySet); ok && isQ {
			return true
		}
	}
	return false
}

// versionWrites refuses a peer's write on the public R4 base: what a
// partner may write under an exchange (the workflow Task's status, a
// notification, a message) lives on the STU3 base the agreements name.
func versionWrites(v fhir.Version, req *rest.Request) error {
	if v == fhir.STU3 {
		return nil
	}
	switch req.Interaction {
	case rest.InteractionCreate, rest.InteractionUpdate, rest.InteractionDelete, rest.InteractionTransaction, rest.InteractionBatch:
		return fhir.Errorf(http.StatusForbidden, "forbidden", "a partner writes nothing on the R4 base: the exchange's Task and messages live on the STU3 base")
	}
	return nil
}
