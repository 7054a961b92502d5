package network

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/push"
)

func startGeboortezorg(t testing.TB) *Network {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 1, Geboortezorg: true})
	if err != nil {
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() {
		cancel()
		if err := nw.Wait(); err != nil {
			t.Errorf("network stopped with: %v", err)
		}
	})
	return nw
}

// TestTransferOverPush: the midwife practice's node delivers the perinatal
// transfer to the GP practice's and the hospital's nodes; each stores it
// under the mother's BSN, signs a receipt the midwife practice's node
// verified, and its system reads mother, child and the key observations
// and acknowledges it. All three nodes audit their side. A letter sent
// under geboortezorg, and a transfer without the mother's BSN, are refused
// by the midwife practice's node before anything is queued.
func TestTransferOverPush(t *testing.T) {
	nw := startGeboortezorg(t)
	ctx := context.Background()
	run, err := nw.ExchangeTransfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Deliveries) != 2 {
		t.Fatalf("%d deliveries", len(run.Deliveries))
	}
	midwife := nw.Nodes[2]
	const mother = geboortezorg.DemoMotherBSN
	for i, d := range run.Deliveries {
		m, in := d.Message, d.Inbox
		if want := []Participant{GP, Hospital}[i]; d.Receiver != want || m.ReceiverURA != want.URA {
			t.Errorf("delivery %d went to %s", i, m.ReceiverURA)
		}
		if m.Status != push.StatusDelivered || m.Receipt == "" || m.Ack != push.AckAccepted || m.Application != geboortezorg.Name {
			t.Errorf("%s: sender's view %s, receipt %q, ack %q, application %q", d.Receiver.Name, m.Status, m.Receipt, m.Ack, m.Application)
		}
		if in.MessageID != m.ID || in.SenderURA != Midwife.URA || in.PatientBSN != mother || in.Receipt != m.Receipt {
			t.Errorf("%s's inbox holds %+v for message %s", d.Receiver.Name, in, m.ID)
		}
		if d.Read.Child.BSN != geboortezorg.DemoChildBSN || d.Read.PracticeURA != Midwife.URA || len(d.Read.Observations) < 8 {
			t.Errorf("%s's system read %+v", d.Receiver.Name, d.Read)
		}
		receiver := nw.GPNode
		if d.Receiver == Hospital {
			receiver = nw.HospNode
		}
		for _, c := range []struct {
			log         *audit.Store
			interaction string
			outcome     int
		}{
			{midwife.Audit(), "push-send", http.StatusAccepted},
			{midwife.Audit(), "push-deliver", http.StatusOK},
			{receiver.Audit(), "push-receive", http.StatusOK},
			{receiver.Audit(), "push-processed", http.StatusOK},
		} {
			if !hasRecord(t, c.log, mother, c.interaction, c.outcome, m.ID) {
				t.Errorf("no %s record (outcome %d) of message %s to %s", c.interaction, c.outcome, m.ID, d.Receiver.Name)
			}
		}
	}

	x := &xis{base: nw.internalURLs[Midwife.URA], token: nw.Token(Midwife.URA), http: http.DefaultClient}
	letter, err := correspondentie.Letter(correspondentie.LetterSpec{ID: newID(), Type: correspondentie.DischargeLetter,
		PatientBSN: mother, PatientName: "S. de Wit", BirthDate: "1993-05-14", AuthorUZI: "900000456", AuthorName: "L. Bakker",
		CustodianURA: Midwife.URA, Custodian: Midwife.Name, Date: time.Now(), Text: "Brief."})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := geboortezorg.Document(geboortezorg.Demo(newID(), Midwife.URA, Midwife.Name, time.Now()))
	noBSN := strings.Replace(string(doc), `"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"`+mother+`"}],`, "", 1)
	if noBSN == string(doc) {
		t.Fatal("the demo transfer's mother has no BSN to remove")
	}
	for _, c := range []struct {
		name    string
		payload json.RawMessage
		want    string
	}{
		{"a letter as geboortezorg", letter, "correspondentie"},
		{"mother without BSN", json.RawMessage(noBSN), "BSN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := x.do(ctx, http.MethodPost, "/internal/messages", push.SendRequest{ReceiverURA: GP.URA,
				Application: geboortezorg.Name, Payload: c.payload}, nil)
			if err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a 422 naming %q", err, c.want)
			}
		})
	}
	var list struct{ Messages []push.OutMessage }
	if err := x.do(ctx, http.MethodGet, "/internal/messages?direction=sent", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Messages) != 2 {
		t.Errorf("the midwife practice's outbox holds %d messages, want the two transfers", len(list.Messages))
	}
}

// TestGeboortezorgOptions: the Geboortezorg network has nodes of its own.
func TestGeboortezorgOptions(t *testing.T) {
	_, err := Up(context.Background(), Options{DataDir: t.TempDir(), Geboortezorg: true, Mixed: true})
	if err == nil || !strings.Contains(err.Error(), "Geboortezorg") {
		t.Fatalf("Geboortezorg with Mixed: %v", err)
	}
	nw := startNetwork(t, 1)
	if _, err := nw.ExchangeTransfer(context.Background()); err == nil {
		t.Fatal("the transfer ran without a midwife practice's node")
	}
}
