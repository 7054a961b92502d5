package indexedpull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit/audittest"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

const (
	tenant  = "00000001"
	patient = "999911120"
)

// holderBase is a holder's FHIR base in the tests.
func holderBase(ura string) string { return "https://" + ura + ".example.nl/fhir/" + ura }

// delivered is a complete Direct Pull answer of one holder with n
// Observations; their fullUrls are relative, as a holder may send them.
func delivered(ura string, n int) consult.Result {
	type e struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	}
	var es []e
	for i := range n {
		es = append(es, e{fmt.Sprintf("Observation/%s-%d", ura, i), json.RawMessage(fmt.Sprintf(`{"resourceType":"Observation","id":"%s-%d"}`, ura, i))})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "collection", "entry": es})
	return consult.Result{Holder: ura, Base: holderBase(ura), Bundle: b, Resources: n, Complete: true,
		Queries: []consult.QueryResult{{Block: "a", Status: http.StatusOK, Matches: n}, {Block: "b", Status: http.StatusOK}}}
}

type bundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        int    `json:"total"`
	Entry        []struct {
		FullURL  string `json:"fullUrl"`
		Search   struct{ Mode string }
		Resource struct {
			ResourceType string `json:"resourceType"`
			Target       []struct{ Reference string }
			Recorded     string
			Agent        []struct {
				WhoReference struct {
					Identifier struct{ System, Value string }
				}
			}
			Issue []struct {
				Severity, Code, Diagnostics string
				Details                     struct {
					Text   string
					Coding []struct{ System, Code string }
				}
			}
		} `json:"resource"`
	} `json:"entry"`
}

func parse(t *testing.T, raw json.RawMessage) bundle {
	t.Helper()
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" {
		t.Fatalf("not a searchset Bundle: %s", raw)
	}
	return b
}

// provenance maps each holder URA to the targets of its Provenance.
func (b bundle) provenance(t *testing.T) map[string][]string {
	out := map[string][]string{}
	for _, e := range b.Entry {
		if e.Resource.ResourceType != "Provenance" {
			continue
		}
		if e.Search.Mode != "include" || e.Resource.Recorded == "" || len(e.Resource.Agent) != 1 ||
			e.Resource.Agent[0].WhoReference.Identifier.System != nl.SystemURA {
			t.Fatalf("Provenance without mode include, recorded time or one URA agent: %+v", e)
		}
		ura := e.Resource.Agent[0].WhoReference.Identifier.Value
		for _, tg := range e.Resource.Target {
			out[ura] = append(out[ura], tg.Reference)
		}
	}
	return out
}

// outcomes maps each holder URA named in an OperationOutcome entry to its
// issue (code and details text); the entries naming no holder are under "".
func (b bundle) outcomes(t *testing.T) map[string][]string {
	out := map[string][]string{}
	for _, e := range b.Entry {
		if e.Resource.ResourceType != "OperationOutcome" {
			continue
		}
		if e.Search.Mode != "outcome" || len(e.Resource.Issue) != 1 {
			t.Fatalf("OperationOutcome entry not in mode outcome with one issue: %+v", e)
		}
		is := e.Resource.Issue[0]
		ura := ""
		if len(is.Details.Coding) == 1 {
			ura = is.Details.Coding[0].Code
		}
		out[ura] = append(out[ura], is.Code+" "+is.Details.Text)
	}
	return out
}

type fixture struct {
	holders  []string
	warnings []string
	answer   map[string]func(ctx context.Context) (consult.Result, error)
}

func (f fixture) service(rec *audittest.Log, timeout time.Duration) *Service {
	return New(Config{
		Applications: bgzOnly,
		Localize: func(_ context.Context, tn string, req Request) (Located, error) {
			if tn != tenant || req.Patient != patient {
				return Located{}, errors.New("wrong localization question")
			}
			return Located{Holders: f.holders, Warnings: f.warnings}, nil
		},
		Consult: func(ctx context.Context, tn string, req consult.Request) (consult.Result, error) {
			if tn != tenant || req.PatientBSN != patient || req.User == nil || req.User.ID == "" {
				return consult.Result{}, errors.New("wrong consult question")
			}
			a, ok := f.answer[req.HolderURA]
			if !ok {
				return consult.Result{}, fmt.Errorf("holder %s consulted but not expected", req.HolderURA)
			}
			return a(ctx)
		},
		HolderTimeout: timeout, Audit: rec,
	})
}

