package network

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/push"
)

// Midwife is the midwife practice of the Geboortezorg network
// (Options.Geboortezorg), on a node of its own. G3 is "Verloskundigenpraktijk"
// in the organisation type code system (2.16.840.1.113883.2.4.15.1060).
var Midwife = Participant{URA: "90000020", Name: "Verloskundigenpraktijk De Waterlelie", SystemUZI: "900000200", AGB: "03000020", FacilityType: "G3"}

// geboortezorgSpecs are the nodes of the Geboortezorg network: the GP
// practice's, the hospital's and the midwife practice's, each with the
// network's agreement (the default, every function at Options.Plateau, or
// with Options.Mixed the pair's own) with the two others.
func geboortezorgSpecs() []nodeSpec {
	return []nodeSpec{
		{name: "gp-node", p: GP, peers: []Participant{Hospital, Midwife}},
		{name: "hospital-node", p: Hospital, peers: []Participant{GP, Midwife}},
		{name: "midwife-node", p: Midwife, peers: []Participant{GP, Hospital}},
	}
}

// geboortezorgOptions refuses what the Geboortezorg network cannot be
// combined with: it has nodes of its own. With Mixed its pairs agree the
// plateaus mixedAgreements gives them.
func geboortezorgOptions(opts Options) error {
	if opts.Geboortezorg && (opts.IndexedPull || opts.OwnAddressing || len(opts.Requesters) > 0) {
		return errors.New("network: the Geboortezorg network has its own nodes: not with IndexedPull, OwnAddressing or Requesters")
	}
	return nil
}

// TransferDelivery is one receiver's side of the perinatal transfer.
type TransferDelivery struct {
	Receiver Participant
	Message  push.OutMessage       // the midwife practice's view at the end: receipt and acknowledgement
	Inbox    push.InMessage        // the receiver's node's inbox entry
	Read     geboortezorg.Transfer // what the receiver's system read from the payload
}

// TransferRun is the outcome of ExchangeTransfer.
type TransferRun struct {
	Deliveries []TransferDelivery
	Took       time.Duration
}

