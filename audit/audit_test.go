package audit

import (
	"context"
	"path/filepath"
	"testing"
)

func TestAppendListAndAppendOnly(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "audit.db"), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{"999909587", "999911259", "999909587"} {
		if err := s.Append(ctx, Record{Action: ActionRead, Interaction: "search-type", Outcome: 200, Tenant: "00000001",
			ActorURA: "00000002", Patient: p, Types: []string{"Condition", "Condition"}, Query: "Condition?patient.identifier=x"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.List(ctx, Filter{Patient: "999909587"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d records for patient, want 2", len(got))
	}
	if got[0].Node != "node-a" || got[0].EventID == "" || got[0].Time.IsZero() || len(got[0].Types) != 1 {
		t.Errorf("record not completed: %+v", got[0])
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE audit_event SET outcome = 500`); err == nil {
		t.Error("update of an audit record succeeded; the log must be append-only")
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM audit_event`); err == nil {
		t.Error("delete of audit records succeeded; the log must be append-only")
	}
}
