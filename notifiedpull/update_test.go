package notifiedpull

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/oauth"
)

// notifyAs posts a notification with this identifier and group to the
// receiver of receiverFixture and returns the stored row.
func notifyAs(t *testing.T, s *Service, now time.Time, identifier, group string) Received {
	t.Helper()
	spec := validSpec(now)
	spec.Identifier, spec.GroupIdentifier = identifier, group
	r := httptest.NewRequest(http.MethodPost, "/Task", bytes.NewReader(BuildNotification(spec)))
	r.Header.Set("Content-Type", "application/fhir+json")
	w := httptest.NewRecorder()
	s.HandleNotification(w, r, "90000002")
	if w.Code != http.StatusCreated && w.Code != http.StatusOK { // 200: a repeated delivery
		t.Fatalf("notification %s: %d %s", identifier, w.Code, w.Body)
	}
	row, err := s.cfg.DB.receivedByIdentifier(context.Background(), "90000001", identifier)
	if err != nil {
		t.Fatal(err)
	}
	return row
}

// TestNewNotificationSupersedesTheGroup: a notification with the
// groupIdentifier of earlier ones supersedes them (TA Notified Pull, a
// changed data set announced by a new notification): one not yet completed
// is cancelled in the exchange state and in its stored Task, a completed
// one keeps its data, and another group is left alone.
func TestNewNotificationSupersedesTheGroup(t *testing.T) {
	ctx := context.Background()
	s, _, now := receiverFixture(t)
	group := "urn:uuid:" + newUUID()
	first := notifyAs(t, s, now, group, group)
	done := notifyAs(t, s, now, "urn:uuid:"+newUUID(), "urn:uuid:"+newUUID())
	other := notifyAs(t, s, now, "urn:uuid:"+newUUID(), "urn:uuid:"+newUUID())
	if first.Group != group || !first.GetWorkflowTask {
		t.Fatalf("stored %+v, want group %s and get-workflow-task true", first, group)
	}
	// A completed notification of a group, updated: its data stays.
	if err := s.cfg.DB.completeReceived(ctx, done.ID, "", "bgz", "b1", nil, now); err != nil {
		t.Fatal(err)
	}

	second := notifyAs(t, s, now, "urn:uuid:"+newUUID(), group)
	updatedDone := notifyAs(t, s, now, "urn:uuid:"+newUUID(), done.Group)

	for _, tc := range []struct {
		name   string
		row    Received
		status string
		reason string
	}{
		{"the superseded notification", first, StatusCancelled, "superseded by notification " + second.Identifier},
		{"the newest of the group", second, StatusRequested, ""},
		{"a completed notification, updated", done, StatusCompleted, ""},
		{"its update", updatedDone, StatusRequested, ""},
		{"a notification of another group", other, StatusRequested, ""},
	} {
		got, err := s.cfg.DB.received(ctx, tc.row.Tenant, tc.row.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != tc.status || got.StatusReason != tc.reason {
			t.Errorf("%s: %s (%q), want %s (%q)", tc.name, got.Status, got.StatusReason, tc.status, tc.reason)
		}
		task, err := s.cfg.Store.Read(ctx, tc.row.Tenant, "Task", tc.row.ID)
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ Status string }
		_ = json.Unmarshal(task.Body, &st)
		if want := tc.status; tc.row.ID != done.ID && st.Status != want {
			t.Errorf("%s: stored notification Task status %s, want %s", tc.name, st.Status, want)
		}
	}
	if got, _ := s.cfg.DB.received(ctx, done.Tenant, done.ID); got.ResultBundle != "b1" {
		t.Errorf("the completed notification lost its data: %+v", got)
	}
	// The same notification again is a repeated delivery, not an update.
	again := notifyAs(t, s, now, second.Identifier, group)
	if again.ID != second.ID || again.Status != StatusRequested {
		t.Errorf("repeated delivery: %+v", again)
	}
}

