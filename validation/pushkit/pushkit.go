// Package pushkit holds the validation kit's cases of the Twiin pattern
// Push (Verzenden/Ontvangen) for any care application that runs on it:
// the node under test as the Push sender (the kit receives, answers with a
// signed delivery receipt and then an application acknowledgement) and as
// the Push receiver (the kit delivers, checks the receipt, the
// de-duplication and the refusals). A care application's kit
// (validation/correspondentie, validation/geboortezorg) gives its payloads
// in a Spec; the cases are the same for each.
//
// The kit builds its messages, receipts and acknowledgements from
// docs/protocols.md "Push", not with the push package the node uses, so
// that a mistake shared by both sides shows.
package pushkit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
)

// Spec is one care application on Push as its kit describes it.
type Spec struct {
	// Name is the care application's name: its name on the node's
	// internal API and the code of its messages' event.
	Name  string
	Title string
	// EventSystem and EventCode are the MessageHeader.event of its
	// messages.
	EventSystem, EventCode string
	// PatientBSN is the patient the kit's payloads are about (a valid
	// test BSN).
	PatientBSN string
	// Payload builds a conformant payload about PatientBSN written by the
	// organisation senderURA (senderName) at at.
	Payload func(senderURA, senderName string, at time.Time) ([]byte, error)
	// Check judges a payload the node sent as the application's receiver
	// must; nil when it conforms.
	Check func(payload []byte) error
	// WrongVersion changes a conformant payload into one with FHIR R4
	// content; WrongProfile into one that is valid STU3 but not the
	// application's profile. Each must be refused by a receiver.
	WrongVersion, WrongProfile Edit
}

// Edit changes a payload; it describes what it changed.
type Edit struct {
	Describe string
	Apply    func(payload []byte) ([]byte, error)
}

// Application is the care application as the kit's engine needs it: a
// Push application has no record to serve.
func (s Spec) Application() validation.Application {
	return validation.Application{Name: s.Name, Title: s.Title,
		Record: func() (string, [][]byte, error) { return s.PatientBSN, nil, nil }}
}

// Cases are every Push case of the application, for both roles.
func (s Spec) Cases() []validation.Case {
	return append(s.receiverCases(), s.senderCases()...)
}

// Register adds the application and its cases to reg.
func (s Spec) Register(reg *validation.Registry) error {
	return reg.AddApplication(s.Application(), s.Cases()...)
}

// Codes of the wire shape (docs/protocols.md "Push").
const (
	systemEvent      = "https://schakel.dev/fhir/CodeSystem/push-event"
	eventAck         = "acknowledgement"
	extensionReceipt = "https://schakel.dev/fhir/StructureDefinition/delivery-receipt"
	receiptType      = "twiin-push-receipt+jwt"
)

// Sources the cases cite.
const (
	srcPush     = "Afsprakenstelsel 1.2 §10.1.3 Push – Versturen; Schakel's wire shape, docs/protocols.md \"Push\" (FHIR STU3 messaging, $process-message)"
	srcReceipt  = "docs/protocols.md \"Push\", receipt (compact JWS, ES256, the receiving participant's key from its addressbook JWKS)"
	srcAck      = "docs/protocols.md \"Push\", acknowledgement (MessageHeader.response)"
	srcToken    = "docs/protocols.md \"Push\": RFC 7523 client assertion, client_credentials, scope twiin-ta-push, certificate-bound (RFC 8705); RFC 6750 §3"
	srcSTU3     = "FHIR STU3 messaging (http://hl7.org/fhir/STU3/messaging.html); the application's FHIR version (STU3)"
	srcBSN      = "Citizen identification: BSN verified and valid, every plateau (SPEC §3, §6)"
	srcUZI      = "UZI server certificate URA = the sending organisation (SPEC §3)"
	srcDurable  = "Push: the receiver stores a message before it answers and de-duplicates by message id (docs/protocols.md \"Push\")"
	srcRetrying = "Push: the sender retries until a verified receipt, with the same message id (docs/protocols.md \"Push\")"
)

