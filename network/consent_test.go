package network

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// Two more organisations on the hospital's node, with agreements of their own.
var (
	pharmacy = Participant{URA: "90000003", Name: "Apotheek De Brug", SystemUZI: "900000033", AGB: "02000003", FacilityType: "A1"}
	clinic   = Participant{URA: "90000004", Name: "Kliniek Noord", SystemUZI: "900000044", AGB: "06000004", FacilityType: "Z3"}
)

// TestConsentSourcePerPartnerPlateau: the GP's node answers three partners
// at three consent plateaus, each from its own source — the pharmacy
// (plateau 1) from the practice's own registry, the clinic (plateau 2) from
// the regional portal, the hospital (plateau 4) from Mitz. Each source
// permits a different patient, so a request decided by the wrong source
// gets the wrong answer; the audit record names the source that decided.
func TestConsentSourcePerPartnerPlateau(t *testing.T) {
	atConsent := func(p Participant, consentPlateau int) plateau.PartnerConfig {
		agreed := plateau.Uniform(1)
		agreed[plateau.Consent] = consentPlateau
		return plateau.PartnerConfig{URA: p.URA, Name: p.Name, Plateaus: agreed, Applications: []string{"bgz"}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 3, Requesters: []Participant{pharmacy, clinic},
		Agreements: []plateau.PartnerConfig{atConsent(pharmacy, 1), atConsent(clinic, 2)}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })
	bsn := func(i int) string { return nw.Patients[i].BSN }

	// Patient 0 consented through Mitz (the network's demo registration);
	// patient 1 in the practice's own registry; patient 2 at the portal.
	if code := internal(t, nw.GPNode, nw.Token(GP.URA), http.MethodPost, "/internal/consent",
		map[string]any{"patient": bsn(1), "effect": "permit"}, nil); code != http.StatusCreated {
		t.Fatalf("register consent in the GP's node: status %d", code)
	}
	if _, err := nw.RegionalConsent().Store().Register(ctx, consent.Registration{PatientBSN: bsn(2), Effect: consent.Permit,
		HolderURA: GP.URA, Source: "portal test", RegisteredBy: portalOrg.URA}); err != nil {
		t.Fatal(err)
	}
	portalHost := strings.TrimPrefix(nw.portalURL, "https://")
	for _, tc := range []struct {
		requester Participant
		permitted int // the one patient this partner's source permits
		source    string
	}{
		{pharmacy, 1, "plateau 1 local registry"},
		{clinic, 2, "plateau 2 regional portal " + portalHost},
		{Hospital, 0, "plateau 4 Mitz closed question"},
	} {
		for patient := range 3 {
			var res consult.Result
			if code := internal(t, nw.HospNode, nw.Token(tc.requester.URA), http.MethodPost, "/internal/consult", consult.Request{
				PatientBSN: bsn(patient), HolderURA: GP.URA, Application: "bgz", UserID: "900012345", UserRole: "01.016",
			}, &res); code != http.StatusOK {
				t.Fatalf("%s consults patient %d: status %d", tc.requester.Name, patient, code)
			}
			want, decision := http.StatusForbidden, "Deny"
			if patient == tc.permitted {
				want, decision = http.StatusOK, "Permit"
				if res.Resources == 0 {
					t.Errorf("%s, patient %d: nothing retrieved although its source permits", tc.requester.Name, patient)
				}
			} else if res.Resources != 0 {
				t.Errorf("%s, patient %d: %d resources retrieved without consent at its source", tc.requester.Name, patient, res.Resources)
			}
			for _, q := range res.Queries {
				if q.Status != want {
					t.Errorf("%s, patient %d, block %s: status %d, want %d", tc.requester.Name, patient, q.Block, q.Status, want)
					break
				}
			}
			recs, err := nw.GPNode.Audit().List(ctx, audit.Filter{Patient: bsn(patient), ActorURA: tc.requester.URA})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				t.Fatalf("%s, patient %d: no audit record at the GP's node", tc.requester.Name, patient)
			}
			for _, r := range recs {
				if r.ConsentProfile != tc.source+": "+decision || r.Outcome != want {
					t.Errorf("%s, patient %d: audited %d with consent profile %q, want %d with %q", tc.requester.Name, patient,
						r.Outcome, r.ConsentProfile, want, tc.source+": "+decision)
					break
				}
			}
		}
	}
}

