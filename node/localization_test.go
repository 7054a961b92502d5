package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/plateau"
)

// fakeHit is a hit as the requester reads it (PeekHit); the requester
// does not verify its own index's signature, the holder does.
func fakeHit(holder, scope string, exp time.Time) string {
	payload, _ := json.Marshal(map[string]any{"iss": localization.HitIssuer, "sub": "00000001", "aud": holder,
		"iat": time.Now().Unix(), "exp": exp.Unix(), "twiin_pbd": "b", "twiin_scope": scope})
	return "e30." + base64.RawURLEncoding.EncodeToString(payload) + ".c2ln"
}

// TestAdmitConsult: the requesting side of localization, plateau by plateau.
func TestAdmitConsult(t *testing.T) {
	const (
		tenant = "00000001"
		bsn    = "999911120"
	)
	holders := map[int]string{1: "00000011", 2: "00000012", 3: "00000013", 4: "00000014"}
	cfg := plateau.Config{Agreements: []plateau.PartnerConfig{
		{URA: holders[1], Plateaus: plateau.Plateaus{plateau.Localization: 1}},
		{URA: holders[2], Plateaus: plateau.Plateaus{plateau.Localization: 2}},
		{URA: holders[3], Plateaus: plateau.Plateaus{plateau.Localization: 3}},
		{URA: holders[4], Plateaus: plateau.Plateaus{plateau.Localization: 4}},
		{URA: "00000023", Plateaus: plateau.Plateaus{plateau.Localization: 3},
			Endpoints: plateau.Endpoints{BgZ: "https://own.example/fhir"}},
	}}
	e, err := plateau.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(time.Minute)
	tests := []struct {
		name   string
		holder string
		named  map[string]string // holder → scope the last localization named it with
		want   string            // "" admitted; else part of the reason
	}{
		{"1: bilateral partner without localization", holders[1], nil, ""},
		{"1: not a partner", "00000099", nil, "not a partner"},
		{"2: named by the localization", holders[2], map[string]string{holders[2]: localization.ScopeRegional}, ""},
		{"2: not named (no fan-out)", holders[2], map[string]string{holders[1]: localization.ScopeRegional}, "localize the patient first"},
		{"3: plateau-3 party queried directly", holders[3], nil, ""},
		{"3: direct query to a party by configured endpoints", "00000023", nil, "national addressbook"},
		{"4: named by the national localization", holders[4], map[string]string{holders[4]: localization.ScopeNational}, ""},
		{"4: named by a regional one", holders[4], map[string]string{holders[4]: localization.ScopeRegional}, "requires the national localization service"},
		{"4: not localized", holders[4], nil, "localize the patient first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{plateaus: e, hits: newHitMemory(nil)}
			res := localization.LocalizeResult{Salt: []byte("0123456789abcdef")}
			for h, scope := range tt.named {
				res.Holders = append(res.Holders, localization.Holder{URA: h, Hit: fakeHit(h, scope, soon)})
			}
			n.hits.remember(tenant, bsn, res)
			claims, err := n.admitConsult(context.Background(), tenant, consult.Request{PatientBSN: bsn, HolderURA: tt.holder})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if _, named := tt.named[tt.holder]; named && claims[localization.AssertionHit] == nil {
					t.Fatal("the hit is not put in the grant assertion")
				}
				return
			}
			r := plateau.AsRefusal(err)
			if r == nil || r.Function != plateau.Localization || !strings.Contains(r.Reason, tt.want) {
				t.Fatalf("got %v, want a localization refusal saying %q", err, tt.want)
			}
		})
	}
}

// TestHitMemoryForgetsExpiredHits: a hit opens a consult for its lifetime only.
func TestHitMemoryForgetsExpiredHits(t *testing.T) {
	now := time.Now()
	m := newHitMemory(func() time.Time { return now })
	m.remember("00000001", "999911120", localization.LocalizeResult{Salt: []byte("s"),
		Holders: []localization.Holder{{URA: "00000011", Hit: fakeHit("00000011", localization.ScopeNational, now.Add(time.Minute))}}})
	if _, _, ok := m.lookup("00000001", "999911120", "00000011"); !ok {
		t.Fatal("fresh hit not found")
	}
	if _, _, ok := m.lookup("00000002", "999911120", "00000011"); ok {
		t.Fatal("another participant's localization opens a consult")
	}
	now = now.Add(2 * time.Minute)
	if _, _, ok := m.lookup("00000001", "999911120", "00000011"); ok {
		t.Fatal("expired hit still opens a consult")
	}
}