var (
	pushSender   = []validation.Role{validation.RolePushSender}
	pushReceiver = []validation.Role{validation.RolePushReceiver}
)

// newID is a random UUID, a FHIR id.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// header is what a message the kit sends says about itself.
type header struct {
	id, eventSystem, eventCode string
	sender, senderName         string
	receiver, source           string
	// responseTo and code make it an acknowledgement; note goes into its
	// OperationOutcome.
	responseTo, code, note string
	receipt                string
}

func ident(system, value string) map[string]any {
	return map[string]any{"identifier": map[string]any{"system": system, "value": value}}
}

// message builds a message Bundle: its MessageHeader, then the payload
// (nil for an acknowledgement) or the acknowledgement's OperationOutcome.
func message(h header, payload []byte) []byte {
	mh := map[string]any{
		"resourceType": "MessageHeader", "id": h.id,
		"event":     map[string]any{"system": h.eventSystem, "code": h.eventCode},
		"sender":    ident(nl.SystemURA, h.sender),
		"receiver":  ident(nl.SystemURA, h.receiver),
		"timestamp": time.Now().UTC().Format(time.RFC3339),
		"source":    map[string]any{"software": validation.KitName, "endpoint": h.source},
	}
	if h.senderName != "" {
		mh["sender"].(map[string]any)["display"] = h.senderName
	}
	if h.receipt != "" {
		mh["extension"] = []any{map[string]any{"url": extensionReceipt, "valueString": h.receipt}}
	}
	entries := []any{map[string]any{"fullUrl": "urn:uuid:" + h.id, "resource": mh}}
	if h.responseTo != "" {
		resp := map[string]any{"identifier": h.responseTo, "code": h.code}
		if h.note != "" {
			ref := "urn:uuid:" + newID()
			resp["details"] = map[string]any{"reference": ref}
			entries = append(entries, map[string]any{"fullUrl": ref, "resource": map[string]any{"resourceType": "OperationOutcome",
				"issue": []any{map[string]any{"severity": "information", "code": "informational", "diagnostics": h.note}}}})
		}
		mh["response"] = resp
	}
	if payload != nil {
		ref := "urn:uuid:" + newID()
		mh["focus"] = []any{map[string]any{"reference": ref}}
		entries = append(entries, map[string]any{"fullUrl": ref, "resource": json.RawMessage(payload)})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "id": h.id, "type": "message",
		"identifier": map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:" + h.id}, "entry": entries})
	return b
}

// parsed is a message Bundle as the kit reads it.
type parsed struct {
	bundleType string
	header     struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Extension    []struct {
			URL         string `json:"url"`
			ValueString string `json:"valueString"`
		} `json:"extension"`
		Event struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"event"`
		Sender, Receiver *struct {
			Identifier *struct{ System, Value string } `json:"identifier"`
		}
		Source struct {
			Endpoint string `json:"endpoint"`
		} `json:"source"`
		Response *struct {
			Identifier string `json:"identifier"`
			Code       string `json:"code"`
			Details    *struct {
				Reference string `json:"reference"`
			} `json:"details"`
		} `json:"response"`
		Focus []struct {
			Reference string `json:"reference"`
		} `json:"focus"`
	}
	byURL map[string]json.RawMessage
	// payload is the resource the focus names; note the response's
	// OperationOutcome diagnostics.
	payload json.RawMessage
	note    string
}

func (m parsed) sender() string {
	if m.header.Sender == nil || m.header.Sender.Identifier == nil {
		return ""
	}
	return m.header.Sender.Identifier.Value
}

func (m parsed) receiver() string {
	if m.header.Receiver == nil || m.header.Receiver.Identifier == nil {
		return ""
	}
	return m.header.Receiver.Identifier.Value
}

func (m parsed) receipt() string {
	for _, e := range m.header.Extension {
		if e.URL == extensionReceipt {
			return e.ValueString
		}
	}
	return ""
}

// parse reads a message Bundle; an error says why it is none.
func parse(raw []byte) (parsed, error) {
	var m parsed
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return m, fmt.Errorf("not FHIR JSON: %v", err)
	}
	m.bundleType = b.Type
	if b.ResourceType != "Bundle" || b.Type != "message" {
		return m, fmt.Errorf("a %s of type %q, not a Bundle of type message", b.ResourceType, b.Type)
	}
	if len(b.Entry) == 0 {
		return m, errors.New("the Bundle has no entries")
	}
	if err := json.Unmarshal(b.Entry[0].Resource, &m.header); err != nil || m.header.ResourceType != "MessageHeader" {
		return m, errors.New("the first entry is not a MessageHeader")
	}
	m.byURL = map[string]json.RawMessage{}
	for _, e := range b.Entry[1:] {
		m.byURL[e.FullURL] = e.Resource
	}
	if len(m.header.Focus) == 1 {
		m.payload = m.byURL[m.header.Focus[0].Reference]
	}
	if r := m.header.Response; r != nil && r.Details != nil {
		var oo struct {
			Issue []struct{ Diagnostics string } `json:"issue"`
		}
		if json.Unmarshal(m.byURL[r.Details.Reference], &oo) == nil && len(oo.Issue) > 0 {
			m.note = oo.Issue[0].Diagnostics
		}
	}
	return m, nil
}

// receipt is the content of a delivery receipt.
type receipt struct {
	MessageID     string `json:"message_id"`
	Sender        string `json:"sender"`
	Receiver      string `json:"receiver"`
	PayloadSHA256 string `json:"payload_sha256"`
	IssuedAt      int64  `json:"iat"`
}

// signReceipt signs r with the kit's key (the one its client JWKS lists).
func signReceipt(key jwk.Key, r receipt) (string, error) {
	payload, _ := json.Marshal(r)
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, receiptType)
	if kid, ok := key.KeyID(); ok {
		_ = hdr.Set(jws.KeyIDKey, kid)
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), key, jws.WithProtectedHeaders(hdr)))
	return string(out), err
}

// checkReceipt verifies a receipt the node signed against its key set and
// judges its claims against the message sent.
func checkReceipt(ps *validation.Problems, token string, keys jwk.Set, id, sender, receiver string, sent []byte) {
	if token == "" {
		ps.Add("the answer carries no delivery receipt (MessageHeader.extension %s)", extensionReceipt)
		return
	}
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) != 1 {
		ps.Add("the receipt is not a compact JWS with one signature: %v", err)
		return
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	typ, _ := h.Type()
	ps.Check(typ == receiptType, "the receipt's typ is %q, want %s", typ, receiptType)
	alg, _ := h.Algorithm()
	ps.Check(alg.String() == "ES256", "the receipt is signed %s, want ES256", alg)
	payload, err := jws.Verify([]byte(token), jws.WithKeySet(keys, jws.WithInferAlgorithmFromKey(true)))
	if err != nil {
		ps.Add("the receipt's signature does not verify with the key set the addressbook lists for %s: %v", receiver, err)
		return
	}
	var r receipt
	if err := json.Unmarshal(payload, &r); err != nil {
		ps.Add("the receipt's claims are not JSON: %v", err)
		return
	}
	ps.Check(r.MessageID == id, "the receipt names message %q, want %s", r.MessageID, id)
	ps.Check(r.Sender == sender, "the receipt names sender %q, want %s", r.Sender, sender)
	ps.Check(r.Receiver == receiver, "the receipt names receiver %q, want %s", r.Receiver, receiver)
	ps.Check(r.PayloadSHA256 == sha(sent), "the receipt's payload_sha256 %q is not the SHA-256 of the message bytes sent (%s)", r.PayloadSHA256, sha(sent))
	at := time.Unix(r.IssuedAt, 0)
	ps.Check(time.Since(at) < 10*time.Minute && time.Until(at) < 5*time.Minute, "the receipt's iat %s is not the time of receipt", at.UTC().Format(time.RFC3339))
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
