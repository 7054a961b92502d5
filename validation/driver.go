package validation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Driver makes the node under test act where the kit cannot ask it over
// the Twiin wire: a sender is told by its participant's system to refer a
// patient, a requester to consult a holder. The kit judges what then
// arrives on the wire; the driver only starts it.
type Driver interface {
	// Refer makes the target send a Notified Pull for patient to receiverURA.
	Refer(ctx context.Context, patient, receiverURA, app string) error
	// Consult makes the target retrieve patient's data from holderURA
	// (Direct Pull) on behalf of a user (UZI number and role code).
	Consult(ctx context.Context, patient, holderURA, app, userID, userRole string) error
	// AuditEvents returns the target's audit trail of actorURA as a FHIR
	// Bundle of AuditEvents (NEN 7513 "available on request", SPEC §6).
	AuditEvents(ctx context.Context, actorURA string) ([]byte, error)
	// SendMessage makes the target send payload over Push to receiverURA
	// as care application app, with message id id.
	SendMessage(ctx context.Context, id, receiverURA, app string, payload []byte) error
	// SentMessage is the target's state of a message it sends (its outbox).
	SentMessage(ctx context.Context, id string) (SentMessage, error)
	// ReceivedMessages lists what the target's participant received over
	// Push (its inbox), acknowledgements included.
	ReceivedMessages(ctx context.Context) ([]ReceivedMessage, error)
	// Processed tells the target its system processed inbox message id
	// (the inbox's own id), accepted or rejected, with a note.
	Processed(ctx context.Context, id, ack, note string) error
}

// SentMessage is a sent message as the node under test reports it.
type SentMessage struct {
	ID              string `json:"id"`
	Receiver        string `json:"receiver"`
	Status          string `json:"status"`
	StatusReason    string `json:"statusReason"`
	Attempts        int    `json:"attempts"`
	Receipt         string `json:"receipt"`
	Acknowledgement string `json:"acknowledgement"`
	AcknowledgeNote string `json:"acknowledgementNote"`
}

// ReceivedMessage is an inbox message as the node under test reports it.
type ReceivedMessage struct {
	ID          string `json:"id"`
	MessageID   string `json:"messageId"`
	Sender      string `json:"sender"`
	Application string `json:"application"`
	Kind        string `json:"kind"`
	Receipt     string `json:"receipt"`
	Status      string `json:"status"`
}

// DocumentReferrer is a Driver that can make the node refer with
// documents: the read inputs of a transfer (eOverdracht's aanmeldbericht
// and overdrachtbericht), "Type/id" in the participant's record.
type DocumentReferrer interface {
	ReferDocuments(ctx context.Context, patient, receiverURA, app string, reads []string) error
}

// TransferDecider is a Driver that can make the receiving participant's
// system decide on a transfer request the node received: status accepted,
// or rejected with a reason. identifier is the notification's identifier.
type TransferDecider interface {
	DecideTransfer(ctx context.Context, identifier, status, reason string) error
}

// ImageRequester is a Driver that can make the node's participant system
// look a patient's studies up at a holder and retrieve one
// (Beeldbeschikbaarheid), on behalf of a user (UZI number and role code),
// and tell what the system received.
type ImageRequester interface {
	RequestImages(ctx context.Context, patient, holderURA, userID, userRole string) (Images, error)
}

// Images is what the participant's system received of an image request:
// the studies the holder listed, and of the retrieved study the DICOM
// instances the node handed over.
type Images struct {
	Studies         []string `json:"studies"`
	Study           string   `json:"study"`
	SOPInstanceUIDs []string `json:"sopInstanceUids"`
	// Verified is the node's own word that every listed instance arrived.
	Verified bool `json:"verified"`
}

// APIError is the internal API's refusal of a driver's request: what the
// participant's system was told.
type APIError struct {
	Method, Path string
	Status       int
	Body         []byte
}

