package push

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
)

// Codes of the wire shape (docs/protocols.md).
const (
	SystemEvent      = "https://schakel.dev/fhir/CodeSystem/push-event"
	EventAck         = "acknowledgement"
	ExtensionReceipt = "https://schakel.dev/fhir/StructureDefinition/delivery-receipt"
	SystemRFC3986    = "urn:ietf:rfc:3986"
	ReceiptType      = "twiin-push-receipt+jwt"
)

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type extension struct {
	URL         string `json:"url"`
	ValueString string `json:"valueString"`
}

// messageHeader is the STU3 MessageHeader of a push message.
type messageHeader struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id"`
	Extension    []extension `json:"extension,omitempty"`
	Event        coding      `json:"event"`
	Destination  []struct {
		Endpoint string `json:"endpoint"`
	} `json:"destination,omitempty"`
	Receiver  *reference `json:"receiver,omitempty"`
	Sender    *reference `json:"sender,omitempty"`
	Timestamp string     `json:"timestamp"`
	Source    struct {
		Software string `json:"software,omitempty"`
		Endpoint string `json:"endpoint"`
	} `json:"source"`
	Response *struct {
		Identifier string     `json:"identifier"`
		Code       string     `json:"code"`
		Details    *reference `json:"details,omitempty"`
	} `json:"response,omitempty"`
	Focus []reference `json:"focus,omitempty"`
}

type entry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource"`
}

type bundle struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id,omitempty"`
	Identifier   *identifier `json:"identifier,omitempty"`
	Type         string      `json:"type"`
	Entry        []entry     `json:"entry"`
}

// header is what BuildMessage needs.
type header struct {
	ID, Event, EventSystem         string
	SenderURA, SenderName, Source  string
	ReceiverURA, Destination       string
	ResponseTo, ResponseCode, Note string
	Timestamp                      time.Time
	Receipt                        string
}

// buildMessage wraps payload (nil for an acknowledgement without details)
// in a message Bundle whose MessageHeader names sender, receiver and event.
func buildMessage(h header, payload json.RawMessage) ([]byte, error) {
	mh := messageHeader{ResourceType: "MessageHeader", ID: h.ID, Event: coding{System: h.EventSystem, Code: h.Event},
		Receiver:  &reference{Identifier: &identifier{System: nl.SystemURA, Value: h.ReceiverURA}},
		Sender:    &reference{Identifier: &identifier{System: nl.SystemURA, Value: h.SenderURA}, Display: h.SenderName},
		Timestamp: h.Timestamp.UTC().Format(time.RFC3339)}
	mh.Source.Software, mh.Source.Endpoint = "Schakel", h.Source
	if h.Destination != "" {
		mh.Destination = append(mh.Destination, struct {
			Endpoint string `json:"endpoint"`
		}{h.Destination})
	}
	if h.Receipt != "" {
		mh.Extension = []extension{{URL: ExtensionReceipt, ValueString: h.Receipt}}
	}
	var entries []entry
	if h.ResponseTo != "" {
		mh.Response = &struct {
			Identifier string     `json:"identifier"`
			Code       string     `json:"code"`
			Details    *reference `json:"details,omitempty"`
		}{Identifier: h.ResponseTo, Code: h.ResponseCode}
		if h.Note != "" {
			oo := fhir.OperationOutcome(fhir.Issue{Severity: "information", Code: "informational", Diagnostics: h.Note})
			if h.ResponseCode != "ok" {
				oo = fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: "business-rule", Diagnostics: h.Note})
			}
			mh.Response.Details = &reference{Reference: "urn:uuid:" + newUUID()}
			entries = append(entries, entry{FullURL: mh.Response.Details.Reference, Resource: oo})
		}
	}
	if payload != nil {
		ref := "urn:uuid:" + newUUID()
		mh.Focus = []reference{{Reference: ref}}
		entries = append(entries, entry{FullURL: ref, Resource: payload})
	}
	hb, err := json.Marshal(mh)
	if err != nil {
		return nil, err
	}
	entries = append([]entry{{FullURL: "urn:uuid:" + h.ID, Resource: hb}}, entries...)
	return json.Marshal(bundle{ResourceType: "Bundle", ID: h.ID, Identifier: &identifier{System: SystemRFC3986, Value: "urn:uuid:" + h.ID},
		Type: "message", Entry: entries})
}

