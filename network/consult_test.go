package network

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consult"
)

// TestDirectPullAsksConsent: the hospital consults the GP practice
// directly. The first demo patient registered consent for the practice's
// data; the second did not.
func TestDirectPullAsksConsent(t *testing.T) {
	nw := startNetwork(t, 2)
	ctx := context.Background()
	ask := func(patient int) consult.Result {
		var res consult.Result
		code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/consult", consult.Request{
			PatientBSN: nw.Patients[patient].BSN, HolderURA: GP.URA, Application: "bgz", UserID: "900012345", UserRole: "01.016",
		}, &res)
		if code != http.StatusOK {
			t.Fatalf("consult: status %d", code)
		}
		return res
	}

	permitted := ask(0)
	for _, q := range permitted.Queries {
		if q.Status != http.StatusOK || q.Matches == 0 {
			t.Errorf("consented patient, block %s: status %d, %d matches (%s)", q.Block, q.Status, q.Matches, q.Outcome)
		}
	}
	if permitted.Resources == 0 {
		t.Error("nothing retrieved for the consented patient")
	}

	refused := ask(1)
	for _, q := range refused.Queries {
		if q.Status != http.StatusForbidden || q.Matches != 0 {
			t.Errorf("patient without consent, block %s: status %d, %d matches", q.Block, q.Status, q.Matches)
		}
	}
	if refused.Resources != 0 {
		t.Errorf("%d resources retrieved without consent", refused.Resources)
	}

	// The GP's audit log holds the consent decision with every answer.
	recs, err := nw.GPNode.Audit().List(ctx, audit.Filter{Patient: nw.Patients[1].BSN})
	if err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, r := range recs {
		if r.Outcome == http.StatusForbidden && strings.Contains(r.ConsentProfile, "Deny") {
			denied++
		}
	}
	if denied == 0 {
		t.Error("no audit record shows the consent refusal")
	}
}

// TestDirectPullWithLocalConsent: at plateau 1 consent is recorded in the
// provider's own system; the GP's node answers a consult only once the
// practice registered the patient's consent through its internal API.
func TestDirectPullWithLocalConsent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 2, LocalConsent: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })
	bsn := nw.Patients[1].BSN
	ask := func() consult.Result {
		var res consult.Result
		if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/consult", consult.Request{
			PatientBSN: bsn, HolderURA: GP.URA, Application: "bgz", UserID: "900012345", UserRole: "01.016",
		}, &res); code != http.StatusOK {
			t.Fatalf("consult: status %d", code)
		}
		return res
	}
	if res := ask(); res.Resources != 0 {
		t.Fatalf("%d resources before any consent was registered", res.Resources)
	}
	if code := internal(t, nw.GPNode, nw.Token(GP.URA), http.MethodPost, "/internal/consent",
		map[string]any{"patient": bsn, "effect": "permit", "requesterUra": Hospital.URA}, nil); code != http.StatusCreated {
		t.Fatalf("register consent: status %d", code)
	}
	// Consent about another provider's data is refused.
	if code := internal(t, nw.GPNode, nw.Token(GP.URA), http.MethodPost, "/internal/consent",
		map[string]any{"patient": bsn, "effect": "permit", "holderUra": Hospital.URA}, nil); code != http.StatusForbidden {
		t.Errorf("consent about another holder's data: status %d, want 403", code)
	}
	res := ask()
	if !res.Complete || res.Resources == 0 {
		t.Fatalf("after consent: complete %v, %d resources", res.Complete, res.Resources)
	}
}
