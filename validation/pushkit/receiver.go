package pushkit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
)

// contentType is how the kit posts a message.
const contentType = "application/fhir+json; fhirVersion=3.0"

// pushToken is the kit's push token at the node under test, once a run.
func pushToken(p *validation.Probe) (string, error) {
	return p.ClientToken(validation.ScopePush, "push token")
}

// nodeKeys is the node's participant's key set, from the addressbook, once
// a run: the key its receipts are signed with.
func nodeKeys(p *validation.Probe) (jwk.Set, error) {
	v, err := p.Once("push.node-keys", func(p *validation.Probe) (any, error) {
		u := p.Env().Target.Endpoints[addressbook.PayloadClientJWKS]
		if u == "" {
			return nil, errors.New("the addressbook lists no key set (oauth-client-jwks) for the node's participant")
		}
		resp, err := p.Get(p.Env().HTTP, u, "")
		if err != nil {
			return nil, err
		}
		if resp.Status != http.StatusOK {
			return nil, fmt.Errorf("key set %s: HTTP %d", u, resp.Status)
		}
		return jwk.Parse(resp.Body)
	})
	if err != nil {
		return nil, err
	}
	return v.(jwk.Set), nil
}

// outgoing is a message the kit sends to the node.
func (s Spec) outgoing(p *validation.Probe, id string, edit func(h *header)) ([]byte, error) {
	env := p.Env()
	payload, err := s.Payload(env.Config.Kit.URA, env.Config.Kit.Name, time.Now())
	if err != nil {
		return nil, err
	}
	h := header{id: id, eventSystem: s.EventSystem, eventCode: s.EventCode, sender: env.Config.Kit.URA, senderName: env.Config.Kit.Name,
		receiver: env.Target.URA, source: env.Counterpart.Base + "/$process-message"}
	if edit != nil {
		edit(&h)
	}
	return message(h, payload), nil
}

func postMessage(p *validation.Probe, client *http.Client, ct, token string, body []byte) (*validation.Response, error) {
	endpoint := p.Env().Target.PushEndpoint()
	if endpoint == "" {
		return nil, fmt.Errorf("the addressbook lists no Push endpoint (%s) for the node's participant", validation.PayloadPush)
	}
	return p.Send(client, http.MethodPost, endpoint, ct, token, body)
}

// delivery is the kit's conformant message to the node and its answer.
type delivery struct {
	id     string
	sent   []byte
	answer *validation.Response
	msg    parsed
	err    error // why the answer is no message
	// again is the answer to the same bytes sent a second time.
	again *validation.Response
}

// deliver sends the kit's conformant message, once a run, and then the
// same bytes once more.
func (s Spec) deliver(p *validation.Probe) (*delivery, error) {
	v, err := p.Once("push.delivery", func(p *validation.Probe) (any, error) {
		tok, err := pushToken(p)
		if err != nil {
			return nil, err
		}
		d := &delivery{id: newID()}
		if d.sent, err = s.outgoing(p, d.id, nil); err != nil {
			return nil, err
		}
		if d.answer, err = postMessage(p, p.Env().HTTP, contentType, tok, d.sent); err != nil {
			return nil, err
		}
		d.msg, d.err = parse(d.answer.Body)
		if d.answer.Status == http.StatusOK {
			d.again, _ = postMessage(p, p.Env().HTTP, contentType, tok, d.sent)
		}
		return d, nil
	})
	p.Record(p.ScenarioExchanges("push.delivery")...)
	d, _ := v.(*delivery)
	return d, err
}

// inbox returns the node's inbox entries of message id; driven is false
// when the driver cannot read the inbox.
func inbox(p *validation.Probe, id string) (found []validation.ReceivedMessage, driven bool, err error) {
	all, err := p.Env().Driver.ReceivedMessages(p.Context())
	if errors.Is(err, validation.ErrNotDriven) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	for _, m := range all {
		if m.MessageID == id && m.Sender == p.Env().Config.Kit.URA {
			found = append(found, m)
		}
	}
	return found, true, nil
}

