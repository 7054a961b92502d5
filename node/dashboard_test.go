package node

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
)

// TestDashboard renders the node's dashboard for an operator and for a
// participant, after refusals that name a patient: the page has its
// sections and counts the refusals, and no patient identifier is on it.
func TestDashboard(t *testing.T) {
	a := newAdminEnv(t)
	const bsn = "999911120"
	ctx := context.Background()
	for _, rec := range []audit.Record{
		{Action: audit.ActionRead, Interaction: "search-type", Outcome: http.StatusForbidden, OutcomeText: "no consent for patient " + bsn,
			Tenant: edgeURA1, ActorURA: edgePartnerURA, Patient: bsn, Query: "Patient?identifier=" + bsn},
		{Action: audit.ActionRead, Interaction: "search-type", Outcome: http.StatusForbidden, OutcomeText: "no consent",
			Tenant: edgeURA1, ActorURA: edgePartnerURA, Patient: bsn},
		{Action: audit.ActionExecute, Interaction: "token", Outcome: http.StatusBadRequest, OutcomeText: "invalid_grant",
			Tenant: edgeURA2, ActorURA: edgeURA2},
	} {
		if err := a.n.auditLog.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	get := func(t *testing.T, token string) (int, string) {
		t.Helper()
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		resp, body := do(t, a.internal, http.MethodGet, a.n.InternalURL()+"/internal/dashboard", h, nil)
		return resp.StatusCode, string(body)
	}
	for _, c := range []struct {
		name          string
		token         string
		status        int
		want, notWant []string
	}{
		{name: "operator", token: adminToken, status: http.StatusOK,
			want: []string{`id="readiness"`, `id="participants"`, `id="agreements"`, `id="certificates"`, `id="depth"`, `id="audit"`, `id="refusals"`,
				"Operator alice", edgeURA1, edgeURA2, "Partner B", "tls (the node&#39;s)",
				"<td>403</td><td>search-type</td><td>" + edgePartnerURA + "</td><td>2</td>",
				"<td>400</td><td>token</td><td>" + edgeURA2 + "</td><td>1</td>"}},
		{name: "participant sees its own", token: a.tokens[edgeURA2], status: http.StatusOK,
			want:    []string{"Participant " + edgeURA2, `id="refusals"`, "<td>400</td><td>token</td><td>" + edgeURA2 + "</td><td>1</td>"},
			notWant: []string{`id="depth"`, `id="audit"`, "<td>" + edgeURA1 + "</td>", "search-type"}},
		{name: "no token", status: http.StatusUnauthorized},
		{name: "unknown token", token: "not-a-token-of-anyone-at-all-0123456789", status: http.StatusUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := get(t, c.token)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			for _, w := range c.want {
				if !strings.Contains(body, w) {
					t.Errorf("the page has no %q", w)
				}
			}
			for _, w := range append(c.notWant, bsn) {
				if strings.Contains(body, w) {
					t.Errorf("the page shows %q", w)
				}
			}
			if t.Failed() {
				t.Log(body)
			}
		})
	}
}
