package notifiedpull

import (
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
)

func TestCompletionIsReportedInTheBackgroundAndRetried(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []int // the sender's answer to each PUT
		attempts int
		reported bool
	}{
		{"taken at once", []int{200}, 1, true},
		{"sender busy, then takes it", []int{503, 502, 200}, 3, true},
		{"sender refuses: not retried", []int{403, 200}, 1, false},
		{"sender never takes it: bounded", []int{503, 503, 503, 503, 503, 503, 503}, reportAttempts, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := receiverFixture(t)
			var mu sync.Mutex
			var bodies []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				n := len(bodies)
				bodies = append(bodies, r.Method+" "+r.URL.Path+" "+string(b))
				mu.Unlock()
				w.WriteHeader(tc.answers[n])
				_, _ = w.Write([]byte(`{"resourceType":"Task"}`))
			}))
			defer srv.Close()
			var events []Event
			s.cfg.Events = func(e Event) { events = append(events, e) }
			c := &fetcher{http: srv.Client(), token: "t", base: srv.URL + "/fhir"}
			row := pendingReport(t, s, srv.URL+"/fhir/Task/wf1")
			s.reportCompletion(context.Background(), c, row, []byte(`{"resourceType":"Task","id":"wf1","status":"requested"}`))
			s.Wait() // the reporter counts as one of the service's goroutines
			if len(bodies) != tc.attempts {
				t.Fatalf("%d PUTs, want %d: %q", len(bodies), tc.attempts, bodies)
			}
			var sent struct{ Status string }
			body := strings.SplitN(bodies[0], " ", 3)[2]
			if err := json.Unmarshal([]byte(body), &sent); err != nil || sent.Status != StatusCompleted {
				t.Errorf("PUT %q, want the workflow Task with status completed", bodies[0])
			}
			failed := len(events) == 1 && events[0].Step == "report-failed"
			if failed == tc.reported {
				t.Errorf("events %+v; reported = %v", events, tc.reported)
			}
			// Taken or refused, the report is done; a sender that never
			// answered gets it again after a restart.
			after, err := s.cfg.DB.received(context.Background(), row.Tenant, row.ID)
			if err != nil {
				t.Fatal(err)
			}
			stillPending := tc.attempts == reportAttempts
			if after.ReportPending != stillPending || (after.AuthBase != "") != stillPending {
				t.Errorf("after the report: pending %v, authorization base kept %v; want both %v", after.ReportPending, after.AuthBase != "", stillPending)
			}
		})
	}
}

// pendingReport stores a received notification whose pull completed and
// whose report to the sender is pending.
func pendingReport(t *testing.T, s *Service, workflowTask string) Received {
	t.Helper()
	ctx := context.Background()
	now := s.cfg.Now()
	row := Received{ID: "n1", Tenant: "90000002", Identifier: "urn:uuid:n1", SenderURA: "90000001", WorkflowTask: workflowTask,
		AuthBase: "the-secret", Status: StatusInProgress, Expires: now.Add(time.Hour), Created: now, Updated: now}
	if _, err := s.cfg.DB.insertReceived(ctx, row); err != nil {
		t.Fatal(err)
	}
	if err := s.cfg.DB.completeReceived(ctx, row.ID, "", "bgz", "b1", nil, now); err != nil {
		t.Fatal(err)
	}
	row, err := s.cfg.DB.received(ctx, row.Tenant, row.ID)
	if err != nil || !row.ReportPending || row.AuthBase != "the-secret" || row.Status != StatusCompleted {
		t.Fatalf("completed with the report pending: %+v %v", row, err)
	}
	return row
}

func TestPendingReportResumedAtStart(t *testing.T) {
	s, _, _ := receiverFixture(t)
	row := pendingReport(t, s, "https://sender.example/fhir/stu3/90000001/Task/wf1")
	asked := make(chan string, 4)
	s.cfg.Directory = directoryFunc(func(ura string) (string, error) {
		asked <- ura
		return "", errors.New("the addressbook is down")
	})
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The resumed report looks up the sender's endpoint to get a token.
	if got := <-asked; got != row.SenderURA {
		t.Errorf("resumed report looked up %s, want the sender %s", got, row.SenderURA)
	}
	cancel()
	s.Wait()
	after, err := s.cfg.DB.received(context.Background(), row.Tenant, row.ID)
	if err != nil || !after.ReportPending {
		t.Errorf("a report that could not be sent must stay pending: %+v %v", after, err)
	}
}

