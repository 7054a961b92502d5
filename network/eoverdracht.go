package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
)

// transfer reports whether the demo's care application is a nursing
// transfer (careapp.Transfer, e.g. eOverdracht): the hospital transfers a
// patient to the nursing home, so the network runs the nursing home's node.
func (nw *Network) nursingTransfer() bool {
	if nw.opts.Care == "" {
		return false
	}
	a, ok := nw.opts.Applications.Get(nw.opts.Care)
	if !ok {
		return false
	}
	_, ok = a.(careapp.Transfer)
	return ok
}

// nursingTransferSpecs are the nodes of a transfer demo: the GP practice's, the
// hospital's (the sender) and the nursing home's (the receiver), each with
// the default agreement with the others.
func nursingTransferSpecs() []nodeSpec {
	return []nodeSpec{
		{name: "gp-node", p: GP, peers: []Participant{Hospital, NursingHome}},
		{name: "hospital-node", p: Hospital, peers: []Participant{GP, NursingHome}},
		{name: "nursinghome-node", p: NursingHome, peers: []Participant{GP, Hospital}},
	}
}

// NursingTransferSummary is the outcome of one nursing transfer.
type NursingTransferSummary struct {
	Referral  string
	Received  string
	Patient   string
	Status    string // the receiver's final status
	Sender    string // the sender's final status
	Results   []notifiedpull.QueryResult
	Documents []NursingTransferDocument
	// Request is the aanmeldbericht the nursing home's system read
	// before it decided.
	Request NursingTransferDocument
	Took    time.Duration
}

// NursingTransferDocument is one document Bundle that arrived.
type NursingTransferDocument struct {
	Title     string
	Profile   string
	Sections  int
	Resources map[string]int
	Total     int
}

// ExchangeNursingTransfer runs one eOverdracht transfer (Nictiz scenario 1.1b)
// from the hospital to the nursing home through the nodes' internal APIs,
// as the participants' systems would: the hospital's record holds the
// transfer dossier, its system refers the patient with the aanmeldbericht
// and the overdrachtbericht as the workflow Task's inputs; the nursing
// home's node reads the Task and pulls the aanmeldbericht's $document;
// the nursing home's system finds the request waiting, reads the
// aanmeldbericht and accepts it; the node sets the Task accepted, pulls
// the overdrachtbericht's $document and sets the Task completed.
func (nw *Network) ExchangeNursingTransfer(ctx context.Context) (*NursingTransferSummary, error) {
	if !nw.nursingTransfer() || nw.internalURLs[NursingHome.URA] == "" {
		return nil, errors.New("the network runs no nursing home node (give Care a transfer application)")
	}
	if err := nw.transferAtPlateau(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	hc := &http.Client{Timeout: 30 * time.Second}
	sender := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: hc}
	receiver := &xis{base: nw.internalURLs[NursingHome.URA], token: nw.Token(NursingHome.URA), http: hc}
	nw.printf("\nExchange: %s transfers patient %s to %s (eOverdracht 4.0, Notified Pull)\n", Hospital.Name, eoverdracht.DemoPatientBSN, NursingHome.Name)

	var sent node.Referral
	if err := sender.do(ctx, http.MethodPost, "/internal/referrals", notifiedpull.ReferRequest{
		PatientBSN: eoverdracht.DemoPatientBSN, ReceiverURA: NursingHome.URA, Application: nw.opts.Care,
		Description: "Overdracht naar verpleeghuis", Reads: []string{eoverdracht.DemoAdvanceNotice, eoverdracht.DemoNursingHandoff},
	}, &sent); err != nil {
		return nil, fmt.Errorf("refer: %w", err)
	}
	request, err := nw.decideTransfer(ctx, receiver, sent.ID, notifiedpull.TransferDecision{Status: notifiedpull.StatusAccepted, User: demoNurse})
	if err != nil {
		return nil, err
	}
	got, err := nw.awaitReceived(ctx, receiver, sent.ID)
	if err != nil {
		return nil, err
	}
	s := &NursingTransferSummary{Referral: sent.ID, Received: got.ID, Patient: got.Patient, Status: got.Status, Results: got.Results, Request: request}
	if got.Status != notifiedpull.StatusCompleted {
		return s, fmt.Errorf("the transfer's pull by %s ended %s: %s", NursingHome.Name, got.Status, got.StatusReason)
	}
	var bundle struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := receiver.do(ctx, http.MethodGet, "/internal/referrals/"+got.ID+"/data", nil, &bundle); err != nil {
		return s, err
	}
	for _, e := range bundle.Entry {
		d, err := documentOf(e.Resource)
		if err != nil {
			return s, err
		}
		s.Documents = append(s.Documents, d)
	}
	if len(s.Documents) != 2 {
		return s, fmt.Errorf("%d documents arrived, want the aanmeldbericht and the overdrachtbericht", len(s.Documents))
	}
	status, err := sender.settled(ctx, sent.ID, 2*time.Second)
	if err != nil {
		return s, err
	}
	s.Sender = status
	s.Took = time.Since(start)
	if s.Sender != notifiedpull.StatusCompleted {
		return s, fmt.Errorf("the sender's transfer ended %q", s.Sender)
	}
	return s, nil
}

