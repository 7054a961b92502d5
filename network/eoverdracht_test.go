package network

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"

	"github.com/schakel-nl/schakel/eoverdracht"
)

// startTransferNetwork runs the demo network for eOverdracht: the GP
// practice's, the hospital's and the nursing home's nodes, with the test
// nodes' default agreements.
func startTransferNetwork(t testing.TB) *Network {
	t.Helper()
	nw := upNetwork(t, Options{DataDir: t.TempDir(), Patients: 1, Care: eoverdracht.Name})
	return nw
}

// TestNursingTransferEndToEnd: the hospital transfers the patient of Nictiz
// scenario 1.1b to the nursing home; the nursing home's node reads the
// workflow Task, pulls the aanmeldbericht's $document, accepts, pulls the
// overdrachtbericht's $document and completes the Task; both documents
// arrive whole, and both sides end completed.
func TestNursingTransferEndToEnd(t *testing.T) {
	nw := startTransferNetwork(t)
	s, err := nw.ExchangeNursingTransfer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != "completed" || s.Sender != "completed" || s.Patient != eoverdracht.DemoPatientBSN {
		t.Errorf("receiver %s, sender %s, patient %s", s.Status, s.Sender, s.Patient)
	}
	if len(s.Results) != 2 || s.Results[0].Query != eoverdracht.DemoAdvanceNotice+"/$document" ||
		s.Results[1].Query != eoverdracht.DemoNursingHandoff+"/$document" {
		t.Fatalf("pulled %+v", s.Results)
	}
	byProfile := map[string]NursingTransferDocument{}
	for _, d := range s.Documents {
		byProfile[d.Profile] = d
	}
	an, ho := byProfile[eoverdracht.ProfileAdvanceNotice], byProfile[eoverdracht.ProfileHandoffAdults]
	// The aanmeldbericht references the patient, the author, two
	// organisations, four problems, one alert and a coverage.
	if an.Resources["Composition"] != 1 || an.Resources["Patient"] != 1 || an.Resources["Condition"] != 4 || an.Resources["Organization"] < 2 {
		t.Errorf("aanmeldbericht: %+v", an)
	}
	if ho.Resources["Composition"] != 1 || ho.Resources["AllergyIntolerance"] != 2 || ho.Resources["Observation"] < 3 || ho.Sections < 4 {
		t.Errorf("overdrachtbericht: %+v", ho)
	}
	// The sender's workflow Task went through the receiver's steps.
	var task struct {
		Status string
		Meta   struct{ Profile []string }
	}
	var sent []struct {
		WorkflowTask string `json:"workflowTask"`
		Identifier   string `json:"identifier"`
	}
	internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodGet, "/internal/referrals", nil, &sent)
	for _, r := range sent {
		if r.Identifier == s.Referral {
			internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodGet, "/internal/fhir/"+r.WorkflowTask, nil, &task)
		}
	}
	if task.Status != "completed" || len(task.Meta.Profile) != 1 || task.Meta.Profile[0] != eoverdracht.ProfileTask {
		t.Errorf("the sender's workflow Task: %+v", task)
	}
}

