package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// The transfer requests a participant received (a care application whose
// requests the receiving organisation decides on, careapp.Decision, e.g.
// eOverdracht): its system lists those waiting, reads the documents the
// node pulled to decide on (the aanmeldbericht), and accepts or rejects.
// These routes speak FHIR: the documents are a FHIR Bundle and every
// refusal is an OperationOutcome.
func (n *Node) transferRoutes(mux *http.ServeMux) {
	mux.Handle("GET /internal/transfers", n.authInternal(n.listTransfers))
	mux.Handle("GET /internal/transfers/{id}", n.authInternal(n.getTransfer))
	mux.Handle("GET /internal/transfers/{id}/request", n.authInternal(n.transferRequest))
	mux.Handle("POST /internal/transfers/{id}/decision", n.authInternal(n.decideTransfer))
}

// listTransfers serves GET /internal/transfers: the transfer requests
// received, by decision (?decision=pending, the default; accepted,
// rejected, or all), oldest first.
func (n *Node) listTransfers(w http.ResponseWriter, r *http.Request, p *participant) {
	want := r.URL.Query().Get("decision")
	switch want {
	case "":
		want = notifiedpull.DecisionPending
	case notifiedpull.DecisionPending, notifiedpull.DecisionAccepted, notifiedpull.DecisionRejected, "all":
	default:
		writeOutcome(w, fhir.Errorf(http.StatusBadRequest, "value", "decision must be pending, accepted, rejected or all, not %q", want))
		return
	}
	rs, err := n.np.Received(r.Context(), p.URA)
	if err != nil {
		n.transferError(w, err)
		return
	}
	out := []Referral{}
	for _, x := range rs {
		if x.Decision != "" && (want == "all" || x.Decision == want) {
			out = append(out, receivedView(x))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getTransfer serves GET /internal/transfers/{id}: one transfer request.
func (n *Node) getTransfer(w http.ResponseWriter, r *http.Request, p *participant) {
	x, err := n.np.ReceivedOne(r.Context(), p.URA, r.PathValue("id"))
	if err == nil && x.Decision == "" {
		err = notifiedpull.ErrUnknownReferral // a referral, but no transfer request
	}
	if err != nil {
		n.transferError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, receivedView(x))
}

// transferRequest serves GET /internal/transfers/{id}/request: the
// documents the node read for the participant to decide on (a collection
// Bundle of the document Bundles, e.g. the aanmeldbericht's $document).
// The read is audited with the patient.
func (n *Node) transferRequest(w http.ResponseWriter, r *http.Request, p *participant) {
	x, err := n.np.ReceivedOne(r.Context(), p.URA, r.PathValue("id"))
	if err == nil && x.Decision == "" {
		err = notifiedpull.ErrUnknownReferral
	}
	if err != nil {
		n.transferError(w, err)
		return
	}
	if x.RequestBundle == "" {
		if notifiedpull.Final(x.Status) {
			writeOutcome(w, fhir.Errorf(http.StatusConflict, "business-rule", "transfer request %s has ended %s before a decision; its documents are not kept", x.ID, x.Status))
			return
		}
		writeOutcome(w, fhir.Errorf(http.StatusConflict, "business-rule", "the documents of transfer request %s are not read yet (status %s)", x.ID, x.Status))
		return
	}
	v := fhir.STU3
	if a, ok := n.apps.Get(x.Application); ok {
		v = a.FHIRVersion()
	}
	res, err := n.StoreFor(v).Read(r.Context(), p.URA, "Bundle", x.RequestBundle)
	if err != nil {
		n.transferError(w, err)
		return
	}
	if err := n.auditLog.Append(r.Context(), audit.Record{Action: audit.ActionRead, Interaction: "read", Outcome: http.StatusOK, Tenant: p.URA,
		ActorURA: p.URA, ActorSystem: p.SystemUZI, Address: r.RemoteAddr, Patient: x.PatientBSN, Types: []string{"Bundle"},
		Resources: []string{"Bundle/" + res.ID}, Task: x.Identifier, Query: "transfer request from " + x.SenderURA}); err != nil {
		writeOutcome(w, auditUnavailable(err))
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion="+versionParam(v)+"; charset=utf-8")
	_, _ = w.Write(res.Body)
}

// decideTransfer serves POST /internal/transfers/{id}/decision: the
// participant accepts ({"status": "accepted"}) or rejects ({"status":
// "rejected", "reason": text}) a transfer request that waits for its
// decision; the node then sets the sender's workflow Task accordingly
// (with the reason as Task.statusReason) and, on acceptance, pulls the
// rest and completes. The answer, 202, is the request as it stands; the
// pull follows (GET /internal/transfers/{id}). Every decision, refused or
// not, is audited; the answer leaves only after its record is written.
func (n *Node) decideTransfer(w http.ResponseWriter, r *http.Request, p *participant) {
	id := r.PathValue("id")
	rec := audit.Record{Action: audit.ActionUpdate, Interaction: "decide", Tenant: p.URA, ActorURA: p.URA, ActorSystem: p.SystemUZI,
		Address: r.RemoteAddr, Types: []string{"Task"}, Resources: []string{"Task/" + id}}
	var d notifiedpull.TransferDecision
	var x notifiedpull.Received
	var err error
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if derr := dec.Decode(&d); derr != nil {
		err = fmt.Errorf("%w: the body is not that JSON object", notifiedpull.ErrInvalidDecision)
		// The referral is looked up all the same, so the refusal is
		// audited with its patient.
		x, _ = n.np.ReceivedOne(r.Context(), p.URA, id)
	} else {
		x, err = n.np.DecideTransfer(r.Context(), p.URA, id, d)
	}
	rec.ActorUser, rec.ActorRole = d.User, d.Role
	rec.Patient, rec.Task = x.PatientBSN, x.Identifier
	if x.SenderURA != "" {
		rec.Query = fmt.Sprintf("transfer request from %s: %s", x.SenderURA, d.Status)
		if d.Reason != "" {
			rec.Query += ": " + d.Reason
		}
	}
	fe := transferOutcome(err)
	if fe != nil {
		rec.Outcome, rec.OutcomeText = fe.Status, fe.Error()
		if fe.Status >= 500 {
			n.log.Error("internal API: transfer decision", "referral", id, "err", err)
		}
	} else {
		rec.Outcome = http.StatusAccepted
	}
	if aerr := n.auditLog.Append(r.Context(), rec); aerr != nil {
		writeOutcome(w, &fhir.Error{Status: http.StatusServiceUnavailable, Cause: aerr, Issues: []fhir.Issue{{Severity: "error", Code: "transient",
			Diagnostics: "the audit log is unavailable; the decision may have been recorded, read the request again"}}})
		return
	}
	if fe != nil {
		writeOutcome(w, fe)
		return
	}
	writeJSON(w, http.StatusAccepted, receivedView(x))
}

// transferError answers err as an OperationOutcome.
func (n *Node) transferError(w http.ResponseWriter, err error) {
	fe := transferOutcome(err)
	if fe.Status >= 500 {
		n.log.Error("internal API: transfers", "err", err)
	}
	writeOutcome(w, fe)
}

// transferOutcome translates an error of the transfer routes once, to the
// OperationOutcome the participant's system gets; nil for nil.
func transferOutcome(err error) *fhir.Error {
	if err == nil {
		return nil
	}
	if fe := fhir.AsError(err); fe != nil {
		return fe
	}
	switch {
	case errors.Is(err, notifiedpull.ErrUnknownReferral):
		return fhir.Errorf(http.StatusNotFound, "not-found", "no such transfer request for this participant")
	case errors.Is(err, notifiedpull.ErrNotPending):
		return fhir.Errorf(http.StatusConflict, "business-rule", "%s", err.Error())
	case errors.Is(err, notifiedpull.ErrInvalidDecision):
		return fhir.Errorf(http.StatusBadRequest, "invalid", "%s", err.Error())
	case storeUnavailable(err):
		return fhir.Errorf(http.StatusServiceUnavailable, "transient", "the node's store is unavailable; nothing was done, try again later")
	}
	return &fhir.Error{Status: http.StatusInternalServerError, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "exception",
		Diagnostics: "the transfer request could not be processed"}}}
}
