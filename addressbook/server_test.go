package addressbook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir/store"
)

// do sends a FHIR request and returns status, ETag and body.
func do(t *testing.T, c *http.Client, method, url, body string, header ...string) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("ETag"), string(b)
}

func orgJSON(id string, uras ...string) string {
	var ids []string
	for _, u := range uras {
		ids = append(ids, `{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"`+u+`"}`)
	}
	doc := `{"resourceType":"Organization",` + optID(id) + `"active":true,"name":"Org"`
	if len(ids) > 0 {
		doc += `,"identifier":[` + strings.Join(ids, ",") + `]`
	}
	return doc + `}`
}

func endpointJSON(id, org, address string) string {
	return `{"resourceType":"Endpoint",` + optID(id) + `"status":"active",` +
		`"connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"hl7-fhir-rest"},` +
		`"managingOrganization":{"reference":"` + org + `"},` +
		`"payloadType":[{"coding":[{"system":"` + SystemCapabilities + `","code":"Twiin-TA-notification"}]}],` +
		`"payloadMimeType":["application/fhir+json; fhirVersion=3.0"],"address":"` + address + `"}`
}

func optID(id string) string {
	if id == "" {
		return ""
	}
	return `"id":"` + id + `",`
}

// TestSelfMaintenance is ITI-130: an organisation maintains its own
// entries over mTLS, and nobody else's.
func TestSelfMaintenance(t *testing.T) {
	const (
		uraA = "90000001"
		uraB = "90000002"
	)
	for _, tc := range []struct {
		name, method, path, body string
		ifMatch                  string // "current": the entry's current ETag
		want                     int
	}{
		{"create own endpoint", "POST", "Endpoint", endpointJSON("", "Organization/org-a", "https://a/new"), "", http.StatusCreated},
		{"create own endpoint by put", "PUT", "Endpoint/ep-a-2", endpointJSON("ep-a-2", "Organization/org-a", "https://a/2"), "", http.StatusCreated},
		{"update own organization", "PUT", "Organization/org-a", orgJSON("org-a", uraA), "current", http.StatusOK},
		{"update own organization without If-Match", "PUT", "Organization/org-a", orgJSON("org-a", uraA), "", http.StatusPreconditionRequired},
		{"update own organization with a stale If-Match", "PUT", "Organization/org-a", orgJSON("org-a", uraA), `W/"0"`, http.StatusPreconditionFailed},
		{"update own endpoint", "PUT", "Endpoint/ep-a", endpointJSON("ep-a", "Organization/org-a", "https://a/moved"), "current", http.StatusOK},
		{"delete own endpoint", "DELETE", "Endpoint/ep-a", "", "current", http.StatusNoContent},
		{"delete own endpoint without If-Match", "DELETE", "Endpoint/ep-a", "", "", http.StatusPreconditionRequired},
		{"delete own endpoint with a stale If-Match", "DELETE", "Endpoint/ep-a", "", `W/"7"`, http.StatusPreconditionFailed},
		{"change own URA to another", "PUT", "Organization/org-a", orgJSON("org-a", uraB), "current", http.StatusForbidden},
		{"add another URA", "PUT", "Organization/org-a", orgJSON("org-a", uraA, uraB), "current", http.StatusForbidden},
		{"drop the URA", "PUT", "Organization/org-a", orgJSON("org-a"), "current", http.StatusForbidden},
		{"register another URA", "POST", "Organization", orgJSON("", uraB), "", http.StatusForbidden},
		{"take over another organization", "PUT", "Organization/org-b", orgJSON("org-b", uraA), "current", http.StatusForbidden},
		{"update another organization", "PUT", "Organization/org-b", orgJSON("org-b", uraB), "current", http.StatusForbidden},
		{"delete another organization", "DELETE", "Organization/org-b", "", "current", http.StatusForbidden},
		{"endpoint for another organization", "POST", "Endpoint", endpointJSON("", "Organization/org-b", "https://evil"), "", http.StatusForbidden},
		{"endpoint for an unknown organization", "POST", "Endpoint", endpointJSON("", "Organization/nobody", "https://evil"), "", http.StatusForbidden},
		{"endpoint without organization", "POST", "Endpoint", `{"resourceType":"Endpoint","status":"active","connectionType":{"code":"hl7-fhir-rest"},"payloadType":[{"text":"x"}],"address":"https://x"}`, "", http.StatusForbidden},
		{"update another's endpoint", "PUT", "Endpoint/ep-b", endpointJSON("ep-b", "Organization/org-b", "https://evil"), "current", http.StatusForbidden},
		{"move own endpoint to another", "PUT", "Endpoint/ep-a", endpointJSON("ep-a", "Organization/org-b", "https://a"), "current", http.StatusForbidden},
		{"conditional update", "PUT", "Organization?identifier=http://fhir.nl/fhir/NamingSystem/ura|" + uraA, orgJSON("", uraA), "current", http.StatusBadRequest},
		{"practitioner", "POST", "Practitioner", `{"resourceType":"Practitioner"}`, "", http.StatusForbidden},
		{"search", "GET", "Organization?identifier=http://fhir.nl/fhir/NamingSystem/ura|" + uraB, "", "", http.StatusOK},
		{"history", "GET", "Organization/_history?_since=2020-01-01T00:00:00Z", "", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			d := startDirectory(t, p,
				Entry{ID: "org-a", URA: uraA, Name: "A", Endpoints: []EndpointSpec{{ID: "ep-a", PayloadType: PayloadNotification, Address: "https://a/Task", FHIRVersion: "3.0"}}},
				Entry{ID: "org-b", URA: uraB, Name: "B", Endpoints: []EndpointSpec{{ID: "ep-b", PayloadType: PayloadNotification, Address: "https://b/Task", FHIRVersion: "3.0"}}},
			)
			ctx := context.Background()
			a := p.client(t, uraA)
			var header []string
			if tc.ifMatch == "current" {
				typ, id, _ := strings.Cut(strings.SplitN(tc.path, "?", 2)[0], "/")
				if id == "" {
					id = "org-a"
				}
				cur, err := d.store.Read(ctx, tenant, typ, id)
				if err != nil {
					t.Fatal(err)
				}
				header = []string{"If-Match", `W/"` + cur.VersionID + `"`}
			} else if tc.ifMatch != "" {
				header = []string{"If-Match", tc.ifMatch}
			}
			before := snapshotStore(t, d)
			status, _, body := do(t, a, tc.method, d.base+"/"+tc.path, tc.body, header...)
			if status != tc.want {
				t.Fatalf("%s %s = %d, want %d: %s", tc.method, tc.path, status, tc.want, body)
			}
			if status >= 400 && snapshotStore(t, d) != before {
				t.Error("a refused request changed the directory")
			}
		})
	}
}

