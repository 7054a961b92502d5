package network

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
)

// FunctionReport is what one generic function did in a run at a plateau:
// what the hospital's node sent and what the GP practice's node checked,
// the latter read back from the GP node's audit log where it records it.
type FunctionReport struct {
	Function      plateau.Function
	Plateau       int
	Sent, Checked string
}

// PlateauRun is the outcome of RunAtPlateau.
type PlateauRun struct {
	Summary   *Summary
	Consult   *consult.Result
	Functions []FunctionReport
}

// RunAtPlateau runs the exchanges between the GP practice and the hospital
// at the plateaus they agreed: the Notified Pull (Exchange), then a Direct
// Pull of the same patient by the hospital's specialist, after the
// localization Exchange ends with. It fails when either does not complete
// or when the evidence a plateau demands is missing from the GP node's
// audit log (at authentication 4: the signed user identity it checked).
func (nw *Network) RunAtPlateau(ctx context.Context) (*PlateauRun, error) {
	agreed := nw.agreement(Hospital).Plateaus
	patient := nw.Patients[0]
	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xis{base: nw.internalURLs[GP.URA], token: nw.Token(GP.URA), http: hc}
	hosp := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: hc}
	if err := nw.consentAtSource(ctx, gp, agreed[plateau.Consent], patient.BSN); err != nil {
		return nil, err
	}
	if agreed[plateau.Network] >= 3 {
		// At network plateau 3–4 the GP's node serves data only to a GtK
		// with a valid proof of validation for the application in the admission
		// register (requirevalidation): the hospital's node is validated
		// first, as a vendor would before going live.
		if err := nw.validateFirst(ctx, Hospital, validation.RoleReceiver, nw.care(careapp.NotifiedPull), "the exchange", agreed[plateau.Network]); err != nil {
			return nil, err
		}
	}
	s, err := nw.Exchange(ctx)
	run := &PlateauRun{Summary: s}
	if err != nil {
		return run, err
	}
	nw.printf("\nDirect Pull: the hospital's specialist consults %s for patient %s\n", GP.Name, patient.Name)
	var res consult.Result
	if err := hosp.do(ctx, http.MethodPost, "/internal/consult", consult.Request{PatientBSN: patient.BSN, HolderURA: GP.URA,
		Application: nw.care(careapp.DirectPull), User: &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}}, &res); err != nil {
		return run, fmt.Errorf("consult: %w", err)
	}
	run.Consult = &res
	if !res.Complete || res.Resources == 0 {
		var failed []string
		for _, q := range res.Queries {
			if q.Status != http.StatusOK {
				failed = append(failed, fmt.Sprintf("%s %d %s", q.Block, q.Status, q.Outcome))
			}
		}
		return run, fmt.Errorf("consult: %d resources, not every query answered: %s", res.Resources, strings.Join(failed, "; "))
	}
	nw.printf("  %d resources from %d queries\n", res.Resources, len(res.Queries))
	run.Functions, err = nw.evidence(ctx, agreed, patient.BSN)
	return run, err
}

// consentAtSource registers the demo patient's permission where the
// consent plateau agreed with the hospital looks it up: the GP practice's
// own registry (1, through its node's internal API), the regional portal
// (2), the consent service playing Mitz (3–4, registered by Up).
func (nw *Network) consentAtSource(ctx context.Context, gp *xis, p int, bsn string) error {
	switch p {
	case 1:
		if err := gp.do(ctx, http.MethodPost, "/internal/consent", map[string]any{"patient": bsn, "effect": "permit"}, nil); err != nil {
			return fmt.Errorf("consent in the GP practice's own registry: %w", err)
		}
	case 2:
		if err := nw.permit(ctx, true, bsn, GP); err != nil {
			return fmt.Errorf("consent at the regional portal: %w", err)
		}
	}
	return nil
}

// consentAtHolder registers the demo patient's permission for holder's
// data where the consent plateau p the holder agreed with the requester
// looks it up: the holder's own registry (1, through its node's internal
// API), the regional portal (2), the consent service playing Mitz (3–4).
func (nw *Network) consentAtHolder(ctx context.Context, holder Participant, p int, bsn string) error {
	switch p {
	case 1:
		x := &xis{base: nw.internalURLs[nw.nodeURA(holder)], token: nw.Token(holder.URA), http: &http.Client{Timeout: 30 * time.Second}}
		if err := x.do(ctx, http.MethodPost, "/internal/consent", map[string]any{"patient": bsn, "effect": "permit"}, nil); err != nil {
			return fmt.Errorf("consent in %s's own registry: %w", holder.Name, err)
		}
	case 2:
		if err := nw.permit(ctx, true, bsn, holder); err != nil {
			return fmt.Errorf("consent at the regional portal: %w", err)
		}
	default:
		if err := nw.permit(ctx, false, bsn, holder); err != nil {
			return fmt.Errorf("consent at the consent service: %w", err)
		}
	}
	return nil
}

