package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/indexedpull"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/kits"
)

// Clinic is the organisation that runs the Indexed Pull in the network of
// Options.IndexedPull: a specialist clinic served by the hospital's node,
// which holds nothing of the demo patient itself.
var Clinic = Participant{URA: "90000004", Name: "Kliniek Noord", SystemUZI: "900000044", AGB: "06000004", FacilityType: "Z3"}

// indexedPullHolders are the three holders of the demo patient's data in
// that network.
var indexedPullHolders = []Participant{GP, Hospital, NursingHome}

// indexedPullSpecs are the nodes of the Indexed Pull network: the GP
// practice's, the hospital's (also serving the clinic) and the nursing
// home's, each with the default agreement with every other organisation.
// The hospital's node has one with its own participants too: the clinic
// asks the hospital as a partner, and the hospital answers the clinic as one.
func indexedPullSpecs() []nodeSpec {
	return []nodeSpec{
		{name: "gp-node", p: GP, peers: []Participant{Hospital, NursingHome, Clinic}},
		{name: "hospital-node", p: Hospital, peers: []Participant{GP, NursingHome, Hospital, Clinic}, more: []Participant{Clinic}},
		{name: "nursinghome-node", p: NursingHome, peers: []Participant{GP, Hospital, Clinic}},
	}
}

// IndexedPullRun is the outcome of RunIndexedPull.
type IndexedPullRun struct {
	Patient string
	Holders []HolderOutcome
	// Bundle is the answer the clinic's system received.
	Bundle IndexedBundle
	Took   time.Duration
}

// HolderOutcome is what the answer says of one holder.
type HolderOutcome struct {
	Holder    Participant
	Status    string // "delivered", or the OperationOutcome's status
	Resources int    // the entries its Provenance names
	Recorded  string // the Provenance's recorded time
	Detail    string // the OperationOutcome's diagnostics
}

// IndexedBundle is the part of the answer Bundle the run reads.
type IndexedBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        int    `json:"total"`
	Entry        []struct {
		FullURL  string `json:"fullUrl"`
		Search   struct{ Mode string }
		Resource struct {
			ResourceType string
			Recorded     string
			Target       []struct{ Reference string }
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

// RunIndexedPull runs the Indexed Pull across three holders: the GP
// practice refers the demo patient to the hospital and to the nursing
// home (Notified Pulls; each party registers its holding at the referral
// index), the patient permits the three holders' data at Mitz, and the
// clinic's system asks its node once (POST /internal/indexed-pull). It
// fails unless the answer carries every holder's data with a Provenance
// per holder and no OperationOutcome for any.
func (nw *Network) RunIndexedPull(ctx context.Context) (*IndexedPullRun, error) {
	if !nw.opts.IndexedPull || nw.internalURLs[NursingHome.URA] == "" {
		return nil, errors.New("network: RunIndexedPull needs a network started with IndexedPull")
	}
	patient := nw.Patients[0]
	// Consent where each holder asks it: the GP practice for the
	// referrals, at the source of its agreement with each receiver; every
	// holder for the clinic's pull, at the source of its agreement with
	// the clinic (the clinic's node filters the localization by it).
	for _, to := range indexedPullHolders[1:] {
		agreed, err := nw.agreementOf(GP, to)
		if err != nil {
			return nil, err
		}
		if err := nw.consentAtHolder(ctx, GP, agreed.Plateaus[plateau.Consent], patient.BSN); err != nil {
			return nil, err
		}
	}
	for _, h := range indexedPullHolders {
		agreed, err := nw.agreementOf(h, Clinic)
		if err != nil {
			return nil, err
		}
		if err := nw.consentAtHolder(ctx, h, agreed.Plateaus[plateau.Consent], patient.BSN); err != nil {
			return nil, err
		}
	}
	user := plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}
	for _, to := range indexedPullHolders[1:] {
		s, err := nw.notifiedPull(ctx, GP, to, to.Name+"'s physician", user, "Verwijzing")
		if err != nil {
			return nil, fmt.Errorf("GP practice → %s: %w", to.Name, err)
		}
		nw.printf("  %s\n", pullOutcome(s, nil))
		n, err := nw.fileReferralData(ctx, to, s.Received)
		if err != nil {
			return nil, fmt.Errorf("%s files the referral's data: %w", to.Name, err)
		}
		nw.printf("  %s's system files the %d resources in its record: it now holds the patient's data\n", to.Name, n)
	}
	clinic := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Clinic.URA), http: &http.Client{Timeout: 60 * time.Second}}
	// The holders register at the index beside their exchanges: wait until
	// it names all three.
	err := poll(ctx, func() (bool, error) {
		var res struct{ Holders []localization.Holder }
		if err := clinic.do(ctx, http.MethodPost, "/internal/localize", node.LocalizeRequest{Patient: patient.BSN,
			Role: user.Role, UZI: user.ID}, &res); err != nil {
			return false, err
		}
		return len(res.Holders) >= len(indexedPullHolders), nil
	})
	if err != nil {
		return nil, fmt.Errorf("the referral index does not name the three holders: %w", err)
	}

	nw.printf("\nIndexed Pull: %s asks its node for the BgZ of %s from every holder the referral index names\n", Clinic.Name, patient.Name)
	run := &IndexedPullRun{Patient: patient.BSN}
	start := time.Now()
	if err := clinic.do(ctx, http.MethodPost, "/internal/indexed-pull", indexedpull.Request{Patient: patient.BSN,
		Application: nw.care(careapp.IndexedPull), User: &user}, &run.Bundle); err != nil {
		return nil, err
	}
	run.Took = time.Since(start)
	run.Holders = holderOutcomes(run.Bundle)
	var failed []string
	for _, h := range run.Holders {
		if h.Status != string(indexedpull.StatusDelivered) || h.Resources == 0 {
			failed = append(failed, fmt.Sprintf("%s: %s %s", h.Holder.Name, h.Status, h.Detail))
		}
	}
	if len(failed) > 0 {
		return run, errors.New("not every holder delivered: " + strings.Join(failed, "; "))
	}
	return run, nil
}

