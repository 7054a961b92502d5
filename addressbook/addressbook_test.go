package addressbook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/nl"
)

// directory starts a real addressbook (R4 store + FHIR API) with entries.
func directory(t *testing.T, entries ...Entry) *Client {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ab.db"), fhir.R4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	ab := NewServer(st, srv.URL+"/fhir", nil)
	srv.Config.Handler = ab.Handler()
	if err := ab.Load(context.Background(), entries...); err != nil {
		t.Fatal(err)
	}
	return &Client{Base: srv.URL + "/fhir", HTTP: srv.Client()}
}

func TestEndpointResolution(t *testing.T) {
	now := time.Now()
	c := directory(t,
		Entry{ID: "a", URA: "90000001", Name: "A", Endpoints: []EndpointSpec{
			{ID: "a-old", PayloadType: PayloadNotification, Address: "https://old/Task", FHIRVersion: "3.0", End: now.Add(-time.Hour)},
			{ID: "a-off", PayloadType: PayloadNotification, Address: "https://off/Task", FHIRVersion: "3.0", Status: "off"},
			{ID: "a-r4", PayloadType: PayloadNotification, Address: "https://r4/Task", FHIRVersion: "4.0"},
			{ID: "a-ok", PayloadType: PayloadNotification, Address: "https://a/Task", FHIRVersion: "3.0", Start: now.Add(-time.Hour)},
			{ID: "a-as", PayloadType: PayloadAuthServer, Address: "https://a"},
		}},
		Entry{ID: "b", URA: "90000002", Name: "B", Endpoints: []EndpointSpec{
			{ID: "b-n", PayloadType: PayloadNotification, Address: "https://b/Task", FHIRVersion: "3.0"},
		}},
	)
	ctx := context.Background()
	for _, tc := range []struct {
		ura, payload, version, want string
		err                         error
	}{
		{"90000001", PayloadNotification, "3.0", "https://a/Task", nil},
		{"90000001", PayloadNotification, "4.0", "https://r4/Task", nil},
		{"90000001", PayloadAuthServer, "", "https://a", nil},
		{"90000002", PayloadNotification, "3.0", "https://b/Task", nil},
		{"90000002", PayloadAuthServer, "", "", ErrNotFound},
		{"90000009", PayloadNotification, "3.0", "", ErrNotFound},
	} {
		got, err := c.Endpoint(ctx, tc.ura, tc.payload, tc.version)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Endpoint(%s, %s, %s) = %q, %v; want %q, %v", tc.ura, tc.payload, tc.version, got, err, tc.want, tc.err)
		}
	}
}

func TestEndpointsOnlyFromTheOrganisationThatHoldsTheURA(t *testing.T) {
	// A searchset where an Endpoint is included but referenced by no
	// Organization carrying the URA, and an Organization with another URA.
	body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "entry": []any{
		map[string]any{"resource": map[string]any{"resourceType": "Organization", "id": "x",
			"identifier": []any{map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": "90000005"}},
			"endpoint":   []any{map[string]any{"reference": "Endpoint/evil"}}}},
		map[string]any{"resource": map[string]any{"resourceType": "Endpoint", "id": "evil", "status": "active", "address": "https://evil",
			"payloadType": []any{map[string]any{"coding": []any{map[string]any{"code": PayloadNotification}}}}}},
	}})
	if _, err := parseEndpoints(body, "90000001"); !errors.Is(err, ErrNotFound) {
		t.Errorf("endpoints of another URA accepted: %v", err)
	}
	if _, err := parseEndpoints([]byte(`{"resourceType":`), "90000001"); err == nil {
		t.Error("malformed answer accepted")
	}
}

func TestDirectoryIsReadOnlyForPeers(t *testing.T) {
	c := directory(t, Entry{ID: "a", URA: "90000001", Name: "A"})
	req, _ := http.NewRequest(http.MethodDelete, c.Base+"/Organization/a", nil)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("delete answered %d, want 403", resp.StatusCode)
	}
}

func TestEndpointPeriodAndVersion(t *testing.T) {
	now := time.Date(2025, 6, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		period string
		mime   string
		want   bool
	}{
		{"open", ``, `application/fhir+json; fhirVersion=3.0`, true},
		{"ends today, date only", `{"end":"2025-06-30"}`, `application/fhir+json; fhirVersion=3.0`, true},
		{"ended yesterday", `{"end":"2025-06-29"}`, `application/fhir+json; fhirVersion=3.0`, false},
		{"ends this month", `{"end":"2025-06"}`, `application/fhir+json;fhirVersion=3.0`, true},
		{"starts next year", `{"start":"2026"}`, `application/fhir+json; fhirVersion=3.0`, false},
		{"started an hour ago", `{"start":"2025-06-30T11:00:00Z"}`, `application/fhir+json; fhirVersion=3.0`, true},
		{"unreadable period", `{"end":"soon"}`, `application/fhir+json; fhirVersion=3.0`, false},
		{"patch version", ``, `application/fhir+json; fhirVersion=3.0.2`, true},
		{"other version", ``, `application/fhir+json; fhirVersion=4.0`, false},
		{"3.01 is not 3.0", ``, `application/fhir+json; fhirVersion=3.01`, false},
		{"no version", ``, `application/fhir+json`, false},
	} {
		doc := `{"resourceType":"Endpoint","status":"active","address":"https://x","payloadType":[{"coding":[{"code":"` + PayloadNotification + `"}]}],"payloadMimeType":["` + tc.mime + `"]`
		if tc.period != "" {
			doc += `,"period":` + tc.period
		}
		ep, ok := parseEndpoint([]byte(doc + `}`))
		if !ok {
			t.Fatalf("%s: not parsed", tc.name)
		}
		_, err := pick([]endpoint{ep}, "90000001", PayloadNotification, "3.0", now)
		if (err == nil) != tc.want {
			t.Errorf("%s: usable = %v, want %v", tc.name, err == nil, tc.want)
		}
	}
}

func TestEndpointManagedByAnotherOrganisationIsNotLent(t *testing.T) {
	body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "entry": []any{
		map[string]any{"resource": map[string]any{"resourceType": "Organization", "id": "thief",
			"identifier": []any{map[string]any{"system": nl.SystemURA, "value": "90000001"}},
			"endpoint":   []any{map[string]any{"reference": "Endpoint/theirs"}}}},
		map[string]any{"resource": map[string]any{"resourceType": "Endpoint", "id": "theirs", "status": "active", "address": "https://victim",
			"managingOrganization": map[string]any{"reference": "Organization/victim"},
			"payloadType":          []any{map[string]any{"coding": []any{map[string]any{"code": PayloadNotification}}}}}},
	}})
	eps, err := parseEndpoints(body, "90000001")
	if err != nil || len(eps) != 0 {
		t.Errorf("endpoints = %v, %v; want none", eps, err)
	}
}