// TestConsentNotificationsDriveLocalization: after an exchange the GP's
// node has subscribed at the consent service (Mitz) for the patient; when
// the patient withdraws consent, the service notifies the node, which
// withdraws the practice's holding from the referral index, so the
// hospital no longer learns of it; consent given again brings it back.
func TestConsentNotificationsDriveLocalization(t *testing.T) {
	nw := startNetwork(t, 1)
	ctx := context.Background()
	s, err := nw.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Holders, GP.URA) {
		t.Fatalf("after the exchange the hospital learns of holders %v, want the GP practice among them", s.Holders)
	}
	bsn := s.Patient

	// The GP's node subscribed (asynchronously, after its index registration).
	var sub []audit.Record
	eventually(t, "the GP's subscription at the consent service", func() bool {
		sub = records(t, nw.GPNode, bsn, "consent-subscribe")
		return len(sub) > 0
	})
	if sub[0].Outcome != http.StatusCreated || len(sub[0].Resources) != 1 {
		t.Fatalf("subscription audited as %d %v", sub[0].Outcome, sub[0].Resources)
	}
	stored, err := nw.Consent().Store().GetSubscription(ctx, strings.TrimPrefix(sub[0].Resources[0], "Subscription/"))
	if err != nil {
		t.Fatal(err)
	}
	if stored.PatientBSN != bsn || stored.ProviderURA != GP.URA || stored.ProviderType != GP.FacilityType || stored.Owner != GP.URA ||
		stored.Endpoint != nw.GPNode.PublicURL()+"/consent/notifications/"+GP.URA {
		t.Fatalf("subscription %+v", stored)
	}
	// Mitz identifies the patient by BSN and birth date: both holders send
	// the date their data gives (the GP its record, the hospital what it pulled).
	born := demoBirthDate(t, nw.Patients[0].Resources)
	if stored.BirthDate != born {
		t.Errorf("the GP's subscription carries birth date %q, want %q", stored.BirthDate, born)
	}
	var hospSub []audit.Record
	eventually(t, "the hospital's subscription at the consent service", func() bool {
		hospSub = records(t, nw.HospNode, bsn, "consent-subscribe")
		return len(hospSub) > 0 && len(hospSub[0].Resources) == 1
	})
	if hs, err := nw.Consent().Store().GetSubscription(ctx, strings.TrimPrefix(hospSub[0].Resources[0], "Subscription/")); err != nil ||
		hs.ProviderURA != Hospital.URA || hs.BirthDate != born {
		t.Errorf("the hospital's subscription: %+v, %v; want its URA and birth date %q", hs, err, born)
	}
	index := indexClient(t, nw)
	if h := holders(t, index, bsn); !slices.Contains(h, GP.URA) || !slices.Contains(h, Hospital.URA) {
		t.Fatalf("index holders %v, want the practice and the hospital", h)
	}

	// The patient withdraws consent at the service.
	regs, err := nw.Consent().Store().List(ctx, bsn, false)
	if err != nil || len(regs) != 1 {
		t.Fatalf("registrations %+v, %v", regs, err)
	}
	if _, err := nw.Consent().Store().Revoke(ctx, regs[0].ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the practice's holding withdrawn from the index", func() bool { return !slices.Contains(holders(t, index, bsn), GP.URA) })
	if h := holders(t, index, bsn); !slices.Contains(h, Hospital.URA) {
		t.Errorf("index holders %v: the hospital's holding, which the withdrawal does not concern, went too", h)
	}
	notes := records(t, nw.GPNode, bsn, "consent-notification")
	if len(notes) != 1 || notes[0].Outcome != http.StatusOK || notes[0].ActorURA != consentOrg.URA ||
		notes[0].ConsentProfile != "Mitz notification: no consent in force" {
		t.Fatalf("notification audit records %+v", notes)
	}
	if got := localize(t, nw, bsn); slices.Contains(got, GP.URA) {
		t.Errorf("the hospital still learns of the practice's data after the withdrawal: %v", got)
	}

	// Consent given again: the holding comes back.
	if _, err := nw.Consent().Store().Register(ctx, consent.Registration{PatientBSN: bsn, Effect: consent.Permit, HolderURA: GP.URA,
		Source: "network test", RegisteredBy: GP.URA}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the practice's holding registered again", func() bool { return slices.Contains(holders(t, index, bsn), GP.URA) })
	if got := localize(t, nw, bsn); !slices.Contains(got, GP.URA) {
		t.Errorf("after consent was given again the hospital learns of holders %v, want the practice among them", got)
	}
	notes = records(t, nw.GPNode, bsn, "consent-notification")
	if len(notes) != 2 || notes[1].ConsentProfile != "Mitz notification: consent in force" {
		t.Errorf("notification audit records %+v", notes)
	}
}

// eventually polls cond until it holds, failing after a bounded wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// records are a node's audit records of one interaction about the patient.
func records(t *testing.T, n *node.Node, bsn, interaction string) []audit.Record {
	t.Helper()
	recs, err := n.Audit().List(context.Background(), audit.Filter{Patient: bsn})
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, r := range recs {
		if r.Interaction == interaction {
			out = append(out, r)
		}
	}
	return out
}

// indexClient asks the referral index directly, as the hospital, without
// any consent filter: what the index itself holds.
func indexClient(t *testing.T, nw *Network) *localization.Client {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: pki.ClientTLSConfig(mustLoadCert(t, nw, "hospital-node"), pki.CertPool(nw.CA.Cert))}}
	c, err := localization.NewClient(localization.ClientConfig{BaseURL: nw.IndexURL(), HTTPClient: hc, URA: Hospital.URA,
		SourceType: Hospital.FacilityType, Consent: localization.PresumedConsent})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func holders(t *testing.T, c *localization.Client, bsn string) []string {
	t.Helper()
	res, err := c.Localize(context.Background(), localization.LocalizeRequest{BSN: bsn, CareContext: careContextBgZ})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range res.Holders {
		out = append(out, h.URA)
	}
	return out
}

// localize is the hospital's system asking its node which organisations
// hold the patient's data, filtered by consent.
func localize(t *testing.T, nw *Network, bsn string) []string {
	t.Helper()
	var res struct{ Holders []struct{ URA string } }
	if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/localize",
		node.LocalizeRequest{Patient: bsn, Role: "01.016", UZI: "900012345"}, &res); code != http.StatusOK {
		t.Fatalf("localize: status %d", code)
	}
	var out []string
	for _, h := range res.Holders {
		out = append(out, h.URA)
	}
	return out
}

// careContextBgZ is the care context nodes register BgZ holdings under.
var careContextBgZ = index.Coding{System: "http://loinc.org", Code: "60591-5"}

// demoBirthDate is the birthDate of the Patient among a demo patient's resources.
func demoBirthDate(t *testing.T, resources []json.RawMessage) string {
	t.Helper()
	for _, r := range resources {
		var p struct{ ResourceType, BirthDate string }
		if json.Unmarshal(r, &p) == nil && p.ResourceType == "Patient" && p.BirthDate != "" {
			return p.BirthDate
		}
	}
	t.Fatal("the demo patient has no birth date")
	return ""
}