func (s Spec) receiverCases() []validation.Case {
	cases := []validation.Case{
		{ID: s.Name + ".push-receiver.accepts-message", Title: "A conformant message is stored and answered with a receipt", Roles: pushReceiver, Mandatory: true,
			Requirement: "The receiver's Push endpoint (addressbook payload type " + validation.PayloadPush + ") takes a conformant " + s.Name + " message, POSTed over mTLS with a push token, and answers 200 with a message Bundle whose MessageHeader.response names the message id with code ok.",
			Source:      srcPush + "; " + srcSTU3,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := s.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				var ps validation.Problems
				if d.answer.Status != http.StatusOK {
					return validation.Fail("HTTP %d, want 200: %s", d.answer.Status, outcome(d.answer.Body))
				}
				if d.err != nil {
					return validation.Fail("the answer is no message Bundle: %v", d.err)
				}
				r := d.msg.header.Response
				ps.Check(r != nil && r.Identifier == d.id, "MessageHeader.response.identifier does not name message %s", d.id)
				ps.Check(r != nil && r.Code == "ok", "MessageHeader.response.code is not ok")
				ps.Check(d.msg.sender() == p.Env().Target.URA, "the answer's sender is %q, want %s", d.msg.sender(), p.Env().Target.URA)
				return ps.Verdict("200, response ok for " + d.id)
			}},
		{ID: s.Name + ".push-receiver.receipt", Title: "The receipt is signed by the receiving participant and is this message's", Roles: pushReceiver, Mandatory: true,
			Requirement: "The answer carries a delivery receipt: a compact JWS (typ " + receiptType + ", ES256) that verifies with the key set the addressbook lists for the receiving participant, naming the message id, the sender (the kit), the receiver (the participant) and the SHA-256 of exactly the bytes sent.",
			Source:      srcReceipt,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := s.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				if d.err != nil {
					return validation.Fail("no message Bundle in answer (HTTP %d): %v", d.answer.Status, d.err)
				}
				keys, err := nodeKeys(p)
				if err != nil {
					return validation.Fail("%v", err)
				}
				var ps validation.Problems
				checkReceipt(&ps, d.msg.receipt(), keys, d.id, p.Env().Config.Kit.URA, p.Env().Target.URA, d.sent)
				return ps.Verdict("receipt verified: signature, message id, parties, payload hash")
			}},
		{ID: s.Name + ".push-receiver.stored", Title: "The message is in the participant's inbox, once", Roles: pushReceiver, Mandatory: true,
			Requirement: "A message answered with a receipt is in the receiving participant's inbox (the internal API its system reads), once, as " + s.Name + " from the kit, with the receipt it was answered with.",
			Source:      srcDurable,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := s.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				found, driven, err := inbox(p, d.id)
				switch {
				case !driven:
					return validation.Skip("the driver cannot read the node's inbox")
				case err != nil:
					return validation.Fail("the inbox could not be read: %v", err)
				case len(found) != 1:
					return validation.Fail("message %s is %d times in the inbox, want once", d.id, len(found))
				}
				var ps validation.Problems
				ps.Check(found[0].Application == s.Name, "the inbox holds it as %q, want %s", found[0].Application, s.Name)
				ps.Check(d.err == nil && found[0].Receipt == d.msg.receipt(), "the inbox's receipt is not the one the kit was answered with")
				return ps.Verdict("in the inbox once, id " + found[0].ID)
			}},
		{ID: s.Name + ".push-receiver.duplicate", Title: "A repeated message id is answered with the first receipt and stored once", Roles: pushReceiver, Mandatory: true,
			Requirement: "The same message delivered again (a sender's retry after a lost answer) is answered 200 with the receipt given the first time, and the inbox still holds it once: the receiver de-duplicates by message id.",
			Source:      srcDurable,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := s.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				if d.again == nil {
					return validation.Fail("the first delivery was not accepted (HTTP %d); nothing to repeat", d.answer.Status)
				}
				var ps validation.Problems
				ps.Check(d.again.Status == http.StatusOK, "the repeated message: HTTP %d, want 200", d.again.Status)
				again, err := parse(d.again.Body)
				ps.Check(err == nil && again.receipt() != "" && again.receipt() == d.msg.receipt(), "the repeated message was not answered with the first receipt")
				if found, driven, err := inbox(p, d.id); driven {
					ps.Check(err == nil && len(found) == 1, "message %s is %d times in the inbox after the repeat, want once (%v)", d.id, len(found), err)
				}
				return ps.Verdict("the same receipt, stored once")
			}},
		{ID: s.Name + ".push-receiver.acknowledges", Title: "The application acknowledgement reaches the sender", Roles: pushReceiver, Mandatory: true,
			Requirement: "When the receiving system reports the message processed, the node delivers an acknowledgement to the sender's Push endpoint (from the addressbook): a token from the sender's authorization server (RFC 7523 client assertion, client_credentials, scope twiin-ta-push) over the participant's certificate, then a message whose MessageHeader.response names the message id with code ok and carries the system's note, from the participant to the kit.",
			Source:      srcAck + "; " + srcToken,
			Run:         s.acknowledges,
		},
	}
	cases = append(cases, s.refusals()...)
	return cases
}