// TestGetWorkflowTaskHonoured: with get-workflow-task true the receiver
// reads the workflow Task and runs its inputs; with false it reads no
// Task before pulling and runs the care application's own query set, and
// reads the Task only to report the completion.
func TestGetWorkflowTaskHonoured(t *testing.T) {
	ctx := context.Background()
	const bsn = "999911259"
	wf := BuildWorkflowTask(WorkflowSpec{Identifier: testTaskID, PatientID: "p", PatientBSN: bsn, SenderURA: "90000001",
		ReceiverURA: "90000002", Expires: time.Now().Add(time.Hour), Authored: time.Now(),
		Inputs: []WorkflowInput{{System: bgz.SystemLOINC, Code: "11450-4", Display: "Problem", Query: "Condition?patient.identifier=x"},
			{System: SystemResourceTypes, Code: "DocumentReference", Display: "DocumentReference", Reference: "DocumentReference/d1"}}})
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Method+" "+r.URL.Path)
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write(wf)
	}))
	defer srv.Close()
	for _, get := range []bool{true, false} {
		asked = nil
		s, _, _ := receiverFixture(t)
		c := &fetcher{http: srv.Client(), token: "t", base: srv.URL + "/fhir", app: bgz.New()}
		row := Received{ID: "n1", Tenant: "90000002", SenderURA: "90000001", PatientBSN: bsn,
			WorkflowTask: srv.URL + "/fhir/Task/wf1", GetWorkflowTask: get}
		body, inputs, err := s.inputsOf(ctx, c, row)
		if err != nil {
			t.Fatal(err)
		}
		if get {
			if len(asked) != 1 || asked[0] != "GET /fhir/Task/wf1" || body == nil {
				t.Errorf("get-workflow-task true: requests %q, want one read of the workflow Task", asked)
			}
			if len(inputs) != 2 || inputs[1].Reference != "DocumentReference/d1" {
				t.Errorf("get-workflow-task true: inputs %+v, want the Task's", inputs)
			}
			continue
		}
		if len(asked) != 0 || body != nil {
			t.Errorf("get-workflow-task false: requests %q before the pull, want none", asked)
		}
		qs := bgz.Queries()
		if len(inputs) != len(qs) || inputs[5].Query != qs[5].Query(bsn) || inputs[5].Code != qs[5].Code.Code {
			t.Errorf("get-workflow-task false: %d inputs, want the %d BgZ queries for the patient", len(inputs), len(qs))
		}
		// The completion is still reported: the Task as it is, completed.
		if _, err := s.cfg.DB.insertReceived(ctx, Received{ID: "n1", Tenant: "90000002", Identifier: "urn:uuid:n1", SenderURA: "90000001",
			WorkflowTask: row.WorkflowTask, AuthBase: "x", Status: StatusInProgress}); err != nil {
			t.Fatal(err)
		}
		s.reportCompletion(ctx, c, row, body)
		s.Wait()
		if len(asked) != 2 || asked[0] != "GET /fhir/Task/wf1" || asked[1] != "PUT /fhir/Task/wf1" {
			t.Errorf("get-workflow-task false: report made %q, want the Task read, then put", asked)
		}
	}
}

