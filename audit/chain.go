package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/pki"
)

// chainDomain separates the record hash from any other SHA-256 use.
const chainDomain = "schakel-audit-record/1\x00"

// colTime is the fixed-width UTC time of the recorded_at column, so that
// text comparison is time comparison.
const colTime = "2006-01-02T15:04:05.000000000Z"

// body is the canonical encoding of a record: the bytes that are stored and
// hashed. Its field order is the encoding; append fields, never reorder,
// and append them to appendJSON too (it writes the body as encoding/json
// would, which TestAppendJSONWritesEveryField checks). The sequence
// number is not in it: the chain itself fixes the order.
type body struct {
	V              int       `json:"v"`
	EventID        string    `json:"id"`
	Time           time.Time `json:"time"`
	Action         string    `json:"action"`
	Type           string    `json:"type"`
	Interaction    string    `json:"subtype"`
	Outcome        int       `json:"outcome"`
	OutcomeText    string    `json:"outcomeText,omitempty"`
	Node           string    `json:"node"`
	Tenant         string    `json:"tenant"`
	ActorURA       string    `json:"actorUra,omitempty"`
	ActorSystem    string    `json:"actorSystem,omitempty"`
	ActorUser      string    `json:"actorUser,omitempty"`
	ActorAltID     string    `json:"actorAltId,omitempty"`
	ActorName      string    `json:"actorName,omitempty"`
	ActorRole      string    `json:"actorRole,omitempty"`
	PurposeOfUse   string    `json:"purposeOfUse,omitempty"`
	Requestor      bool      `json:"requestor"`
	Address        string    `json:"address,omitempty"`
	Patient        string    `json:"patient,omitempty"`
	Types          []string  `json:"types,omitempty"`
	Resources      []string  `json:"resources,omitempty"`
	Query          string    `json:"query,omitempty"`
	Sensitivity    string    `json:"sensitivity,omitempty"`
	Task           string    `json:"task,omitempty"`
	AuthzProtocol  string    `json:"authzProtocol,omitempty"`
	ConsentProfile string    `json:"consentProfile,omitempty"`
	Checks         []string  `json:"checks,omitempty"`
}

// restful are the FHIR restful-interaction codes; their events are of type "rest".
var restful = map[string]bool{"read": true, "vread": true, "update": true, "patch": true, "delete": true,
	"history": true, "history-instance": true, "history-type": true, "history-system": true, "create": true,
	"search": true, "search-type": true, "search-system": true, "capabilities": true, "transaction": true,
	"batch": true, "operation": true}

func encodeBody(r Record) ([]byte, error) {
	b := canonical(r)
	return b.appendJSON(make([]byte, 0, b.sizeHint()))
}

// canonical is the record's canonical body: what its hash covers.
func canonical(r Record) body {
	typ := r.Type
	if typ == "" {
		typ = r.Interaction
		if restful[r.Interaction] {
			typ = "rest"
		}
	}
	return body{V: 1, EventID: r.EventID, Time: r.Time.UTC(), Action: r.Action, Type: typ, Interaction: r.Interaction,
		Outcome: r.Outcome, OutcomeText: r.OutcomeText, Node: r.Node, Tenant: r.Tenant,
		ActorURA: r.ActorURA, ActorSystem: r.ActorSystem, ActorUser: r.ActorUser, ActorAltID: r.ActorAltID,
		ActorName: r.ActorName, ActorRole: r.ActorRole, PurposeOfUse: r.PurposeOfUse, Requestor: !r.NotRequestor,
		Address: r.Address, Patient: r.Patient, Types: dedupe(r.Types), Resources: r.Resources, Query: r.Query,
		Sensitivity: r.Sensitivity, Task: r.Task, AuthzProtocol: r.AuthzProtocol, ConsentProfile: r.ConsentProfile,
		Checks: r.Checks}
}

