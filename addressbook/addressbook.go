// Package addressbook is the directory nodes use to find each other: an IHE
// mCSD style FHIR R4 directory of Organizations (by URA) and their Endpoints,
// and the node's client that resolves a partner's endpoint from it.
package addressbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// Endpoint payload types. The notification endpoint and BgZ server codes are
// the public Twiin/Nictiz ones; the OAuth codes are Schakel's, documented in
// docs/protocols.md.
const (
	SystemCapabilities    = "http://nuts-foundation.github.io/nl-generic-functions-ig/CodeSystem/nl-gf-data-exchange-capabilities"
	PayloadNotification   = "Twiin-TA-notification"
	PayloadBgZServer      = "http://nictiz.nl/fhir/CapabilityStatement/bgz2017-servercapabilities"
	SystemSchakelPayload  = "https://schakel.dev/fhir/CodeSystem/endpoint-payload-type"
	PayloadAuthServer     = "oauth-authorization-server" // address: the issuer (RFC 8414)
	PayloadClientJWKS     = "oauth-client-jwks"          // address: the JWKS the organisation signs assertions with
	SystemConnectionType  = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
	ConnectionTypeHL7FHIR = "hl7-fhir-rest"
	// ConnectionTypeDICOMWADORS is a DICOMweb WADO-RS (and QIDO-RS) base.
	ConnectionTypeDICOMWADORS = "dicom-wado-rs"
)

// ErrNotFound is returned when the directory has no usable endpoint.
var ErrNotFound = errors.New("no usable endpoint in the addressbook")

// EndpointResolver finds the address of an organisation's endpoint. Client
// (live queries), Replica (a local copy) and Resolver (several directories)
// implement it.
type EndpointResolver interface {
	Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error)
}

var (
	_ EndpointResolver = (*Client)(nil)
	_ EndpointResolver = (*Replica)(nil)
	_ EndpointResolver = (*Resolver)(nil)
)

// EndpointSpec describes one Endpoint of an organisation. The JSON names are
// those of `schakel addressbook load` files.
type EndpointSpec struct {
	ID          string `json:"id"`
	PayloadType string `json:"payloadType"`
	Address     string `json:"address"`
	FHIRVersion string `json:"fhirVersion,omitempty"` // "3.0" or "4.0" for FHIR endpoints, empty otherwise
	// ConnectionType is the Endpoint's connection type code (HL7
	// endpoint-connection-type); default hl7-fhir-rest. With dicom-wado-rs
	// the payload is DICOM (payloadMimeType application/dicom).
	ConnectionType string    `json:"connectionType,omitempty"`
	Status         string    `json:"status,omitempty"` // default active
	Start          time.Time `json:"start,omitzero"`
	End            time.Time `json:"end,omitzero"`
}

// Entry is an organisation and its endpoints.
type Entry struct {
	ID        string         `json:"id"` // Organization id in the directory
	URA       string         `json:"ura"`
	Name      string         `json:"name"`
	Endpoints []EndpointSpec `json:"endpoints,omitempty"`
}

// Validate checks what Resources needs: ids the store accepts, a well-formed
// URA, and endpoints with an id, a payload type and an address.
func (e Entry) Validate() error {
	if !validID(e.ID) {
		return fmt.Errorf("entry %q: id must be 1-64 of A-Z a-z 0-9 - .", e.ID)
	}
	if err := nl.ValidateURA(e.URA); err != nil {
		return fmt.Errorf("entry %s: %w", e.ID, err)
	}
	seen := map[string]bool{}
	for _, ep := range e.Endpoints {
		switch {
		case !validID(ep.ID):
			return fmt.Errorf("entry %s: endpoint id %q must be 1-64 of A-Z a-z 0-9 - .", e.ID, ep.ID)
		case seen[ep.ID]:
			return fmt.Errorf("entry %s: endpoint id %s given twice", e.ID, ep.ID)
		case ep.PayloadType == "" || ep.Address == "":
			return fmt.Errorf("entry %s: endpoint %s needs a payloadType and an address", e.ID, ep.ID)
		case !ep.End.IsZero() && !ep.Start.IsZero() && !ep.End.After(ep.Start):
			return fmt.Errorf("entry %s: endpoint %s ends before it starts", e.ID, ep.ID)
		}
		seen[ep.ID] = true
	}
	return nil
}

