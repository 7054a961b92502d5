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
	"net/http"
	"net/url"
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
)

// ErrNotFound is returned when the directory has no usable endpoint.
var ErrNotFound = errors.New("no usable endpoint in the addressbook")

// EndpointSpec describes one Endpoint of an organisation.
type EndpointSpec struct {
	ID          string
	PayloadType string
	Address     string
	FHIRVersion string // "3.0" or "4.0" for FHIR endpoints, empty otherwise
	Status      string // default active
	Start, End  time.Time
}

// Entry is an organisation and its endpoints.
type Entry struct {
	ID        string // Organization id in the directory
	URA       string
	Name      string
	Endpoints []EndpointSpec
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
		doc := map[string]any{
			"resourceType":         "Endpoint",
			"id":                   ep.ID,
			"status":               status,
			"connectionType":       map[string]string{"system": SystemConnectionType, "code": ConnectionTypeHL7FHIR},
			"name":                 e.Name + " " + ep.PayloadType,
			"managingOrganization": map[string]string{"reference": "Organization/" + e.ID},
			"payloadType":          []map[string]any{{"coding": []map[string]string{{"system": system, "code": ep.PayloadType}}}},
			"address":              ep.Address,
		}
		if ep.FHIRVersion != "" {
			doc["payloadMimeType"] = []string{"application/fhir+json; fhirVersion=" + ep.FHIRVersion}
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
}

// Endpoint returns the address of the organisation's usable endpoint of the
// given payload type: active, within its period and, when fhirVersion is not
// empty, declaring that FHIR version in its payloadMimeType.
func (c *Client) Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error) {
	eps, err := c.endpoints(ctx, ura)
	if err != nil {
		return "", err
	}
	now := c.now()
	for _, ep := range eps {
		if ep.Status != "active" || (!ep.Start.IsZero() && now.Before(ep.Start)) || (!ep.End.IsZero() && !now.Before(ep.End)) {
			continue
		}
		if !contains(ep.PayloadType, payloadType) {
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
// searchset. Endpoints not referenced by that Organization are ignored, so a
// directory entry cannot lend its endpoints to another URA.
func parseEndpoints(body []byte, ura string) ([]endpoint, error) {
	var bundle struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &bundle); err != nil {
		return nil, fmt.Errorf("addressbook answer is not a Bundle: %w", err)
	}
	type ref struct {
		Reference string `json:"reference"`
	}
	var orgRefs map[string]bool
	byID := map[string]endpoint{}
	for _, e := range bundle.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Identifier   []struct {
				System, Value string
			} `json:"identifier"`
			Endpoint    []ref `json:"endpoint"`
			Status      string
			Address     string
			PayloadType []struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"payloadType"`
			PayloadMimeType []string `json:"payloadMimeType"`
			Period          *struct{ Start, End string }
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil {
			return nil, fmt.Errorf("addressbook entry: %w", err)
		}
		switch head.ResourceType {
		case "Organization":
			owns := false
			for _, id := range head.Identifier {
				if nl.CanonicalSystem(id.System) == nl.SystemURA && id.Value == ura {
					owns = true
				}
			}
			if !owns {
				continue
			}
			if orgRefs == nil {
				orgRefs = map[string]bool{}
			}
			for _, r := range head.Endpoint {
				orgRefs[r.Reference] = true
			}
		case "Endpoint":
			ep := endpoint{Address: head.Address, Mime: head.PayloadMimeType, Status: head.Status}
			for _, pt := range head.PayloadType {
				for _, c := range pt.Coding {
					ep.PayloadType = append(ep.PayloadType, c.Code)
				}
			}
			if head.Period != nil {
				ep.Start, _ = time.Parse(time.RFC3339, head.Period.Start)
				ep.End, _ = time.Parse(time.RFC3339, head.Period.End)
			}
			byID["Endpoint/"+head.ID] = ep
		}
	}
	if orgRefs == nil {
		return nil, fmt.Errorf("%w: organisation %s is not in the addressbook", ErrNotFound, ura)
	}
	var out []endpoint
	for r := range orgRefs {
		if ep, ok := byID[r]; ok {
			out = append(out, ep)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mimeHasVersion(mimes []string, version string) bool {
	for _, m := range mimes {
		if strings.Contains(strings.ReplaceAll(m, " ", ""), "fhirVersion="+version) {
			return true
		}
	}
	return false
}