// TestNursingTransferBadInput: a receiver (the test peer, as the nursing home)
// holding an eOverdracht token on the hospital's node may read the
// documents of its Task and move the Task as the flow allows, nothing
// else: a $document on a Composition that is not in the Task, an illegal
// status transition, a change beside the status, and the documents on the
// FHIR R4 base, and a read of what the Task's documents do not reference
// are refused with an OperationOutcome and audited; what they reference
// may be read. A
// referral whose input is not an eOverdracht document (wrong profile or
// resource) is refused to the hospital's system.
func TestNursingTransferBadInput(t *testing.T) {
	nw := startNetwork(t, 1)
	ctx := context.Background()
	if err := nw.LoadNursingTransferDossier(ctx); err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, nw)

	// The hospital's system names inputs that are not eOverdracht documents.
	for _, reads := range [][]string{{"Patient/nl-core-patient-eov-test-1-1b-01"}, {"Condition/zib-Problem-eov-test-1-1b-01"}} {
		var oo struct {
			ResourceType string
			Issue        []struct{ Diagnostics string }
		}
		code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/referrals",
			notifiedpull.ReferRequest{PatientBSN: eoverdracht.DemoPatientBSN, ReceiverURA: peerURA, Application: eoverdracht.Name, Reads: reads}, nil)
		if code != http.StatusUnprocessableEntity {
			t.Errorf("referral reading %v: status %d, want 422", reads, code)
		}
		_ = oo
	}

	var ref node.Referral
	if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/referrals",
		notifiedpull.ReferRequest{PatientBSN: eoverdracht.DemoPatientBSN, ReceiverURA: peerURA, Application: eoverdracht.Name,
			Reads: []string{eoverdracht.DemoAdvanceNotice}}, &ref); code != http.StatusCreated {
		t.Fatalf("refer: status %d", code)
	}
	var note notifiedpull.Notification
	select {
	case raw := <-p.notes:
		var err error
		if note, err = notifiedpull.ParseNotification(raw, time.Now()); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification arrived")
	}
	md, err := p.oauth.Metadata(ctx, nw.HospNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.oauth.Token(ctx, md.TokenEndpoint, oauth.TokenRequest{
		GrantType: notifiedpull.GrantTypeJWT, Scope: []string{eoverdracht.Name}, AuthorizationBase: note.AuthorizationBase})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(p.cert, pki.CertPool(nw.CA.Cert))}}
	base := nw.HospNode.PublicURL() + "/fhir/stu3/" + Hospital.URA
	send := func(method, u string, body []byte) (int, []byte) {
		req, _ := http.NewRequest(method, u, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Accept", "application/fhir+json")
		if body != nil {
			req.Header.Set("Content-Type", "application/fhir+json; fhirVersion=3.0")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	code, task := send(http.MethodGet, note.WorkflowTask, nil)
	if code != http.StatusOK || !strings.Contains(string(task), eoverdracht.ProfileTask) || !strings.Contains(string(task), `"status":"requested"`) {
		t.Fatalf("read the workflow Task: %d %s", code, task)
	}
	if code, b := send(http.MethodGet, base+"/"+eoverdracht.DemoAdvanceNotice+"/$document", nil); code != http.StatusOK || !strings.Contains(string(b), `"type":"document"`) {
		t.Fatalf("the aanmeldbericht's $document: %d %.300s", code, b)
	}
	withStatus := func(status string) []byte {
		b, err := notifiedpull.SetStatus(task, status)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withReason := func(status, reason string) []byte {
		b, err := notifiedpull.SetStatusReason(task, status, reason)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name, method, url string
		body              []byte
		want              int
		says              string
	}{
		{"a resource the aanmeldbericht references", http.MethodGet, base + "/Condition/zib-Problem-eov-test-1-1b-01", nil, http.StatusOK, ""},
		{"the patient", http.MethodGet, base + "/Patient/nl-core-patient-eov-test-1-1b-01", nil, http.StatusOK, ""},
		{"a resource only the overdrachtbericht references", http.MethodGet, base + "/AllergyIntolerance/zib-AllergyIntolerance-eov-test-1-1b-01", nil, http.StatusForbidden, "only the workflow Task and its queries"},
		{"a Composition not in the Task", http.MethodGet, base + "/" + eoverdracht.DemoNursingHandoff, nil, http.StatusForbidden, ""},
		{"$document of a Composition not in the Task", http.MethodGet, base + "/" + eoverdracht.DemoNursingHandoff + "/$document", nil, http.StatusForbidden, "not an input of the workflow Task"},
		{"requested → completed", http.MethodPut, note.WorkflowTask, withStatus("completed"), http.StatusConflict, "from requested to [accepted rejected]"},
		{"a change beside the status", http.MethodPut, note.WorkflowTask, bytes.Replace(withStatus("accepted"), []byte(`"intent":"order"`), []byte(`"intent":"plan"`), 1), http.StatusForbidden, "only change the workflow Task's status"},
		{"the documents on the R4 base", http.MethodGet, nw.HospNode.PublicURL() + "/fhir/r4/" + Hospital.URA + "/" + eoverdracht.DemoAdvanceNotice + "/$document", nil, 0, ""},
		{"a statusReason with accepted", http.MethodPut, note.WorkflowTask, withReason("accepted", "plaats vrij"), http.StatusForbidden, "statusReason only with status rejected or failed"},
		{"accepted", http.MethodPut, note.WorkflowTask, withStatus("accepted"), http.StatusOK, ""},
		{"accepted → requested", http.MethodPut, note.WorkflowTask, withStatus("requested"), http.StatusConflict, "from accepted to [in-progress rejected]"},
	} {
		code, b := send(c.method, c.url, c.body)
		if c.want == 0 { // any refusal
			if code/100 != 4 || !isOutcome(b) {
				t.Errorf("%s: %d %.300s, want a 4xx OperationOutcome", c.name, code, b)
			}
			continue
		}
		if code != c.want || (c.says != "" && (!isOutcome(b) || !strings.Contains(string(b), c.says))) {
			t.Errorf("%s: %d %.300s, want %d naming %q", c.name, code, b, c.want, c.says)
		}
		if c.name == "accepted" && code == http.StatusOK {
			// A report answered is a report taken: the sender's referral
			// says so at once, without waiting for it.
			var now node.Referral
			if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodGet, "/internal/referrals/"+url.PathEscape(ref.ID), nil, &now); code != http.StatusOK || now.Status != "accepted" {
				t.Errorf("right after the receiver's report was answered, the referral reads %d %q, want accepted", code, now.Status)
			}
		}
	}
	// Every refusal is on the hospital's audit trail, with the patient.
	recs, err := nw.HospNode.Audit().List(ctx, audit.Filter{ActorURA: peerURA})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, r := range recs {
		if r.Outcome/100 == 4 {
			refused++
			if r.Patient != eoverdracht.DemoPatientBSN {
				t.Errorf("refusal %s %d audited without the patient: %+v", r.Interaction, r.Outcome, r)
			}
		}
	}
	if refused < 7 {
		t.Errorf("%d refusals audited, want 7", refused)
	}
}

// TestNursingTransferRejected: the hospital refers another patient with the
// scenario's documents (about Erik XXX_Altenborg); the nursing home's node
// reads the aanmeldbericht, finds it is about someone else, sets the
// sender's workflow Task rejected and never pulls the overdrachtbericht;
// the referral ends rejected on both sides.
func TestNursingTransferRejected(t *testing.T) {
	nw := startTransferNetwork(t)
	ctx := context.Background()
	if err := nw.LoadNursingTransferDossier(ctx); err != nil {
		t.Fatal(err)
	}
	const other = "123456782"
	if _, _, err := nw.HospNode.Store().Update(ctx, Hospital.URA, []byte(`{"resourceType":"Patient","id":"other","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"`+other+`"}],"birthDate":"1950-01-01"}`), ""); err != nil {
		t.Fatal(err)
	}
	var sent node.Referral
	if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/referrals",
		notifiedpull.ReferRequest{PatientBSN: other, ReceiverURA: NursingHome.URA, Application: eoverdracht.Name,
			Reads: []string{eoverdracht.DemoAdvanceNotice, eoverdracht.DemoNursingHandoff}}, &sent); code != http.StatusCreated {
		t.Fatalf("refer: status %d", code)
	}
	receiver := &xis{base: nw.internalURLs[NursingHome.URA], token: nw.Token(NursingHome.URA), http: &http.Client{Timeout: 30 * time.Second}}
	got, err := nw.awaitReceived(ctx, receiver, sent.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != notifiedpull.StatusRejected || !strings.Contains(got.StatusReason, "another patient") || got.Data != "" {
		t.Errorf("receiver: %s %q, data %q", got.Status, got.StatusReason, got.Data)
	}
	var mine node.Referral
	for i := 0; i < 100 && !notifiedpull.Final(mine.Status); i++ {
		internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodGet, "/internal/referrals/"+sent.ID, nil, &mine)
		time.Sleep(20 * time.Millisecond)
	}
	if mine.Status != notifiedpull.StatusRejected {
		t.Errorf("sender: %s", mine.Status)
	}
	recs, err := nw.HospNode.Audit().List(ctx, audit.Filter{ActorURA: NursingHome.URA})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if strings.Contains(r.Query, "NursingHandoff") {
			t.Errorf("the overdrachtbericht was read after the rejection: %+v", r)
		}
	}
}