// demoNurse is the nursing home's user who decides in the demo (an UZI
// number of the development PKI's range).
const demoNurse = "900000222"

// nurse is demoNurse as the nursing home's system names her to its node
// where the agreement asks for a user (authentication plateau 2 and up):
// a nurse (UZI role 30.000) logged in at eIDAS high.
var nurse = plateau.Caller{ID: demoNurse, Role: "30.000", LoA: "http://eidas.europa.eu/LoA/high"}

// acceptAsNurse has the nurse accept the received referral with this
// identifier when it waits for a user: its agreement with the hospital
// asks user authentication (plateau 2 and up), so the node reads nothing
// of the transfer until a user starts the pull.
func (nw *Network) acceptAsNurse(ctx context.Context, receiver *xis, identifier string) error {
	var list []node.Referral
	if err := receiver.do(ctx, http.MethodGet, "/internal/referrals?direction=received", nil, &list); err != nil {
		return err
	}
	for _, r := range list {
		if r.Identifier != identifier || !r.AwaitingUser {
			continue
		}
		nw.printf("  %s's nurse (UZI %s, role %s) accepts the notification: the agreement asks for a user\n", NursingHome.Name, nurse.ID, nurse.Role)
		if err := receiver.do(ctx, http.MethodPost, "/internal/referrals/"+r.ID+"/accept", nurse, nil); err != nil {
			return fmt.Errorf("accept: %w", err)
		}
	}
	return nil
}

// transferAtPlateau supplies what the plateaus the hospital agreed with
// the nursing home demand before a transfer: at network plateau 3–4 the
// hospital's node serves data only to a GtK with a valid proof of
// validation for the application, so the nursing home's node is validated
// first as the application's receiver, as a vendor would before going
// live. The BSN verification stand-in's register holds the transfer's
// patient (writeDemoRegister) for identification 3–4.
func (nw *Network) transferAtPlateau(ctx context.Context) error {
	agreed, err := nw.agreementOf(Hospital, NursingHome)
	if err != nil {
		return err
	}
	if agreed.Plateaus[plateau.Network] < 3 || nw.validatedTransfer {
		return nil
	}
	if err := nw.validateFirst(ctx, NursingHome, validation.RoleReceiver, nw.opts.Care, "the transfer", agreed.Plateaus[plateau.Network]); err != nil {
		return err
	}
	nw.validatedTransfer = true
	return nil
}

// decideTransfer plays the nursing home's system: it waits until the
// transfer request with this identifier waits for its decision (60 s at
// most), reads the aanmeldbericht the node pulled, checks it is one, and
// sends the decision. It returns the aanmeldbericht it read.
func (nw *Network) decideTransfer(ctx context.Context, receiver *xis, identifier string, d notifiedpull.TransferDecision) (NursingTransferDocument, error) {
	var pending node.Referral
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for pending.ID == "" {
		select {
		case <-ctx.Done():
			return NursingTransferDocument{}, ctx.Err()
		case <-deadline:
			return NursingTransferDocument{}, fmt.Errorf("transfer request %s did not reach %s's system within 60s", identifier, NursingHome.Name)
		case <-tick.C:
		}
		if err := nw.acceptAsNurse(ctx, receiver, identifier); err != nil {
			return NursingTransferDocument{}, err
		}
		var list []node.Referral
		if err := receiver.do(ctx, http.MethodGet, "/internal/transfers?decision=pending", nil, &list); err != nil {
			return NursingTransferDocument{}, err
		}
		for _, r := range list {
			if r.Identifier == identifier {
				pending = r
			}
		}
	}
	var read struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := receiver.do(ctx, http.MethodGet, "/internal/transfers/"+pending.ID+"/request", nil, &read); err != nil {
		return NursingTransferDocument{}, err
	}
	var notice NursingTransferDocument
	for _, e := range read.Entry {
		doc, err := documentOf(e.Resource)
		if err != nil {
			return notice, err
		}
		if doc.Profile == eoverdracht.ProfileAdvanceNotice {
			notice = doc
		}
	}
	if notice.Profile == "" {
		return notice, fmt.Errorf("transfer request %s: no aanmeldbericht among the %d documents read", pending.ID, len(read.Entry))
	}
	word := "accepts the request"
	if d.Status == notifiedpull.StatusRejected {
		word = "rejects the request: " + d.Reason
	}
	nw.printf("  %s's system read %q (%d resources) and %s\n", NursingHome.Name, notice.Title, notice.Total, word)
	var decided node.Referral
	if err := receiver.do(ctx, http.MethodPost, "/internal/transfers/"+pending.ID+"/decision", d, &decided); err != nil {
		return notice, fmt.Errorf("decide: %w", err)
	}
	return notice, nil
}