func (s Spec) acknowledges(_ context.Context, p *validation.Probe) validation.Verdict {
	d, err := s.deliver(p)
	if d == nil {
		return validation.Fail("%v", err)
	}
	env := p.Env()
	cp := env.Counterpart
	found, driven, err := inbox(p, d.id)
	if !driven {
		return validation.Skip("the driver cannot read the node's inbox to report the message processed")
	}
	if err != nil || len(found) == 0 {
		return validation.Fail("the message is not in the inbox (%v)", err)
	}
	note := "opgenomen in het dossier (" + d.id[:8] + ")"
	var ack parsed
	var ackSender string
	cp.Messages(func(in *validation.Inbound) (int, []byte) {
		m, err := parse(in.Body)
		if err != nil || m.header.Response == nil || m.header.Response.Identifier != d.id {
			return http.StatusBadRequest, oo("not the acknowledgement of " + d.id)
		}
		ack, ackSender = m, in.PeerURA
		return answerWithReceipt(p, in, m)
	})
	defer cp.Messages(nil)
	mark := cp.Mark()
	if err := env.Driver.Processed(p.Context(), found[0].ID, "accepted", note); err != nil {
		return validation.Fail("the driver could not report the message processed: %v", err)
	}
	arrived := cp.Await(p.Context(), mark, env.Config.Wait, func(ins []validation.Inbound) bool {
		for _, in := range ins {
			if isMessage(cp, in) && in.Status == http.StatusOK {
				return true
			}
		}
		return false
	})
	ins := cp.Inbound(mark)
	p.Record(cp.Exchanges(ins)...)
	if !arrived {
		return validation.Fail("no acknowledgement of %s arrived within %s", d.id, env.Config.Wait)
	}
	var ps validation.Problems
	for _, in := range ins {
		if validation.IsToken(in) {
			ps = append(ps, judgePushToken(p, in)...)
		}
		if isMessage(cp, in) {
			ps.Check(in.Token != nil, "the acknowledgement was posted without a valid token: %s", in.TokenErr)
			ps.Check(in.Token == nil || hasScope(in.Token.Scope, validation.ScopePush), "the acknowledgement's token lacks scope %s", validation.ScopePush)
		}
	}
	ps.Check(ackSender == env.Target.URA, "the acknowledgement came over a certificate of URA %q, want %s", ackSender, env.Target.URA)
	ps.Check(ack.sender() == env.Target.URA, "the acknowledgement's sender is %q, want %s", ack.sender(), env.Target.URA)
	ps.Check(ack.receiver() == env.Config.Kit.URA, "the acknowledgement's receiver is %q, want %s", ack.receiver(), env.Config.Kit.URA)
	ps.Check(ack.header.Response != nil && ack.header.Response.Code == "ok", "the acknowledgement's response code is not ok")
	ps.Check(ack.note == note, "the acknowledgement's note is %q, want %q", ack.note, note)
	ps.Check(idPattern(ack.header.ID), "the acknowledgement's MessageHeader.id %q is not a FHIR id", ack.header.ID)
	return ps.Verdict("acknowledgement ok of " + d.id + " received")
}

func hasScope(scopes []string, want string) bool {
	for _, s := range scopes {
		if s == want {
			return true
		}
	}
	return false
}