func answer(r consult.Result, err error) func(context.Context) (consult.Result, error) {
	return func(context.Context) (consult.Result, error) { return r, err }
}

var user = &plateau.Caller{ID: "900012345", Role: "01.015"}

func TestPullMergesWithProvenancePerHolder(t *testing.T) {
	f := fixture{holders: []string{"00000002", tenant, "00000003", "00000004", "00000003"},
		answer: map[string]func(context.Context) (consult.Result, error){
			"00000002": answer(delivered("00000002", 2), nil),
			"00000003": answer(delivered("00000003", 1), nil),
			"00000004": answer(delivered("00000004", 0), nil),
		}}
	rec := &audittest.Log{}
	ans, err := f.service(rec, time.Minute).Pull(context.Background(), tenant, Request{Patient: patient, User: user})
	if err != nil {
		t.Fatal(err)
	}
	if !ans.Complete || len(ans.Holders) != 3 {
		t.Fatalf("want a complete answer of 3 holders (own holding and duplicate left out), got %+v", ans)
	}
	b := parse(t, ans.Bundle)
	if b.Total != 3 {
		t.Errorf("total = %d, want 3", b.Total)
	}
	var matches []string
	for _, e := range b.Entry {
		if e.Search.Mode == "match" {
			matches = append(matches, e.FullURL)
		}
	}
	want := []string{holderBase("00000002") + "/Observation/00000002-0", holderBase("00000002") + "/Observation/00000002-1",
		holderBase("00000003") + "/Observation/00000003-0"}
	if !slices.Equal(matches, want) {
		t.Errorf("entries %v, want %v (each under its holder's base)", matches, want)
	}
	prov := b.provenance(t)
	if len(prov) != 2 || !slices.Equal(prov["00000002"], want[:2]) || !slices.Equal(prov["00000003"], want[2:]) {
		t.Errorf("Provenance per holder = %v, want each holder with its own entries", prov)
	}
	oo := b.outcomes(t)
	if len(oo) != 1 || !slices.Equal(oo["00000004"], []string{"not-found no-data"}) {
		t.Errorf("outcomes = %v, want only the holder without data, as information", oo)
	}
	if len(rec.Records()) != 1 || rec.Records()[0].Interaction != "indexed-pull" || rec.Records()[0].Patient != patient ||
		rec.Records()[0].Outcome != http.StatusOK || len(rec.Records()[0].Resources) != 3 {
		t.Errorf("audit = %+v, want one indexed-pull record naming the patient and the 3 holders", rec.Records())
	}
}