// NursingTransferRejection is the outcome of a transfer the nursing home
// rejected.
type NursingTransferRejection struct {
	Referral     string
	Reason       string // as the nursing home's system gave it
	Status       string // the receiver's final status
	Sender       string // the sender's final status
	SenderReason string // the sender's workflow Task's statusReason
}

// RejectNursingTransfer runs a transfer the nursing home rejects: the
// hospital refers the same patient, the nursing home's system reads the
// aanmeldbericht and rejects the request with reason; the node sets the
// sender's workflow Task rejected with that reason as its statusReason,
// and never pulls the overdrachtbericht.
func (nw *Network) RejectNursingTransfer(ctx context.Context, reason string) (*NursingTransferRejection, error) {
	if !nw.nursingTransfer() || nw.internalURLs[NursingHome.URA] == "" {
		return nil, errors.New("the network runs no nursing home node (give Care a transfer application)")
	}
	if !nw.processes {
		// In processes the hospital's node loaded it before it started
		// (UpProcesses), and its store is that process's.
		if err := nw.LoadNursingTransferDossier(ctx); err != nil {
			return nil, err
		}
	}
	if err := nw.transferAtPlateau(ctx); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	sender := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: hc}
	receiver := &xis{base: nw.internalURLs[NursingHome.URA], token: nw.Token(NursingHome.URA), http: hc}
	nw.printf("\nExchange: %s asks %s again to take over patient %s; this time it has no room\n", Hospital.Name, NursingHome.Name, eoverdracht.DemoPatientBSN)
	var sent node.Referral
	if err := sender.do(ctx, http.MethodPost, "/internal/referrals", notifiedpull.ReferRequest{
		PatientBSN: eoverdracht.DemoPatientBSN, ReceiverURA: NursingHome.URA, Application: nw.opts.Care,
		Description: "Overdracht naar verpleeghuis", Reads: []string{eoverdracht.DemoAdvanceNotice, eoverdracht.DemoNursingHandoff},
	}, &sent); err != nil {
		return nil, fmt.Errorf("refer: %w", err)
	}
	if _, err := nw.decideTransfer(ctx, receiver, sent.ID, notifiedpull.TransferDecision{Status: notifiedpull.StatusRejected, Reason: reason, User: demoNurse}); err != nil {
		return nil, err
	}
	got, err := nw.awaitReceived(ctx, receiver, sent.ID)
	if err != nil {
		return nil, err
	}
	s := &NursingTransferRejection{Referral: sent.ID, Reason: reason, Status: got.Status}
	if got.Status != notifiedpull.StatusRejected {
		return s, fmt.Errorf("the rejected transfer ended %s at %s: %s", got.Status, NursingHome.Name, got.StatusReason)
	}
	if s.Sender, err = sender.settled(ctx, sent.ID, 2*time.Second); err != nil {
		return s, err
	}
	var mine node.Referral
	if err := sender.do(ctx, http.MethodGet, "/internal/referrals/"+sent.ID, nil, &mine); err != nil {
		return s, err
	}
	var task json.RawMessage
	if err := sender.do(ctx, http.MethodGet, "/internal/fhir/"+mine.WorkflowTask, nil, &task); err != nil {
		return s, err
	}
	s.SenderReason = notifiedpull.StatusReasonOf(task)
	if s.Sender != notifiedpull.StatusRejected || s.SenderReason != reason {
		return s, fmt.Errorf("the sender's transfer ended %q with reason %q, want rejected with %q", s.Sender, s.SenderReason, reason)
	}
	return s, nil
}

// PrintNursingTransferRejection writes how the rejected transfer ended.
func (nw *Network) PrintNursingTransferRejection(s *NursingTransferRejection) {
	nw.printf("\nSummary: transfer %s rejected by %s\n", s.Referral, NursingHome.Name)
	nw.printf("  status: receiver %s, sender %s; the sender's workflow Task says why: %q\n", s.Status, s.Sender, s.SenderReason)
}