func idPattern(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// isMessage reports whether in is a Push message to the kit.
func isMessage(cp *validation.Counterpart, in validation.Inbound) bool {
	return in.Method == http.MethodPost && in.Path == strings.TrimPrefix(cp.Base, cp.URL)+"/$process-message"
}

// judgePushToken judges a token request the node made at the kit before
// a Push delivery.
func judgePushToken(p *validation.Probe, in validation.Inbound) validation.Problems {
	cp := p.Env().Counterpart
	ps := validation.CheckTokenRequest(in, p.Env().Target.URA, cp.URL+oauth.TokenPath)
	f := validation.FormOf(in)
	ps.Check(f.Get("grant_type") == oauth.GrantTypeClientCredentials, "grant_type %q, want client_credentials", f.Get("grant_type"))
	ps.Check(f.Get("scope") == validation.ScopePush, "scope %q, want %s", f.Get("scope"), validation.ScopePush)
	ps.Check(in.Status == http.StatusOK, "the kit refused the token request (HTTP %d): %s", in.Status, in.Answer)
	return ps
}

// answerWithReceipt answers a message the kit took with a message Bundle
// carrying the kit's signed receipt.
func answerWithReceipt(p *validation.Probe, in *validation.Inbound, m parsed) (int, []byte) {
	env := p.Env()
	tok, err := signReceipt(env.Config.Kit.Signing, receipt{MessageID: m.header.ID, Sender: m.sender(), Receiver: env.Config.Kit.URA,
		PayloadSHA256: sha(in.Body), IssuedAt: time.Now().Unix()})
	if err != nil {
		return http.StatusInternalServerError, oo("the kit could not sign its receipt")
	}
	return http.StatusOK, message(header{id: newID(), eventSystem: m.header.Event.System, eventCode: m.header.Event.Code,
		sender: env.Config.Kit.URA, receiver: m.sender(), source: env.Counterpart.Base + "/$process-message",
		responseTo: m.header.ID, code: "ok", receipt: tok}, nil)
}

func oo(diagnostics string) []byte {
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome",
		"issue": []any{map[string]any{"severity": "error", "code": "invalid", "diagnostics": diagnostics}}})
	return b
}

