package notifiedpull

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/oauth"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// grantFixture is a sender-side service holding one referral from 90000001
// to 90000002 for patient 999911259, valid for an hour.
func grantFixture(t testing.TB) (*Service, Grant, *clock) {
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
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	s := New(Config{Node: "n", Applications: bgzOnly, DB: db, Store: st, Now: clk.now, Issuer: "https://sender.example",
		FHIRBase: func(t string) string { return "https://sender.example/fhir/stu3/" + t }})
	wf, err := st.Create(ctx, "90000001", BuildWorkflowTask(WorkflowSpec{Identifier: "urn:uuid:g1", PatientID: "p",
		PatientBSN: "999911259", SenderURA: "90000001", ReceiverURA: "90000002", Expires: clk.t.Add(time.Hour), Authored: clk.t}))
	if err != nil {
		t.Fatal(err)
	}
	var queries []string
	for _, b := range bgz.Queries() {
		n, _ := bgz.Normalize(b.Query("999911259"))
		queries = append(queries, n)
	}
	g := Grant{ID: "urn:uuid:g1", Tenant: "90000001", ReceiverURA: "90000002", PatientBSN: "999911259", WorkflowTask: wf.ID,
		AuthBaseHash: hashSecret("the-secret"), Application: ApplicationBgZ, Queries: queries, Expires: clk.t.Add(time.Hour),
		Status: StatusRequested, Created: clk.t, Updated: clk.t}
	if err := db.insertGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	return s, g, clk
}

func TestResolveGrant(t *testing.T) {
	ctx := context.Background()
	s, g, clk := grantFixture(t)
	grant, err := s.ResolveGrant(ctx, oauth.GrantRequest{ClientID: "90000002", GrantType: GrantTypeJWT, AuthorizationBase: "the-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if grant.Audience != "https://sender.example/fhir/stu3/90000001" || grant.Claims[ClaimGrant] != g.ID || !grant.NotAfter.Equal(g.Expires) {
		t.Errorf("grant %+v", grant)
	}
	if cur, _ := s.cfg.DB.grant(ctx, g.Tenant, g.ID); cur.Status != StatusInProgress {
		t.Errorf("grant status %s after the first token, want in-progress", cur.Status)
	}
	for _, tc := range []struct {
		name string
		req  oauth.GrantRequest
		err  error
	}{
		{"wrong authorization base", oauth.GrantRequest{ClientID: "90000002", GrantType: GrantTypeJWT, AuthorizationBase: "guess"}, oauth.ErrInvalidGrant},
		{"no authorization base", oauth.GrantRequest{ClientID: "90000002", GrantType: GrantTypeJWT}, oauth.ErrInvalidGrant},
		{"another client", oauth.GrantRequest{ClientID: "90000003", GrantType: GrantTypeJWT, AuthorizationBase: "the-secret"}, oauth.ErrInvalidGrant},
		{"client credentials for data", oauth.GrantRequest{ClientID: "90000002", GrantType: GrantTypeClient, Scope: []string{"bgz"}}, oauth.ErrInvalidScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.ResolveGrant(ctx, tc.req); !errors.Is(err, tc.err) {
				t.Errorf("err %v, want %v", err, tc.err)
			}
		})
	}
	clk.t = g.Expires
	if _, err := s.ResolveGrant(ctx, oauth.GrantRequest{ClientID: "90000002", GrantType: GrantTypeJWT, AuthorizationBase: "the-secret"}); !errors.Is(err, oauth.ErrInvalidGrant) {
		t.Errorf("expired referral: %v, want invalid_grant", err)
	}
}

