package network

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/push"
)

// TestLetterOverPush: the hospital's system hands its node a discharge
// letter for the GP practice on the internal API; the GP's node stores it
// and signs a receipt the hospital's node keeps (and which verifies with
// the GP practice's published key); the GP's system lists it, marks it
// processed, and the acknowledgement reaches the hospital. Both nodes
// audit their side. A letter whose BSN fails the 11-proef is refused by
// the sender's node at once and never queued.
func TestLetterOverPush(t *testing.T) {
	nw := startNetwork(t, 1)
	ctx := context.Background()
	s, err := nw.ExchangeLetter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, in := s.Message, s.Inbox
	bsn := nw.Patients[0].BSN
	if m.Status != push.StatusDelivered || m.Receipt == "" || m.Delivered.IsZero() || m.Attempts < 1 {
		t.Errorf("sender's view: status %s, receipt %q, delivered %v, %d attempts", m.Status, m.Receipt, m.Delivered, m.Attempts)
	}
	if m.Ack != push.AckAccepted || m.AckNote != "opgenomen in het dossier" || m.AckAt.IsZero() {
		t.Errorf("acknowledgement at the sender: %q %q %v", m.Ack, m.AckNote, m.AckAt)
	}
	if in.MessageID != m.ID || in.SenderURA != Hospital.URA || in.PatientBSN != bsn || in.Receipt != m.Receipt ||
		in.BodySHA256 != m.BodySHA256 {
		t.Errorf("the GP's inbox holds %+v for message %s (patient %s)", in, m.ID, bsn)
	}

	// The receipt proves delivery to anyone with the GP practice's key set,
	// fetched as a partner fetches it: over mTLS from the JWKS endpoint.
	p := newPeer(t, nw)
	resp, err := p.http.Get(nw.GPNode.PublicURL() + "/jwks/" + GP.URA)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	keys, err := jwk.Parse(b)
	if err != nil {
		t.Fatalf("GP's JWKS: %v: %s", err, b)
	}
	r, err := push.VerifyReceipt(m.Receipt, keys, m)
	if err != nil {
		t.Fatalf("receipt: %v", err)
	}
	if r.ReceiverURA != GP.URA || r.SenderURA != Hospital.URA || r.MessageID != m.ID || r.PayloadSHA256 != m.BodySHA256 {
		t.Errorf("receipt claims %+v for message %s", r, m.ID)
	}

	for _, c := range []struct {
		log         *audit.Store
		interaction string
		outcome     int
	}{
		{nw.HospNode.Audit(), "push-send", http.StatusAccepted},
		{nw.HospNode.Audit(), "push-deliver", http.StatusOK},
		{nw.HospNode.Audit(), "push-acknowledgement", http.StatusOK}, // task: the acknowledgement's own id
		{nw.GPNode.Audit(), "push-receive", http.StatusOK},
		{nw.GPNode.Audit(), "push-processed", http.StatusOK},
		{nw.GPNode.Audit(), "push-acknowledge", http.StatusOK},
	} {
		task := m.ID
		if strings.HasPrefix(c.interaction, "push-acknowledge") {
			task = ""
		}
		if !hasRecord(t, c.log, bsn, c.interaction, c.outcome, task) {
			t.Errorf("no %s record (outcome %d) of message %s", c.interaction, c.outcome, m.ID)
		}
	}

	t.Run("invalid BSN", func(t *testing.T) {
		const bad = "123456788" // fails the 11-proef
		_, err := nw.exchangeLetter(ctx, letterPatient{BSN: bad, Name: "Test", Born: "1980-01-01"})
		if err == nil || !strings.Contains(err.Error(), "send:") || !strings.Contains(err.Error(), "BSN") {
			t.Fatalf("letter with an invalid BSN: %v", err)
		}
		var list struct{ Messages []push.OutMessage }
		hosp := &xis{base: nw.HospNode.InternalURL(), token: nw.Token(Hospital.URA), http: http.DefaultClient}
		if err := hosp.do(ctx, http.MethodGet, "/internal/messages?direction=sent", nil, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Messages) != 1 {
			t.Errorf("the outbox holds %d messages, want only the first letter", len(list.Messages))
		}
	})
}

// TestLetterRefusedByReceiver: with citizen identification agreed at
// plateau 3, a letter about a BSN the register does not know passes the
// sender's checks but the GP's node refuses it (422, audited). The
// hospital's node marks it refused without retrying, and the run ends on
// that status instead of waiting for a letter that will never arrive.
func TestLetterRefusedByReceiver(t *testing.T) {
	ctx := context.Background()
	nw := upNetwork(t, Options{DataDir: t.TempDir(), Patients: 1,
		Plateaus: plateau.Plateaus{plateau.Identification: 3}})
	_, err := nw.exchangeLetter(ctx, letterPatient{BSN: unregisteredBSN, Name: "Onbekend", Born: "1980-01-01"})
	if !errors.Is(err, ErrNotDelivered) || !strings.Contains(err.Error(), push.StatusRefused) ||
		!strings.Contains(err.Error(), "not known to the BSN verification service") {
		t.Fatalf("letter refused by the receiver: %v", err)
	}
	var list struct{ Messages []push.OutMessage }
	hosp := &xis{base: nw.HospNode.InternalURL(), token: nw.Token(Hospital.URA), http: http.DefaultClient}
	if err := hosp.do(ctx, http.MethodGet, "/internal/messages?direction=sent&status=refused", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Messages) != 1 || list.Messages[0].Attempts != 1 {
		t.Fatalf("refused messages at the sender: %+v", list.Messages)
	}
	id := list.Messages[0].ID
	if !hasRecord(t, nw.GPNode.Audit(), unregisteredBSN, "push-receive", http.StatusUnprocessableEntity, id) {
		t.Error("the refusal is not audited at the receiver")
	}
	if !hasRecord(t, nw.HospNode.Audit(), unregisteredBSN, "push-deliver", http.StatusBadGateway, id) {
		t.Error("the refused delivery is not audited at the sender")
	}
	// Refused is final: the GP's inbox never holds it.
	gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: http.DefaultClient}
	var inbox struct{ Messages []push.InMessage }
	if err := gp.do(ctx, http.MethodGet, "/internal/messages?direction=received", nil, &inbox); err != nil {
		t.Fatal(err)
	}
	if len(inbox.Messages) != 0 {
		t.Errorf("the GP's inbox holds %d messages", len(inbox.Messages))
	}
}

// hasRecord reports whether log holds a record of interaction about bsn
// with outcome (and task, when given). A node writes some records just
// after the state the test saw (the delivery's, once its status is
// stored), so it looks again a bounded number of times.
func hasRecord(t *testing.T, log *audit.Store, bsn, interaction string, outcome int, task string) bool {
	t.Helper()
	for range 200 {
		recs, err := log.List(context.Background(), audit.Filter{Patient: bsn})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Interaction == interaction && r.Outcome == outcome && (task == "" || r.Task == task) {
				return true
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false
}