// outcome is an answer's first diagnostics, for a verdict.
func outcome(body []byte) string {
	var o struct {
		Issue []struct{ Diagnostics string } `json:"issue"`
	}
	if json.Unmarshal(body, &o) == nil && len(o.Issue) > 0 {
		return o.Issue[0].Diagnostics
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return string(body)
}

// refusal is a message a receiver must refuse.
type refusal struct {
	id, title, requirement, source string
	// status is the answer wanted; 0 takes any 4xx.
	status int
	// send posts the message (with id) and returns the answer.
	send func(p *validation.Probe, id string) (*validation.Response, error)
}

// sendWith posts the kit's message, changed by edit (header) and change
// (payload), with its push token.
func (s Spec) sendWith(edit func(*header), change func([]byte) ([]byte, error)) func(*validation.Probe, string) (*validation.Response, error) {
	return func(p *validation.Probe, id string) (*validation.Response, error) {
		tok, err := pushToken(p)
		if err != nil {
			return nil, err
		}
		env := p.Env()
		payload, err := s.Payload(env.Config.Kit.URA, env.Config.Kit.Name, time.Now())
		if err != nil {
			return nil, err
		}
		if change != nil {
			if payload, err = change(payload); err != nil {
				return nil, err
			}
		}
		h := header{id: id, eventSystem: s.EventSystem, eventCode: s.EventCode, sender: env.Config.Kit.URA, senderName: env.Config.Kit.Name,
			receiver: env.Target.URA, source: env.Counterpart.Base + "/$process-message"}
		if edit != nil {
			edit(&h)
		}
		return postMessage(p, env.HTTP, contentType, tok, message(h, payload))
	}
}

// wrongBSN is nine digits that fail the 11-proef; otherURA a valid URA of
// no party of the run.
const (
	wrongBSN = "123456789"
	otherURA = "90000007"
)

func (s Spec) refusals() []validation.Case {
	rs := []refusal{
		{id: "no-token", title: "A message without a token is refused", status: http.StatusUnauthorized,
			requirement: "The Push endpoint is an OAuth2 resource server: a message without an access token gets 401 and an OperationOutcome, and nothing is stored.",
			source:      srcToken,
			send: func(p *validation.Probe, id string) (*validation.Response, error) {
				body, err := s.outgoing(p, id, nil)
				if err != nil {
					return nil, err
				}
				return postMessage(p, p.Env().HTTP, contentType, "", body)
			}},
		{id: "expired-token", title: "An expired token the receiver did not issue is refused", status: http.StatusUnauthorized,
			requirement: "A message with an expired access token (here one the kit signed itself, naming the node's authorization server, scope twiin-ta-push, bound to the kit's certificate, expired a minute ago) gets 401 and an OperationOutcome, and nothing is stored.",
			source:      srcToken + "; RFC 9068 §4",
			send: func(p *validation.Probe, id string) (*validation.Response, error) {
				tok, err := s.expiredToken(p)
				if err != nil {
					return nil, err
				}
				body, err := s.outgoing(p, id, nil)
				if err != nil {
					return nil, err
				}
				return postMessage(p, p.Env().HTTP, contentType, tok, body)
			}},
		{id: "token-other-certificate", title: "A push token over another certificate is refused", status: http.StatusUnauthorized,
			requirement: "The push token is bound to the certificate it was issued over (RFC 8705): the same token over the kit's second certificate (same URA, another key) gets 401 and nothing is stored.",
			source:      srcToken + "; RFC 8705 §3",
			send: func(p *validation.Probe, id string) (*validation.Response, error) {
				tok, err := pushToken(p)
				if err != nil {
					return nil, err
				}
				body, err := s.outgoing(p, id, nil)
				if err != nil {
					return nil, err
				}
				return postMessage(p, p.Env().AltHTTP, contentType, tok, body)
			}},
		{id: "wrong-application", title: "A message of a care application the receiver does not take is refused",
			requirement: "A message whose MessageHeader.event is no care application the receiver takes over Push is refused (4xx OperationOutcome) and not stored.",
			source:      srcPush,
			send:        s.sendWith(func(h *header) { h.eventCode = "onbekende-toepassing" }, nil)},
		{id: "fhir-version-header", title: "A message declared as another FHIR version is refused", status: http.StatusUnsupportedMediaType,
			requirement: "The Push endpoint takes FHIR STU3: a message whose Content-Type declares fhirVersion=4.0 gets 415 and an OperationOutcome, and nothing is stored.",
			source:      srcSTU3 + "; FHIR R4 http.html#version-parameter",
			send: func(p *validation.Probe, id string) (*validation.Response, error) {
				tok, err := pushToken(p)
				if err != nil {
					return nil, err
				}
				body, err := s.outgoing(p, id, nil)
				if err != nil {
					return nil, err
				}
				return postMessage(p, p.Env().HTTP, "application/fhir+json; fhirVersion=4.0", tok, body)
			}},
		{id: "wrong-fhir-version", title: "A payload with FHIR R4 content is refused",
			requirement: "A " + s.Name + " payload with FHIR R4 content (" + s.WrongVersion.Describe + ") is refused (4xx OperationOutcome) and not stored: the application is exchanged in STU3.",
			source:      srcSTU3,
			send:        s.sendWith(nil, s.WrongVersion.Apply)},
		{id: "wrong-profile", title: "A payload not of the application's profile is refused",
			requirement: "A valid STU3 payload that is not a " + s.Name + " payload (" + s.WrongProfile.Describe + ") is refused (4xx OperationOutcome) and not stored.",
			source:      srcPush + "; the application's profile",
			send:        s.sendWith(nil, s.WrongProfile.Apply)},
		{id: "bsn-missing", title: "A payload whose patient has no BSN is refused",
			requirement: "A payload whose Patient resources carry no identifier (no BSN) is refused (4xx OperationOutcome) and not stored.",
			source:      srcBSN,
			send:        s.sendWith(nil, DropPatientIdentifiers)},
		{id: "bsn-invalid", title: "A payload whose patient's BSN fails the 11-proef is refused",
			requirement: "A payload whose patient's BSN fails the 11-proef is refused (4xx OperationOutcome) and not stored.",
			source:      srcBSN,
			send: s.sendWith(nil, func(b []byte) ([]byte, error) {
				return []byte(strings.ReplaceAll(string(b), s.PatientBSN, wrongBSN)), nil
			})},
		{id: "sender-not-certificate", title: "A message on behalf of another organisation is refused",
			requirement: "MessageHeader.sender must be the URA of the TLS client certificate (and the token's); a message naming another sender is refused (4xx OperationOutcome, 403) and not stored.",
			source:      srcUZI + "; " + srcPush, status: http.StatusForbidden,
			send: s.sendWith(func(h *header) { h.sender = otherURA }, nil)},
		{id: "other-receiver", title: "A message for another organisation is refused",
			requirement: "A message whose MessageHeader.receiver is not the participant of the endpoint it was posted to is refused (4xx OperationOutcome) and not stored.",
			source:      srcPush,
			send:        s.sendWith(func(h *header) { h.receiver = otherURA }, nil)},
		{id: "not-a-message", title: "A Bundle that is not a message is refused", status: http.StatusBadRequest,
			requirement: "$process-message takes a Bundle of type message; a collection Bundle gets 400 and an OperationOutcome, and nothing is stored.",
			source:      srcSTU3,
			send: func(p *validation.Probe, id string) (*validation.Response, error) {
				tok, err := pushToken(p)
				if err != nil {
					return nil, err
				}
				body, err := s.outgoing(p, id, nil)
				if err != nil {
					return nil, err
				}
				body = []byte(strings.Replace(string(body), `"type":"message"`, `"type":"collection"`, 1))
				return postMessage(p, p.Env().HTTP, contentType, tok, body)
			}},
	}
	var out []validation.Case
	for _, r := range rs {
		out = append(out, validation.Case{ID: s.Name + ".push-receiver." + r.id, Title: r.title, Roles: pushReceiver, Mandatory: true, Negative: true,
			Requirement: r.requirement, Source: r.source,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				id := newID()
				resp, err := r.send(p, id)
				if err != nil {
					return validation.Error("%v", err)
				}
				var ps validation.Problems
				if r.status != 0 {
					ps.Check(resp.Status == r.status, "HTTP %d, want %d", resp.Status, r.status)
				} else {
					ps.Check(resp.Status >= 400 && resp.Status < 500, "HTTP %d, want a 4xx refusal", resp.Status)
				}
				ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
				found, driven, err := inbox(p, id)
				if driven {
					ps.Check(err == nil && len(found) == 0, "message %s is in the inbox though it was refused (%v)", id, err)
				}
				detail := fmt.Sprintf("refused: HTTP %d %s", resp.Status, outcome(resp.Body))
				if !driven {
					detail += " (the inbox was not read: the driver cannot)"
				}
				return ps.Verdict(detail)
			}})
	}
	return out
}

