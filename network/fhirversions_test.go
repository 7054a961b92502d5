package network

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/bgz"
)

// TestDataEndpointOperations drives the public data endpoints, STU3 and
// R4, with a referral's token: _summary shapes a query the workflow Task
// lists without widening it; the operations no care application policy
// allows ($everything, $validate) are refused 403 with an
// OperationOutcome, and audited; the R4 base answers the same query from
// the participant's R4 store under the same checks.
func TestDataEndpointOperations(t *testing.T) {
	nw := startNetwork(t, 1)
	p := newPeer(t, nw)
	_, note := referToPeer(t, nw, p, 0)
	tok, err := p.dataToken(t, nw, note.AuthorizationBase)
	if err != nil {
		t.Fatal(err)
	}
	stu3 := nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA
	r4 := nw.GPNode.PublicURL() + "/fhir/r4/" + GP.URA
	bsn := nw.Patients[0].BSN
	patientQuery := bgz.Queries()[0].Query(bsn) // Patient?identifier=…&_include=Patient:general-practitioner
	if !strings.HasPrefix(patientQuery, "Patient?") {
		t.Fatalf("block order changed: %s", patientQuery)
	}

	code, full := p.get(t, p.http, tok.AccessToken, stu3+"/"+patientQuery)
	if code != http.StatusOK {
		t.Fatalf("the Patient query: %d %s", code, full)
	}
	var fullBundle struct {
		Entry []struct {
			Resource struct{ ResourceType, ID string }
		}
	}
	_ = json.Unmarshal(full, &fullBundle)
	patientID := ""
	for _, e := range fullBundle.Entry {
		if e.Resource.ResourceType == "Patient" {
			patientID = e.Resource.ID
		}
	}
	if patientID == "" {
		t.Fatalf("no Patient in %s", full)
	}
	code, summary := p.get(t, p.http, tok.AccessToken, stu3+"/"+patientQuery+"&_summary=true")
	if code != http.StatusOK {
		t.Fatalf("the Patient query with _summary=true: %d %s", code, summary)
	}
	var b struct {
		Total int
		Entry []struct {
			Resource map[string]any
			Search   struct{ Mode string }
		}
	}
	if err := json.Unmarshal(summary, &b); err != nil || b.Total != 1 {
		t.Fatalf("_summary=true: %v %s", err, summary)
	}
	for _, e := range b.Entry {
		if e.Search.Mode != "match" {
			continue
		}
		if _, ok := e.Resource["text"]; ok || !strings.Contains(string(summary), "SUBSETTED") {
			t.Errorf("_summary=true match not cut down: %v", e.Resource)
		}
	}
	if len(summary) >= len(full) {
		t.Errorf("_summary=true answer (%d bytes) is not smaller than the full one (%d)", len(summary), len(full))
	}

	for _, tc := range []struct {
		name, method, url, says string
	}{
		{"$everything", http.MethodGet, stu3 + "/Patient/" + patientID + "/$everything", "$everything"},
		{"$everything on R4", http.MethodGet, r4 + "/Patient/" + patientID + "/$everything", "$everything"},
		{"$everything of a patient not held", http.MethodGet, stu3 + "/Patient/nobody/$everything", "$everything"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := p.get(t, p.http, tok.AccessToken, tc.url)
			if code != http.StatusForbidden || !isOutcome(body) || !strings.Contains(string(body), "operation") {
				t.Fatalf("status %d, want 403 OperationOutcome naming the operation: %s", code, body)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, stu3+"/Patient/$validate", strings.NewReader(`{"resourceType":"Patient"}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("$validate: %d, want 403", resp.StatusCode)
	}

	// A partner writes nothing on the R4 base, not even the workflow Task's status.
	wf := note.WorkflowTask[strings.LastIndex(note.WorkflowTask, "/")+1:]
	upd, _ := http.NewRequest(http.MethodPut, r4+"/Task/"+wf, strings.NewReader(`{"resourceType":"Task","id":"`+wf+`","status":"completed","intent":"order"}`))
	upd.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	upd.Header.Set("Content-Type", "application/fhir+json")
	if resp, err := p.http.Do(upd); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "STU3 base") {
			t.Errorf("write on the R4 base: %d %s", resp.StatusCode, b)
		}
	}

	// The R4 base: the same query, the same token and checks, the R4 store
	// (which the demo network fills with the R4 demo record, and the
	// GP's system here with one more patient through its internal API).
	r4Patient := `{"resourceType":"Patient","id":"r4p","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},` +
		`"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}],"name":[{"family":"R4"}],"communication":[{"language":{"text":"nl"}}]}`
	put, _ := http.NewRequest(http.MethodPut, nw.GPNode.InternalURL()+"/internal/fhir/r4/Patient/r4p", strings.NewReader(r4Patient))
	put.Header.Set("Authorization", "Bearer "+nw.Token(GP.URA))
	put.Header.Set("Content-Type", "application/fhir+json; fhirVersion=4.0")
	if resp, err := http.DefaultClient.Do(put); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT R4 Patient: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	code, body := p.get(t, p.http, tok.AccessToken, r4+"/"+patientQuery+"&_summary=true")
	if code != http.StatusOK || !strings.Contains(string(body), `"total":2`) || !strings.Contains(string(body), `"family":"R4"`) ||
		strings.Contains(string(body), "communication") || !strings.Contains(string(body), "terminology.hl7.org/CodeSystem/v3-ObservationValue") {
		t.Errorf("R4 query with _summary=true: %d %s", code, body)
	}
	code, body = p.get(t, p.http, tok.AccessToken, r4+"/Observation?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn)
	if code != http.StatusForbidden || !isOutcome(body) {
		t.Errorf("R4 query the Task does not list: %d %s", code, body)
	}

	recs, err := nw.GPNode.Audit().List(context.Background(), audit.Filter{Tenant: GP.URA})
	if err != nil {
		t.Fatal(err)
	}
	var everything, r4Answered, named int
	for _, r := range recs {
		if r.ActorURA == peerURA && strings.Contains(r.Query, "$everything") && r.Outcome == http.StatusForbidden {
			everything++
			if r.Patient == bsn {
				named++
			}
		}
		if r.ActorURA == peerURA && r.Outcome == http.StatusOK && strings.Contains(r.Query, "_summary=true") {
			r4Answered++
		}
	}
	if everything != 3 {
		t.Errorf("%d refused $everything audited, want 3", everything)
	}
	// Both stores hold the patient (the demo network loads its record in
	// STU3 and in R4): those refusals name the patient; the one of a
	// patient that does not exist names the patient of the referral the
	// token is for, as every record under a referral does.
	if named != 3 {
		t.Errorf("%d refused $everything audited with the patient's BSN, want 3", named)
	}
	if r4Answered != 2 {
		t.Errorf("%d answered _summary queries audited, want 2 (STU3 and R4)", r4Answered)
	}
}