// appendJSON appends b as encoding/json encodes it without HTML escaping
// (json.Encoder with SetEscapeHTML(false), the newline dropped): the same
// bytes, built without reflection. TestEncodeBodyMatchesEncodingJSON and
// FuzzEncodeBody hold the two to each other.
func (b *body) appendJSON(dst []byte) ([]byte, error) {
	if y := b.Time.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("audit record time %v: year outside of range [0,9999]", b.Time)
	}
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(b.V), 10)
	dst = appendMember(dst, "id", b.EventID, false)
	dst = append(dst, `,"time":"`...)
	dst = b.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	dst = appendMember(dst, "action", b.Action, false)
	dst = appendMember(dst, "type", b.Type, false)
	dst = appendMember(dst, "subtype", b.Interaction, false)
	dst = append(dst, `,"outcome":`...)
	dst = strconv.AppendInt(dst, int64(b.Outcome), 10)
	dst = appendMember(dst, "outcomeText", b.OutcomeText, true)
	dst = appendMember(dst, "node", b.Node, false)
	dst = appendMember(dst, "tenant", b.Tenant, false)
	dst = appendMember(dst, "actorUra", b.ActorURA, true)
	dst = appendMember(dst, "actorSystem", b.ActorSystem, true)
	dst = appendMember(dst, "actorUser", b.ActorUser, true)
	dst = appendMember(dst, "actorAltId", b.ActorAltID, true)
	dst = appendMember(dst, "actorName", b.ActorName, true)
	dst = appendMember(dst, "actorRole", b.ActorRole, true)
	dst = appendMember(dst, "purposeOfUse", b.PurposeOfUse, true)
	dst = append(dst, `,"requestor":`...)
	dst = strconv.AppendBool(dst, b.Requestor)
	dst = appendMember(dst, "address", b.Address, true)
	dst = appendMember(dst, "patient", b.Patient, true)
	dst = appendList(dst, "types", b.Types)
	dst = appendList(dst, "resources", b.Resources)
	dst = appendMember(dst, "query", b.Query, true)
	dst = appendMember(dst, "sensitivity", b.Sensitivity, true)
	dst = appendMember(dst, "task", b.Task, true)
	dst = appendMember(dst, "authzProtocol", b.AuthzProtocol, true)
	dst = appendMember(dst, "consentProfile", b.ConsentProfile, true)
	dst = appendList(dst, "checks", b.Checks)
	return append(dst, '}'), nil
}

// sizeHint is about the length of b's encoding, so that it is built in
// one allocation.
func (b *body) sizeHint() int {
	n := 512 + len(b.EventID) + len(b.Action) + len(b.Type) + len(b.Interaction) + len(b.OutcomeText) + len(b.Node) +
		len(b.Tenant) + len(b.ActorURA) + len(b.ActorSystem) + len(b.ActorUser) + len(b.ActorAltID) + len(b.ActorName) +
		len(b.ActorRole) + len(b.PurposeOfUse) + len(b.Address) + len(b.Patient) + len(b.Query) + len(b.Sensitivity) +
		len(b.Task) + len(b.AuthzProtocol) + len(b.ConsentProfile)
	for _, l := range [][]string{b.Types, b.Resources, b.Checks} {
		for _, s := range l {
			n += len(s) + 3
		}
	}
	return n
}

// appendMember appends `,"name":"value"`; nothing for an empty value when
// omitEmpty.
func appendMember(dst []byte, name, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendJSONString(dst, value)
}

// appendList appends `,"name":["a","b"]`; nothing for an empty list
// (every list of the body is omitempty).
func appendList(dst []byte, name string, values []string) []byte {
	if len(values) == 0 {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':', '[')
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, v)
	}
	return append(dst, ']')
}