func (e *APIError) Error() string {
	b := e.Body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("internal API %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, b)
}

// ErrNotDriven is returned by a driver that cannot perform an action.
var ErrNotDriven = errors.New("the driver cannot perform this action")

// Manual asks a person to make the node act; the kit then waits for the
// node on the wire. It cannot fetch the audit trail.
type Manual struct{ Out io.Writer }

func (m Manual) say(format string, args ...any) {
	if m.Out != nil {
		fmt.Fprintf(m.Out, "\n>>> "+format+"\n", args...)
	}
}

func (m Manual) Refer(_ context.Context, patient, receiverURA, app string) error {
	m.say("Make the node under test send a %s Notified Pull for patient %s to URA %s now.", app, patient, receiverURA)
	return nil
}

func (m Manual) Consult(_ context.Context, patient, holderURA, app, userID, userRole string) error {
	m.say("Make the node under test retrieve %s for patient %s from URA %s now (user %s, role %s).", app, patient, holderURA, userID, userRole)
	return nil
}

func (m Manual) ReferDocuments(_ context.Context, patient, receiverURA, app string, reads []string) error {
	m.say("Make the node under test send a %s Notified Pull for patient %s to URA %s now, with the documents %s.", app, patient, receiverURA, strings.Join(reads, ", "))
	return nil
}

func (m Manual) DecideTransfer(_ context.Context, identifier, status, reason string) error {
	if reason != "" {
		status += " with the reason " + strconv.Quote(reason)
	}
	m.say("Make the participant's system decide on the transfer request %s now: %s.", identifier, status)
	return nil
}

func (m Manual) RequestImages(_ context.Context, patient, holderURA, userID, userRole string) (Images, error) {
	m.say("Make the node under test look up and retrieve the images of patient %s at URA %s now (user %s, role %s).", patient, holderURA, userID, userRole)
	return Images{}, fmt.Errorf("%w: what the system received must be read from the node's system", ErrNotDriven)
}

func (Manual) AuditEvents(context.Context, string) ([]byte, error) {
	return nil, fmt.Errorf("%w: the audit trail must be obtained from the node's operator", ErrNotDriven)
}

func (m Manual) SendMessage(_ context.Context, id, receiverURA, app string, payload []byte) error {
	m.say("Make the node under test send this %s message (id %s) over Push to URA %s now:\n%s", app, id, receiverURA, payload)
	return nil
}

func (Manual) SentMessage(context.Context, string) (SentMessage, error) {
	return SentMessage{}, fmt.Errorf("%w: a message's delivery status must be read from the node's system", ErrNotDriven)
}

func (Manual) ReceivedMessages(context.Context) ([]ReceivedMessage, error) {
	return nil, fmt.Errorf("%w: the inbox must be read from the node's system", ErrNotDriven)
}

func (m Manual) Processed(_ context.Context, id, ack, note string) error {
	m.say("Make the receiving system report message %s as processed (%s, %q) now.", id, ack, note)
	return nil
}

// SchakelDriver drives a Schakel node through its internal API, as the
// participant's own system does (docs/protocols.md, internal API).
type SchakelDriver struct {
	InternalURL string // e.g. http://127.0.0.1:8081
	Token       string // the participant's internal API token
	HTTP        *http.Client
}

func (d SchakelDriver) do(ctx context.Context, method, path string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(d.InternalURL, "/")+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+d.Token)
	req.Header.Set("Content-Type", "application/json")
	client := d.HTTP
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Minute}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("internal API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode/100 != 2 {
		return b, &APIError{Method: method, Path: path, Status: resp.StatusCode, Body: b}
	}
	return b, nil
}

func (d SchakelDriver) Refer(ctx context.Context, patient, receiverURA, app string) error {
	_, err := d.do(ctx, http.MethodPost, "/internal/referrals", map[string]string{"patient": patient, "receiver": receiverURA, "application": app})
	return err
}

func (d SchakelDriver) Consult(ctx context.Context, patient, holderURA, app, userID, userRole string) error {
	_, err := d.do(ctx, http.MethodPost, "/internal/consult", map[string]string{"patient": patient, "holder": holderURA,
		"application": app, "userId": userID, "userRole": userRole})
	return err
}