// LoadNursingTransferDossier imports the demo transfer dossier (the Nictiz
// scenario's patient, documents and what they reference) into the
// hospital's record, as `schakel import` does: again on the same data
// directory, it writes no new versions. Up and UpProcesses load it in a
// transfer network before the exchange.
func (nw *Network) LoadNursingTransferDossier(ctx context.Context) error {
	return loadNursingTransferDossier(ctx, nw.HospNode.Store())
}

// loadNursingTransferDossier imports the demo transfer dossier into st,
// the hospital node's store.
func loadNursingTransferDossier(ctx context.Context, st store.Store) error {
	rec, err := eoverdracht.DemoRecord(time.Now())
	if err != nil {
		return err
	}
	im, err := importer.New(importer.Config{Store: st, Version: fhir.STU3, Tenant: Hospital.URA})
	if err != nil {
		return err
	}
	if err := im.Import(ctx, "eOverdracht transfer dossier", rec, &importer.Summary{Types: map[string]importer.Counts{}}); err != nil {
		return fmt.Errorf("load the hospital's transfer dossier: %w", err)
	}
	return nil
}

// awaitReceived polls the receiver's referrals until the one with this
// identifier has ended (60 s at most).
func (nw *Network) awaitReceived(ctx context.Context, receiver *xis, identifier string) (node.Referral, error) {
	var got node.Referral
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for got.ID == "" || !notifiedpull.Final(got.Status) {
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-deadline:
			return got, fmt.Errorf("referral %s not completed within 60s (receiver status %q)", identifier, got.Status)
		case <-tick.C:
		}
		var list []node.Referral
		if err := receiver.do(ctx, http.MethodGet, "/internal/referrals?direction=received", nil, &list); err != nil {
			return got, err
		}
		for _, r := range list {
			if r.Identifier == identifier {
				got = r
			}
		}
	}
	return got, nil
}

// documentOf summarises a document Bundle that arrived.
func documentOf(raw json.RawMessage) (NursingTransferDocument, error) {
	d := NursingTransferDocument{Resources: map[string]int{}}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "document" || len(b.Entry) == 0 {
		return d, errors.New("what arrived is not a document Bundle")
	}
	var c struct {
		ResourceType string `json:"resourceType"`
		Title        string `json:"title"`
		Meta         struct{ Profile []string }
		Section      []json.RawMessage
	}
	if err := json.Unmarshal(b.Entry[0].Resource, &c); err != nil || c.ResourceType != "Composition" {
		return d, errors.New("a document Bundle's first entry is not its Composition")
	}
	d.Title, d.Sections = c.Title, len(c.Section)
	if len(c.Meta.Profile) > 0 {
		d.Profile = c.Meta.Profile[0]
	}
	for _, e := range b.Entry {
		var h struct{ ResourceType string }
		_ = json.Unmarshal(e.Resource, &h)
		d.Resources[h.ResourceType]++
		d.Total++
	}
	return d, nil
}

// PrintNursingTransfer writes what arrived at the nursing home.
func (nw *Network) PrintNursingTransfer(s *NursingTransferSummary) {
	nw.printf("\nSummary: transfer %s of patient %s\n", s.Referral, s.Patient)
	if s.Request.Title != "" {
		nw.printf("  decided: %s accepted after reading %q\n", NursingHome.Name, s.Request.Title)
	}
	for _, r := range s.Results {
		nw.printf("  pulled %-45s %s\n", r.Query, r.Block)
	}
	for _, d := range s.Documents {
		nw.printf("  arrived: %q (%s): %d sections, %d resources %v\n", d.Title, d.Profile, d.Sections, d.Total, d.Resources)
	}
	nw.printf("  status: receiver %s, sender %s; took %s\n", s.Status, s.Sender, s.Took.Round(time.Millisecond))
}

// validateFirst validates the node of p in role for care, with the kit,
// before an exchange (what) at network plateau n, where the other side
// serves data only to a GtK with a valid proof of validation for the
// application (requirevalidation): as a vendor would before going live. The
// proof goes into the admission register.
func (nw *Network) validateFirst(ctx context.Context, p Participant, role validation.Role, care, what string, n int) error {
	nw.printf("\nValidation: %s's node as %s %s, before %s (network plateau %d requires a proof)\n", p.Name, care, role, what, n)
	reps, err := nw.Validate(ctx, ValidationTarget{URA: p.URA, Role: role, Care: care})
	if err != nil {
		return err
	}
	if len(reps) != 1 || !reps[0].Summary.Conformant {
		return fmt.Errorf("%s's node did not pass validation as %s %s; no proof was recorded", p.Name, care, role)
	}
	return nil
}