// evidence reads, per function, what the GP node recorded of the
// hospital's requests in this run and says what was sent and checked.
func (nw *Network) evidence(ctx context.Context, agreed plateau.Plateaus, bsn string) ([]FunctionReport, error) {
	gpLog, done, err := nw.nodeAudit(ctx, GP.URA)
	if err != nil {
		return nil, err
	}
	recs, err := gpLog.List(ctx, audit.Filter{ActorURA: Hospital.URA})
	done()
	if err != nil {
		return nil, err
	}
	var tokens []string   // checks of the tokens issued to the specialist
	var consents []string // consent decisions of the consult's answers
	var roles, authz []string
	for _, r := range recs {
		switch {
		case r.Interaction == "token" && r.Outcome == http.StatusOK && r.ActorUser == DemoUser.UZI:
			for _, c := range r.Checks {
				if strings.HasPrefix(c, "plateau: authentication") {
					tokens = appendNew(tokens, strings.TrimPrefix(c, "plateau: "))
				}
			}
		case r.Outcome == http.StatusOK && r.ConsentProfile != "" && r.Patient == bsn:
			consents = appendNew(consents, r.ConsentProfile)
			roles = appendNew(roles, r.ActorRole)
			for _, c := range r.Checks {
				if strings.HasPrefix(c, "plateau: agreement") {
					authz = appendNew(authz, c)
				}
			}
		}
	}
	var missing []string
	var out []FunctionReport
	add := func(f plateau.Function, sent, checked string) {
		out = append(out, FunctionReport{Function: f, Plateau: agreed[f], Sent: sent, Checked: checked})
	}

	// Identification.
	idp := agreed[plateau.Identification]
	if idp >= 3 {
		verified := 0
		for _, p := range nw.members {
			st, done, err := nw.nodeAudit(ctx, p.URA)
			if err != nil {
				return nil, err
			}
			for _, r := range nodeRecords(ctx, st, bsn, "bsn-verify") {
				if r.Outcome == http.StatusOK {
					verified++
				}
			}
			done()
		}
		if verified == 0 {
			missing = append(missing, "identification: no verification at the BSN verification service in the audit logs")
		}
		add(plateau.Identification, "a BSN verified at the BSN verification service (SBV-Z stand-in) before the referral",
			fmt.Sprintf("the BSN verified at the service by sender, receiver and holder (%d verifications audited, cached after)", verified))
	} else {
		add(plateau.Identification, "the patient's BSN, 11-proef checked", "the BSN passes the 11-proef; verification is the partner's (bilateral trust)")
	}

	// Authentication: what the GP's token endpoint recorded as given.
	ap := agreed[plateau.Authentication]
	if len(tokens) == 0 {
		missing = append(missing, "authentication: the GP's audit log has no token issued to the hospital's specialist")
	}
	given := strings.Join(tokens, " | ")
	if ap >= 4 && !strings.Contains(given, "user identity signed by the identity issuer") {
		missing = append(missing, "authentication: at plateau 4 the GP's audit log does not show a checked signed user identity")
	}
	add(plateau.Authentication, map[int]string{
		1: "the user claims, as given",
		2: "the user's UZI number, role code and strong login in the grant assertion",
		3: "the same, in the grant assertion the hospital signs",
		4: "also the user identity the identity issuer signed",
	}[ap], "audit record of the token: "+given)

	// Authorization.
	add(plateau.Authorization, map[int]string{1: "the hospital's URA (mTLS, client assertion)", 2: "plus the user's role code " + DemoUser.Role,
		3: "the role, organisation-signed", 4: "the role, in the signed identity"}[agreed[plateau.Authorization]],
		fmt.Sprintf("roles %v; %s", roles, strings.Join(authz, " | ")))

	// Consent.
	if len(consents) == 0 {
		missing = append(missing, "consent: the GP's audit log has no consent decision for the Direct Pull")
	}
	add(plateau.Consent, "nothing: the holder asks", "per answer: "+strings.Join(consents, " | "))

	// Localization.
	lp := agreed[plateau.Localization]
	add(plateau.Localization, map[int]string{
		1: "the consult without localization",
		2: "the consult only after the index named the practice; its hit in the grant assertion",
		3: "the hit, and direct queries to plateau-3 parties in the addressbook",
		4: "the hit of the national localization service",
	}[lp], map[int]string{
		1: "no hit looked at",
		2: "the hit: signed by the index, issued to the hospital, naming the practice, for the patient of every query",
		3: "a hit presented is checked; a direct query allowed",
		4: "the hit, and that it comes from the national localization service",
	}[lp])

	// Addressing.
	if agreed[plateau.Addressing] <= 2 {
		add(plateau.Addressing, "to the endpoints the agreement configures (own mechanism)", "nothing to check: the partners' own arrangement")
	} else {
		add(plateau.Addressing, "to the endpoints the addressbook lists", "the requester's client keys from the addressbook")
	}

	// Logging.
	if agreed[plateau.Logging] >= 3 {
		shipped, err := nw.waitShipped(ctx)
		if err != nil {
			missing = append(missing, "logging: "+err.Error())
		}
		add(plateau.Logging, "its own NEN 7513 log, shipped to the central log", fmt.Sprintf("the central log holds both nodes' chains (%s)", shipped))
	} else {
		n, err := nw.fetchOwnExport(ctx)
		if err != nil {
			missing = append(missing, "logging: the hospital's export at the GP: "+err.Error())
		}
		add(plateau.Logging, "its own NEN 7513 log, available on request",
			fmt.Sprintf("the hospital fetched the signed export of its own requests at the GP: %d records verified", n))
	}

	// Network.
	if agreed[plateau.Network] >= 3 {
		add(plateau.Network, "mutual TLS 1.3 with its UZI server certificate (CA route)",
			"every token request and data access: CA route, TLS 1.3 named suite, fresh CRL of the chain")
	} else {
		add(plateau.Network, "mutual TLS 1.3 with its certificate", "every token request and data access: mutual TLS with the partner's own certificate")
	}
	if len(missing) > 0 {
		return out, errors.New("missing evidence: " + strings.Join(missing, "; "))
	}
	return out, nil
}

