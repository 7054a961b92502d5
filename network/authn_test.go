package network

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/identity"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// TestUserAuthenticationOnEveryPattern: with user authentication agreed at
// plateau 3 and 4 between the GP practice and the hospital, the Notified
// Pull (the hospital's specialist accepts the referral) and the Direct Pull
// carry the user as the plateau asks — organisation-signed at 3, an
// identity signed by the identity issuer at 4 — and the GP's node records
// what was given; a user short of the plateau is refused with the reason.
func TestUserAuthenticationOnEveryPattern(t *testing.T) {
	for _, tc := range []struct {
		plateau int
		given   string // what the GP's audit record says was given
	}{
		{3, "given: user data signed by the requesting organisation"},
		{4, "given: user identity signed by the identity issuer https://"},
	} {
		t.Run("plateau "+string(rune('0'+tc.plateau)), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 1, Plateaus: plateau.Plateaus{plateau.Authentication: tc.plateau}})
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			nw.Start(ctx)
			t.Cleanup(func() { cancel(); _ = nw.Wait() })

			// Notified Pull: the referral waits for the specialist, whose
			// identity the pull then carries.
			s, err := nw.Exchange(ctx)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if s.Total == 0 {
				t.Fatal("nothing pulled")
			}
			recs, err := nw.GPNode.Audit().List(ctx, audit.Filter{ActorURA: Hospital.URA})
			if err != nil {
				t.Fatal(err)
			}
			var tokens []audit.Record
			for _, r := range recs {
				if r.Interaction == "token" && r.Outcome == http.StatusOK && r.ActorUser == DemoUser.UZI {
					tokens = append(tokens, r)
				}
			}
			if len(tokens) == 0 {
				t.Fatal("the GP's audit log has no token issued to the hospital's specialist")
			}
			if got := strings.Join(tokens[0].Checks, "; "); !strings.Contains(got, tc.given) ||
				!strings.Contains(got, "authentication plateau "+string(rune('0'+tc.plateau))) {
				t.Errorf("token record checks %q, want plateau %d and %q", got, tc.plateau, tc.given)
			}

			// Direct Pull: the same user, as the plateau asks.
			var res consult.Result
			if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/consult", consult.Request{
				PatientBSN: nw.Patients[0].BSN, HolderURA: GP.URA,
				User: &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA},
			}, &res); code != http.StatusOK || res.Resources == 0 {
				t.Fatalf("consult: status %d, %d resources", code, res.Resources)
			}

			// A user without a strong login is short of plateau 2 already:
			// refused before anything leaves, naming function and plateau.
			code, detail := consultRaw(t, nw, &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role})
			want := "authentication, plateau " + string(rune('0'+tc.plateau))
			if code != http.StatusUnprocessableEntity || !strings.Contains(detail, want) {
				t.Errorf("consult without strong authentication: %d %q, want 422 naming %q", code, detail, want)
			}
			if tc.plateau < 4 {
				return
			}
			// A signed identity from an issuer the GP does not trust, passed
			// by the hospital's system: refused by the GP, and audited.
			key, err := pki.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "rogue.pem"))
			if err != nil {
				t.Fatal(err)
			}
			tokenEndpoint := nw.GPNode.PublicURL() + oauth.TokenPath
			rogue, err := (&identity.Signer{Issuer: "https://rogue.example", Key: key}).IssueIdentity(ctx, plateau.IdentityRequest{
				UZI: DemoUser.UZI, Role: DemoUser.Role, URA: Hospital.URA, LoA: DemoUser.LoA, Audience: tokenEndpoint})
			if err != nil {
				t.Fatal(err)
			}
			code, detail = consultRaw(t, nw, &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA, IdentityToken: rogue})
			if code != http.StatusBadGateway || !strings.Contains(detail, "not from a trusted identity issuer (authentication, plateau 4)") {
				t.Errorf("untrusted issuer: %d %q", code, detail)
			}
			recs, _ = nw.GPNode.Audit().List(ctx, audit.Filter{ActorURA: Hospital.URA})
			audited := false
			for _, r := range recs {
				audited = audited || (r.Interaction == "token" && r.Outcome == http.StatusBadRequest && strings.Contains(r.OutcomeText, "trusted identity issuer"))
			}
			if !audited {
				t.Error("the refused identity is not in the GP's audit log")
			}
			// An identity of the hospital's system for another organisation
			// does not leave the hospital's node.
			other, err := (&identity.Signer{Issuer: "https://rogue.example", Key: key}).IssueIdentity(ctx, plateau.IdentityRequest{
				UZI: DemoUser.UZI, Role: DemoUser.Role, URA: GP.URA, LoA: DemoUser.LoA, Audience: tokenEndpoint})
			if err != nil {
				t.Fatal(err)
			}
			code, detail = consultRaw(t, nw, &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA, IdentityToken: other})
			if code != http.StatusUnprocessableEntity || !strings.Contains(detail, "for organisation") {
				t.Errorf("identity for another organisation: %d %q", code, detail)
			}
		})
	}
}

// consultRaw asks the hospital's node to consult the GP practice for the
// first patient as user, and returns the status and problem detail.
func consultRaw(t *testing.T, nw *Network, user *plateau.Caller) (int, string) {
	t.Helper()
	b, _ := json.Marshal(consult.Request{PatientBSN: nw.Patients[0].BSN, HolderURA: GP.URA, User: user})
	req, _ := http.NewRequest(http.MethodPost, nw.HospNode.InternalURL()+"/internal/consult", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+nw.Token(Hospital.URA))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Detail string }
	_ = json.NewDecoder(resp.Body).Decode(&p)
	return resp.StatusCode, p.Detail
}