// appendJSONString appends s as a JSON string the way encoding/json does
// without HTML escaping: quote and backslash escaped, control characters
// as \b \f \n \r \t or \u00XX, invalid UTF-8 as \ufffd, and U+2028 and
// U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func decodeBody(data []byte) (Record, error) {
	var b body
	if err := json.Unmarshal(data, &b); err != nil {
		return Record{}, fmt.Errorf("decode audit record: %w", err)
	}
	if b.V != 1 {
		return Record{}, fmt.Errorf("decode audit record: unknown version %d", b.V)
	}
	return Record{EventID: b.EventID, Time: b.Time, Action: b.Action, Type: b.Type, Interaction: b.Interaction,
		Outcome: b.Outcome, OutcomeText: b.OutcomeText, Node: b.Node, Tenant: b.Tenant,
		ActorURA: b.ActorURA, ActorSystem: b.ActorSystem, ActorUser: b.ActorUser, ActorAltID: b.ActorAltID,
		ActorName: b.ActorName, ActorRole: b.ActorRole, PurposeOfUse: b.PurposeOfUse, NotRequestor: !b.Requestor,
		Address: b.Address, Patient: b.Patient, Types: b.Types, Resources: b.Resources, Query: b.Query,
		Sensitivity: b.Sensitivity, Task: b.Task, AuthzProtocol: b.AuthzProtocol, ConsentProfile: b.ConsentProfile,
		Checks: b.Checks}, nil
}

// chainHash links a record to its predecessor:
// SHA-256(domain || prev hash || canonical body).
func chainHash(prev [32]byte, body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(chainDomain))
	h.Write(prev[:])
	h.Write(body)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// columns are the searchable copies of a record's fields, stored beside its
// body. Verify checks they agree with the body, so a search cannot be steered
// around a record by editing them.
type columns struct {
	EventID, RecordedAt, Action, Interaction string
	Outcome                                  int
	OutcomeText, Node, Tenant, ActorURA      string
	ActorSystem, ActorUser, ActorRole        string
	Address, Patient, Types, Resources       string
	Query, Task                              string
}

func columnsOf(r Record) columns {
	return columns{EventID: r.EventID, RecordedAt: r.Time.UTC().Format(colTime), Action: r.Action,
		Interaction: r.Interaction, Outcome: r.Outcome, OutcomeText: r.OutcomeText, Node: r.Node, Tenant: r.Tenant,
		ActorURA: r.ActorURA, ActorSystem: r.ActorSystem, ActorUser: r.ActorUser, ActorRole: r.ActorRole,
		Address: r.Address, Patient: r.Patient, Types: strings.Join(dedupe(r.Types), " "),
		Resources: strings.Join(r.Resources, " "), Query: r.Query, Task: r.Task}
}

func (c columns) args() []any {
	return []any{c.EventID, c.RecordedAt, c.Action, c.Interaction, c.Outcome, c.OutcomeText, c.Node, c.Tenant,
		c.ActorURA, c.ActorSystem, c.ActorUser, c.ActorRole, c.Address, c.Patient, c.Types, c.Resources, c.Query, c.Task}
}

func (c *columns) dest() []any {
	return []any{&c.EventID, &c.RecordedAt, &c.Action, &c.Interaction, &c.Outcome, &c.OutcomeText, &c.Node, &c.Tenant,
		&c.ActorURA, &c.ActorSystem, &c.ActorUser, &c.ActorRole, &c.Address, &c.Patient, &c.Types, &c.Resources, &c.Query, &c.Task}
}

// columnNames match columns.args and columns.dest.
const columnNames = `event_id, recorded_at, action, interaction, outcome, outcome_text, node, tenant,
	actor_ura, actor_system, actor_user, actor_role, network_address, patient, resource_types, resources, query, task`

// row is a record as stored: position, links, body and searchable columns.
// Rows written before the chain existed have no hash (legacy).
type row struct {
	seq        int64
	prev, hash []byte
	body       []byte
	cols       columns
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func ephemeralKey() (jwk.Key, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return pki.SigningJWK(k)
}