// holderOutcomes reads, per holder of the network, its Provenance or its
// OperationOutcome from the answer.
func holderOutcomes(b IndexedBundle) []HolderOutcome {
	out := make([]HolderOutcome, len(indexedPullHolders))
	for i, h := range indexedPullHolders {
		out[i] = HolderOutcome{Holder: h, Status: "missing from the answer"}
	}
	at := func(ura string) *HolderOutcome {
		i := slices.IndexFunc(indexedPullHolders, func(p Participant) bool { return p.URA == ura })
		if i < 0 {
			return nil
		}
		return &out[i]
	}
	for _, e := range b.Entry {
		r := e.Resource
		switch {
		case r.ResourceType == "Provenance" && len(r.Agent) == 1:
			if h := at(r.Agent[0].WhoReference.Identifier.Value); h != nil {
				if h.Status == "missing from the answer" {
					h.Status = string(indexedpull.StatusDelivered)
				}
				h.Resources, h.Recorded = len(r.Target), r.Recorded
			}
		case r.ResourceType == "OperationOutcome" && len(r.Issue) == 1 && len(r.Issue[0].Details.Coding) == 1:
			if h := at(r.Issue[0].Details.Coding[0].Code); h != nil {
				h.Status, h.Detail = r.Issue[0].Details.Text, r.Issue[0].Diagnostics
			}
		}
	}
	return out
}

// permitAtMitz records that the patient permits holder's data to be seen
// by other providers, as through Mitz; one already in force is kept.
func permitAtMitz(ctx context.Context, st *consent.Store, bsn, holder string) error {
	regs, err := st.List(ctx, bsn, false)
	if err != nil {
		return fmt.Errorf("demo consent: %w", err)
	}
	for _, r := range regs {
		if r.Effect == consent.Permit && r.HolderURA == holder && r.Source == "network demo" && r.RequesterURA == "" {
			return nil
		}
	}
	if _, err := st.Register(ctx, consent.Registration{PatientBSN: bsn, Effect: consent.Permit, HolderURA: holder,
		Source: "network demo", RegisteredBy: holder}); err != nil {
		return fmt.Errorf("register demo consent: %w", err)
	}
	return nil
}

// PrintIndexedPull writes per holder what came back.
func (nw *Network) PrintIndexedPull(r *IndexedPullRun) {
	nw.printf("\nIndexed Pull answer: searchset of %d entries from %d holders in %s\n", r.Bundle.Total, len(r.Holders), r.Took.Round(time.Millisecond))
	for _, h := range r.Holders {
		line := fmt.Sprintf("  %-30s %s (URA %s)", h.Holder.Name, h.Status, h.Holder.URA)
		if h.Resources > 0 {
			line += fmt.Sprintf(": %d resources, Provenance recorded %s", h.Resources, h.Recorded)
		}
		if h.Detail != "" {
			line += ": " + h.Detail
		}
		nw.printf("%s\n", line)
	}
}

