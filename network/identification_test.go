package network

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// unregisteredBSN passes the 11-proef but is no demo patient: the
// stand-in's register (the network's BRP) does not know it.
const unregisteredBSN = "999911259"

// TestIdentificationPlateauVerifiesBSN: with citizen identification agreed
// at plateau 3, a demo patient's BSN is verified at the network's SBV-Z
// stand-in and the exchange goes ahead; a BSN the register does not know
// is refused with the function and plateau named, on the sender's,
// the receiver's and the data holder's side.
func TestIdentificationPlateauVerifiesBSN(t *testing.T) {
	agreed := plateau.Uniform(1)
	agreed[plateau.Identification] = 3
	agreed[plateau.Consent] = 4 // the demo consent is registered at the service playing Mitz
	nw := startNetwork(t, 1, plateau.PartnerConfig{URA: peerURA, Name: "Testpraktijk", Plateaus: agreed})
	p := newPeer(t, nw)
	ctx := context.Background()
	demoBSN := nw.Patients[0].BSN
	refused := func(t *testing.T, code int, body []byte) {
		t.Helper()
		if code != http.StatusUnprocessableEntity {
			t.Fatalf("status %d, want 422: %s", code, body)
		}
		for _, want := range []string{"not known to the BSN verification service", "identification, plateau 3"} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("refusal %s does not say %q", body, want)
			}
		}
	}

	t.Run("sender", func(t *testing.T) {
		// A demo patient is verified and referred.
		referToPeer(t, nw, p, 0)
		// The GP practice also records a patient the BRP does not know.
		patient := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + unregisteredBSN +
			`"}],"name":[{"family":"Onbekend"}],"birthDate":"1980-01-01"}`
		if _, err := nw.GPNode.Store().Create(ctx, GP.URA, []byte(patient)); err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(notifiedpull.ReferRequest{PatientBSN: unregisteredBSN, ReceiverURA: peerURA, Application: "bgz"})
		req, _ := http.NewRequest(http.MethodPost, nw.GPNode.InternalURL()+"/internal/referrals", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+nw.Token(GP.URA))
		code, answer := do(t, http.DefaultClient, req)
		refused(t, code, answer)
		select {
		case <-p.notes:
			t.Error("the peer was notified of a patient whose BSN is not verified")
		default:
		}
		if !audited(t, nw, unregisteredBSN, "refer", http.StatusUnprocessableEntity) {
			t.Error("the refused referral is not audited")
		}
		if !audited(t, nw, unregisteredBSN, "bsn-verify", http.StatusNotFound) {
			t.Error("the verification question is not audited with its outcome")
		}
	})

	t.Run("receiver", func(t *testing.T) {
		tok, err := p.oauth.Token(ctx, tokenEndpoint(t, p, nw.HospNode.PublicURL()), oauth.TokenRequest{GrantType: notifiedpull.GrantTypeClient,
			Scope: []string{notifiedpull.ScopeNotify}})
		if err != nil {
			t.Fatal(err)
		}
		notify := func(id, bsn string) (int, []byte) {
			spec := notifiedpull.NotificationSpec{Identifier: "urn:uuid:0b8a6f0e-1111-4222-8333-9444555566" + id, GroupIdentifier: "urn:uuid:0b8a6f0e-1111-4222-8333-9444555566" + id,
				PatientBSN: bsn, SenderURA: peerURA, SenderSystem: "900000033", ReceiverURA: Hospital.URA,
				WorkflowTask: p.srv.URL + "/fhir/stu3/" + peerURA + "/Task/1", AuthBase: "secret", Expires: time.Now().Add(time.Hour), Authored: time.Now()}
			req, _ := http.NewRequest(http.MethodPost, nw.HospNode.PublicURL()+"/fhir/stu3/"+Hospital.URA+"/Task", bytes.NewReader(notifiedpull.BuildNotification(spec)))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			return do(t, p.http, req)
		}
		if code, body := notify("01", demoBSN); code != http.StatusCreated {
			t.Fatalf("notification for a demo patient: %d %s", code, body)
		}
		code, body := notify("02", unregisteredBSN)
		refused(t, code, body)
	})

	t.Run("holder", func(t *testing.T) {
		base := nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA
		claims := userClaims("01.016")
		claims[consult.AssertionRequesterType] = "Z1"
		tok, err := p.oauth.Token(ctx, tokenEndpoint(t, p, nw.GPNode.PublicURL()), oauth.TokenRequest{GrantType: notifiedpull.GrantTypeJWT,
			Scope: []string{"bgz"}, Resource: base, AssertionClaims: claims})
		if err != nil {
			t.Fatal(err)
		}
		q := bgz.Queries()[5]
		if code, body := p.get(t, p.http, tok.AccessToken, base+"/"+q.Query(demoBSN)); code != http.StatusOK {
			t.Fatalf("consult for a demo patient: %d %s", code, body)
		}
		code, body := p.get(t, p.http, tok.AccessToken, base+"/"+q.Query(unregisteredBSN))
		refused(t, code, body)
	})
}

func tokenEndpoint(t *testing.T, p *peer, base string) string {
	t.Helper()
	md, err := p.oauth.Metadata(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	return md.TokenEndpoint
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// audited reports whether the GP's log holds a record of interaction about
// bsn with outcome status.
func audited(t *testing.T, nw *Network, bsn, interaction string, status int) bool {
	t.Helper()
	recs, err := nw.GPNode.Audit().List(context.Background(), audit.Filter{Patient: bsn})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Interaction == interaction && r.Outcome == status && (status < 400 || strings.Contains(r.OutcomeText, "not") || interaction == "bsn-verify") {
			return true
		}
	}
	return false
}