// ExchangeTransfer runs Geboortezorg over Push: the midwife practice's
// system hands its node the perinatal transfer of the demo mother and
// child for the GP practice and for the hospital; each receiving system
// lists its inbox, fetches the transfer, reads it and marks it processed
// (accepted), and the run waits until the midwife practice has both
// acknowledgements. It needs a network started with Options.Geboortezorg.
func (nw *Network) ExchangeTransfer(ctx context.Context) (*TransferRun, error) {
	if nw.internalURLs[Midwife.URA] == "" {
		return nil, errors.New("network: the Geboortezorg exchange needs the midwife practice's node (Options.Geboortezorg)")
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	midwife := &xis{base: nw.internalURLs[Midwife.URA], token: nw.Token(Midwife.URA), http: hc}
	start := time.Now()
	spec := geboortezorg.Demo(newID(), Midwife.URA, Midwife.Name, time.Now())
	doc, err := geboortezorg.Document(spec)
	if err != nil {
		return nil, err
	}
	nw.printf("\nExchange: %s sends the perinatal transfer of %s and her child %s to %s and %s (Geboortezorg, Push)\n",
		Midwife.Name, spec.Mother.Name(), spec.Child.Name(), GP.Name, Hospital.Name)
	run := &TransferRun{}
	for _, to := range []Participant{GP, Hospital} {
		var sent push.OutMessage
		if err := midwife.do(ctx, http.MethodPost, "/internal/messages", push.SendRequest{ReceiverURA: to.URA,
			Application: geboortezorg.Name, Payload: doc}, &sent); err != nil {
			return run, fmt.Errorf("send to %s: %w", to.Name, err)
		}
		nw.printf("  accepted: message %s to %s durable in the midwife practice's outbox (202)\n", sent.ID, to.Name)
		run.Deliveries = append(run.Deliveries, TransferDelivery{Receiver: to, Message: sent})
	}
	for i := range run.Deliveries {
		if err := nw.receiveTransfer(ctx, midwife, &run.Deliveries[i]); err != nil {
			return run, err
		}
	}
	run.Took = time.Since(start)
	return run, nil
}

// receiveTransfer is the receiving system's part for one delivery, then
// the wait for its acknowledgement at the midwife practice.
func (nw *Network) receiveTransfer(ctx context.Context, midwife *xis, d *TransferDelivery) error {
	rcv := &xis{base: nw.internalURLs[d.Receiver.URA], token: nw.Token(d.Receiver.URA), http: midwife.http}
	id := d.Message.ID
	err := poll(ctx, func() (bool, error) {
		if err := undelivered(ctx, midwife, id); err != nil {
			return false, err
		}
		var list struct{ Messages []push.InMessage }
		if err := rcv.do(ctx, http.MethodGet, "/internal/messages?direction=received", nil, &list); err != nil {
			return false, err
		}
		for _, m := range list.Messages {
			if m.MessageID == id {
				d.Inbox = m
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("transfer %s not received by %s: %w", id, d.Receiver.Name, err)
	}
	var view node.MessageView
	if err := rcv.do(ctx, http.MethodGet, "/internal/messages/"+d.Inbox.ID, nil, &view); err != nil {
		return fmt.Errorf("%s fetches the transfer: %w", d.Receiver.Name, err)
	}
	if d.Read, err = geboortezorg.Read(view.Payload); err != nil {
		return fmt.Errorf("%s reads the transfer: %w", d.Receiver.Name, err)
	}
	nw.printf("  received: %s's inbox holds it as %s (mother %s); its system read it:\n", d.Receiver.Name, d.Inbox.ID, d.Inbox.PatientBSN)
	nw.printTransfer(d.Read)
	if err := rcv.do(ctx, http.MethodPost, "/internal/messages/"+d.Inbox.ID+"/processed",
		map[string]string{"acknowledgement": push.AckAccepted, "note": "overdracht opgenomen in het dossier"}, nil); err != nil {
		return fmt.Errorf("%s marks it processed: %w", d.Receiver.Name, err)
	}
	err = poll(ctx, func() (bool, error) {
		var out node.MessageView
		if err := midwife.do(ctx, http.MethodGet, "/internal/messages/"+id, nil, &out); err != nil {
			return false, err
		}
		if err := undeliveredErr(id, out); err != nil {
			return false, err
		}
		d.Message = *out.OutMessage
		return out.Ack != "", nil
	})
	if err != nil {
		return fmt.Errorf("no acknowledgement from %s: %w", d.Receiver.Name, err)
	}
	return nil
}

func (nw *Network) printTransfer(t geboortezorg.Transfer) {
	nw.printf("    mother: %s, BSN %s, born %s\n", t.Mother.Name(), t.Mother.BSN, t.Mother.BirthDate)
	nw.printf("    child:  %s, BSN %s, %s, born %s\n", t.Child.Name(), t.Child.BSN, t.Child.Gender, t.Born)
	for _, o := range t.Observations {
		nw.printf("    %-6s  %s: %s\n", o.Subject, o.Label, o.Value)
	}
	nw.printf("    from %s (URA %s), document %s\n", t.Practice, t.PracticeURA, t.DocumentID)
}

// PrintTransfer prints each delivery's receipt and acknowledgement.
func (nw *Network) PrintTransfer(r *TransferRun) {
	for _, d := range r.Deliveries {
		m := d.Message
		claims := "?"
		if parts := strings.Split(m.Receipt, "."); len(parts) == 3 {
			if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
				claims = string(b)
			}
		}
		nw.printf("  %s: delivered %s after %d attempt(s)\n", d.Receiver.Name, m.Delivered.Format(time.RFC3339), m.Attempts)
		nw.printf("    receipt (signed by %s, verified by the midwife practice's node): %s\n", m.ReceiverURA, claims)
		nw.printf("    acknowledgement from its system: %s (%s) at %s\n", m.Ack, m.AckNote, m.AckAt.Format(time.RFC3339))
	}
	nw.printf("  took %s\n", r.Took.Round(time.Millisecond))
}