// expiredToken is an access token in the node's name that expired a
// minute ago, signed with the kit's own key: the node must not take it.
func (s Spec) expiredToken(p *validation.Probe) (string, error) {
	env := p.Env()
	md, err := p.Metadata()
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": md.Issuer, "sub": env.Config.Kit.URA, "aud": md.Issuer,
		"iat": now.Add(-10 * time.Minute).Unix(), "exp": now.Add(-time.Minute).Unix(), "jti": newID(),
		"scope": validation.ScopePush, "client_id": env.Config.Kit.URA,
		"cnf": map[string]any{"x5t#S256": thumbprint(env.Config.Kit.Cert.Leaf.Raw)}})
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	signed, err := jws.Sign(claims, jws.WithKey(jwa.ES256(), env.Config.Kit.ServerKey, jws.WithProtectedHeaders(hdr)))
	return string(signed), err
}

// thumbprint is a certificate's RFC 8705 x5t#S256.
func thumbprint(der []byte) string {
	h := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// DropPatientIdentifiers removes the identifier of every Patient in a
// document Bundle.
func DropPatientIdentifiers(payload []byte) ([]byte, error) {
	var b map[string]any
	if err := json.Unmarshal(payload, &b); err != nil {
		return nil, err
	}
	entries, _ := b["entry"].([]any)
	n := 0
	for _, e := range entries {
		res, _ := e.(map[string]any)["resource"].(map[string]any)
		if res != nil && res["resourceType"] == "Patient" {
			delete(res, "identifier")
			n++
		}
	}
	if n == 0 {
		return nil, errors.New("the payload holds no Patient")
	}
	return json.Marshal(b)
}