func TestAuthorizeData(t *testing.T) {
	ctx := context.Background()
	s, g, clk := grantFixture(t)
	tok := &oauth.AccessToken{Subject: "90000002", Scope: []string{"bgz"}, Claims: map[string]any{ClaimGrant: g.ID}}
	search := func(q string) *rest.Request {
		typ, op, params, err := bgz.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		inter := rest.InteractionSearchType
		if op != "" {
			inter = rest.InteractionOperation
		}
		return &rest.Request{Tenant: "90000001", Interaction: inter, Type: typ, Operation: op, Params: params}
	}
	problem := bgz.Queries()[5]
	lastn := bgz.Queries()[18]
	withPaging := search(problem.Query("999911259"))
	withPaging.Params.Set("_count", "10")
	withPaging.Params.Set("_offset", "10")

	for _, tc := range []struct {
		name string
		tok  *oauth.AccessToken
		req  *rest.Request
		ok   bool
	}{
		{"a query of the referral", tok, search(problem.Query("999911259")), true},
		{"a $lastn query of the referral", tok, search(lastn.Query("999911259")), true},
		{"with paging", tok, withPaging, true},
		{"the workflow Task", tok, &rest.Request{Tenant: "90000001", Interaction: rest.InteractionRead, Type: "Task", ID: g.WorkflowTask}, true},
		{"another patient", tok, search(problem.Query("999909587")), false},
		{"a query not in the Task", tok, search("Observation?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911259"), false},
		{"an extra parameter", tok, search(problem.Query("999911259") + "&_include=Condition:asserter"), false},
		{"another Task", tok, &rest.Request{Tenant: "90000001", Interaction: rest.InteractionRead, Type: "Task", ID: "other"}, false},
		{"a direct read", tok, &rest.Request{Tenant: "90000001", Interaction: rest.InteractionRead, Type: "Patient", ID: "p"}, false},
		{"a delete", tok, &rest.Request{Tenant: "90000001", Interaction: rest.InteractionDelete, Type: "Task", ID: g.WorkflowTask}, false},
		{"another tenant", tok, &rest.Request{Tenant: "90000009", Interaction: rest.InteractionRead, Type: "Task", ID: g.WorkflowTask}, false},
		{"a token of another organisation", &oauth.AccessToken{Subject: "90000003", Scope: []string{"bgz"}, Claims: tok.Claims}, search(problem.Query("999911259")), false},
		{"a token without the scope", &oauth.AccessToken{Subject: "90000002", Claims: tok.Claims}, search(problem.Query("999911259")), false},
		{"a token without a referral", &oauth.AccessToken{Subject: "90000002", Scope: []string{"bgz"}}, search(problem.Query("999911259")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AuthorizeData(ctx, tc.tok, tc.req)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				if fe := fhir.AsError(err); fe == nil || fe.Status != http.StatusForbidden {
					t.Fatalf("err %v, want a 403 OperationOutcome", err)
				}
			}
		})
	}

	// Expiry and withdrawal end access for a token that is still valid.
	req := search(problem.Query("999911259"))
	clk.t = g.Expires
	if err := s.AuthorizeData(ctx, tok, req); err == nil {
		t.Error("access after the referral expired")
	}
	clk.t = g.Expires.Add(-time.Minute)
	if err := s.cfg.DB.setGrantStatus(ctx, g.ID, StatusCancelled, "", clk.t); err != nil {
		t.Fatal(err)
	}
	if err := s.AuthorizeData(ctx, tok, req); err == nil {
		t.Error("access after the referral was cancelled")
	}
}

func TestStatusUpdateOnlyByStatus(t *testing.T) {
	ctx := context.Background()
	s, g, _ := grantFixture(t)
	tok := &oauth.AccessToken{Subject: "90000002", Scope: []string{"bgz"}, Claims: map[string]any{ClaimGrant: g.ID}}
	cur, err := s.cfg.Store.Read(ctx, g.Tenant, "Task", g.WorkflowTask)
	if err != nil {
		t.Fatal(err)
	}
	done, _ := SetStatus(cur.Body, StatusCompleted)
	upd := &rest.Request{Tenant: g.Tenant, Interaction: rest.InteractionUpdate, Type: "Task", ID: g.WorkflowTask, Body: done, Params: url.Values{}}
	if err := s.AuthorizeData(ctx, tok, upd); err != nil {
		t.Fatalf("status update refused: %v", err)
	}
	s.AfterData(ctx, tok, upd, http.StatusOK)
	if cur, _ := s.cfg.DB.grant(ctx, g.Tenant, g.ID); cur.Status != StatusCompleted {
		t.Errorf("grant status %s, want completed", cur.Status)
	}
	cancelled, _ := SetStatus(cur.Body, StatusCancelled)
	if err := s.AuthorizeData(ctx, tok, &rest.Request{Tenant: g.Tenant, Interaction: rest.InteractionUpdate, Type: "Task", ID: g.WorkflowTask, Body: cancelled}); err == nil {
		t.Error("a receiver may not cancel the sender's workflow Task")
	}
}
