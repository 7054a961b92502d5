package network

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// userClaims is a user named in the grant assertion, signed by the
// requesting organisation (plateau 2–3 user data).
func userClaims(role string) map[string]any {
	return map[string]any{"user_id": "900012345", "user_id_system": nl.SystemUZIPers,
		"user_role": role, "user_role_system": nl.SystemUZIRole, "user_loa": "http://eidas.europa.eu/LoA/high"}
}

func TestPlateauEnforcedForPartners(t *testing.T) {
	for _, tc := range []struct {
		name       string
		agreements []plateau.PartnerConfig
		user       map[string]any
		wantToken  bool
		reason     string // part of error_description
	}{
		{"not a partner", []plateau.PartnerConfig{}, nil, false, "not on this node's list of partners"},
		{"plateau 1 partner without user data", nil, nil, true, ""},
		{"plateau 3 partner without user data", agree(3), nil, false, "plateau 3"},
		{"plateau 3 partner with an organisation-signed user", agree(3), userClaims("01.016"), true, ""},
		{"plateau 3 partner with a role outside the UZI role codes", agree(3), userClaims("doctor"), false, "role"},
		{"plateau 4 partner with an organisation-signed user", agree(4), userClaims("01.016"), false, "identity issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := startNetwork(t, 1, tc.agreements...)
			p := newPeer(t, nw)
			_, note := referToPeer(t, nw, p, 0)
			md, err := p.oauth.Metadata(context.Background(), nw.GPNode.PublicURL())
			if err != nil {
				t.Fatal(err)
			}
			tok, err := p.oauth.Token(context.Background(), md.TokenEndpoint, oauth.TokenRequest{GrantType: notifiedpull.GrantTypeJWT,
				Scope: []string{"bgz"}, AuthorizationBase: note.AuthorizationBase, AssertionClaims: tc.user})
			if tc.wantToken {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				// The token opens exactly the referral's queries.
				q := bgz.Queries()[5].Query(nw.Patients[0].BSN)
				if code, body := p.get(t, p.http, tok.AccessToken, nw.GPNode.PublicURL()+"/fhir/stu3/"+GP.URA+"/"+q); code != http.StatusOK {
					t.Fatalf("query: %d %s", code, body)
				}
				return
			}
			var er *oauth.ErrorResponse
			if !errors.As(err, &er) || er.Code != "invalid_grant" {
				t.Fatalf("err %v, want invalid_grant", err)
			}
			if !strings.Contains(er.Description, tc.reason) {
				t.Errorf("reason %q does not say %q", er.Description, tc.reason)
			}
			// The refusal is audited.
			recs, _ := nw.GPNode.Audit().List(context.Background(), audit.Filter{ActorURA: peerURA})
			refused := false
			for _, r := range recs {
				refused = refused || (r.Interaction == "token" && r.Outcome >= 400)
			}
			if !refused {
				t.Error("the refused token request is not in the audit log")
			}
		})
	}
}

// agree is the test peer's agreement with every function at p. The peer
// is a test party, not a validated GtK: the agreement waives the proof of
// validation that network plateau 3–4 requires by default
// (requirevalidation), which its own tests cover.
func agree(p int) []plateau.PartnerConfig {
	waive := false
	return []plateau.PartnerConfig{{URA: peerURA, Name: "Testpraktijk", Plateaus: plateau.Uniform(p), RequireValidation: &waive}}
}

// The BgZ role tables end to end: a partner agreed at authorization plateau
// 2 or 3 pulls a referral's block with a user whose UZI role the table
// allows (200) or does not allow (403 naming the function and plateau).
func TestBgZRoleTablesBetweenNodes(t *testing.T) {
	blocks := map[string]bgz.Block{}
	for _, b := range bgz.Queries() {
		blocks[b.Name] = b
	}
	for _, tc := range []struct {
		plateau int
		role    string
		block   string
		want    int
	}{
		{2, "01.015", "Problem", http.StatusOK},
		{2, "01.048", "Problem", http.StatusForbidden}, // verzekeringsarts: no BgZ
		{3, "17.075", "MedicationUse", http.StatusOK},
		{3, "04.000", "MedicationUse", http.StatusForbidden}, // fysiotherapeut
	} {
		t.Run(fmt.Sprintf("plateau %d %s %s", tc.plateau, tc.role, tc.block), func(t *testing.T) {
			nw := startNetwork(t, 1, agree(tc.plateau)...)
			p := newPeer(t, nw)
			_, note := referToPeer(t, nw, p, 0)
			md, err := p.oauth.Metadata(context.Background(), nw.GPNode.PublicURL())
			if err != nil {
				t.Fatal(err)
			}
			tok, err := p.oauth.Token(context.Background(), md.TokenEndpoint, oauth.TokenRequest{GrantType: notifiedpull.GrantTypeJWT,
				Scope: []string{"bgz"}, AuthorizationBase: note.AuthorizationBase, AssertionClaims: userClaims(tc.role)})
			if err != nil {
				t.Fatalf("token refused: %v", err)
			}
			q := blocks[tc.block].Query(nw.Patients[0].BSN)
			code, body := p.get(t, p.http, tok.AccessToken, nw.GPNode.PublicURL()+"/fhir/stu3/"+GP.URA+"/"+q)
			if code != tc.want {
				t.Fatalf("%s: %d %s", tc.block, code, body)
			}
			if code == http.StatusForbidden {
				want := fmt.Sprintf("authorization: plateau %d required", tc.plateau)
				if !strings.Contains(string(body), "forbidden") || !strings.Contains(string(body), "role "+tc.role) || !strings.Contains(string(body), want) {
					t.Errorf("OperationOutcome does not name the role, function and plateau (%q): %s", want, body)
				}
			}
		})
	}
}
