package network

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/plateau"
)

// The mixed network (Options.Mixed): three organisations whose agreements
// differ per pair and per function, as the growth model allows — each
// pair stands where it has grown to.
//
//   - The GP practice and the hospital are at plateau 3 for most functions:
//     verified BSNs, organisation-signed UZI users, the national guideline's
//     roles, consent at Mitz, the addressbook, the central log. The network
//     stays at 2 (no proof of validation is asked).
//   - The GP practice and the nursing home are a regional collaboration at
//     2 for authentication, authorization, identification and addressing
//     (each other's endpoints from the agreement) and at 1 for the rest
//     (consent in the practice's own registry, no localization, the own log).
//   - The hospital and the nursing home are at 2 with authorization and
//     logging, 3 with addressing and consent, 1 with localization — and
//     their copies of the agreement differ in user authentication: the
//     hospital holds the nursing home to plateau 3 (users identified by
//     UZI number), the nursing home's node still presents its users at 2,
//     as in its agreement with the GP practice. That is the refusal the run
//     shows: a partner that delivers less than the agreement asks of it.
//
// The Geboortezorg network (a midwife practice's node beside the GP
// practice's and the hospital's) runs under the same model, with the
// midwife practice's pairs:
//
//   - The midwife practice and the GP practice are a regional
//     collaboration, as the GP practice and the nursing home: 2 for
//     authentication, authorization, identification and addressing, 1 for
//     the rest.
//   - The midwife practice and the hospital are an obstetric collaboration
//     (verloskundig samenwerkingsverband) that verifies BSNs, consults
//     Mitz, uses the addressbook and ships its logs to the central log
//     (3), with users and roles at 2 and the network at 2.
var mixedAgreements = []struct {
	self, peer Participant
	plateaus   plateau.Plateaus
}{
	{GP, Hospital, mixedGPHospital},
	{Hospital, GP, mixedGPHospital},
	{GP, NursingHome, mixedGPNursingHome},
	{NursingHome, GP, mixedGPNursingHome},
	{Hospital, NursingHome, withPlateau(mixedHospitalNursingHome, plateau.Authentication, 3)},
	{NursingHome, Hospital, mixedHospitalNursingHome},
	{Midwife, GP, mixedGPNursingHome},
	{GP, Midwife, mixedGPNursingHome},
	{Midwife, Hospital, mixedHospitalMidwife},
	{Hospital, Midwife, mixedHospitalMidwife},
}

var (
	mixedGPHospital = plateau.Plateaus{plateau.Identification: 3, plateau.Authentication: 3, plateau.Authorization: 3,
		plateau.Consent: 3, plateau.Localization: 3, plateau.Addressing: 3, plateau.Logging: 3, plateau.Network: 2}
	mixedGPNursingHome = plateau.Plateaus{plateau.Identification: 2, plateau.Authentication: 2, plateau.Authorization: 2,
		plateau.Consent: 1, plateau.Localization: 1, plateau.Addressing: 2, plateau.Logging: 1, plateau.Network: 1}
	mixedHospitalNursingHome = plateau.Plateaus{plateau.Identification: 2, plateau.Authentication: 2, plateau.Authorization: 2,
		plateau.Consent: 3, plateau.Localization: 1, plateau.Addressing: 3, plateau.Logging: 2, plateau.Network: 2}
	mixedHospitalMidwife = plateau.Plateaus{plateau.Identification: 3, plateau.Authentication: 2, plateau.Authorization: 2,
		plateau.Consent: 3, plateau.Localization: 1, plateau.Addressing: 3, plateau.Logging: 3, plateau.Network: 2}
)

// withPlateau is a copy of p with function f at plateau n.
func withPlateau(p plateau.Plateaus, f plateau.Function, n int) plateau.Plateaus {
	out := clonePlateaus(p)
	out[f] = n
	return out
}