func TestPullShowsEveryMissingHolder(t *testing.T) {
	refusedQueries := consult.Result{Holder: "00000005", Base: holderBase("00000005"), Bundle: json.RawMessage(`{"entry":[]}`),
		Queries: []consult.QueryResult{{Status: http.StatusForbidden, Outcome: "the patient's consent does not permit this exchange"},
			{Status: http.StatusForbidden, Outcome: "the patient's consent does not permit this exchange"}}}
	partial := delivered("00000006", 1)
	partial.Complete = false
	partial.Queries[1] = consult.QueryResult{Block: "b", Status: http.StatusForbidden, Outcome: "withheld from this role"}
	f := fixture{holders: []string{"00000002", "00000003", "00000004", "00000005", "00000006", "00000007"},
		warnings: []string{"some holders were left out: consent could not be verified"},
		answer: map[string]func(context.Context) (consult.Result, error){
			"00000002": answer(delivered("00000002", 1), nil),
			// Never answers: only the per-holder deadline ends it.
			"00000003": func(ctx context.Context) (consult.Result, error) {
				<-ctx.Done()
				return consult.Result{}, fmt.Errorf("the holder could not be reached: %w", ctx.Err())
			},
			"00000004": answer(consult.Result{}, &fhir.Error{Status: http.StatusBadGateway, Cause: &oauth.ErrorResponse{Status: 400, Code: "invalid_grant"},
				Issues: []fhir.Issue{{Diagnostics: "the holder refused the token: invalid_grant"}}}),
			"00000005": answer(refusedQueries, nil),
			"00000006": answer(partial, nil),
			"00000007": answer(consult.Result{}, fhir.Errorf(http.StatusBadGateway, "exception", "the holder's authorization server could not be reached")),
		}}
	rec := &audittest.Log{}
	ans, err := f.service(rec, 50*time.Millisecond).Pull(context.Background(), tenant, Request{Patient: patient, User: user})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Complete {
		t.Fatal("an answer short of holders is marked complete")
	}
	b := parse(t, ans.Bundle)
	oo := b.outcomes(t)
	for ura, want := range map[string]string{"00000003": "timeout timeout", "00000004": "forbidden refused", "00000005": "forbidden refused",
		"00000006": "incomplete partial", "00000007": "exception failed"} {
		if got := oo[ura]; len(got) != 1 || got[0] != want {
			t.Errorf("holder %s: outcome %v, want %q", ura, got, want)
		}
	}
	if got := oo[""]; !slices.Equal(got, []string{"incomplete partial", "incomplete localization"}) {
		t.Errorf("summary outcomes %v, want the partial-result warning and the localization warning", got)
	}
	if _, ok := oo["00000002"]; ok {
		t.Error("a holder that delivered has an OperationOutcome")
	}
	if b.Entry[0].Resource.ResourceType != "OperationOutcome" || !strings.Contains(b.Entry[0].Resource.Issue[0].Diagnostics, "5 of 6") {
		t.Errorf("the answer does not open with the partial-result warning: %+v", b.Entry[0])
	}
	prov := b.provenance(t)
	if len(prov) != 2 || len(prov["00000002"]) != 1 || len(prov["00000006"]) != 1 {
		t.Errorf("Provenance = %v, want the delivering and the partial holder", prov)
	}
}

func TestPullRefusesBadRequests(t *testing.T) {
	f := fixture{}
	for _, tc := range []struct {
		name    string
		req     Request
		audited bool
	}{
		{"bad BSN", Request{Patient: "123", User: user}, false},
		{"no user", Request{Patient: patient}, true},
		{"unknown application", Request{Patient: patient, Application: "lab", User: user}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &audittest.Log{}
			_, err := f.service(rec, time.Minute).Pull(context.Background(), tenant, tc.req)
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest {
				t.Fatalf("err = %v, want a 400", err)
			}
			if audited := len(rec.Records()) == 1 && rec.Records()[0].Outcome == http.StatusBadRequest; audited != tc.audited {
				t.Errorf("audited = %v, want %v (%+v)", audited, tc.audited, rec.Records())
			}
		})
	}
}

func TestPullWithoutAuditReturnsNothing(t *testing.T) {
	f := fixture{holders: []string{"00000002"}, answer: map[string]func(context.Context) (consult.Result, error){
		"00000002": answer(delivered("00000002", 1), nil)}}
	_, err := f.service(&audittest.Log{Fail: true}, time.Minute).Pull(context.Background(), tenant, Request{Patient: patient, User: user})
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Status != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want 503 when the audit log is unavailable", err)
	}
}

func TestPullNoHolder(t *testing.T) {
	ans, err := fixture{}.service(&audittest.Log{}, time.Minute).Pull(context.Background(), tenant, Request{Patient: patient, User: user})
	if err != nil {
		t.Fatal(err)
	}
	b := parse(t, ans.Bundle)
	if oo := b.outcomes(t); b.Total != 0 || !slices.Equal(oo[""], []string{"not-found no-holder"}) {
		t.Errorf("want an empty answer saying no holder was named, got %+v", oo)
	}
}

// bgzOnly is the registry of a node that runs BgZ on Indexed Pull.
var bgzOnly = func() *careapp.Registry {
	r, err := careapp.NewRegistry(bgz.New())
	if err != nil {
		panic(err)
	}
	return r
}()