func (d SchakelDriver) SendMessage(ctx context.Context, id, receiverURA, app string, payload []byte) error {
	_, err := d.do(ctx, http.MethodPost, "/internal/messages", map[string]any{"id": id, "receiver": receiverURA,
		"application": app, "payload": json.RawMessage(payload)})
	return err
}

func (d SchakelDriver) SentMessage(ctx context.Context, id string) (SentMessage, error) {
	var m SentMessage
	b, err := d.do(ctx, http.MethodGet, "/internal/messages/"+url.PathEscape(id), nil)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

func (d SchakelDriver) ReceivedMessages(ctx context.Context) ([]ReceivedMessage, error) {
	b, err := d.do(ctx, http.MethodGet, "/internal/messages?direction=received", nil)
	if err != nil {
		return nil, err
	}
	var list struct {
		Messages []ReceivedMessage `json:"messages"`
	}
	return list.Messages, json.Unmarshal(b, &list)
}

func (d SchakelDriver) Processed(ctx context.Context, id, ack, note string) error {
	_, err := d.do(ctx, http.MethodPost, "/internal/messages/"+url.PathEscape(id)+"/processed",
		map[string]string{"acknowledgement": ack, "note": note})
	return err
}

func (d SchakelDriver) ReferDocuments(ctx context.Context, patient, receiverURA, app string, reads []string) error {
	_, err := d.do(ctx, http.MethodPost, "/internal/referrals", map[string]any{"patient": patient, "receiver": receiverURA, "application": app, "reads": reads})
	return err
}

// DecideTransfer waits (as long as ctx allows, 60 s at most) until the
// transfer request with this identifier waits for its decision at the
// node (GET /internal/transfers), then decides on it.
func (d SchakelDriver) DecideTransfer(ctx context.Context, identifier, status, reason string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := d.do(ctx, http.MethodGet, "/internal/transfers?decision=pending", nil)
		if err != nil {
			return err
		}
		var pending []struct{ ID, Identifier string }
		if err := json.Unmarshal(b, &pending); err != nil {
			return fmt.Errorf("internal API: transfer requests: %w", err)
		}
		for _, r := range pending {
			if r.Identifier == identifier {
				_, err := d.do(ctx, http.MethodPost, "/internal/transfers/"+url.PathEscape(r.ID)+"/decision", map[string]string{"status": status, "reason": reason})
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("transfer request %s does not wait for a decision at the node", identifier)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RequestImages asks the node's internal imaging API (POST
// /internal/imaging) to look the patient's studies up at the holder and
// retrieve the first.
func (d SchakelDriver) RequestImages(ctx context.Context, patient, holderURA, userID, userRole string) (Images, error) {
	b, err := d.do(ctx, http.MethodPost, "/internal/imaging", map[string]any{"patient": patient, "holder": holderURA,
		"user": map[string]string{"id": userID, "role": userRole}, "retrieve": true})
	if err != nil {
		return Images{}, err
	}
	var res struct {
		Studies []struct {
			UID string `json:"uid"`
		} `json:"studies"`
		Retrieved *struct {
			Study     string `json:"study"`
			Verified  bool   `json:"verified"`
			Instances []struct {
				SOPInstanceUID string `json:"sopInstanceUid"`
			} `json:"instances"`
		} `json:"retrieved"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return Images{}, fmt.Errorf("internal API: imaging answer: %w", err)
	}
	var out Images
	for _, s := range res.Studies {
		out.Studies = append(out.Studies, s.UID)
	}
	if r := res.Retrieved; r != nil {
		out.Study, out.Verified = r.Study, r.Verified
		for _, in := range r.Instances {
			out.SOPInstanceUIDs = append(out.SOPInstanceUIDs, in.SOPInstanceUID)
		}
	}
	return out, nil
}

func (d SchakelDriver) AuditEvents(ctx context.Context, actorURA string) ([]byte, error) {
	return d.do(ctx, http.MethodGet, "/internal/audit/AuditEvent?agent="+url.QueryEscape(actorURA)+"&_count=200", nil)
}