// TestReadInputs: a referral may name single resources of the participant's
// record besides its searches; each becomes a read input of the workflow
// Task, and the grant allows reading exactly those.
func TestReadInputs(t *testing.T) {
	ctx := context.Background()
	s, g, _ := grantFixture(t)
	doc, err := s.cfg.Store.Create(ctx, g.Tenant, json.RawMessage(`{"resourceType":"DocumentReference","status":"current",
		"type":{"text":"discharge letter"},"indexed":"2026-11-23T10:00:00Z","content":[{"attachment":{"contentType":"text/plain","data":"aGk="}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	app, err := s.cfg.Applications.Workflow(bgz.Name)
	if err != nil {
		t.Fatal(err)
	}
	read := "DocumentReference/" + doc.ID
	inputs, allowed, err := s.workflowInputs(ctx, g.Tenant, app, ReferRequest{PatientBSN: g.PatientBSN, Reads: []string{read}})
	if err != nil {
		t.Fatal(err)
	}
	last := inputs[len(inputs)-1]
	if len(inputs) != len(bgz.Queries())+1 || last.Reference != read || last.Query != "" || last.System != SystemResourceTypes ||
		allowed[len(allowed)-1] != read {
		t.Fatalf("inputs end with %+v, allowed with %q; want the read", last, allowed[len(allowed)-1])
	}
	// The workflow Task carries it as a valueReference, and reads back.
	_, parsed, err := ParseWorkflowInputs(BuildWorkflowTask(WorkflowSpec{Identifier: g.ID, Inputs: inputs}))
	if err != nil || parsed[len(parsed)-1].Reference != read {
		t.Fatalf("round trip: %+v %v", parsed[len(parsed)-1], err)
	}
	for _, tc := range []struct {
		read   string
		status int
	}{
		{"DocumentReference/missing", http.StatusUnprocessableEntity},
		{"DocumentReference?status=current", http.StatusBadRequest},
		{"https://elsewhere.example/DocumentReference/" + doc.ID, http.StatusBadRequest},
		{"DocumentReference/" + doc.ID + "/_history/1", http.StatusBadRequest},
	} {
		_, _, err := s.workflowInputs(ctx, g.Tenant, app, ReferRequest{PatientBSN: g.PatientBSN, Reads: []string{tc.read}})
		if fe := fhir.AsError(err); fe == nil || fe.Status != tc.status {
			t.Errorf("read %q: %v, want %d", tc.read, err, tc.status)
		}
	}

	// The data endpoint: the read the grant allows, and no other.
	g.ID, g.AuthBaseHash, g.Queries = "urn:uuid:g2", hashSecret("another"), append(g.Queries, read)
	if err := s.cfg.DB.insertGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	tok := &oauth.AccessToken{Subject: "90000002", Scope: []string{"bgz"}, Claims: map[string]any{ClaimGrant: g.ID}}
	readOf := func(typ, id string) *rest.Request {
		return &rest.Request{Tenant: g.Tenant, Interaction: rest.InteractionRead, Type: typ, ID: id}
	}
	if err := s.AuthorizeData(ctx, tok, readOf("DocumentReference", doc.ID)); err != nil {
		t.Errorf("the read input refused: %v", err)
	}
	for _, r := range []*rest.Request{readOf("DocumentReference", "other"), readOf("Binary", doc.ID)} {
		if err := s.AuthorizeData(ctx, tok, r); !errors.Is(err, ErrForbidden) {
			t.Errorf("read %s/%s: %v, want refused", r.Type, r.ID, err)
		}
	}
}

func TestParseRead(t *testing.T) {
	for _, tc := range []struct {
		in, typ, id string
	}{
		{"Patient/p1", "Patient", "p1"},
		{"/DocumentReference/a.b-C", "DocumentReference", "a.b-C"},
		{"Patient", "", ""},
		{"Patient/", "", ""},
		{"patient/p1", "", ""},
		{"Patient/p1/_history/2", "", ""},
		{"Patient/p1?x=1", "", ""},
		{"Observation/$lastn", "", ""},
		{"Patient/" + strings.Repeat("x", 65), "", ""},
	} {
		typ, id, err := ParseRead(tc.in)
		if typ != tc.typ || id != tc.id || (err == nil) != (tc.typ != "") {
			t.Errorf("ParseRead(%q) = %q, %q, %v", tc.in, typ, id, err)
		}
	}
}

// eoverdracht is a Notified Pull application with two kinds of workflow
// Task, for TestTaskKind.
type eoverdracht struct{ bgz.App }

func (eoverdracht) Name() string { return "eoverdracht" }
func (eoverdracht) WorkflowTasks() []careapp.TaskKind {
	return []careapp.TaskKind{
		{Profile: "http://example.org/StructureDefinition/transfer-Task", Code: careapp.Coding{System: "http://snomed.info/sct", Code: "308292007"}},
		{Profile: "http://example.org/StructureDefinition/transfer-cancel-Task", Code: careapp.Coding{System: "http://snomed.info/sct", Code: "89200000"}},
	}
}

func TestTaskKind(t *testing.T) {
	app := eoverdracht{}
	for _, tc := range []struct {
		code, profile string
		status        int
	}{
		{"", "http://example.org/StructureDefinition/transfer-Task", 0},
		{"89200000", "http://example.org/StructureDefinition/transfer-cancel-Task", 0},
		{"3457005", "", http.StatusBadRequest},
	} {
		k, err := taskKind(app, tc.code)
		if tc.status != 0 {
			if fe := fhir.AsError(err); fe == nil || fe.Status != tc.status || !strings.Contains(fe.Error(), "308292007, 89200000") {
				t.Errorf("task %q: %v, want %d naming the application's codes", tc.code, err, tc.status)
			}
			continue
		}
		if err != nil || k.Profile != tc.profile {
			t.Errorf("task %q: %+v %v", tc.code, k, err)
		}
	}
	// The profile goes into the workflow Task's meta.
	var wf struct {
		Meta struct{ Profile []string }
		Code struct{ Coding []struct{ Code string } }
	}
	k, _ := taskKind(app, "89200000")
	if err := json.Unmarshal(BuildWorkflowTask(WorkflowSpec{Identifier: testTaskID, Profile: k.Profile, Code: coding(k.Code)}), &wf); err != nil {
		t.Fatal(err)
	}
	if len(wf.Meta.Profile) != 1 || wf.Meta.Profile[0] != k.Profile || wf.Code.Coding[0].Code != "89200000" {
		t.Errorf("workflow Task %+v", wf)
	}
}

// A referral for a care application the node does not run on Notified
// Pull is refused 400, naming the ones it does.
func TestReferUnknownApplication(t *testing.T) {
	s, _, _ := receiverFixture(t)
	for _, app := range []string{"lab", "correspondentie"} {
		_, err := s.Refer(context.Background(), "90000002", ReferRequest{PatientBSN: "999911259", ReceiverURA: "90000001", Application: app})
		fe := fhir.AsError(err)
		if fe == nil || fe.Status != http.StatusBadRequest || !strings.Contains(fe.Error(), "supported: bgz") {
			t.Errorf("%s: %v, want 400 naming bgz", app, err)
		}
	}
}