// snapshotStore is the directory's whole history, as its _history shows it.
func snapshotStore(t *testing.T, d *testDir) string {
	t.Helper()
	page, err := d.store.History(context.Background(), tenant, storeHistoryAll)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, v := range page.Versions {
		b.WriteString(v.Type + "/" + v.ID + "/" + v.VersionID + "\n")
	}
	return b.String()
}

func TestSelfMaintenanceNeedsMTLS(t *testing.T) {
	c := directory(t, Entry{ID: "a", URA: "90000001", Name: "A"})
	for _, tc := range []struct{ method, path, body string }{
		{"DELETE", "Organization/a", ""},
		{"POST", "Organization", orgJSON("", "90000001")},
		{"PUT", "Organization/a", orgJSON("a", "90000001")},
		{"POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + orgJSON("", "90000001") + `,"request":{"method":"POST","url":"Organization"}}]}`},
	} {
		if status, _, body := do(t, c.HTTP, tc.method, c.Base+"/"+tc.path, tc.body, "If-Match", `W/"1"`); status != http.StatusForbidden {
			t.Errorf("%s %s over plain HTTP = %d, want 403: %s", tc.method, tc.path, status, body)
		}
	}
}

// TestCareServicesFeed is ITI-130 as a transaction Bundle: a new
// organisation registers itself and its endpoints in one go, entries
// referencing each other by urn:uuid; a Bundle with one foreign entry is
// refused whole.
func TestCareServicesFeed(t *testing.T) {
	const uraC = "90000003"
	p := newPKI(t)
	d := startDirectory(t, p, Entry{ID: "org-b", URA: "90000002", Name: "B"})
	c := p.client(t, uraC)
	org := `urn:uuid:9e2b7e52-7c1a-4b0e-9a55-0c4c6a0d0001`
	ep := `urn:uuid:9e2b7e52-7c1a-4b0e-9a55-0c4c6a0d0002`
	orgBody := `{"resourceType":"Organization","active":true,"name":"C","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraC + `"}],"endpoint":[{"reference":"` + ep + `"}]}`
	feed := func(extra string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[` +
			`{"fullUrl":"` + org + `","resource":` + orgBody + `,"request":{"method":"POST","url":"Organization"}},` +
			`{"fullUrl":"` + ep + `","resource":` + endpointJSON("", org, "https://c/Task") + `,"request":{"method":"POST","url":"Endpoint"}}` +
			extra + `]}`
	}
	before := snapshotStore(t, d)
	for name, extra := range map[string]string{
		"foreign endpoint":   `,{"resource":` + endpointJSON("", "Organization/org-b", "https://evil") + `,"request":{"method":"POST","url":"Endpoint"}}`,
		"foreign update":     `,{"resource":` + orgJSON("org-b", uraC) + `,"request":{"method":"PUT","url":"Organization/org-b","ifMatch":"W/\"1\""}}`,
		"second URA":         `,{"resource":` + orgJSON("", "90000002") + `,"request":{"method":"POST","url":"Organization"}}`,
		"conditional delete": `,{"request":{"method":"DELETE","url":"Organization?name=B"}}`,
	} {
		if status, _, body := do(t, c, "POST", d.base, feed(extra)); status != http.StatusForbidden && status != http.StatusBadRequest {
			t.Errorf("%s: transaction = %d, want 403 or 400: %s", name, status, body)
		}
		if snapshotStore(t, d) != before {
			t.Fatalf("%s: a refused transaction changed the directory", name)
		}
	}

	status, _, body := do(t, c, "POST", d.base, feed(""))
	if status != http.StatusOK {
		t.Fatalf("transaction = %d: %s", status, body)
	}
	// The node resolves C's endpoint, with the references rewritten.
	cl := &Client{Base: d.base, HTTP: p.client(t, "90000000")}
	resolve(t, cl, uraC, "https://c/Task")

	// An update in a transaction needs ifMatch too.
	var resp struct {
		Entry []struct {
			Response struct{ Location, Etag string }
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || len(resp.Entry) != 2 {
		t.Fatalf("transaction-response: %v: %s", err, body)
	}
	orgID := strings.Split(resp.Entry[0].Response.Location, "/")[1]
	update := func(ifMatch string) (int, string) {
		s, _, b := do(t, c, "POST", d.base, `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":`+
			orgJSON(orgID, uraC)+`,"request":{"method":"PUT","url":"Organization/`+orgID+`"`+ifMatch+`}}]}`)
		return s, b
	}
	if s, b := update(""); s != http.StatusPreconditionRequired {
		t.Errorf("update without ifMatch = %d, want 428: %s", s, b)
	}
	if s, b := update(`,"ifMatch":"W/\"1\""`); s != http.StatusOK {
		t.Errorf("update with ifMatch = %d, want 200: %s", s, b)
	}
	if len(d.ab.bundles) != 0 {
		t.Errorf("%d Bundles still remembered after their answers", len(d.ab.bundles))
	}
}

var storeHistoryAll = store.HistoryQuery{Count: 1000}