func clonePlateaus(p plateau.Plateaus) plateau.Plateaus {
	out := make(plateau.Plateaus, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out
}

// mixedAgreement is self's node's agreement with peer in the mixed
// network, its plateaus (Network.agreementOf adds the applications);
// false when the table has none (nodeSpecs and mixedAgreements
// must list the same pairs).
//
// The clinic of the Indexed Pull network, served by the hospital's node,
// stands where the hospital stands: with the GP practice and the nursing
// home it has the hospital's agreements, and between the hospital and its
// clinic the plateaus the hospital agreed with the GP practice.
func mixedAgreement(self, peer Participant) (plateau.PartnerConfig, bool) {
	as := func(p Participant) string {
		if p.URA == Clinic.URA {
			return Hospital.URA
		}
		return p.URA
	}
	if as(self) == Hospital.URA && as(peer) == Hospital.URA {
		return plateau.PartnerConfig{URA: peer.URA, Name: peer.Name, Plateaus: clonePlateaus(mixedGPHospital)}, true
	}
	for _, a := range mixedAgreements {
		if a.self.URA == as(self) && a.peer.URA == as(peer) {
			return plateau.PartnerConfig{URA: peer.URA, Name: peer.Name, Plateaus: clonePlateaus(a.plateaus)}, true
		}
	}
	return plateau.PartnerConfig{}, false
}

// NursingHomeUser is the nursing home's elderly care physician (specialist
// ouderengeneeskunde, role 01.047) as the nursing home's system names her:
// by her AGB code, which user authentication at plateau 2 accepts and
// plateau 3 (UZI number) does not.
var NursingHomeUser = plateau.Caller{ID: "03047003", IDSystem: nl.SystemAGB, Role: "01.047", LoA: "high"}

// MixedRefusal is the reason the hospital gives when the nursing home's
// node presents its user at authentication plateau 2 where the hospital's
// agreement asks 3.
const MixedRefusal = "the user must be identified by UZI number (" + nl.SystemUZIPers + ") (authentication: plateau 3 required, plateau 2 delivered)"

// ExchangeOutcome is one exchange of the mixed run.
type ExchangeOutcome struct {
	Pattern        string // "Notified Pull" or "Direct Pull"
	From, To       Participant
	ExpectRefusal  bool
	Outcome        string // what happened, one line
	Refusal        string // the refusal's reason, as the requesting participant's system got it
	Audited        string // the refusal as the refusing node's audit log recorded it
	Summary        *Summary
	ConsultResults *consult.Result
}

// MixedRun is the outcome of RunMixed.
type MixedRun struct {
	Exchanges []ExchangeOutcome
}

// RunMixed runs the mixed network's exchanges: the GP practice refers the
// demo patient to the hospital (Notified Pull at the pair's plateau 3) and
// to the nursing home (at plateaus 1–2, its physician accepting with her
// AGB code), then the nursing home's physician consults the hospital
// (Direct Pull), which refuses the token: its agreement asks user
// authentication at plateau 3 and the nursing home's node delivers 2. It
// fails unless both pulls complete and the consult is refused with exactly
// MixedRefusal, recorded in the hospital's audit log.
func (nw *Network) RunMixed(ctx context.Context) (*MixedRun, error) {
	if !nw.opts.Mixed || nw.internalURLs[NursingHome.URA] == "" {
		return nil, errors.New("network: RunMixed needs a network started with Mixed")
	}
	patient := nw.Patients[0]
	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xis{base: nw.internalURLs[GP.URA], token: nw.Token(GP.URA), http: hc}
	nh := &xis{base: nw.internalURLs[NursingHome.URA], token: nw.Token(NursingHome.URA), http: hc}
	// Consent where each of the GP practice's agreements looks it up: Mitz
	// for the hospital (registered by Up), its own registry for the
	// nursing home.
	withNH, _ := mixedAgreement(GP, NursingHome)
	if err := nw.consentAtSource(ctx, gp, withNH.Plateaus[plateau.Consent], patient.BSN); err != nil {
		return nil, err
	}
	run := &MixedRun{}
	var failed []string

	// 1. GP practice → hospital, plateau 3 for most functions.
	out := ExchangeOutcome{Pattern: "Notified Pull", From: GP, To: Hospital}
	user := plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}
	s, err := nw.notifiedPull(ctx, GP, Hospital, "the hospital's specialist", user, "Verwijzing interne geneeskunde")
	out.Summary, out.Outcome = s, pullOutcome(s, err)
	if err != nil {
		failed = append(failed, "GP practice → hospital: "+err.Error())
	}
	run.Exchanges = append(run.Exchanges, out)

	// 2. GP practice → nursing home, plateaus 1–2.
	out = ExchangeOutcome{Pattern: "Notified Pull", From: GP, To: NursingHome}
	s, err = nw.notifiedPull(ctx, GP, NursingHome, "the nursing home's elderly care physician", NursingHomeUser, "Overplaatsing naar verpleeghuis")
	out.Summary, out.Outcome = s, pullOutcome(s, err)
	if err != nil {
		failed = append(failed, "GP practice → nursing home: "+err.Error())
	}
	run.Exchanges = append(run.Exchanges, out)

	// 3. Nursing home → hospital: refused for the missing plateau requirement.
	out = ExchangeOutcome{Pattern: "Direct Pull", From: NursingHome, To: Hospital, ExpectRefusal: true}
	nw.printf("\nDirect Pull: %s's elderly care physician (AGB %s) consults %s for patient %s\n", NursingHome.Name, NursingHomeUser.ID, Hospital.Name, patient.Name)
	var res consult.Result
	// Only this run's records count: the data directory, and the audit
	// log, may be a previous run's.
	hospLog, done, err := nw.nodeAudit(ctx, Hospital.URA)
	if err != nil {
		return run, err
	}
	since := hospLog.LastSeq()
	done()
	err = nh.do(ctx, http.MethodPost, "/internal/consult", consult.Request{PatientBSN: patient.BSN, HolderURA: Hospital.URA,
		Application: nw.care(careapp.DirectPull), User: &NursingHomeUser}, &res)
	switch {
	case err == nil:
		out.ConsultResults = &res
		out.Outcome = fmt.Sprintf("answered (%d resources), but the hospital's agreement asks authentication plateau 3", res.Resources)
		failed = append(failed, "nursing home → hospital: not refused")
	case !strings.Contains(err.Error(), MixedRefusal):
		out.Outcome = "failed, but not for the plateau: " + err.Error()
		failed = append(failed, "nursing home → hospital: "+err.Error())
	default:
		out.Refusal = err.Error()
		out.Outcome = "refused by the hospital: " + MixedRefusal
		audited, aerr := nw.auditedRefusal(ctx, since)
		out.Audited = audited
		if aerr != nil {
			failed = append(failed, "nursing home → hospital: "+aerr.Error())
		}
	}
	nw.printf("  %s\n", out.Outcome)
	run.Exchanges = append(run.Exchanges, out)
	if len(failed) > 0 {
		return run, errors.New(strings.Join(failed, "; "))
	}
	return run, nil
}

