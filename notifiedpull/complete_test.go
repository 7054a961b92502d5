package notifiedpull

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
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
			row := Received{ID: "n1", Tenant: "90000002", WorkflowTask: srv.URL + "/fhir/Task/wf1"}
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
		})
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
	if err := s.cfg.DB.completeReceived(ctx, row.ID, "b1", []QueryResult{{Block: "Patient", Matches: 1}}, now); err != nil {
		t.Fatal(err)
	}
	done, err := s.cfg.DB.received(ctx, "90000002", row.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != StatusCompleted || done.ResultBundle != "b1" || len(done.Summary) != 1 || done.AuthBase != "" {
		t.Errorf("completed row: %+v", done)
	}
}
