package localization

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLocalizeHits: every holder of a $localize answer comes with a hit
// the holder can verify against the index's published keys, bound to the
// requester, the holder and the patient (by the requester's salt).
func TestLocalizeHits(t *testing.T) {
	env := newEnv(t, nil)
	mustRegister(t, env.client(uraB, "Z3", PresumedConsent), bsn1, med)
	res, err := env.client(uraA, "Z3", PresumedConsent).Localize(context.Background(), LocalizeRequest{BSN: bsn1, CareContext: med})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Holders) != 1 || res.Holders[0].Hit == "" || len(res.Salt) == 0 {
		t.Fatalf("want one holder with a hit and a salt, got %+v", res)
	}
	// The holder verifies with its own mutual TLS client.
	v := NewHitVerifier(env.url, env.httpClient(uraB), nil)
	hit, err := v.Verify(context.Background(), res.Holders[0].Hit)
	if err != nil {
		t.Fatal(err)
	}
	if hit.Requester != uraA || hit.Holder != uraB || hit.Scope != ScopeNational || !hit.Names(res.Salt, bsn1) {
		t.Fatalf("hit %+v", hit)
	}
	if hit.Names(res.Salt, bsn2) || hit.Names(NewSalt(), bsn1) {
		t.Fatal("the hit names another patient, or the same one under another salt")
	}
	if !hit.Expires.After(time.Now()) || hit.Expires.Sub(hit.Issued) != DefaultHitLifetime {
		t.Fatalf("hit valid %s to %s", hit.Issued, hit.Expires)
	}
}

func TestVerifyHitRefuses(t *testing.T) {
	clock := time.Now()
	env := newEnv(t, func(c *ServerConfig) {
		c.Regional = true
		c.Now = func() time.Time { return clock }
	})
	other := newEnv(t, nil) // another index, with another key
	mustRegister(t, env.client(uraB, "Z3", PresumedConsent), bsn1, med)
	mustRegister(t, other.client(uraB, "Z3", PresumedConsent), bsn1, med)
	hitOf := func(e *testEnv) string {
		res, err := e.client(uraA, "Z3", PresumedConsent).Localize(context.Background(), LocalizeRequest{BSN: bsn1, CareContext: med})
		if err != nil || len(res.Holders) != 1 {
			t.Fatalf("localize: %v %+v", err, res)
		}
		return res.Holders[0].Hit
	}
	good, foreign := hitOf(env), hitOf(other)
	v := NewHitVerifier(env.url, env.httpClient(uraB), nil)
	if h, err := v.Verify(context.Background(), good); err != nil || h.Scope != ScopeRegional {
		t.Fatalf("regional index's hit: %+v %v", h, err)
	}
	parts := strings.Split(good, ".")
	tests := []struct {
		name string
		raw  string
		now  time.Time
	}{
		{"signed by another index", foreign, clock},
		{"tampered claims", parts[0] + "." + parts[0] + "." + parts[2], clock},
		{"not a JWS", "hit", clock},
		{"expired", good, clock.Add(DefaultHitLifetime + time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v.now = func() time.Time { return tt.now }
			if _, err := v.Verify(context.Background(), tt.raw); !errors.Is(err, ErrInvalidHit) {
				t.Fatalf("got %v, want ErrInvalidHit", err)
			}
		})
	}
}

func TestLocalizeRefusesMalformedBinding(t *testing.T) {
	_, err := parseLocalize(&parameters{ResourceType: "Parameters", Parameter: []parameter{{Name: "patientBinding", ValueString: ptr("short")}}})
	if err == nil || !strings.Contains(err.Error(), "patientBinding") {
		t.Fatalf("got %v", err)
	}
}

func ptr(s string) *string { return &s }
