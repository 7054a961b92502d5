package network

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/bgzr4"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// startBgZR4 is startNetwork with the demo's exchanges for BgZ on R4.
func startBgZR4(t testing.TB, patients int) *Network {
	t.Helper()
	nw := upNetwork(t, Options{DataDir: t.TempDir(), Patients: patients, Care: bgzr4.Name,
		Agreements: []plateau.PartnerConfig{{URA: peerURA, Name: "Testpraktijk", Plateaus: plateau.Uniform(1)}}})
	return nw
}

// The demo's BgZ R4 exchange: the GP practice refers, the hospital pulls
// the 26 R4 searches from the GP's R4 base and keeps R4 data; every block
// finds the demo patient's data, in R4 shape (ServiceRequest, not the
// STU3 ProcedureRequest), with zib2020 profiles.
func TestBgZR4NotifiedPull(t *testing.T) {
	nw := startBgZR4(t, 1)
	s, err := nw.Exchange(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != notifiedpull.StatusCompleted || s.Sender != notifiedpull.StatusCompleted {
		t.Fatalf("statuses: receiver %s, sender %s", s.Status, s.Sender)
	}
	if len(s.Results) != 26 {
		t.Fatalf("%d blocks pulled, want 26", len(s.Results))
	}
	for _, r := range s.Results {
		if r.Matches == 0 {
			t.Errorf("block %s: no matches", r.Block)
		}
		if strings.Contains(r.Query, "ProcedureRequest") {
			t.Errorf("block %s pulled an STU3 search: %s", r.Block, r.Query)
		}
	}
	if s.Resources["ServiceRequest"] == 0 || s.Resources["ProcedureRequest"] != 0 {
		t.Errorf("resources %v: want R4 ServiceRequest", s.Resources)
	}
	// The data is the hospital's R4 data: in its R4 store, with the
	// nl-core (zib2020) profiles.
	var list []node.Referral
	internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodGet, "/internal/referrals?direction=received", nil, &list)
	if len(list) != 1 {
		t.Fatalf("received %d referrals", len(list))
	}
	req, _ := http.NewRequest(http.MethodGet, nw.HospNode.InternalURL()+"/internal/referrals/"+list[0].ID+"/data", nil)
	req.Header.Set("Authorization", "Bearer "+nw.Token(Hospital.URA))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, "fhirVersion=4.0") {
		t.Errorf("the pulled data's Content-Type %q, want fhirVersion=4.0", ct)
	}
	if _, err := nw.HospNode.R4Store().Read(context.Background(), Hospital.URA, "Bundle", strings.TrimPrefix(list[0].Data, "Bundle/")); err != nil {
		t.Errorf("the pulled Bundle is not in the hospital's R4 store: %v", err)
	}
}