// fileReferralData is the receiving system filing a referral's pulled
// data in its own record, through its node's internal FHIR API (a
// transaction of updates), so that the node answers queries for it as a
// holder.
func (nw *Network) fileReferralData(ctx context.Context, p Participant, received string) (int, error) {
	x := &xis{base: nw.internalURLs[nw.nodeURA(p)], token: nw.Token(p.URA), http: &http.Client{Timeout: 60 * time.Second}}
	var data struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := x.do(ctx, http.MethodGet, "/internal/referrals/"+received+"/data", nil, &data); err != nil {
		return 0, err
	}
	type request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	type entry struct {
		Resource json.RawMessage `json:"resource"`
		Request  request         `json:"request"`
	}
	tx := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction"}
	for _, e := range data.Entry {
		var h struct{ ResourceType, ID string }
		if json.Unmarshal(e.Resource, &h) != nil || h.ResourceType == "" || h.ID == "" {
			continue
		}
		tx.Entry = append(tx.Entry, entry{e.Resource, request{http.MethodPut, h.ResourceType + "/" + h.ID}})
	}
	if err := x.do(ctx, http.MethodPost, "/internal/fhir", tx, nil); err != nil {
		return 0, err
	}
	return len(tx.Entry), nil
}

// nodeURA is the URA the internal URL of p's node is listed under.
func (nw *Network) nodeURA(p Participant) string {
	if _, ok := nw.internalURLs[p.URA]; ok {
		return p.URA
	}
	return Hospital.URA
}

// localizingAtPlateau refuses the plateaus at which a network that begins
// its exchange with a localization (the Indexed Pull, the imaging lookup)
// cannot run, with the reason.
//
// At consent plateau 1 consent is recorded in the holder's own system, and
// the requesting node filters the localization by the consent source of
// each holder's agreement: its own registry, which knows only its own
// participants' consents (docs/localization.md). A holder on another node
// is never named, so no holder but the requester's own is ever consulted.
//
// At network plateau 3–4 a holder serves data only to a GtK with a proof
// of validation for the care application, issued to the requesting
// participant. The imaging lookup's requester is the GP practice, whose
// node is validated first when the kit has requester cases for
// Beeldbeschikbaarheid (RunImaging). The Indexed Pull's requester is the clinic,
// served by the hospital's node: the kit checks that the node's server
// certificate names the participant it validates, and the hospital's node
// presents the hospital's, so the clinic cannot be issued a proof of its
// own.
func (nw *Network) localizingAtPlateau() error {
	if nw.opts.Plateau == 0 || (!nw.opts.IndexedPull && !nw.opts.Imaging) {
		return nil
	}
	what, runs := "the Indexed Pull", "give plateau 2, or mixed"
	if nw.opts.Imaging {
		what, runs = "the imaging lookup", "give plateau 2, or mixed"
	}
	agreed := nw.agreement(Hospital).Plateaus
	if agreed[plateau.Consent] == 1 {
		return fmt.Errorf("network: %s at consent plateau 1: consent is recorded in each holder's own system, which the requesting node cannot ask; "+
			"its localization names only holders whose consent it can ask, so no holder on another node would be named (%s)", what, runs)
	}
	if agreed[plateau.Network] < plateau.ValidationFromPlateau {
		return nil
	}
	if nw.opts.IndexedPull {
		return fmt.Errorf("network: %s at network plateau %d: every holder serves data only to a GtK with a proof of validation issued to the requester, "+
			"and the requester, %s, is served by the hospital's node, whose server certificate names the hospital: the validation kit issues a proof "+
			"only to the participant its node's certificate names, so the clinic cannot have one (%s)", what, agreed[plateau.Network], Clinic.Name, runs)
	}
	reg, err := kits.Registry(nw.opts.Applications, nw.kits())
	if err != nil {
		return err
	}
	if reg.Runnable(validation.RoleRequester, beeld.Application, 1) != nil {
		return fmt.Errorf("network: %s at network plateau %d: the hospital serves images only to a GtK with a proof of validation for %s, "+
			"and the validation kit has %s cases for the holder only: no requester's proof can be issued (%s)",
			what, agreed[plateau.Network], beeld.Application, beeld.Application, runs)
	}
	return nil
}
