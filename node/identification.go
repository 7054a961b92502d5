package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/identification"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// IdentificationConfig is the BSN verification service (the SBV-Z
// OpvragenVerifieren service, or a stand-in that speaks it) the node asks
// where the citizen identification plateau agreed with a partner requires
// a verified BSN: from plateau 3 (see docs/plateaus.md).
type IdentificationConfig struct {
	// URL is the service's full address, e.g.
	// https://webservice.sbv-z.nl/cibg.sbv.interface.xis.webservice.mrt21/opvragenverifieren.asmx.
	URL string `koanf:"url"`
	// CAFiles verify the service's certificate; the node's trust list when empty.
	CAFiles []string `koanf:"cafiles"`
	// CertFile/KeyFile: the UZI server certificate the node presents to
	// the service; the node's own (tls.certfile) when empty.
	CertFile string `koanf:"certfile"`
	KeyFile  string `koanf:"keyfile"`
	// Timeout bounds one question (default 5s): no answer refuses the exchange.
	Timeout time.Duration `koanf:"timeout"`
	// CacheTTL keeps an answer for the same BSN and birth date (default 1h).
	CacheTTL time.Duration `koanf:"cachettl"`
}

// verifyFrom is the lowest identification plateau at which the node itself
// verifies a BSN at the service. Below it the parties verify the BSNs they
// record themselves (the 11-proef is checked on every message): see
// docs/plateaus.md for why the line lies at nationally consultable data.
const verifyFrom = 3

// validate checks the section and that every agreement whose
// identification plateau needs the service has one.
func (c IdentificationConfig) validate(partners plateau.Config) []error {
	var errs []error
	if c.URL != "" {
		if u, err := url.Parse(c.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, errors.New("identification.url must be an https URL"))
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("identification: certfile and keyfile go together"))
	}
	if c.Timeout < 0 || c.CacheTTL < 0 {
		errs = append(errs, errors.New("identification.timeout and identification.cachettl cannot be negative"))
	}
	if c.URL != "" {
		return errs
	}
	need := func(where string, p int) {
		if p >= verifyFrom {
			errs = append(errs, fmt.Errorf("%s: citizen identification is agreed at plateau %d, which needs a verified BSN: set identification.url (the BSN verification service, SBV-Z)", where, p))
		}
	}
	if partners.Default != nil {
		need("partners.default", partners.Default[plateau.Identification])
	}
	for i, a := range partners.Agreements {
		need(plateau.AgreementPath(i, a), partners.Plateau(a, plateau.Identification))
	}
	return errs
}

// setupIdentification builds the client of the BSN verification service.
func (n *Node) setupIdentification() error {
	c := n.cfg.Identification
	if c.URL == "" {
		return nil
	}
	cert := n.cert
	if c.CertFile != "" {
		var err error
		if cert, err = loadKeyPair("identification", c.CertFile, c.KeyFile); err != nil {
			return err
		}
	}
	tlsCfg := n.trust.ClientTLSConfig(cert)
	if len(c.CAFiles) > 0 {
		roots, err := pki.LoadCertPool(c.CAFiles...)
		if err != nil {
			return fmt.Errorf("identification.cafiles: %w", err)
		}
		tlsCfg = pki.ClientTLSConfig(cert, roots)
	}
	client, err := identification.NewClient(identification.ClientConfig{URL: c.URL, HTTPClient: n.httpClient(tlsCfg),
		Timeout: c.Timeout, CacheTTL: c.CacheTTL})
	if err != nil {
		return fmt.Errorf("identification.url: %w", err)
	}
	n.bsn = client
	return nil
}

// identityCheck is one exchange step that names a patient to a partner.
type identityCheck struct {
	tenant, partner string // our participant and the partner organisation
	bsn, birthDate  string // the patient; the birth date as the node's record gives it, when it has one
	step            string // "refer", "notification" or "consult", for the audit record
}

// identify holds an exchange step to the citizen identification plateau
// agreed with the partner: from plateau 3 the patient's BSN must be
// verified at the service (cached), with the birth date the node holds.
// The error is a *fhir.Error: 422 when the BSN is not verified (its cause a
// *plateau.Refusal naming function and plateau), 503 when the service gives
// no answer (fail closed). Every question put to the service is audited,
// and so is every refusal: the notification and the consult audit their
// outcome themselves, a refused referral is audited here.
func (n *Node) identify(ctx context.Context, c identityCheck) error {
	fe := n.verifyBSN(ctx, c)
	if fe == nil {
		return nil
	}
	if c.step == "refer" {
		rec := audit.Record{Action: audit.ActionCreate, Interaction: "refer", Tenant: c.tenant, ActorURA: c.tenant,
			Patient: c.bsn, PurposeOfUse: "TREAT", Outcome: fe.Status, OutcomeText: fe.Issues[0].Diagnostics}
		if pt, ok := n.parts.get(c.tenant); ok {
			rec.ActorSystem = pt.SystemUZI
		}
		if err := n.auditLog.Append(ctx, rec); err != nil {
			return auditUnavailable(err)
		}
	}
	return fe
}

