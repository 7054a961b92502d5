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
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/push"
)

func startGeboortezorg(t testing.TB) *Network {
	t.Helper()
	// The test peer (see newPeer) is a plateau-1 partner of every node.
	return upNetwork(t, Options{Patients: 1, Geboortezorg: true,
		Agreements: []plateau.PartnerConfig{{URA: peerURA, Name: "Testpraktijk", Plateaus: plateau.Uniform(1)}}})
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
	_, err := Up(context.Background(), Options{DataDir: t.TempDir(), Geboortezorg: true, IndexedPull: true})
	if err == nil || !strings.Contains(err.Error(), "Geboortezorg") {
		t.Fatalf("Geboortezorg with IndexedPull: %v", err)
	}
	nw := startNetwork(t, 1)
	if _, err := nw.ExchangeTransfer(context.Background()); err == nil {
		t.Fatal("the transfer ran without a midwife practice's node")
	}
}

// TestTransferRefusedAtReceiver: a partner's node that does not check
// what it sends delivers, over mTLS with a push token, messages the GP
// practice's node must refuse: a letter under the geboortezorg event, a
// transfer whose mother is not bc-Woman, one in FHIR R4 shape, one
// without the mother's BSN. Each answer is a 4xx OperationOutcome naming
// the fault, each refusal is audited at the GP's node (with the mother
// when she is validly named), and nothing reaches the GP's inbox.
func TestTransferRefusedAtReceiver(t *testing.T) {
	nw := startGeboortezorg(t)
	ctx := context.Background()
	p := newPeer(t, nw)
	md, err := p.oauth.Metadata(ctx, nw.GPNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.oauth.Token(ctx, md.TokenEndpoint, oauth.TokenRequest{GrantType: notifiedpull.GrantTypeClient, Scope: []string{push.Scope}})
	if err != nil {
		t.Fatalf("push token: %v", err)
	}
	const mother = geboortezorg.DemoMotherBSN
	doc, _ := geboortezorg.Document(geboortezorg.Demo(newID(), peerURA, "Testpraktijk", time.Now()))
	edit := func(f func(r map[string]any)) json.RawMessage {
		var d map[string]any
		_ = json.Unmarshal(doc, &d)
		for _, e := range d["entry"].([]any) {
			f(e.(map[string]any)["resource"].(map[string]any))
		}
		out, _ := json.Marshal(d)
		return out
	}
	letter, _ := correspondentie.Letter(correspondentie.LetterSpec{ID: newID(), Type: correspondentie.DischargeLetter,
		PatientBSN: mother, PatientName: "S. de Wit", BirthDate: "1993-05-14", AuthorUZI: "900000456", AuthorName: "L. Bakker",
		CustodianURA: peerURA, Custodian: "Testpraktijk", Date: time.Now(), Text: "Brief."})
	isMother := func(r map[string]any) bool {
		b, _ := json.Marshal(r["meta"])
		return r["resourceType"] == "Patient" && strings.Contains(string(b), geboortezorg.ProfileWoman)
	}
	for _, c := range []struct {
		name    string
		payload json.RawMessage
		status  int
		want    string
		patient string
	}{
		{"a letter as geboortezorg", letter, 422, "correspondentie", mother},
		{"mother not bc-Woman", edit(func(r map[string]any) {
			if isMother(r) {
				r["meta"] = map[string]any{"profile": []any{geboortezorg.ProfileNLCorePatient}}
			}
		}), 422, geboortezorg.ProfileWoman, mother},
		{"FHIR R4 pregnancy", edit(func(r map[string]any) {
			if r["resourceType"] == "Condition" {
				r["clinicalStatus"] = map[string]any{"coding": []any{map[string]any{"code": "inactive"}}}
			}
		}), 400, "clinicalStatus", ""}, // the whole message is validated as STU3 first
		{"mother without BSN", edit(func(r map[string]any) {
			if isMother(r) {
				delete(r, "identifier")
			}
		}), 422, "BSN", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, pid := newID(), newID()
			msg, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "id": id, "type": "message", "entry": []any{
				map[string]any{"fullUrl": "urn:uuid:" + id, "resource": map[string]any{"resourceType": "MessageHeader", "id": id,
					"event":     map[string]any{"system": push.SystemEvent, "code": geboortezorg.Name},
					"sender":    map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": peerURA}},
					"receiver":  map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": GP.URA}},
					"timestamp": time.Now().UTC().Format(time.RFC3339), "source": map[string]any{"endpoint": p.srv.URL},
					"focus": []any{map[string]any{"reference": "urn:uuid:" + pid}}}},
				map[string]any{"fullUrl": "urn:uuid:" + pid, "resource": c.payload}}})
			req, _ := http.NewRequest(http.MethodPost, node.Endpoints(nw.GPNode.PublicURL(), GP.URA).Push, bytes.NewReader(msg))
			req.Header.Set("Content-Type", "application/fhir+json; fhirVersion=3.0")
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			resp, err := p.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var oo struct {
				ResourceType string
				Issue        []struct{ Diagnostics string }
			}
			_ = json.NewDecoder(resp.Body).Decode(&oo)
			diag := ""
			for _, i := range oo.Issue {
				diag += i.Diagnostics + "; "
			}
			if resp.StatusCode != c.status || oo.ResourceType != "OperationOutcome" || !strings.Contains(diag, c.want) {
				t.Fatalf("got %d %s %q, want %d naming %q", resp.StatusCode, oo.ResourceType, diag, c.status, c.want)
			}
			if !hasRecord(t, nw.GPNode.Audit(), c.patient, "push-receive", resp.StatusCode, id) {
				t.Errorf("the refusal is not audited at the GP's node (patient %q)", c.patient)
			}
		})
	}
	gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: http.DefaultClient}
	var inbox struct{ Messages []push.InMessage }
	if err := gp.do(ctx, http.MethodGet, "/internal/messages?direction=received", nil, &inbox); err != nil {
		t.Fatal(err)
	}
	if len(inbox.Messages) != 0 {
		t.Errorf("the GP's inbox holds %d refused messages", len(inbox.Messages))
	}
}