// TestNursingTransferDecision: the nursing home's system rejects a transfer
// request through the node's internal API after reading its aanmeldbericht;
// the hospital's workflow Task ends rejected with that reason as its
// statusReason, the overdrachtbericht is never read, and the request is
// listed as rejected. Deciding again, on an unknown request, without a
// reason or with a malformed body is refused with an OperationOutcome
// (409, 404, 400) and audited, with the patient where the request is known.
func TestNursingTransferDecision(t *testing.T) {
	nw := startTransferNetwork(t)
	ctx := context.Background()
	const reason = "Geen plaats beschikbaar op de afdeling"
	r, err := nw.RejectNursingTransfer(ctx, reason)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != notifiedpull.StatusRejected || r.Sender != notifiedpull.StatusRejected || r.SenderReason != reason {
		t.Errorf("rejection: %+v", r)
	}
	home, token := nw.NursingHomeNode, nw.Token(NursingHome.URA)
	var rejected []node.Referral
	if code := internal(t, home, token, http.MethodGet, "/internal/transfers?decision=rejected", nil, &rejected); code != http.StatusOK ||
		len(rejected) != 1 || rejected[0].Identifier != r.Referral || rejected[0].DecisionReason != reason || rejected[0].Data != "" {
		t.Fatalf("rejected requests: %d %+v", code, rejected)
	}
	var pending []node.Referral
	if code := internal(t, home, token, http.MethodGet, "/internal/transfers", nil, &pending); code != http.StatusOK || len(pending) != 0 {
		t.Errorf("pending requests: %d %+v", code, pending)
	}
	id := rejected[0].ID
	send := func(method, path, body, token string) (int, []byte) {
		req, _ := http.NewRequest(method, home.InternalURL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, c := range []struct {
		name, method, path, body, token string
		want                            int
		says                            string
	}{
		{"decided again", http.MethodPost, "/internal/transfers/" + id + "/decision", `{"status":"accepted"}`, token, http.StatusConflict, "it was rejected before"},
		{"unknown", http.MethodPost, "/internal/transfers/nope/decision", `{"status":"accepted"}`, token, http.StatusNotFound, "no such transfer request"},
		{"a rejection without reason", http.MethodPost, "/internal/transfers/" + id + "/decision", `{"status":"rejected"}`, token, http.StatusBadRequest, "must give its reason"},
		{"another status", http.MethodPost, "/internal/transfers/" + id + "/decision", `{"status":"completed"}`, token, http.StatusBadRequest, `completed`},
		{"not JSON", http.MethodPost, "/internal/transfers/" + id + "/decision", `accept`, token, http.StatusBadRequest, "not that JSON object"},
		{"no token", http.MethodPost, "/internal/transfers/" + id + "/decision", `{"status":"accepted"}`, "", http.StatusUnauthorized, "internal API token"},
		{"the request of an unknown one", http.MethodGet, "/internal/transfers/nope/request", "", token, http.StatusNotFound, "no such transfer request"},
		{"a bad filter", http.MethodGet, "/internal/transfers?decision=maybe", "", token, http.StatusBadRequest, "decision must be"},
	} {
		code, b := send(c.method, c.path, c.body, c.token)
		if code != c.want || !isOutcome(b) || !strings.Contains(string(b), c.says) {
			t.Errorf("%s: %d %.300s, want %d OperationOutcome naming %q", c.name, code, b, c.want, c.says)
		}
	}
	// The decisions are on the nursing home's audit trail: the rejection,
	// and each refusal, with the patient where the request was known.
	recs, err := home.Audit().List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[int]int{}
	for _, rec := range recs {
		if rec.Interaction != "decide" {
			continue
		}
		outcomes[rec.Outcome]++
		if rec.Outcome != http.StatusNotFound && rec.Patient != eoverdracht.DemoPatientBSN {
			t.Errorf("decision %d audited without the patient: %+v", rec.Outcome, rec)
		}
		if rec.Outcome == http.StatusAccepted && (rec.ActorUser == "" || !strings.Contains(rec.Query, reason)) {
			t.Errorf("the rejection's record: %+v", rec)
		}
	}
	if outcomes[http.StatusAccepted] != 1 || outcomes[http.StatusConflict] != 1 || outcomes[http.StatusNotFound] != 1 || outcomes[http.StatusBadRequest] != 3 {
		t.Errorf("decisions audited by outcome: %v", outcomes)
	}
	// The overdrachtbericht was never read at the hospital.
	sent, err := nw.HospNode.Audit().List(ctx, audit.Filter{ActorURA: NursingHome.URA})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range sent {
		if strings.Contains(rec.Query, "NursingHandoff") || strings.Contains(strings.Join(rec.Resources, " "), "NursingHandoff") {
			t.Errorf("the overdrachtbericht was read after the rejection: %+v", rec)
		}
	}
}

// TestNursingTransferWithdrawnWhilePending: the hospital withdraws a
// transfer while the nursing home's decision is pending; the request ends
// cancelled, its aanmeldbericht is not kept, and a decision on it is
// refused 409.
func TestNursingTransferWithdrawnWhilePending(t *testing.T) {
	nw := startTransferNetwork(t)
	ctx := context.Background()
	if err := nw.LoadNursingTransferDossier(ctx); err != nil {
		t.Fatal(err)
	}
	home, token := nw.NursingHomeNode, nw.Token(NursingHome.URA)
	var sent node.Referral
	if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/referrals",
		notifiedpull.ReferRequest{PatientBSN: eoverdracht.DemoPatientBSN, ReceiverURA: NursingHome.URA, Application: eoverdracht.Name,
			Reads: []string{eoverdracht.DemoAdvanceNotice, eoverdracht.DemoNursingHandoff}}, &sent); code != http.StatusCreated {
		t.Fatalf("refer: status %d", code)
	}
	var pending node.Referral
	for i := 0; i < 500 && pending.ID == ""; i++ {
		var list []node.Referral
		internal(t, home, token, http.MethodGet, "/internal/transfers", nil, &list)
		for _, r := range list {
			if r.Identifier == sent.ID {
				pending = r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pending.ID == "" || pending.Decision != notifiedpull.DecisionPending || pending.Application != eoverdracht.Name {
		t.Fatalf("no pending request: %+v", pending)
	}
	var request struct {
		ResourceType string
		Entry        []struct{ FullURL string }
	}
	if code := internal(t, home, token, http.MethodGet, "/internal/transfers/"+pending.ID+"/request", nil, &request); code != http.StatusOK ||
		len(request.Entry) != 1 || !strings.Contains(request.Entry[0].FullURL, "AdvanceNotice") {
		t.Fatalf("the request's documents: %d %+v", code, request)
	}
	if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/referrals/"+sent.ID+"/cancel", nil, nil); code != http.StatusOK {
		t.Fatalf("withdraw: status %d", code)
	}
	var got node.Referral
	for i := 0; i < 500 && got.Status != notifiedpull.StatusCancelled; i++ {
		internal(t, home, token, http.MethodGet, "/internal/transfers/"+pending.ID, nil, &got)
		time.Sleep(20 * time.Millisecond)
	}
	if got.Status != notifiedpull.StatusCancelled {
		t.Fatalf("after the withdrawal: %+v", got)
	}
	if code := internal(t, home, token, http.MethodGet, "/internal/transfers/"+pending.ID+"/request", nil, nil); code != http.StatusConflict {
		t.Errorf("the withdrawn request's documents: status %d, want 409", code)
	}
	if code := internal(t, home, token, http.MethodPost, "/internal/transfers/"+pending.ID+"/decision", map[string]string{"status": "accepted"}, nil); code != http.StatusConflict {
		t.Errorf("a decision on the withdrawn request: status %d, want 409", code)
	}
}