// verifyBSN is identify's decision.
func (n *Node) verifyBSN(ctx context.Context, c identityCheck) *fhir.Error {
	a, ok := n.plateaus.Agreement(c.partner)
	if !ok {
		return nil // no agreement: the step's own checks refuse the partner
	}
	p := a.Plateau(plateau.Identification)
	if p < verifyFrom {
		return nil
	}
	refusal := &plateau.Refusal{Function: plateau.Identification, Required: p, Partner: c.partner}
	if n.bsn == nil {
		// Validate prevents this; fail closed all the same.
		refusal.Reason = "no BSN verification service is configured"
		return &fhir.Error{Status: http.StatusServiceUnavailable, Cause: refusal, Issues: []fhir.Issue{{Severity: "error",
			Code: "transient", Diagnostics: refusal.Description()}}}
	}
	res, err := n.bsn.Verify(ctx, identification.Person{BSN: c.bsn, BirthDate: c.birthDate})
	if !res.Cached && !errors.Is(err, identification.ErrInvalidQuery) {
		n.auditVerification(ctx, c, p, res, err)
	}
	switch {
	case errors.Is(err, identification.ErrInvalidQuery):
		refusal.Reason = "the patient's BSN or birth date is malformed: " + err.Error()
	case err != nil:
		n.log.Warn("BSN verification service gave no answer", "participant", c.tenant, "step", c.step, "err", err)
		refusal.Reason = "the BSN verification service could not be asked; nothing was exchanged"
		return &fhir.Error{Status: http.StatusServiceUnavailable, Cause: refusal, Issues: []fhir.Issue{{Severity: "error",
			Code: "transient", Diagnostics: refusal.Description()}}}
	case res.Outcome == identification.Verified:
		return nil
	case res.Outcome == identification.NotFound:
		refusal.Reason = "the patient's BSN is not known to the BSN verification service (SBV-Z): not a verified BSN"
	default:
		refusal.Reason = fmt.Sprintf("the patient's data deviates from the BSN's registration (%s): not a verified BSN",
			strings.Join(res.Deviating, ", "))
	}
	return &fhir.Error{Status: http.StatusUnprocessableEntity, Cause: refusal, Issues: []fhir.Issue{{Severity: "error",
		Code: "business-rule", Diagnostics: refusal.Description()}}}
}

// auditVerification records a question put to the verification service:
// it discloses the BSN to the service.
func (n *Node) auditVerification(ctx context.Context, c identityCheck, p int, res identification.Result, err error) {
	rec := audit.Record{Action: audit.ActionExecute, Type: "identification", Interaction: "bsn-verify", Tenant: c.tenant,
		ActorURA: c.tenant, Patient: c.bsn, PurposeOfUse: "TREAT", Query: "OpvragenVerifieren LokaalKenmerk " + res.Reference,
		Checks: []string{fmt.Sprintf("identification: plateau %d agreed with %s, %s", p, c.partner, c.step)}}
	if pt, ok := n.parts.get(c.tenant); ok {
		rec.ActorSystem = pt.SystemUZI
	}
	switch {
	case err != nil:
		rec.Outcome, rec.OutcomeText = http.StatusServiceUnavailable, "no answer: "+err.Error()
	case res.Outcome == identification.Verified:
		rec.Outcome, rec.OutcomeText = http.StatusOK, "verified ("+res.Message+")"
	case res.Outcome == identification.NotFound:
		rec.Outcome, rec.OutcomeText = http.StatusNotFound, "not found ("+res.Message+")"
	default:
		rec.Outcome, rec.OutcomeText = http.StatusConflict, "mismatch: "+strings.Join(res.Deviating, ", ")+" ("+res.Message+")"
	}
	n.appendAudit(ctx, rec)
}

// identifyHeld is identify on the holder side of a Direct Pull: the
// patient's birth date comes from the participant's own record, when it
// holds the patient.
func (n *Node) identifyHeld(ctx context.Context, tenant, partner, bsn string) error {
	if a, ok := n.plateaus.Agreement(partner); !ok || a.Plateau(plateau.Identification) < verifyFrom {
		return nil
	}
	born := ""
	page, err := n.stu3.Search(ctx, tenant, store.Query{Type: "Patient", Params: url.Values{"identifier": {nl.SystemBSN + "|" + bsn}}})
	if err != nil {
		return fmt.Errorf("identification: find the patient in the record: %w", err)
	}
	if len(page.Matches) > 0 {
		_, born, _ = nl.Patient(page.Matches[0].Body)
	}
	return n.identify(ctx, identityCheck{tenant: tenant, partner: partner, bsn: bsn, birthDate: born, step: "consult"})
}

// referralBSN refuses, before a referral is made, a BSN that fails the
// 11-proef, naming the identification plateau agreed with the receiver:
// at every plateau the BSN must pass it before it leaves (from 3 it is
// verified at the service as well). No agreement: Refer's own checks
// answer. Nothing names a patient, so nothing is audited.
func (n *Node) referralBSN(receiver, bsn string) *fhir.Error {
	err := nl.ValidateBSN(bsn)
	if err == nil {
		return nil
	}
	a, ok := n.plateaus.Agreement(receiver)
	if !ok {
		return nil
	}
	refusal := &plateau.Refusal{Function: plateau.Identification, Required: a.Plateau(plateau.Identification), Partner: receiver,
		Reason: "patient: " + err.Error()}
	return &fhir.Error{Status: http.StatusBadRequest, Issues: []fhir.Issue{{Severity: "error", Code: "value",
		Diagnostics: refusal.Description()}}}
}
