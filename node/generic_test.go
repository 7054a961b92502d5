package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
)

// TestLocalizeNeedsTheUser: the consent question of a localization needs
// the user's role and UZI number; a request without them is refused 400
// and audited with the patient, instead of quietly leaving every holder out.
func TestLocalizeNeedsTheUser(t *testing.T) {
	e := newNotifyEnv(t)
	p, _ := e.n.parts.get(e.participant)
	for _, tc := range []struct{ name, body string }{
		{"no role or UZI number", `{"patient":"` + e.bsn + `"}`},
		{"UZI number not 9 digits", `{"patient":"` + e.bsn + `","role":"01.015","uzi":"12"}`},
		{"role not a role code", `{"patient":"` + e.bsn + `","role":"doctor","uzi":"900012345"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countRecords(t, e.n, "localize")
			w := httptest.NewRecorder()
			e.n.localize(w, httptest.NewRequest(http.MethodPost, "/internal/localize", strings.NewReader(tc.body)), p)
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "invalid-user") {
				t.Fatalf("status %d %s, want 400 invalid-user", w.Code, w.Body)
			}
			recs, err := e.n.Audit().List(context.Background(), audit.Filter{Patient: e.bsn})
			if err != nil {
				t.Fatal(err)
			}
			if countRecords(t, e.n, "localize") != before+1 || recs[len(recs)-1].Outcome != http.StatusBadRequest {
				t.Fatalf("refusal not audited with the patient: %+v", recs)
			}
		})
	}
}