// A request of the wrong FHIR version on the BgZ R4 exchange is refused
// 4xx with an OperationOutcome naming the version: the R4 searches on the
// STU3 base, the STU3 BgZ search on the R4 base, an STU3 media type on
// the R4 base, a write on the R4 base. The workflow Task stays readable
// on the STU3 base, where the agreement keeps it.
func TestBgZR4WrongVersionRefused(t *testing.T) {
	nw := startBgZR4(t, 1)
	p := newPeer(t, nw)
	bsn := nw.Patients[0].BSN
	var ref node.Referral
	if code := internal(t, nw.GPNode, nw.Token(GP.URA), http.MethodPost, "/internal/referrals",
		notifiedpull.ReferRequest{PatientBSN: bsn, ReceiverURA: peerURA, Application: bgzr4.Name}, &ref); code != http.StatusCreated {
		t.Fatalf("refer: status %d", code)
	}
	var note notifiedpull.Notification
	select {
	case raw := <-p.notes:
		n, err := notifiedpull.ParseNotification(raw, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		note = n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification arrived")
	}
	md, err := p.oauth.Metadata(context.Background(), nw.GPNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.oauth.Token(context.Background(), md.TokenEndpoint, oauth.TokenRequest{
		GrantType: notifiedpull.GrantTypeJWT, Scope: []string{bgzr4.Name}, AuthorizationBase: note.AuthorizationBase})
	if err != nil {
		t.Fatal(err)
	}
	stu3 := nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA
	r4 := nw.GPNode.PublicURL() + "/fhir/r4/" + GP.URA
	problem := bgzr4.New().Queries(bsn)[5].Search // Condition?patient.identifier=…
	if !strings.HasPrefix(problem, "Condition?") {
		t.Fatalf("block order changed: %s", problem)
	}

	// The exchange itself: the R4 search on the R4 base, the workflow Task on the STU3 base.
	if code, body := p.get(t, p.http, tok.AccessToken, r4+"/"+problem); code != http.StatusOK || !strings.Contains(string(body), "nl-core-Problem") {
		t.Fatalf("R4 search on the R4 base: %d %.300s", code, body)
	}
	if code, body := p.get(t, p.http, tok.AccessToken, note.WorkflowTask); code != http.StatusOK || !strings.HasPrefix(note.WorkflowTask, stu3+"/Task/") {
		t.Fatalf("workflow Task %s: %d %.300s", note.WorkflowTask, code, body)
	}

	var planned string
	for _, b := range bgz.Queries() {
		if b.Name == "PlannedCareActivity" {
			planned = b.Query(bsn) // ProcedureRequest?…, STU3 only
		}
	}
	for _, tc := range []struct {
		name, method, url, accept, body, says string
	}{
		{"R4 search on the STU3 base", http.MethodGet, stu3 + "/" + problem, "application/fhir+json", "", "R4"},
		{"STU3 BgZ search on the R4 base", http.MethodGet, r4 + "/" + planned, "application/fhir+json", "", `unknown resource type \"ProcedureRequest\" in FHIR R4`},
		{"STU3 media type on the R4 base", http.MethodGet, r4 + "/" + problem, "application/fhir+json; fhirVersion=3.0", "", "3.0"},
		{"STU3 Task status on the R4 base", http.MethodPut, r4 + "/Task/" + note.WorkflowTask[strings.LastIndex(note.WorkflowTask, "/")+1:],
			"application/fhir+json", `{"resourceType":"Task","status":"completed","intent":"order"}`, "3.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			req.Header.Set("Accept", tc.accept)
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/fhir+json; fhirVersion=3.0")
			}
			resp, err := p.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b strings.Builder
			_, _ = io.Copy(&b, resp.Body)
			if resp.StatusCode/100 != 4 || !isOutcome([]byte(b.String())) || !strings.Contains(b.String(), tc.says) {
				t.Errorf("status %d, want 4xx with an OperationOutcome naming %q: %s", resp.StatusCode, tc.says, b.String())
			}
		})
	}
	// Every refusal is in the GP's audit log, from the peer.
	recs, err := nw.GPNode.Audit().List(context.Background(), audit.Filter{Tenant: GP.URA})
	if err != nil {
		t.Fatal(err)
	}
	refused := map[int]bool{}
	for _, r := range recs {
		if r.ActorURA == peerURA && r.Outcome/100 == 4 {
			refused[r.Outcome] = true
		}
	}
	for _, status := range []int{http.StatusBadRequest, http.StatusNotFound, http.StatusNotAcceptable, http.StatusUnsupportedMediaType} {
		if !refused[status] {
			t.Errorf("no audit record of the peer's request refused %d (refusals audited: %v)", status, refused)
		}
	}
}

// A Direct Pull of BgZ R4: the hospital's node finds the GP's R4 base in
// the addressbook, gets a consult token for that base, and runs the R4
// searches there; the GP asks the patient's consent as for STU3.
func TestBgZR4DirectPull(t *testing.T) {
	nw := startBgZR4(t, 2)
	ask := func(patient int) consult.Result {
		var res consult.Result
		code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/consult", consult.Request{
			PatientBSN: nw.Patients[patient].BSN, HolderURA: GP.URA, Application: bgzr4.Name, UserID: "900012345", UserRole: "01.016",
		}, &res)
		if code != http.StatusOK {
			t.Fatalf("consult: status %d", code)
		}
		return res
	}
	permitted := ask(0)
	if !strings.HasSuffix(permitted.Base, "/fhir/r4/"+GP.URA) {
		t.Errorf("consulted base %s, want the GP's R4 base", permitted.Base)
	}
	for _, q := range permitted.Queries {
		if q.Status != http.StatusOK || q.Matches == 0 {
			t.Errorf("consented patient, block %s: status %d, %d matches (%s)", q.Block, q.Status, q.Matches, q.Outcome)
		}
	}
	if !strings.Contains(string(permitted.Bundle), "ServiceRequest") {
		t.Error("no R4 ServiceRequest in the consult's Bundle")
	}
	refused := ask(1)
	for _, q := range refused.Queries {
		if q.Status != http.StatusForbidden || q.Matches != 0 {
			t.Errorf("patient without consent, block %s: status %d, %d matches", q.Block, q.Status, q.Matches)
		}
	}
}
