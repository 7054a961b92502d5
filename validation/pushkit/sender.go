package pushkit

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	fhirvalidate "github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/validation"
)

// arrival is one delivery of a message at the kit and how it was answered.
type arrival struct {
	in     validation.Inbound
	msg    parsed
	err    error
	status int
	// receipt is the one the kit answered with ("" when it refused).
	receipt string
}

// answerer answers the node's deliveries of one message by attempt
// number (0 first).
type answerer func(p *validation.Probe, in *validation.Inbound, m parsed, attempt int) (status int, body []byte, receipt string)

// take collects the node's deliveries of message id, answered by answer.
type take struct {
	mu       sync.Mutex
	id       string
	arrivals []arrival
}

func (t *take) list() []arrival {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]arrival(nil), t.arrivals...)
}

// receive installs the kit's Push endpoint for message id.
func receive(p *validation.Probe, id string, answer answerer) *take {
	t := &take{id: id}
	p.Env().Counterpart.Messages(func(in *validation.Inbound) (int, []byte) {
		m, err := parse(in.Body)
		if err == nil && m.header.ID != id {
			return http.StatusUnprocessableEntity, oo("the kit expects message " + id + " now")
		}
		t.mu.Lock()
		n := len(t.arrivals)
		t.mu.Unlock()
		a := arrival{in: *in, msg: m, err: err}
		var body []byte
		if err != nil {
			a.status, body = http.StatusBadRequest, oo("not a message Bundle: "+err.Error())
		} else {
			a.status, body, a.receipt = answer(p, in, m, n)
		}
		t.mu.Lock()
		t.arrivals = append(t.arrivals, a)
		t.mu.Unlock()
		return a.status, body
	})
	return t
}

// receiptFor answers with the kit's receipt for the message; hash, when
// not empty, replaces the message's payload hash (a wrong receipt).
func receiptFor(p *validation.Probe, in *validation.Inbound, m parsed, hash string) (int, []byte, string) {
	env := p.Env()
	if hash == "" {
		hash = sha(in.Body)
	}
	tok, err := signReceipt(env.Config.Kit.Signing, receipt{MessageID: m.header.ID, Sender: m.sender(), Receiver: env.Config.Kit.URA,
		PayloadSHA256: hash, IssuedAt: time.Now().Unix()})
	if err != nil {
		return http.StatusInternalServerError, oo("the kit could not sign its receipt"), ""
	}
	return http.StatusOK, message(header{id: newID(), eventSystem: m.header.Event.System, eventCode: m.header.Event.Code,
		sender: env.Config.Kit.URA, receiver: m.sender(), source: env.Counterpart.Base + "/$process-message",
		responseTo: m.header.ID, code: "ok", receipt: tok}, nil), tok
}

