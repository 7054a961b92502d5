package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// maxNotificationBytes bounds a consent notification's body.
const maxNotificationBytes = 1 << 20

// consentNotification serves POST /consent/notifications/{ura} on the
// public listener: Mitz's rest-hook for consent changes that concern
// participant ura as data holder (consent.subscribe). Only the consent
// service's certificate (consent.notifierura) may post. With consent in
// force for the participant the holding is (re)registered at the referral
// index; without it, withdrawn. The notification is audited before it is
// answered; when the index or the audit log cannot be written the answer is
// 503, and the service delivers the notification again.
func (n *Node) consentNotification(w http.ResponseWriter, r *http.Request) {
	ura := r.PathValue("ura")
	rec := audit.Record{Action: audit.ActionUpdate, Interaction: "consent-notification", Type: "consent", Tenant: ura,
		Address: r.RemoteAddr, PurposeOfUse: "TREAT", ConsentProfile: "Mitz notification"}
	peer, peerErr := n.trust.PeerURA(r.TLS)
	rec.ActorURA = peer
	// answer audits the outcome, then sends it (a refusal, or the
	// informational outcome of a notification acted on); false when the
	// audit log refused and 503 was sent instead.
	answer := func(fe *fhir.Error) bool {
		rec.Outcome = fe.Status
		if len(fe.Issues) > 0 {
			rec.OutcomeText = fe.Issues[0].Diagnostics
		}
		if err := n.auditLog.Append(r.Context(), rec); err != nil {
			n.log.Error("audit append failed", "interaction", rec.Interaction, "err", err)
			writeOutcome(w, auditUnavailable(err))
			return false
		}
		writeOutcome(w, fe)
		return true
	}
	p, known := n.parts.get(ura)
	switch {
	case !n.cfg.Consent.Subscribe || n.mitz == nil:
		answer(fhir.Errorf(http.StatusNotFound, "not-found", "this node does not subscribe to consent notifications"))
		return
	case peerErr != nil || peer != n.cfg.Consent.NotifierURA:
		answer(fhir.Errorf(http.StatusForbidden, "forbidden", "only the consent service this node subscribes at may post consent notifications"))
		return
	case !known:
		answer(fhir.Errorf(http.StatusNotFound, "not-found", "no participant %s on this node", ura))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || (mt != "application/fhir+json" && mt != "application/json") {
		answer(fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "a consent notification is a FHIR JSON Bundle (application/fhir+json)"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxNotificationBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			answer(fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", "a consent notification is at most %d bytes", maxNotificationBytes))
			return
		}
		answer(fhir.Errorf(http.StatusBadRequest, "invalid", "the notification could not be read"))
		return
	}
	notice, err := consent.ParseNotice(body)
	if err != nil {
		answer(fhir.Errorf(http.StatusBadRequest, "invalid", "not a consent notification: %v", err))
		return
	}
	rec.Patient = notice.PatientBSN
	// Cached answers about the patient may be stale now.
	n.mitz.Forget(notice.PatientBSN)
	if n.regional != nil {
		n.regional.Forget(notice.PatientBSN)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	inForce := notice.PermitsHolder(p.URA, p.FacilityType, time.Now())
	var step string
	if inForce {
		rec.ConsentProfile = "Mitz notification: consent in force"
		step = "consent in force: the holding is registered at the referral index"
		_, _, err = p.index.Register(ctx, localization.Registration{BSN: notice.PatientBSN, CareContext: careContextBgZ})
	} else {
		rec.ConsentProfile = "Mitz notification: no consent in force"
		step = "no consent in force: the holding is withdrawn from the referral index"
		err = p.index.Withdraw(ctx, notice.PatientBSN, careContextBgZ)
	}
	if err != nil {
		n.log.Warn("acting on a consent notification failed", "participant", ura, "consent", inForce, "err", withoutURL(err))
		answer(&fhir.Error{Status: http.StatusServiceUnavailable, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "transient",
			Diagnostics: "the referral index could not be updated; deliver the notification again later"}}})
		return
	}
	if inForce {
		n.remember(holdingKey(ura, notice.PatientBSN) + notifiedpull.ApplicationBgZ)
	} else {
		n.forgetHoldings(ura, notice.PatientBSN)
	}
	if answer(&fhir.Error{Status: http.StatusOK, Issues: []fhir.Issue{{Severity: "information", Code: "informational", Diagnostics: step}}}) {
		n.emit(eventf(n.cfg.Name, ura, "consent", "consent notification from Mitz: %s", step))
	}
}

// withoutURL drops the request URL from a transport error before it is
// logged: a withdrawal's URL carries the patient's pseudonym.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
