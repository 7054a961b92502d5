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

	"github.com/schakel-nl/schakel/correspondentie"
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
	patient := nw.Patients[0]
	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xis{base: nw.internalURLs[GP.URA], token: nw.Token(GP.URA), http: hc}
	hosp := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: hc}
	start := time.Now()
	nw.printf("\nExchange: %s sends a discharge letter for %s to %s (Correspondentie, Push)\n", Hospital.Name, patient.Name, GP.Name)
	_, born, _ := nl.Patient(patient.Resources[0])
	letter, err := correspondentie.Letter(correspondentie.LetterSpec{ID: newID(), Type: correspondentie.DischargeLetter,
		PatientBSN: patient.BSN, PatientName: patient.Name, BirthDate: born, AuthorUZI: "900000123", AuthorName: "dr. M. Internist",
		CustodianURA: Hospital.URA, Custodian: Hospital.Name, Date: time.Now(),
		Text: "Ontslagbrief: patient ontslagen in goede conditie; controle op de polikliniek over zes weken."})
	if err != nil {
		return nil, err
	}
	var sent push.OutMessage
	if err := hosp.do(ctx, http.MethodPost, "/internal/messages", push.SendRequest{ReceiverURA: GP.URA,
		Application: "correspondentie", Payload: letter}, &sent); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	nw.printf("  accepted: message %s durable in the hospital's outbox (202)\n", sent.ID)

	// The GP's system waits for the letter, reads it and marks it processed.
	var in push.InMessage
	err = poll(ctx, func() (bool, error) {
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
		if view.OutMessage == nil {
			return false, errors.New("the hospital's node lost the message")
		}
		if view.Status == push.StatusFailed || view.Status == push.StatusRefused {
			return false, fmt.Errorf("message %s: %s", view.Status, view.StatusReason)
		}
		return view.Ack != "", nil
	})
	if err != nil {
		return nil, fmt.Errorf("no acknowledgement: %w", err)
	}
	return &PushSummary{Message: *view.OutMessage, Inbox: in, Took: time.Since(start)}, nil
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
