package notifiedpull

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit/audittest"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/oauth"
)

// receiverFixture is the receiving side for participant 90000002, whose
// peer 90000001 presents a valid notification token.
func receiverFixture(t *testing.T) (*Service, *audittest.Log, time.Time) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "fhir.db"), fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := OpenDB(ctx, filepath.Join(dir, "np.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	recs := &audittest.Log{}
	s := New(Config{Node: "n", Applications: bgzOnly, DB: db, Store: st, Now: func() time.Time { return now }, Issuer: "https://receiver.example", Audit: recs,
		FHIRBase: func(t string) string { return "https://receiver.example/fhir/stu3/" + t },
		Parties:  func(ura string) (*Party, bool) { return &Party{URA: ura}, ura == "90000002" },
		PeerURA:  func(*http.Request) (string, error) { return "90000001", nil },
		Verify: func(*http.Request, string) (*oauth.AccessToken, error) {
			return &oauth.AccessToken{Subject: "90000001", ClientID: "90000001", Scope: []string{ScopeNotify}}, nil
		}})
	return s, recs, now
}

// TestNotificationIdentifiersRefusedAndAudited: a notification whose Task
// identifier is not a UUID is refused 400 with an OperationOutcome naming
// the element, nothing is stored, and the refusal is audited with the
// patient; a withdrawal naming a malformed identifier is refused alike.
func TestNotificationIdentifiersRefusedAndAudited(t *testing.T) {
	s, recs, now := receiverFixture(t)
	for _, tc := range []struct {
		name, method, target string
		body                 []byte
		location             string
	}{
		{"notification with urn:uuid:not-a-uuid", http.MethodPost, "/Task", withIdentifier(t, now, "urn:uuid:not-a-uuid"), "Task.identifier[0].value"},
		{"withdrawal of urn:uuid:not-a-uuid", http.MethodPut, "/Task?identifier=" + SystemRFC3986 + "|urn:uuid:not-a-uuid",
			[]byte(`{"resourceType":"Task","status":"cancelled"}`), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(recs.Records())
			r := httptest.NewRequest(tc.method, tc.target, bytes.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/fhir+json")
			w := httptest.NewRecorder()
			s.HandleNotification(w, r, "90000002")
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d %s, want 400", w.Code, w.Body)
			}
			var oo struct {
				ResourceType string
				Issue        []struct {
					Location    []string
					Diagnostics string
				}
			}
			if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
				t.Fatalf("no OperationOutcome: %s", w.Body)
			}
			if tc.location != "" && (len(oo.Issue[0].Location) == 0 || oo.Issue[0].Location[0] != tc.location) {
				t.Errorf("issue %+v, want one at %s", oo.Issue[0], tc.location)
			}
			if len(recs.Records()) != before+1 {
				t.Fatalf("%d audit records added, want 1", len(recs.Records())-before)
			}
			rec := recs.Records()[len(recs.Records())-1]
			if rec.Outcome != http.StatusBadRequest || rec.ActorURA != "90000001" {
				t.Errorf("audit record %+v, want a 400 refusal of 90000001", rec)
			}
			if tc.method == http.MethodPost && rec.Patient != "999911259" {
				t.Errorf("audit record names patient %q, want 999911259", rec.Patient)
			}
			if strings.Contains(rec.Task, "not-a-uuid") {
				t.Errorf("audit record takes the malformed identifier as the Task: %q", rec.Task)
			}
		})
	}
}