// message is a parsed message Bundle.
type message struct {
	Header   messageHeader
	Payload  json.RawMessage // the focus resource; nil when none
	Note     string          // the response's OperationOutcome diagnostics
	Sender   string
	Receiver string
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// parseMessage reads a message Bundle and checks its structure; its
// errors are *fhir.Error (400).
func parseMessage(raw []byte) (message, error) {
	var m message
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return m, fhir.Errorf(http.StatusBadRequest, "structure", "body is not a FHIR JSON Bundle: %v", err)
	}
	if b.ResourceType != "Bundle" || b.Type != "message" {
		return m, fhir.Errorf(http.StatusBadRequest, "invalid", "$process-message takes a Bundle of type message")
	}
	if len(b.Entry) == 0 {
		return m, fhir.Errorf(http.StatusBadRequest, "required", "the message Bundle has no MessageHeader")
	}
	if err := json.Unmarshal(b.Entry[0].Resource, &m.Header); err != nil || m.Header.ResourceType != "MessageHeader" {
		return m, fhir.Errorf(http.StatusBadRequest, "invalid", "the first entry of a message Bundle must be its MessageHeader")
	}
	h := m.Header
	if !idPattern.MatchString(h.ID) {
		return m, fhir.Errorf(http.StatusBadRequest, "required", "MessageHeader.id (the message id) is missing or not a FHIR id")
	}
	if h.Sender == nil || h.Sender.Identifier == nil || nl.CanonicalSystem(h.Sender.Identifier.System) != nl.SystemURA ||
		nl.ValidateURA(h.Sender.Identifier.Value) != nil {
		return m, fhir.Errorf(http.StatusBadRequest, "required", "MessageHeader.sender must carry the sending organisation's URA")
	}
	if h.Receiver == nil || h.Receiver.Identifier == nil || nl.CanonicalSystem(h.Receiver.Identifier.System) != nl.SystemURA ||
		nl.ValidateURA(h.Receiver.Identifier.Value) != nil {
		return m, fhir.Errorf(http.StatusBadRequest, "required", "MessageHeader.receiver must carry the receiving organisation's URA")
	}
	m.Sender, m.Receiver = h.Sender.Identifier.Value, h.Receiver.Identifier.Value
	byURL := map[string]json.RawMessage{}
	for _, e := range b.Entry[1:] {
		byURL[e.FullURL] = e.Resource
	}
	if h.Response != nil {
		if h.Response.Details != nil {
			var oo struct {
				Issue []struct{ Diagnostics string } `json:"issue"`
			}
			if json.Unmarshal(byURL[h.Response.Details.Reference], &oo) == nil && len(oo.Issue) > 0 {
				m.Note = oo.Issue[0].Diagnostics
			}
		}
		return m, nil
	}
	if len(h.Focus) != 1 || byURL[h.Focus[0].Reference] == nil {
		return m, fhir.Errorf(http.StatusBadRequest, "required", "MessageHeader.focus must reference the one payload entry of the Bundle")
	}
	m.Payload = byURL[h.Focus[0].Reference]
	return m, nil
}

// Receipt is the content of a signed delivery receipt.
type Receipt struct {
	MessageID     string `json:"message_id"`
	SenderURA     string `json:"sender"`
	ReceiverURA   string `json:"receiver"`
	PayloadSHA256 string `json:"payload_sha256"` // of the message Bundle's bytes as received
	Received      int64  `json:"iat"`
}

// signReceipt signs r with the receiving participant's key (compact JWS, ES256).
func signReceipt(key jwk.Key, r Receipt) (string, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, ReceiptType)
	if kid, ok := key.KeyID(); ok {
		_ = hdr.Set(jws.KeyIDKey, kid)
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	return string(out), nil
}

// VerifyReceipt checks a receipt's signature against the receiver's key
// set and that it is the receipt of this message: its id, both parties and
// the hash of exactly the bytes sent.
func VerifyReceipt(token string, keys jwk.Set, m OutMessage) (Receipt, error) {
	var r Receipt
	payload, err := jws.Verify([]byte(token), jws.WithKeySet(keys, jws.WithInferAlgorithmFromKey(true)))
	if err != nil {
		return r, fmt.Errorf("receipt signature: %w", err)
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return r, fmt.Errorf("receipt: %w", err)
	}
	switch {
	case r.MessageID != m.ID:
		return r, fmt.Errorf("receipt names message %q, not %q", r.MessageID, m.ID)
	case r.ReceiverURA != m.ReceiverURA || r.SenderURA != m.Tenant:
		return r, fmt.Errorf("receipt names %s → %s, not %s → %s", r.SenderURA, r.ReceiverURA, m.Tenant, m.ReceiverURA)
	case r.PayloadSHA256 != m.BodySHA256:
		return r, fmt.Errorf("receipt's payload hash differs from the message sent")
	}
	return r, nil
}

// receiptFrom takes the receipt out of a $process-message response.
func receiptFrom(raw []byte) (string, error) {
	m, err := parseMessage(raw)
	if err != nil {
		return "", fmt.Errorf("response is no message Bundle: %w", err)
	}
	for _, e := range m.Header.Extension {
		if e.URL == ExtensionReceipt && e.ValueString != "" {
			return e.ValueString, nil
		}
	}
	return "", fmt.Errorf("response carries no delivery receipt")
}