// validID is the FHIR id rule.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Resources renders e as R4 Organization and Endpoint resources.
func (e Entry) Resources() []json.RawMessage {
	var out []json.RawMessage
	var refs []map[string]string
	for _, ep := range e.Endpoints {
		refs = append(refs, map[string]string{"reference": "Endpoint/" + ep.ID})
	}
	org := map[string]any{
		"resourceType": "Organization",
		"id":           e.ID,
		"identifier":   []map[string]string{{"system": nl.SystemURA, "value": e.URA}},
		"active":       true,
		"name":         e.Name,
		"endpoint":     refs,
	}
	b, _ := json.Marshal(org)
	out = append(out, b)
	for _, ep := range e.Endpoints {
		status := ep.Status
		if status == "" {
			status = "active"
		}
		system := SystemSchakelPayload
		if ep.PayloadType == PayloadNotification {
			system = SystemCapabilities
		} else if strings.HasPrefix(ep.PayloadType, "http") {
			system = "http://nictiz.nl/fhir/CapabilityStatement"
		}
		connection := ep.ConnectionType
		if connection == "" {
			connection = ConnectionTypeHL7FHIR
		}
		doc := map[string]any{
			"resourceType":         "Endpoint",
			"id":                   ep.ID,
			"status":               status,
			"connectionType":       map[string]string{"system": SystemConnectionType, "code": connection},
			"name":                 e.Name + " " + ep.PayloadType,
			"managingOrganization": map[string]string{"reference": "Organization/" + e.ID},
			"payloadType":          []map[string]any{{"coding": []map[string]string{{"system": system, "code": ep.PayloadType}}}},
			"address":              ep.Address,
		}
		if ep.FHIRVersion != "" {
			doc["payloadMimeType"] = []string{"application/fhir+json; fhirVersion=" + ep.FHIRVersion}
		} else if connection == ConnectionTypeDICOMWADORS {
			doc["payloadMimeType"] = []string{"application/dicom"}
		} else {
			doc["payloadMimeType"] = []string{"application/json"}
		}
		if !ep.Start.IsZero() || !ep.End.IsZero() {
			p := map[string]string{}
			if !ep.Start.IsZero() {
				p["start"] = ep.Start.UTC().Format(time.RFC3339)
			}
			if !ep.End.IsZero() {
				p["end"] = ep.End.UTC().Format(time.RFC3339)
			}
			doc["period"] = p
		}
		b, _ := json.Marshal(doc)
		out = append(out, b)
	}
	return out
}

// Client resolves endpoints from a directory over HTTPS, caching answers for
// a short time.
type Client struct {
	Base string       // FHIR base of the directory
	HTTP *http.Client // mTLS client
	TTL  time.Duration
	Now  func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	at  time.Time
	eps []endpoint
}

type endpoint struct {
	Address     string
	PayloadType []string
	Mime        []string
	Status      string
	Start, End  time.Time
	// Managing is the managingOrganization reference, "" when absent.
	Managing string
	// BadPeriod is set when period could not be read: such an endpoint is
	// never used, rather than taken as valid forever.
	BadPeriod bool
}

// Endpoint returns the address of the organisation's usable endpoint of the
// given payload type: active, within its period and, when fhirVersion is not
// empty, declaring that FHIR version in its payloadMimeType.
func (c *Client) Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error) {
	eps, err := c.endpoints(ctx, ura)
	if err != nil {
		return "", err
	}
	return pick(eps, ura, payloadType, fhirVersion, c.now())
}

// pick chooses the first usable endpoint of a payload type.
func pick(eps []endpoint, ura, payloadType, fhirVersion string, now time.Time) (string, error) {
	for _, ep := range eps {
		if ep.Status != "active" || (!ep.Start.IsZero() && now.Before(ep.Start)) || (!ep.End.IsZero() && !now.Before(ep.End)) {
			continue
		}
		if ep.BadPeriod || ep.Address == "" || !slices.Contains(ep.PayloadType, payloadType) {
			continue
		}
		if fhirVersion != "" && !mimeHasVersion(ep.Mime, fhirVersion) {
			continue
		}
		return ep.Address, nil
	}
	return "", fmt.Errorf("%w: organisation %s, payload type %s", ErrNotFound, ura, payloadType)
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) endpoints(ctx context.Context, ura string) ([]endpoint, error) {
	ttl := c.TTL
	if ttl == 0 {
		ttl = 30 * time.Second
	}
	c.mu.Lock()
	if e, ok := c.cache[ura]; ok && c.now().Sub(e.at) < ttl {
		c.mu.Unlock()
		return e.eps, nil
	}
	c.mu.Unlock()

	q := url.Values{}
	q.Set("identifier", nl.SystemURA+"|"+ura)
	q.Set("_include", "Organization:endpoint")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Base, "/")+"/Organization?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query addressbook: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("read addressbook answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("addressbook answered %s", resp.Status)
	}
	eps, err := parseEndpoints(body, ura)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.cache == nil {
		c.cache = map[string]cached{}
	}
	c.cache[ura] = cached{at: c.now(), eps: eps}
	c.mu.Unlock()
	return eps, nil
}

