package network

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/plateau"
)

// TestDirectPullAtLocalizationPlateau2: with localization agreed at
// plateau 2, the hospital consults the GP practice only after the referral
// index named the practice as a holder of the patient's data; the practice's
// node checks the index's hit before it answers.
func TestDirectPullAtLocalizationPlateau2(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 1,
		Plateaus: plateau.Plateaus{plateau.Localization: 2}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })
	bsn := nw.Patients[0].BSN
	ask := func(out *consult.Result) int {
		return internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/consult", consult.Request{
			PatientBSN: bsn, HolderURA: GP.URA, Application: "bgz", UserID: "900012345", UserRole: "01.016",
		}, out)
	}

	// No localization yet: the hospital's node does not send the query.
	if code := ask(nil); code != http.StatusForbidden {
		t.Fatalf("consult without a localization: status %d, want 403", code)
	}
	recs, err := nw.HospNode.Audit().List(ctx, audit.Filter{Patient: bsn})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(recs, func(r audit.Record) bool {
		return r.Interaction == "consult" && r.Outcome == http.StatusForbidden && strings.Contains(r.OutcomeText, "localization: plateau 2 required")
	}) {
		t.Fatalf("no audit record of the refused consult naming localization plateau 2: %+v", recs)
	}

	// The referral registers the practice's holding at the index; a
	// localization then names it, and the consult goes through.
	if _, err := nw.Exchange(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the index names the practice", func() bool { return slices.Contains(localize(t, nw, bsn), GP.URA) })
	var res consult.Result
	if code := ask(&res); code != http.StatusOK {
		t.Fatalf("consult after localization: status %d", code)
	}
	if !res.Complete || res.Resources == 0 {
		for _, q := range res.Queries {
			t.Logf("%s: %d %s", q.Block, q.Status, q.Outcome)
		}
		t.Fatalf("consult after localization: complete %v, %d resources", res.Complete, res.Resources)
	}
}