// waitShipped waits (bounded) until the central log holds every record
// of every node's log.
func (nw *Network) waitShipped(ctx context.Context) (string, error) {
	central, err := nw.centralLog(ctx)
	if err != nil {
		return "", err
	}
	if central == nil {
		return "", errors.New("no central log runs")
	}
	var parts []string
	for i, p := range nw.members {
		st, done, err := nw.nodeAudit(ctx, p.URA)
		if err != nil {
			return "", err
		}
		last := st.LastSeq()
		done()
		for j := 0; ; j++ {
			held, err := central.Entries(ctx, p.URA, 0, int(last))
			if err != nil {
				return "", err
			}
			if int64(len(held)) >= last {
				parts = append(parts, fmt.Sprintf("%s %d records", nw.nodeNames[i], len(held)))
				break
			}
			if j >= 3000 {
				return "", fmt.Errorf("%s: the central log holds %d of %d records", nw.nodeNames[i], len(held), last)
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return strings.Join(parts, ", "), nil
}

// fetchOwnExport is the hospital asking the GP's node for the signed export
// of the audit records of its own requests, and verifying it.
func (nw *Network) fetchOwnExport(ctx context.Context) (int, error) {
	dir := filepath.Join(nw.opts.DataDir, "hospital-node", "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	if err != nil {
		return 0, err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}
	defer hc.CloseIdleConnections()
	keys, err := audit.FetchExportKeys(ctx, hc, nw.publicURLs[GP.URA])
	if err != nil {
		return 0, err
	}
	compact, err := audit.FetchExport(ctx, hc, nw.publicURLs[GP.URA], 0)
	if err != nil {
		return 0, err
	}
	v, err := audit.VerifyExport(compact, keys, Hospital.URA)
	if err != nil {
		return 0, err
	}
	if len(v.Records) == 0 {
		return 0, errors.New("the export holds none of the hospital's requests")
	}
	return len(v.Records), nil
}

// nodeRecords are a node's audit records of one interaction about bsn.
func nodeRecords(ctx context.Context, st *audit.Store, bsn, interaction string) []audit.Record {
	recs, err := st.List(ctx, audit.Filter{Patient: bsn})
	if err != nil {
		return nil
	}
	var out []audit.Record
	for _, r := range recs {
		if r.Interaction == interaction {
			out = append(out, r)
		}
	}
	return out
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// PrintPlateauRun writes, per function, the plateau and what was sent and
// checked.
func (nw *Network) PrintPlateauRun(r *PlateauRun) {
	nw.printf("\nGrowth model: per generic function, what the hospital's node sent and the GP practice's node checked\n")
	for _, f := range r.Functions {
		nw.printf("  %-15s plateau %d\n      sent:    %s\n      checked: %s\n", f.Function, f.Plateau, f.Sent, f.Checked)
	}
}