// parseEndpoints takes the endpoints of the Organization carrying ura from a
// searchset. Endpoints not referenced by that Organization, or managed by
// another one, are ignored, so a directory entry cannot lend its endpoints to
// another URA.
func parseEndpoints(body []byte, ura string) ([]endpoint, error) {
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &bundle); err != nil || bundle.ResourceType != "Bundle" {
		return nil, errors.New("addressbook answer is not a Bundle")
	}
	orgRefs := map[string]string{} // Endpoint/id → the owning Organization/id
	found := false
	byID := map[string]endpoint{}
	for _, e := range bundle.Entry {
		var head orgHead
		if err := json.Unmarshal(e.Resource, &head); err != nil {
			return nil, fmt.Errorf("addressbook answer has a malformed entry")
		}
		switch head.ResourceType {
		case "Organization":
			if !slices.Contains(head.uras(), ura) {
				continue
			}
			found = true
			for _, r := range head.Endpoint {
				orgRefs[r.Reference] = "Organization/" + head.ID
			}
		case "Endpoint":
			if ep, ok := parseEndpoint(e.Resource); ok {
				byID["Endpoint/"+head.ID] = ep
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: organisation %s is not in the addressbook", ErrNotFound, ura)
	}
	var out []endpoint
	for r, org := range orgRefs {
		if ep, ok := byID[r]; ok && managedBy(ep, org) {
			out = append(out, ep)
		}
	}
	// Map order is random; resolution must not be.
	slices.SortFunc(out, func(a, b endpoint) int { return strings.Compare(a.Address, b.Address) })
	return out, nil
}

// orgHead is what resolution reads of an Organization.
type orgHead struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Identifier   []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Endpoint []struct {
		Reference string `json:"reference"`
	} `json:"endpoint"`
}

// uras lists the URA identifiers of the Organization.
func (o orgHead) uras() []string {
	var out []string
	for _, id := range o.Identifier {
		if nl.CanonicalSystem(id.System) == nl.SystemURA {
			out = append(out, id.Value)
		}
	}
	return out
}

// managedBy tells whether ep may serve as an endpoint of org ("Organization/id"):
// an Endpoint that names a managing organisation must name this one.
func managedBy(ep endpoint, org string) bool {
	if ep.Managing == "" {
		return true
	}
	return ep.Managing == org || strings.HasSuffix(ep.Managing, "/"+org)
}

// parseEndpoint reads the parts of an Endpoint resolution needs.
func parseEndpoint(b []byte) (endpoint, bool) {
	var r struct {
		ResourceType string `json:"resourceType"`
		Status       string `json:"status"`
		Address      string `json:"address"`
		PayloadType  []struct {
			Coding []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"coding"`
		} `json:"payloadType"`
		PayloadMimeType      []string `json:"payloadMimeType"`
		ManagingOrganization *struct {
			Reference string `json:"reference"`
		} `json:"managingOrganization"`
		Period *struct {
			Start string `json:"start"`
			End   string `json:"end"`
		} `json:"period"`
	}
	if json.Unmarshal(b, &r) != nil || r.ResourceType != "Endpoint" {
		return endpoint{}, false
	}
	ep := endpoint{Address: r.Address, Mime: r.PayloadMimeType, Status: r.Status}
	if r.ManagingOrganization != nil {
		ep.Managing = r.ManagingOrganization.Reference
	}
	for _, pt := range r.PayloadType {
		for _, c := range pt.Coding {
			ep.PayloadType = append(ep.PayloadType, c.Code)
		}
	}
	if r.Period != nil {
		var err1, err2 error
		ep.Start, err1 = fhirInstant(r.Period.Start, false)
		ep.End, err2 = fhirInstant(r.Period.End, true)
		ep.BadPeriod = err1 != nil || err2 != nil
	}
	return ep, true
}

// fhirInstant reads a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD or a full
// instant) as the first instant it covers, or, for the end of a period, the
// first instant after it: a period ending "2025-06-30" includes that day.
// Partial dates are taken in UTC. Empty is the zero time.
func fhirInstant(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, f := range []struct {
		layout string
		next   func(time.Time) time.Time
	}{
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	} {
		if t, err := time.Parse(f.layout, s); err == nil {
			if end {
				return f.next(t), nil
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a FHIR dateTime", s)
}

// mimeHasVersion tells whether one of the payload MIME types declares the
// FHIR version: "application/fhir+json; fhirVersion=4.0" serves 4.0 (and a
// declared 4.0.1 serves 4.0 too, the same release).
func mimeHasVersion(mimes []string, version string) bool {
	for _, m := range mimes {
		_, params, err := mime.ParseMediaType(m)
		if err != nil {
			continue
		}
		v := params["fhirversion"] // ParseMediaType lower-cases parameter names
		if v == version || strings.HasPrefix(v, version+".") {
			return true
		}
	}
	return false
}