func TestNotificationStatusWrittenWithoutRereadingUnlessChanged(t *testing.T) {
	ctx := context.Background()
	s, _, now := receiverFixture(t)
	res, err := s.cfg.Store.Create(ctx, "90000002", json.RawMessage(`{"resourceType":"Task","status":"requested","intent":"proposal"}`))
	if err != nil {
		t.Fatal(err)
	}
	row := Received{ID: res.ID, Tenant: "90000002", Identifier: "urn:uuid:1", SenderURA: "90000001", Status: StatusRequested,
		Expires: now.Add(3600e9), Created: now, Updated: now}
	if _, err := s.cfg.DB.insertReceived(ctx, row); err != nil {
		t.Fatal(err)
	}
	note := &noteTask{}
	if err := s.advance(ctx, row, note, StatusAccepted, ""); err != nil {
		t.Fatal(err)
	}
	if note.cur.VersionID != "2" {
		t.Fatalf("kept version %q, want 2", note.cur.VersionID)
	}
	// Someone else changes the Task (a withdrawal): the next change reads
	// it again instead of writing over it blindly.
	body, _ := SetStatus(note.cur.Body, StatusCancelled)
	if _, _, err := s.cfg.Store.Update(ctx, "90000002", body, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.advance(ctx, row, note, StatusInProgress, ""); err != nil {
		t.Fatal(err)
	}
	cur, err := s.cfg.Store.Read(ctx, "90000002", "Task", res.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Status string }
	_ = json.Unmarshal(cur.Body, &got)
	if cur.VersionID != "4" || got.Status != StatusInProgress || note.cur.VersionID != "4" {
		t.Errorf("after a change by someone else: version %s status %s (kept %s), want 4 in-progress", cur.VersionID, got.Status, note.cur.VersionID)
	}
	if err := s.cfg.DB.completeReceived(ctx, row.ID, "", "bgz", "b1", []QueryResult{{Block: "Patient", Matches: 1}}, now); err != nil {
		t.Fatal(err)
	}
	done, err := s.cfg.DB.received(ctx, "90000002", row.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != StatusCompleted || done.ResultBundle != "b1" || len(done.Summary) != 1 || !done.ReportPending {
		t.Errorf("completed row: %+v", done)
	}
}

func TestResourceType(t *testing.T) {
	for _, tc := range []struct{ res, want string }{
		{`{"resourceType":"Patient","id":"1"}`, "Patient"},
		{`{ "resourceType" : "Observation" }`, "Observation"},  // not compact: decoded
		{`{"id":"1","resourceType":"Condition"}`, "Condition"}, // not first: decoded
		{`{"resourceType":"Pat\u0069ent"}`, "Patient"},         // escaped: decoded
		{`{"resourceType":"","id":"1"}`, ""},                   // empty
		{`{"resourceType":"Patient`, ""},                       // broken
		{`["resourceType","Patient"]`, ""},                     // not an object
	} {
		if got := resourceType(json.RawMessage(tc.res)); got != tc.want {
			t.Errorf("resourceType(%s) = %q, want %q", tc.res, got, tc.want)
		}
	}
}

// TestCompletionReportHoldsTheLease: the report of a completion goes on
// under the lease the pull handed on: no other worker takes the
// notification while the report runs, the lease is free once it ended;
// and a report whose lease another worker took stops without recording
// the report as done or as failed.
func TestCompletionReportHoldsTheLease(t *testing.T) {
	for _, lost := range []bool{false, true} {
		name := "held"
		if lost {
			name = "lost"
		}
		t.Run(name, func(t *testing.T) {
			s, _, now := receiverFixture(t)
			s.cfg.Lease = 300 * time.Millisecond // renewed every 100 ms
			ctx := context.Background()
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body) // read: the server then sees the client go away
				select {
				case <-release:
				case <-r.Context().Done():
					return
				case <-time.After(5 * time.Second):
				}
				_, _ = w.Write([]byte(`{"resourceType":"Task"}`))
			}))
			defer srv.Close()
			var mu sync.Mutex
			var events []Event
			s.cfg.Events = func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
			c := &fetcher{http: srv.Client(), token: "t", base: srv.URL + "/fhir"}
			row := pendingReport(t, s, srv.URL+"/fhir/Task/wf1")
			if ok, err := s.cfg.DB.leasePull(ctx, row.ID, "pull-1", now, now.Add(s.cfg.Lease)); err != nil || !ok {
				t.Fatalf("the pull's lease: %v %v", ok, err)
			}
			row.lease = "pull-1"
			s.reportCompletion(ctx, c, row, []byte(`{"resourceType":"Task","id":"wf1","status":"requested"}`))
			time.Sleep(250 * time.Millisecond) // past two renewals
			if ok, err := s.cfg.DB.leasePull(ctx, row.ID, "other", now, now.Add(s.cfg.Lease)); err != nil || ok {
				t.Fatalf("another worker took the lease of a running report: %v %v", ok, err)
			}
			if lost {
				// As a take-over after the lease ran out.
				if err := s.cfg.DB.releasePull(ctx, row.ID, "pull-1", false); err != nil {
					t.Fatal(err)
				}
				if ok, err := s.cfg.DB.leasePull(ctx, row.ID, "thief", now, now.Add(time.Hour)); err != nil || !ok {
					t.Fatalf("take-over: %v %v", ok, err)
				}
			} else {
				close(release)
			}
			s.Wait()
			after, err := s.cfg.DB.received(ctx, row.Tenant, row.ID)
			if err != nil {
				t.Fatal(err)
			}
			if after.ReportPending != lost {
				t.Errorf("report pending %v after the report; want %v", after.ReportPending, lost)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, e := range events {
				if e.Step == "report-failed" {
					t.Errorf("event %+v: a report that lost its lease is not a failed one", e)
				}
			}
			ok, err := s.cfg.DB.leasePull(ctx, row.ID, "next", now, now.Add(s.cfg.Lease))
			if err != nil || ok == lost {
				t.Errorf("lease after the report: taken %v (err %v); want %v", ok, err, !lost)
			}
		})
	}
}
