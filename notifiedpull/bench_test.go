package notifiedpull

import (
	"context"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/oauth"
)

func BenchmarkFloor(b *testing.B) { benchfloor.Run(b, "") }

// BenchmarkAuthorizeData is the sender's decision on one data request of
// a pull: the grant (cached), then the search normalised by its care
// application from the registry and looked up among the grant's queries.
func BenchmarkAuthorizeData(b *testing.B) {
	s, g, _ := grantFixture(b)
	ctx := context.Background()
	tok := &oauth.AccessToken{Subject: "90000002", Scope: []string{"bgz"}, Claims: map[string]any{ClaimGrant: g.ID}}
	typ, op, params, err := bgz.ParseQuery(bgz.Queries()[13].Query(g.PatientBSN)) // MedicationStatement, with _include
	if err != nil {
		b.Fatal(err)
	}
	req := &rest.Request{Tenant: g.Tenant, Interaction: rest.InteractionSearchType, Type: typ, Operation: op, Params: params}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.AuthorizeData(ctx, tok, req); err != nil {
			b.Fatal(err)
		}
	}
}

// workflowTaskFixture is a BgZ workflow Task as the sender stores it.
func workflowTaskFixture() []byte {
	var inputs []WorkflowInput
	for _, q := range bgz.Queries() {
		inputs = append(inputs, WorkflowInput{System: q.Code.System, Code: q.Code.Code, Display: q.Name, Query: q.Query("999911120")})
	}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	return BuildWorkflowTask(WorkflowSpec{Identifier: "urn:uuid:5c1f1ad4-8a9e-4d6e-9d59-0d5b9a6f7f10", PatientID: "p1", PatientBSN: "999911120",
		SenderURA: "90000001", SenderName: "Huisartsenpraktijk", SenderSystem: "900000001", ReceiverURA: "90000002",
		Expires: now.Add(time.Hour), Authored: now, Inputs: inputs})
}

// BenchmarkSetStatus is one status change of a workflow Task (26 inputs),
// as the receiver reports the completion and the sender moves it on.
func BenchmarkSetStatus(b *testing.B) {
	body := workflowTaskFixture()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SetStatus(body, StatusCompleted); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOnlyStatusChanged is the sender's check of a completion report.
func BenchmarkOnlyStatusChanged(b *testing.B) {
	cur := workflowTaskFixture()
	next, err := SetStatus(cur, StatusCompleted)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := OnlyStatusChanged(cur, next); !ok {
			b.Fatal("refused")
		}
	}
}