// waitStatus polls the node's state of message id until done holds or the
// run's wait ends.
func waitStatus(p *validation.Probe, id string, done func(validation.SentMessage) bool) (validation.SentMessage, error) {
	deadline := time.Now().Add(p.Env().Config.Wait)
	for {
		m, err := p.Env().Driver.SentMessage(p.Context(), id)
		if err != nil || done(m) || time.Now().After(deadline) {
			return m, err
		}
		select {
		case <-p.Context().Done():
			return m, p.Context().Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sent is the scenario of the node as sender: the kit refuses the first
// delivery as unavailable (503), takes the retry with its receipt, then
// acknowledges the message.
type sent struct {
	id      string
	payload []byte
	// ins are the node's requests to the kit while it delivered.
	ins      []validation.Inbound
	arrivals []arrival
	// status is the node's state after the receipt, and after the
	// acknowledgement.
	status, acked validation.SentMessage
	statusErr     error
	ackAnswer     *validation.Response
	ackSent       []byte
	ackNote       string
	ackErr        error
}

func (s Spec) send(p *validation.Probe) (*sent, error) {
	const key = "push.sent"
	v, err := p.Once(key, func(p *validation.Probe) (any, error) {
		env := p.Env()
		cp := env.Counterpart
		st := &sent{id: newID()}
		var err error
		if st.payload, err = s.Payload(env.Target.URA, "", time.Now()); err != nil {
			return nil, err
		}
		t := receive(p, st.id, func(p *validation.Probe, in *validation.Inbound, m parsed, attempt int) (int, []byte, string) {
			if attempt == 0 {
				return http.StatusServiceUnavailable, oo("the kit is unavailable for this first delivery; deliver again"), ""
			}
			return receiptFor(p, in, m, "")
		})
		defer cp.Messages(nil)
		mark := cp.Mark()
		if err := env.Driver.SendMessage(p.Context(), st.id, env.Config.Kit.URA, s.Name, st.payload); err != nil {
			return nil, fmt.Errorf("the driver could not make the node send: %w", err)
		}
		cp.Await(p.Context(), mark, env.Config.Wait+5*time.Second, func([]validation.Inbound) bool {
			for _, a := range t.list() {
				if a.receipt != "" {
					return true
				}
			}
			return false
		})
		st.arrivals = t.list()
		st.status, st.statusErr = waitStatus(p, st.id, func(m validation.SentMessage) bool { return m.Status != "queued" })
		st.ins = cp.Inbound(mark)
		p.Record(cp.Exchanges(st.ins)...)
		if st.status.Status == "delivered" {
			st.ackNote = "verwerkt door de validatieservice (" + st.id[:8] + ")"
			st.ackAnswer, st.ackSent, st.ackErr = s.acknowledge(p, st.id, "ok", st.ackNote)
			if st.ackErr == nil && st.ackAnswer.Status == http.StatusOK {
				st.acked, _ = waitStatus(p, st.id, func(m validation.SentMessage) bool { return m.Acknowledgement != "" })
			}
		}
		return st, nil
	})
	p.Record(p.ScenarioExchanges(key)...)
	st, _ := v.(*sent)
	return st, err
}

// acknowledge posts the kit's acknowledgement of message id to the node.
func (s Spec) acknowledge(p *validation.Probe, id, code, note string) (*validation.Response, []byte, error) {
	tok, err := pushToken(p)
	if err != nil {
		return nil, nil, err
	}
	env := p.Env()
	body := message(header{id: newID(), eventSystem: systemEvent, eventCode: eventAck, sender: env.Config.Kit.URA, senderName: env.Config.Kit.Name,
		receiver: env.Target.URA, source: env.Counterpart.Base + "/$process-message", responseTo: id, code: code, note: note}, nil)
	resp, err := postMessage(p, env.HTTP, contentType, tok, body)
	return resp, body, err
}

// firstDelivered is the first arrival of the scenario the kit took.
func (st *sent) delivered() (arrival, bool) {
	for _, a := range st.arrivals {
		if a.receipt != "" {
			return a, true
		}
	}
	return arrival{}, false
}

func (s Spec) senderCases() []validation.Case {
	// scenario runs the delivery and fails the case when no message arrived.
	scenario := func(judge func(p *validation.Probe, st *sent) validation.Verdict) func(context.Context, *validation.Probe) validation.Verdict {
		return func(_ context.Context, p *validation.Probe) validation.Verdict {
			st, err := s.send(p)
			if st == nil {
				return validation.Fail("%v", err)
			}
			if len(st.arrivals) == 0 {
				return validation.Fail("no message %s arrived at the kit's Push endpoint within %s", st.id, p.Env().Config.Wait)
			}
			return judge(p, st)
		}
	}
	return []validation.Case{
		{ID: s.Name + ".push-sender.token-request", Title: "The sender gets a push token from the receiver's authorization server", Roles: pushSender, Mandatory: true,
			Requirement: "Before it delivers, the sender asks the receiver's authorization server (from the addressbook) for a token: grant client_credentials, scope twiin-ta-push, authenticated with an RFC 7523 client assertion over its participant's certificate.",
			Source:      srcToken + "; RFC 7523 §2.2",
			Run: scenario(func(p *validation.Probe, st *sent) validation.Verdict {
				for _, in := range st.ins {
					if validation.IsToken(in) {
						return judgePushToken(p, in).Verdict("token requested: client_credentials, scope " + validation.ScopePush)
					}
				}
				return validation.Fail("no token request arrived at the kit's authorization server before the delivery")
			})},
		{ID: s.Name + ".push-sender.mtls-and-token", Title: "Every delivery comes over the participant's certificate with a valid push token", Roles: pushSender, Mandatory: true,
			Requirement: "Each delivery is a POST to the receiver's Push endpoint from the addressbook, over mTLS with the sending participant's UZI server certificate, with an access token of the receiver's authorization server bound to that certificate and carrying scope twiin-ta-push.",
			Source:      srcToken + "; RFC 8705",
			Run: scenario(func(p *validation.Probe, st *sent) validation.Verdict {
				var ps validation.Problems
				for i, a := range st.arrivals {
					ps.Check(a.in.PeerURA == p.Env().Target.URA, "delivery %d came over a certificate of URA %q, want %s", i+1, a.in.PeerURA, p.Env().Target.URA)
					ps.Check(a.in.Token != nil, "delivery %d had no valid token: %s", i+1, a.in.TokenErr)
					ps.Check(a.in.Token == nil || hasScope(a.in.Token.Scope, validation.ScopePush), "delivery %d's token lacks scope %s", i+1, validation.ScopePush)
				}
				return ps.Verdict(fmt.Sprintf("%d deliveries over mTLS with a push token", len(st.arrivals)))
			})},
		{ID: s.Name + ".push-sender.message", Title: "The message is a conformant STU3 message Bundle from the certificate's organisation", Roles: pushSender, Mandatory: true,
			Requirement: "The delivery is application/fhir+json (fhirVersion 3.0 when declared): a valid STU3 Bundle of type message whose first entry is a MessageHeader with the message id the sending system chose, event " + s.EventSystem + "|" + s.EventCode + ", sender the URA of the client certificate, receiver the kit's URA, a source endpoint, and a focus naming the one payload entry.",
			Source:      srcSTU3 + "; " + srcPush + "; " + srcUZI,
			Run: scenario(func(p *validation.Probe, st *sent) validation.Verdict {
				a := st.arrivals[0]
				if a.err != nil {
					return validation.Fail("not a message Bundle: %v", a.err)
				}
				var ps validation.Problems
				mt, params, err := mime.ParseMediaType(a.in.ContentType)
				ps.Check(err == nil && mt == "application/fhir+json", "Content-Type %q, want application/fhir+json", a.in.ContentType)
				if v, ok := params["fhirversion"]; ok {
					ps.Check(v == "3.0", "Content-Type declares fhirVersion %s, want 3.0", v)
				}
				for _, is := range fhirvalidate.Resource(fhir.STU3, a.in.Body) {
					if is.Severity == "error" || is.Severity == "fatal" {
						ps.Add("not valid STU3: %s", is.Diagnostics)
						break
					}
				}
				h := a.msg.header
				ps.Check(h.ID == st.id, "MessageHeader.id %q, want the id the system chose, %s", h.ID, st.id)
				ps.Check(h.Event.System == s.EventSystem && h.Event.Code == s.EventCode, "event %s|%s, want %s|%s", h.Event.System, h.Event.Code, s.EventSystem, s.EventCode)
				ps.Check(a.msg.sender() == p.Env().Target.URA, "MessageHeader.sender %q, want %s", a.msg.sender(), p.Env().Target.URA)
				ps.Check(a.msg.sender() == a.in.PeerURA, "MessageHeader.sender %q is not the certificate's URA %q", a.msg.sender(), a.in.PeerURA)
				ps.Check(a.msg.receiver() == p.Env().Config.Kit.URA, "MessageHeader.receiver %q, want the kit's %s", a.msg.receiver(), p.Env().Config.Kit.URA)
				ps.Check(strings.HasPrefix(h.Source.Endpoint, "https://"), "MessageHeader.source.endpoint %q is not an https URL", h.Source.Endpoint)
				ps.Check(len(h.Focus) == 1 && a.msg.payload != nil, "MessageHeader.focus does not name one entry of the Bundle")
				ps.Check(h.Response == nil, "a message carries no MessageHeader.response")
				return ps.Verdict("message " + st.id)
			})},
		{ID: s.Name + ".push-sender.payload", Title: "The payload is the system's, unchanged, and of the application's profile", Roles: pushSender, Mandatory: true,
			Requirement: "The message's focus is the payload the sending system handed its node, unchanged, and it passes the " + s.Name + " receiver's checks (profile, patient BSN).",
			Source:      srcPush + "; the application's profile; " + srcBSN,
			Run: scenario(func(p *validation.Probe, st *sent) validation.Verdict {
				a := st.arrivals[0]
				if a.msg.payload == nil {
					return validation.Fail("the message has no payload entry")
				}
				var ps validation.Problems
				ps.Check(sameJSON(a.msg.payload, st.payload), "the payload differs from what the system handed the node")
				if err := s.Check(a.msg.payload); err != nil {
					ps.Add("the payload fails the %s checks: %v", s.Name, err)
				}
				return ps.Verdict("the payload as handed over, a conformant " + s.Name + " payload")
			})},
		{ID: s.Name + ".push-sender.retries", Title: "After a failed delivery the sender retries the same message", Roles: pushSender, Mandatory: true,
			Requirement: "When the receiver answers 503, the sender delivers again, later, with the same message id and the same bytes (so that the receiver can de-duplicate and the receipt's hash holds), until it has a receipt.",
			Source:      srcRetrying,
			Run: scenario(func(p *validation.Probe, st *sent) validation.Verdict {
				if len(st.arrivals) < 2 {
					return validation.Fail("one delivery, answered 503; no retry within %s", p.Env().Config.Wait)
				}
				first, second := st.arrivals[0], st.arrivals[1]
				var ps validation.Problems
				ps.Check(first.err == nil && second.err == nil && first.msg.header.ID == second.msg.header.ID, "the retry is not the same message id")
				ps.Check(string(first.in.Body) == string(second.in.Body), "the retry's bytes differ from the first delivery's")
				return ps.Verdict(fmt.Sprintf("retried after %s with the same id and bytes", second.in.Time.Sub(first.in.Time).Round(time.Millisecond)))
			})},
		{ID: s.Name + ".push-sender.delivered", Title: "The sender records the delivery with the receiver's receipt", Roles: pushSender, Mandatory: true,
			Requirement: "Once the receiver answered with a valid receipt, the sending node reports the message delivered to its system (internal API), with that receipt.",
			Source:      srcReceipt + "; " + srcRetrying,
			Run: scenario(func(p *validation.Probe, st *sent) validation.Verdict {
				if errors.Is(st.statusErr, validation.ErrNotDriven) {
					return validation.Skip("the driver cannot read the message's status")
				}
				a, ok := st.delivered()
				if !ok {
					return validation.Fail("the kit did not answer any delivery with a receipt")
				}
				var ps validation.Problems
				ps.Check(st.statusErr == nil, "the message's status could not be read: %v", st.statusErr)
				ps.Check(st.status.Status == "delivered", "the message's status is %q (%s), want delivered", st.status.Status, st.status.StatusReason)
				ps.Check(st.status.Receipt == a.receipt, "the node recorded another receipt than the kit's")
				return ps.Verdict("delivered, with the kit's receipt")
			})},
		{ID: s.Name + ".push-sender.acknowledgement", Title: "The sender takes the receiver's acknowledgement and records it", Roles: pushSender, Mandatory: true,
			Requirement: "An acknowledgement of the message from its receiver (a message with MessageHeader.response naming it, code ok, and a note) is answered 200 with a receipt signed by the sending participant, and the node reports the message acknowledged (accepted) with the note.",
			Source:      srcAck + "; " + srcReceipt,
			Run: scenario(func(p *validation.Probe, st *sent) validation.Verdict {
				if st.ackAnswer == nil {
					if st.ackErr != nil {
						return validation.Fail("the acknowledgement could not be sent: %v", st.ackErr)
					}
					return validation.Fail("the message was not delivered; nothing to acknowledge")
				}
				var ps validation.Problems
				if st.ackAnswer.Status != http.StatusOK {
					return validation.Fail("the acknowledgement: HTTP %d, want 200: %s", st.ackAnswer.Status, outcome(st.ackAnswer.Body))
				}
				m, err := parse(st.ackAnswer.Body)
				if err != nil {
					return validation.Fail("the answer to the acknowledgement is no message Bundle: %v", err)
				}
				keys, err := nodeKeys(p)
				if err != nil {
					return validation.Fail("%v", err)
				}
				ack, _ := parse(st.ackSent)
				checkReceipt(&ps, m.receipt(), keys, ack.header.ID, p.Env().Config.Kit.URA, p.Env().Target.URA, st.ackSent)
				ps.Check(st.acked.Acknowledgement == "accepted", "the node reports acknowledgement %q, want accepted", st.acked.Acknowledgement)
				ps.Check(st.acked.AcknowledgeNote == st.ackNote, "the node reports the note %q, want %q", st.acked.AcknowledgeNote, st.ackNote)
				return ps.Verdict("acknowledged with a receipt; recorded as accepted")
			})},
		{ID: s.Name + ".push-sender.ack-unknown-message", Title: "An acknowledgement of a message never sent is refused", Roles: pushSender, Mandatory: true, Negative: true,
			Requirement: "An acknowledgement whose MessageHeader.response names no message the participant sent to the acknowledging organisation is refused (4xx OperationOutcome).",
			Source:      srcAck,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				resp, _, err := s.acknowledge(p, newID(), "ok", "")
				if err != nil {
					return validation.Error("%v", err)
				}
				var ps validation.Problems
				ps.Check(resp.Status >= 400 && resp.Status < 500, "HTTP %d, want a 4xx refusal", resp.Status)
				ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
				return ps.Verdict(fmt.Sprintf("refused: HTTP %d %s", resp.Status, outcome(resp.Body)))
			}},
		{ID: s.Name + ".push-sender.verifies-receipt", Title: "A receipt with the wrong payload hash is no proof of delivery", Roles: pushSender, Mandatory: true, Negative: true,
			Requirement: "The sender verifies the receipt before it marks a message delivered: a receipt whose payload_sha256 is not that of the bytes it sent leaves the message undelivered, and the sender delivers again.",
			Source:      srcReceipt + "; " + srcRetrying,
			Run:         s.verifiesReceipt,
		},
	}
}

// verifiesReceipt: the kit answers the first delivery of a message with a
// receipt over the wrong hash, and the retry with a right one.
func (s Spec) verifiesReceipt(_ context.Context, p *validation.Probe) validation.Verdict {
	env := p.Env()
	cp := env.Counterpart
	id := newID()
	payload, err := s.Payload(env.Target.URA, "", time.Now())
	if err != nil {
		return validation.Error("%v", err)
	}
	t := receive(p, id, func(p *validation.Probe, in *validation.Inbound, m parsed, attempt int) (int, []byte, string) {
		if attempt == 0 {
			return receiptFor(p, in, m, sha([]byte("not the message")))
		}
		return receiptFor(p, in, m, "")
	})
	defer cp.Messages(nil)
	mark := cp.Mark()
	if err := env.Driver.SendMessage(p.Context(), id, env.Config.Kit.URA, s.Name, payload); err != nil {
		return validation.Fail("the driver could not make the node send: %v", err)
	}
	ok := cp.Await(p.Context(), mark, env.Config.Wait+5*time.Second, func([]validation.Inbound) bool { return len(t.list()) >= 2 })
	p.Record(cp.Exchanges(cp.Inbound(mark))...)
	as := t.list()
	if len(as) == 0 {
		return validation.Fail("no message %s arrived within %s", id, env.Config.Wait)
	}
	var ps validation.Problems
	ps.Check(ok, "after a receipt with the wrong hash the sender did not deliver again within %s", env.Config.Wait)
	m, err := waitStatus(p, id, func(m validation.SentMessage) bool { return m.Status != "queued" || !ok })
	if errors.Is(err, validation.ErrNotDriven) {
		return ps.Verdict("delivered again after the wrong receipt (status not read: the driver cannot)")
	}
	ps.Check(err == nil, "the message's status could not be read: %v", err)
	if m.Receipt != "" && m.Receipt == as[0].receipt {
		ps.Add("the node recorded the receipt with the wrong hash as proof of delivery")
	}
	if ok {
		ps.Check(m.Status == "delivered" && m.Receipt == as[1].receipt, "after the right receipt the status is %q, want delivered with that receipt", m.Status)
	}
	return ps.Verdict(fmt.Sprintf("the wrong receipt was not taken; delivered again after %s", as[min(1, len(as)-1)].in.Time.Sub(as[0].in.Time).Round(time.Millisecond)))
}
