package localization

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/plateau"
)

// TestHolderCheck: the holding side of localization, plateau by plateau,
// at token issuance and at data access.
func TestHolderCheck(t *testing.T) {
	national := newEnv(t, nil)
	regional := newEnv(t, func(c *ServerConfig) { c.Regional = true })
	localized := func(e *testEnv) (string, string) {
		mustRegister(t, e.client(uraB, "Z3", PresumedConsent), bsn1, med)
		res, err := e.client(uraA, "Z3", PresumedConsent).Localize(context.Background(), LocalizeRequest{BSN: bsn1, CareContext: med})
		if err != nil || len(res.Holders) != 1 {
			t.Fatalf("localize: %v %+v", err, res)
		}
		return res.Holders[0].Hit, base64.RawURLEncoding.EncodeToString(res.Salt)
	}
	hitN, saltN := localized(national)
	hitR, saltR := localized(regional)
	tenant := func(u string) bool { return u == uraB }
	checkN := &HolderCheck{Hits: NewHitVerifier(national.url, national.httpClient(uraB), nil), IsTenant: tenant}
	checkR := &HolderCheck{Hits: NewHitVerifier(regional.url, regional.httpClient(uraB), nil), IsTenant: tenant}
	assertion := func(hit, salt string) map[string]any {
		if hit == "" {
			return map[string]any{}
		}
		return map[string]any{AssertionHit: hit, AssertionSalt: salt}
	}
	tests := []struct {
		name      string
		check     *HolderCheck
		plateau   int
		requester string
		assertion map[string]any
		patient   string
		want      string // "" accepted; else part of the reason
	}{
		{"1: no hit", checkN, 1, uraA, assertion("", ""), bsn1, ""},
		{"1: a bad hit is not looked at", checkN, 1, uraA, assertion("x.y.z", saltN), bsn1, ""},
		{"2: hit for holder and patient", checkR, 2, uraA, assertion(hitR, saltR), bsn1, ""},
		{"2: no hit", checkR, 2, uraA, assertion("", ""), bsn1, "carries no localization_hit"},
		{"2: hit issued to another requester", checkR, 2, uraIndex, assertion(hitR, saltR), bsn1, "issued to organisation " + uraA},
		{"2: hit for another patient", checkR, 2, uraA, assertion(hitR, saltR), bsn2, "another patient"},
		{"3: direct query without a hit", checkN, 3, uraA, assertion("", ""), bsn1, ""},
		{"3: a hit of another index", checkR, 3, uraA, assertion(hitN, saltN), bsn1, "not valid"},
		{"4: national hit", checkN, 4, uraA, assertion(hitN, saltN), bsn1, ""},
		{"4: regional hit", checkR, 4, uraA, assertion(hitR, saltR), bsn1, "requires the national localization service"},
		{"4: no hit", checkN, 4, uraA, assertion("", ""), bsn1, "carries no localization_hit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			tc := &plateau.TokenContext{ClientURA: tt.requester, DirectPull: true, Assertion: tt.assertion}
			err := tt.check.CheckToken(ctx, tt.plateau, tc)
			if err == nil {
				err = tt.check.CheckAccess(ctx, tt.plateau, &plateau.AccessContext{PartnerURA: tt.requester, Tenant: uraB,
					DirectPull: true, Patient: tt.patient, Token: tc.Claims})
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			r := plateau.AsRefusal(err)
			if r == nil || r.Function != plateau.Localization || r.Required != tt.plateau || !strings.Contains(r.Reason, tt.want) {
				t.Fatalf("got %v, want a localization plateau %d refusal saying %q", err, tt.plateau, tt.want)
			}
		})
	}
	// A Notified Pull is preceded by a notification, not a localization.
	if err := checkN.CheckToken(context.Background(), 4, &plateau.TokenContext{ClientURA: uraA}); err != nil {
		t.Fatalf("Notified Pull token refused: %v", err)
	}
}