// pullOutcome says in one line how a Notified Pull ended.
func pullOutcome(s *Summary, err error) string {
	if err != nil {
		return "failed: " + err.Error()
	}
	return fmt.Sprintf("completed: %d resources pulled, receiver %s, sender %s", s.Total, s.Status, s.Sender)
}

// auditedRefusal finds the hospital node's audit record of the refused
// token request of the nursing home after chain position since, which
// must name the function and the plateaus.
func (nw *Network) auditedRefusal(ctx context.Context, since int64) (string, error) {
	st, done, err := nw.nodeAudit(ctx, Hospital.URA)
	if err != nil {
		return "", err
	}
	defer done()
	recs, err := st.List(ctx, audit.Filter{ActorURA: NursingHome.URA, AfterSeq: since})
	if err != nil {
		return "", err
	}
	const check = "plateau: authentication refused (plateau 3 required, 2 delivered)"
	for _, r := range recs {
		if r.Interaction != "token" || r.Outcome == http.StatusOK || !strings.Contains(r.OutcomeText, MixedRefusal) {
			continue
		}
		for _, c := range r.Checks {
			if c == check {
				return fmt.Sprintf("audit record %d: %d %s", r.Seq, r.Outcome, r.OutcomeText), nil
			}
		}
	}
	return "", errors.New("the hospital's audit log has no record of the refused token request naming authentication plateau 3")
}

// mixedAbbrev heads the matrix's columns.
var mixedAbbrev = map[plateau.Function]string{plateau.Identification: "ident", plateau.Authentication: "authn",
	plateau.Authorization: "authz", plateau.Consent: "consent", plateau.Localization: "local", plateau.Addressing: "address",
	plateau.Logging: "logging", plateau.Network: "network"}

// PrintMixedAgreements writes the per-partner plateau matrix: a row per
// node and partner (each node holds its own copy of an agreement), a
// column per generic function. A plateau the partner's copy does not
// share is marked with *.
func (nw *Network) PrintMixedAgreements() {
	nw.printf("\nAgreements per partner (plateau per generic function; * the partner's copy differs)\n")
	member := func(p Participant) bool {
		return slices.ContainsFunc(nw.members, func(m Participant) bool { return m.URA == p.URA })
	}
	width := len("node → partner")
	for _, a := range mixedAgreements {
		if member(a.self) && member(a.peer) {
			width = max(width, utf8.RuneCountInString(a.self.Name+" → "+a.peer.Name))
		}
	}
	nw.printf("  %-*s", width, "node → partner")
	for _, f := range plateau.Functions {
		nw.printf(" %8s", mixedAbbrev[f])
	}
	nw.printf("\n")
	for _, a := range mixedAgreements {
		if !member(a.self) || !member(a.peer) {
			continue // a pair of another network's nodes
		}
		theirs, _ := mixedAgreement(a.peer, a.self)
		other := theirs.Plateaus
		nw.printf("  %-*s", width, a.self.Name+" → "+a.peer.Name)
		for _, f := range plateau.Functions {
			cell := fmt.Sprint(a.plateaus[f])
			if other[f] != a.plateaus[f] {
				cell += "*"
			}
			nw.printf(" %8s", cell)
		}
		nw.printf("\n")
	}
}

// PrintMixedRun writes each exchange's outcome.
func (nw *Network) PrintMixedRun(r *MixedRun) {
	nw.printf("\nExchanges\n")
	for i, e := range r.Exchanges {
		nw.printf("  %d. %-13s %s → %s\n     %s\n", i+1, e.Pattern, e.From.Name, e.To.Name, e.Outcome)
		if e.Audited != "" {
			nw.printf("     the hospital's audit log: %s\n", e.Audited)
		}
	}
}
