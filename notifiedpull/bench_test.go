package notifiedpull

import (
	"context"
	"testing"

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
