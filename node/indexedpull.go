package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/indexedpull"
)

// setupIndexedPull builds the Indexed Pull on the node's own localization
// and Direct Pull: each audits itself and holds every holder to the
// plateaus agreed with it.
func (n *Node) setupIndexedPull() {
	n.indexed = indexedpull.New(indexedpull.Config{
		Applications: n.apps,
		Localize:     n.localizeHolders,
		Consult:      n.consult.Consult,
		System: func(ura string) string {
			if p, ok := n.parts.get(ura); ok {
				return p.SystemUZI
			}
			return ""
		},
		HolderTimeout: n.cfg.IndexedPull.HolderTimeout,
		Audit:         n.auditAppender(), Logger: n.log,
	})
}

func (e *localizeError) Error() string { return e.detail }

// localizeHolders is the Indexed Pull's localization: the same question,
// audit record and remembered hits as POST /internal/localize.
func (n *Node) localizeHolders(ctx context.Context, tenant string, req indexedpull.Request) (indexedpull.Located, error) {
	p, ok := n.parts.get(tenant)
	if !ok {
		return indexedpull.Located{}, &localizeError{http.StatusNotFound, "not-found", "unknown participant"}
	}
	res, lerr := n.runLocalize(ctx, p, LocalizeRequest{Patient: req.Patient, Role: req.User.Role, UZI: req.User.ID},
		remoteAddr(ctx))
	if lerr != nil {
		return indexedpull.Located{}, lerr
	}
	loc := indexedpull.Located{Warnings: res.Warnings}
	for _, h := range res.Holders {
		loc.Holders = append(loc.Holders, h.URA)
	}
	return loc, nil
}

type remoteAddrKey struct{}

func remoteAddr(ctx context.Context) string {
	a, _ := ctx.Value(remoteAddrKey{}).(string)
	return a
}

// indexedPull serves POST /internal/indexed-pull: the patient's data of a
// care application from every holder the referral index names, in one
// FHIR STU3 searchset Bundle (docs/protocols.md).
func (n *Node) indexedPull(w http.ResponseWriter, r *http.Request, p *participant) {
	var req indexedpull.Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"patient": BSN, "application": "bgz", "user": {"id": UZI number, "role": UZI role code, ...}}`)
		return
	}
	start := time.Now()
	ctx := context.WithValue(r.Context(), remoteAddrKey{}, r.RemoteAddr)
	ans, err := n.indexed.Pull(ctx, p.URA, req)
	app := applicationLabel(req.Application, consult.ApplicationBgZ, err)
	n.metrics.exchange(app, patternIndexedPull, roleRequester, err)
	if err != nil {
		var le *localizeError
		if errors.As(err, &le) {
			writeProblem(w, le.status, le.typ, le.detail)
			return
		}
		n.internalError(w, err)
		return
	}
	n.metrics.exchangeTook(app, patternIndexedPull, roleRequester, time.Since(start))
	for _, h := range ans.Holders {
		if h.Status != indexedpull.StatusDelivered && h.Status != indexedpull.StatusNoData {
			n.log.Warn("indexed pull: holder did not deliver everything", "participant", p.URA, "holder", h.Holder,
				"status", h.Status, "detail", h.Detail)
		}
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion=3.0; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(ans.Bundle)
}
