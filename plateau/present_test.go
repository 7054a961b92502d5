package plateau

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/policy"
)

// fakeIssuer stands in for the identity issuer at the module boundary.
type fakeIssuer struct{ got *IdentityRequest }

func (f *fakeIssuer) IssueIdentity(_ context.Context, req IdentityRequest) (string, error) {
	f.got = &req
	return "signed.identity.token", nil
}

// ownToken is an (unsigned: only its claims are looked at) identity token.
func ownToken(ura string, exp time.Time) string {
	b, _ := json.Marshal(map[string]any{"dezi_nummer": "123456789", "rol_code": "01.015", "abonnee_nummer": ura, "exp": exp.Unix()})
	return "e30." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

// TestPresent: what the sending node puts in its grant assertion for each
// agreed authentication plateau, and that the receiving enforcer accepts it
// at that plateau; a caller short of the plateau is refused before sending,
// naming function and plateau.
func TestPresent(t *testing.T) {
	pol, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Agreements: []PartnerConfig{
		{URA: uraP1, Plateaus: Uniform(1)}, {URA: uraP2, Plateaus: Uniform(2)}, {URA: uraP3, Plateaus: Uniform(3)},
		{URA: uraP4, Plateaus: Uniform(4)}, {URA: uraCollab, Plateaus: Plateaus{Authentication: 3}, SystemIdentity: true},
	}, IdentityIssuers: []string{dezi}}, policy.Set{"test": pol})
	if err != nil {
		t.Fatal(err)
	}
	strong := &Caller{ID: "123456789", Role: "01.015", LoA: "high"}
	now := time.Now()
	for _, tc := range []struct {
		name      string
		partner   string
		caller    *Caller
		noIssuer  bool
		refused   string // part of the refusal; empty: presented
		identity  bool   // a signed identity travels
		delivered int    // what the receiving enforcer finds (0: not checked)
	}{
		{name: "plateau 1, no user", partner: uraP1, caller: nil, delivered: 1},
		{name: "plateau 1, a user is passed on", partner: uraP1, caller: &Caller{ID: "1", Role: "x"}, delivered: 1},
		{name: "plateau 2, strong login", partner: uraP2, caller: strong, delivered: 2},
		{name: "plateau 2, mfa", partner: uraP2, caller: &Caller{ID: "06000002", IDSystem: nl.SystemAGB, Role: "01.015", AMR: []string{"mfa"}}, delivered: 2},
		{name: "plateau 2, no strong login", partner: uraP2, caller: &Caller{ID: "123456789", Role: "01.015"}, refused: "strong two-factor"},
		{name: "plateau 2, no user", partner: uraP2, caller: nil, refused: "names no user"},
		{name: "plateau 3", partner: uraP3, caller: strong, delivered: 3},
		{name: "plateau 3, AGB code", partner: uraP3, caller: &Caller{ID: "06000002", IDSystem: nl.SystemAGB, Role: "01.015", LoA: "high"}, refused: "UZI number"},
		{name: "plateau 3, role outside the UZI role codes", partner: uraP3, caller: &Caller{ID: "123456789", Role: "doctor", LoA: "high"}, refused: "not a role code the UZI register issues"},
		{name: "plateau 3, system not allowed", partner: uraP3, caller: &Caller{ID: "900000022", System: true}, refused: "system identity"},
		{name: "plateau 3, system allowed", partner: uraCollab, caller: &Caller{ID: "900000022", System: true}, delivered: 3},
		{name: "plateau 4, from the node's issuer", partner: uraP4, caller: strong, identity: true},
		{name: "plateau 4, no issuer", partner: uraP4, caller: strong, noIssuer: true, refused: "signed user identity"},
		{name: "plateau 4, substantial login", partner: uraP4, caller: &Caller{ID: "123456789", Role: "01.015", LoA: "substantial"}, refused: "eIDAS high"},
		{name: "plateau 4, the system's own token", partner: uraP4, noIssuer: true, identity: true,
			caller: &Caller{ID: "123456789", Role: "01.015", LoA: "high", IdentityToken: ownToken(uraP4, now.Add(time.Minute))}},
		{name: "plateau 4, own token expired", partner: uraP4, noIssuer: true,
			caller: &Caller{ID: "123456789", Role: "01.015", LoA: "high", IdentityToken: ownToken(uraP4, now.Add(-time.Minute))}, refused: "expired"},
		{name: "plateau 4, own token for another organisation", partner: uraP4, noIssuer: true,
			caller: &Caller{ID: "123456789", Role: "01.015", LoA: "high", IdentityToken: ownToken(uraOther, now.Add(time.Minute))}, refused: "for organisation"},
		{name: "plateau 4, system", partner: uraP4, caller: &Caller{ID: "900000022", System: true}, refused: "system identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss := &fakeIssuer{}
			var ii IdentityIssuer = iss
			if tc.noIssuer {
				ii = nil
			}
			// The agreements are symmetric: the partner sends as itself.
			pres, err := e.Present(context.Background(), ii, tc.partner, tc.partner, "https://partner.example/oauth2/token", tc.caller)
			if tc.refused != "" {
				r := AsRefusal(err)
				if !errors.Is(err, ErrCaller) || r == nil || r.Function != Authentication || !strings.Contains(r.Description(), tc.refused) {
					t.Fatalf("err %v, want a caller refusal saying %q", err, tc.refused)
				}
				if !strings.Contains(r.Description(), "authentication, plateau") {
					t.Errorf("refusal %q does not name function and plateau", r.Description())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (pres.UserIdentity != "") != tc.identity {
				t.Fatalf("user identity %q, want one: %v", pres.UserIdentity, tc.identity)
			}
			if tc.identity && !tc.noIssuer {
				if g := iss.got; g == nil || g.URA != tc.partner || g.UZI != "123456789" || g.Audience != "https://partner.example/oauth2/token" || g.LoA != LoAHigh {
					t.Errorf("issuer asked %+v", iss.got)
				}
			}
			if tc.delivered == 0 {
				return
			}
			assertion := map[string]any{"iss": tc.partner, "sub": tc.partner}
			for k, v := range pres.Claims {
				assertion[k] = v
			}
			d, err := e.Authenticate(context.Background(), TokenContext{ClientURA: tc.partner, GrantType: oauth.GrantTypeJWTBearer, Assertion: assertion})
			if err != nil {
				t.Fatalf("the receiving side refuses what was presented: %v", err)
			}
			if d.Delivered != tc.delivered {
				t.Errorf("delivered %d, want %d", d.Delivered, tc.delivered)
			}
		})
	}
}

// TestSystemIdentityNotAtPlateau4: a system identity cannot be agreed with
// user authentication at plateau 4.
func TestSystemIdentityNotAtPlateau4(t *testing.T) {
	c := Config{Agreements: []PartnerConfig{{URA: uraP4, Plateaus: Uniform(4), SystemIdentity: true}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "systemidentity") {
		t.Fatalf("err %v", err)
	}
}
