package network

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/push"
)

// PushSummary is the outcome of one Correspondentie letter over Push.
type PushSummary struct {
	Message push.OutMessage // the sender's view at the end: receipt and acknowledgement
	Inbox   push.InMessage  // the receiver's view
	Took    time.Duration
}

// ExchangeLetter sends a discharge letter for the first demo patient from
// the hospital to the GP practice over Push, through the internal APIs as
// the participants' systems would; the GP's system marks it processed
// (accepted), and the run waits until the hospital has the acknowledgement.
func (nw *Network) ExchangeLetter(ctx context.Context) (*PushSummary, error) {
	if len(nw.Patients) == 0 {
		return nil, errors.New("no demo patients")
	}
	p := nw.Patients[0]
	_, born, _ := nl.Patient(p.Resources[0])
	return nw.exchangeLetter(ctx, letterPatient{BSN: p.BSN, Name: p.Name, Born: born})
}

// letterPatient is the patient a letter is about.
type letterPatient struct{ BSN, Name, Born string }

// exchangeLetter is ExchangeLetter for any patient. A letter the hospital's
// node does not deliver (refused by the GP's node, or past its lifetime)
// ends the run as soon as the hospital's system can see that status.
func (nw *Network) exchangeLetter(ctx context.Context, patient letterPatient) (*PushSummary, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xis{base: nw.internalURLs[GP.URA], token: nw.Token(GP.URA), http: hc}
	hosp := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: hc}
	start := time.Now()
	name := nw.care(careapp.Push)
	app, ok := nw.opts.Applications.Get(name)
	demo, hasDemo := app.(careapp.DemoMessages)
	if !ok || !hasDemo {
		return nil, fmt.Errorf("care application %q has no demo message to send over Push", name)
	}
	letter, title, err := demo.DemoMessage(careapp.DemoPatient{BSN: patient.BSN, Name: patient.Name, BirthDate: patient.Born},
		careapp.DemoParty{URA: Hospital.URA, Name: Hospital.Name}, time.Now())
	if err != nil {
		return nil, err
	}
	nw.printf("\nExchange: %s sends %s for %s to %s (%s, Push)\n", Hospital.Name, title, patient.Name, GP.Name, name)
	var sent push.OutMessage
	if err := hosp.do(ctx, http.MethodPost, "/internal/messages", push.SendRequest{ReceiverURA: GP.URA,
		Application: name, Payload: letter}, &sent); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	nw.printf("  accepted: message %s durable in the hospital's outbox (202)\n", sent.ID)

	// The GP's system waits for the letter, reads it and marks it processed.
	// Meanwhile the hospital's system watches its message: once refused or
	// failed it will never arrive.
	var in push.InMessage
	err = poll(ctx, func() (bool, error) {
		if err := undelivered(ctx, hosp, sent.ID); err != nil {
			return false, err
		}
		var list struct{ Messages []push.InMessage }
		if err := gp.do(ctx, http.MethodGet, "/internal/messages?direction=received", nil, &list); err != nil {
			return false, err
		}
		for _, m := range list.Messages {
			if m.MessageID == sent.ID {
				in = m
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("letter %s not received: %w", sent.ID, err)
	}
	nw.printf("  received: the GP practice's inbox holds it as %s (patient %s)\n", in.ID, in.PatientBSN)
	if err := gp.do(ctx, http.MethodPost, "/internal/messages/"+in.ID+"/processed",
		map[string]string{"acknowledgement": push.AckAccepted, "note": "opgenomen in het dossier"}, nil); err != nil {
		return nil, fmt.Errorf("processed: %w", err)
	}
	var view node.MessageView
	err = poll(ctx, func() (bool, error) {
		if err := hosp.do(ctx, http.MethodGet, "/internal/messages/"+sent.ID, nil, &view); err != nil {
			return false, err
		}
		if err := undeliveredErr(sent.ID, view); err != nil {
			return false, err
		}
		return view.Ack != "", nil
	})
	if err != nil {
		return nil, fmt.Errorf("no acknowledgement: %w", err)
	}
	return &PushSummary{Message: *view.OutMessage, Inbox: in, Took: time.Since(start)}, nil
}

// ErrNotDelivered: the sender's node will not deliver the message
// (refused by the receiver, or past its lifetime).
var ErrNotDelivered = errors.New("not delivered")

// undelivered asks the sender's node for message id and returns
// ErrNotDelivered, with the reason, when it is refused or failed.
func undelivered(ctx context.Context, sender *xis, id string) error {
	var view node.MessageView
	if err := sender.do(ctx, http.MethodGet, "/internal/messages/"+id, nil, &view); err != nil {
		return err
	}
	return undeliveredErr(id, view)
}

func undeliveredErr(id string, view node.MessageView) error {
	switch {
	case view.OutMessage == nil:
		return fmt.Errorf("the sender's node lost message %s", id)
	case view.Status == push.StatusFailed || view.Status == push.StatusRefused:
		return fmt.Errorf("message %s %w: %s: %s", id, ErrNotDelivered, view.Status, view.StatusReason)
	}
	return nil
}

// poll runs f every 20 ms until it is done, for at most 60 s.
func poll(ctx context.Context, f func() (bool, error)) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errors.New("not within 60s")
		case <-tick.C:
		}
	}
}

// PrintLetter prints the receipt and the acknowledgement of a letter.
func (nw *Network) PrintLetter(s *PushSummary) {
	m := s.Message
	claims := "?"
	if parts := strings.Split(m.Receipt, "."); len(parts) == 3 {
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			claims = string(b)
		}
	}
	nw.printf("  delivered: %s after %d attempt(s)\n", m.Delivered.Format(time.RFC3339), m.Attempts)
	nw.printf("  receipt (signed by %s, verified by the hospital's node): %s\n", m.ReceiverURA, claims)
	nw.printf("  acknowledgement from the GP's system: %s (%s) at %s\n", m.Ack, m.AckNote, m.AckAt.Format(time.RFC3339))
	nw.printf("  took %s\n", s.Took.Round(time.Millisecond))
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
