package localization

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/pki"
)

// send makes a raw request as ura and returns status and body.
func (e *testEnv) send(ura, method, path, contentType, body string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.httpClient(ura).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

func listJSONFor(custodian, subjectSystem, subjectValue string) string {
	l := map[string]any{
		"resourceType": "List", "status": "current", "mode": "working",
		"extension": []any{
			map[string]any{"url": ExtCustodian, "valueReference": map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": custodian}}},
			map[string]any{"url": ExtSourceType, "valueCoding": map[string]any{"system": SystemSourceType, "code": "Z3"}},
		},
		"code":    map[string]any{"coding": []any{map[string]any{"system": med.System, "code": med.Code}}},
		"subject": map[string]any{"identifier": map[string]any{"system": subjectSystem, "value": subjectValue}},
	}
	b, _ := json.Marshal(l)
	return string(b)
}

func localizeJSON(pseudonym, requester string, withCC bool, extra ...map[string]any) string {
	params := []any{
		map[string]any{"name": "pseudonym", "valueString": pseudonym},
		map[string]any{"name": "requester", "valueIdentifier": map[string]any{"system": "urn:oid:2.16.528.1.1007.3.3", "value": requester}},
	}
	if withCC {
		params = append(params, map[string]any{"name": "careContext", "valueCoding": map[string]any{"system": med.System, "code": med.Code}})
	}
	for _, e := range extra {
		params = append(params, e)
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	return string(b)
}

func TestBadInput(t *testing.T) {
	env := newEnv(t, func(c *ServerConfig) { c.MaxBodyBytes = 4096 })
	a := env.client(uraA, "Z3", PresumedConsent)
	ctx := context.Background()
	p, err := a.Pseudonym(ctx, bsn1)
	if err != nil {
		t.Fatal(err)
	}
	idA := mustRegister(t, a, bsn1, med)
	ps := p.String()
	stale := Pseudonym{KeyID: "oldkey", Value: p.Value}.String()
	const ct = "application/fhir+json"

	cases := []struct {
		name        string
		as          string
		method      string
		path        string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"malformed JSON", uraA, "POST", "/List", ct, `{"resourceType":"List",`, 400, "invalid"},
		{"not an object", uraA, "POST", "/List", ct, `[1,2]`, 400, "invalid"},
		{"wrong resource type", uraA, "POST", "/List", ct, `{"resourceType":"Patient"}`, 400, "invalid"},
		{"wrong element type", uraA, "POST", "/List", ct, `{"resourceType":"List","status":7}`, 400, "invalid"},
		{"status not current", uraA, "POST", "/List", ct, strings.Replace(listJSONFor(uraA, SystemPseudonym, ps), `"current"`, `"retired"`, 1), 400, "invalid"},
		{"plain BSN as subject", uraA, "POST", "/List", ct, listJSONFor(uraA, "http://fhir.nl/fhir/NamingSystem/bsn", bsn1), 400, "invalid"},
		{"malformed pseudonym", uraA, "POST", "/List", ct, listJSONFor(uraA, SystemPseudonym, "kid:tooShort"), 400, "invalid"},
		{"invalid custodian URA", uraA, "POST", "/List", ct, listJSONFor("1234", SystemPseudonym, ps), 400, "invalid"},
		{"register for another URA", uraA, "POST", "/List", ct, listJSONFor(uraB, SystemPseudonym, ps), 403, "forbidden"},
		{"pseudonym under another key", uraA, "POST", "/List", ct, listJSONFor(uraA, SystemPseudonym, stale), 409, "conflict"},
		{"oversized body", uraA, "POST", "/List", ct, `{"resourceType":"List","text":"` + strings.Repeat("x", 5000) + `"}`, 413, "too-costly"},
		{"XML content type", uraA, "POST", "/List", "application/fhir+xml", `<List/>`, 415, "not-supported"},
		{"no content type", uraA, "POST", "/List", "", listJSONFor(uraA, SystemPseudonym, ps), 415, "not-supported"},
		{"localize without care context", uraA, "POST", "/Organization/$localize", ct, localizeJSON(ps, uraA, false), 400, "invalid"},
		{"localize unknown parameter", uraA, "POST", "/Organization/$localize", ct, localizeJSON(ps, uraA, true, map[string]any{"name": "bsn", "valueString": bsn1}), 400, "invalid"},
		{"localize twice the pseudonym", uraA, "POST", "/Organization/$localize", ct, localizeJSON(ps, uraA, true, map[string]any{"name": "pseudonym", "valueString": ps}), 400, "invalid"},
		{"localize as another requester", uraA, "POST", "/Organization/$localize", ct, localizeJSON(ps, uraB, true), 403, "forbidden"},
		{"localize stale pseudonym", uraA, "POST", "/Organization/$localize", ct, localizeJSON(stale, uraA, true), 409, "conflict"},
		{"localize Bundle instead of Parameters", uraA, "POST", "/Organization/$localize", ct, `{"resourceType":"Bundle"}`, 400, "invalid"},
		{"read another's List", uraB, "GET", "/List/" + idA, "", "", 403, "forbidden"},
		{"delete another's List", uraB, "DELETE", "/List/" + idA, "", "", 403, "forbidden"},
		{"read unknown List", uraA, "GET", "/List/0b6f1f5e-8d8e-4d38-9a55-0d3cbb0b1e2f", "", "", 404, "not-found"},
		{"conditional delete without subject", uraA, "DELETE", "/List", "", "", 400, "invalid"},
		{"conditional delete by BSN", uraA, "DELETE", "/List?subject:identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + bsn1, "", "", 400, "invalid"},
		{"conditional delete unknown parameter", uraA, "DELETE", "/List?subject:identifier=" + SystemPseudonym + "|" + ps + "&_id=x", "", "", 400, "invalid"},
		{"evaluate short element", uraA, "POST", "/$oprf-evaluate", ct, `{"resourceType":"Parameters","parameter":[{"name":"blindedElement","valueBase64Binary":"AAAA"}]}`, 400, "invalid"},
		{"evaluate point off the curve", uraA, "POST", "/$oprf-evaluate", ct, `{"resourceType":"Parameters","parameter":[{"name":"blindedElement","valueBase64Binary":"` +
			base64.StdEncoding.EncodeToString(append(make([]byte, 31), 2)) + `"}]}`, 400, "invalid"},
		{"unknown path", uraA, "GET", "/Patient", "", "", 404, "not-supported"},
		{"unsupported method", uraA, "PUT", "/List/" + idA, ct, "{}", 404, "not-supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := env.send(c.as, c.method, c.path, c.contentType, c.body)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			issues := decodeOutcome(t, body)
			if issues[0].Code != c.code {
				t.Fatalf("issue code %q, want %q: %s", issues[0].Code, c.code, body)
			}
			for _, leak := range []string{"sql", "SQL", "goroutine", env.dir} {
				if strings.Contains(string(body), leak) {
					t.Fatalf("answer leaks %q: %s", leak, body)
				}
			}
		})
	}
	// Nothing of the refused requests was stored: A's one registration only.
	res, err := a.Localize(ctx, LocalizeRequest{BSN: bsn1, CareContext: med})
	if err != nil || len(res.Holders) != 1 || res.Holders[0].URA != uraA {
		t.Fatalf("after bad input: %+v %v", res, err)
	}
}

func TestEvaluateRateLimit(t *testing.T) {
	env := newEnv(t, func(c *ServerConfig) { c.EvaluateRate = 0.001; c.EvaluateBurst = 2 })
	a := env.client(uraA, "Z3", PresumedConsent)
	for i := 0; i < 2; i++ {
		if _, err := a.Pseudonym(context.Background(), bsn1); err != nil {
			t.Fatal(err)
		}
	}
	status, hdr, body := env.send(uraA, "POST", "/$oprf-evaluate", "application/fhir+json", `{"resourceType":"Parameters","parameter":[]}`)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("third evaluation: %d %v", status, hdr)
	}
	if decodeOutcome(t, body)[0].Code != "throttled" {
		t.Fatalf("body %s", body)
	}
	// The limit is per organisation.
	if _, err := env.client(uraB, "A1", PresumedConsent).Pseudonym(context.Background(), bsn1); err != nil {
		t.Fatalf("another organisation is throttled too: %v", err)
	}
}

func TestLimiterRefills(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(1, 2, func() time.Time { return now })
	if !l.allow("a") || !l.allow("a") || l.allow("a") {
		t.Fatal("burst of 2 not enforced")
	}
	now = now.Add(1500 * time.Millisecond)
	if !l.allow("a") || l.allow("a") {
		t.Fatal("1.5 s at 1/s should give one token")
	}
}

func TestRefusesCallersWithoutMTLS(t *testing.T) {
	env := newEnv(t, nil)
	roots := pki.CertPool(env.ca.Cert)

	t.Run("no client certificate: handshake refused", func(t *testing.T) {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}}}
		resp, err := cl.Post(env.url+"/$oprf-evaluate", "application/fhir+json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("request without client certificate got %d", resp.StatusCode)
		}
	})
	t.Run("certificate from another CA: handshake refused", func(t *testing.T) {
		other, err := pki.NewCA("other", time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(issue(t, other, uraA, "90000009"), roots)}}
		resp, err := cl.Post(env.url+"/$oprf-evaluate", "application/fhir+json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("foreign certificate got %d", resp.StatusCode)
		}
	})
	t.Run("plain HTTP in front of the handler: 401", func(t *testing.T) {
		srv := httptest.NewServer(env.server.Handler())
		defer srv.Close()
		resp, err := http.Post(srv.URL+"/fhir/Organization/$localize", "application/fhir+json", strings.NewReader(localizeJSON("k:x", uraA, true)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || decodeOutcome(t, body)[0].Code != "login" {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("verified certificate without UZI identity: 403", func(t *testing.T) {
		// A listener that (wrongly) admits non-UZI peers still cannot get
		// them past the handler.
		srv := httptest.NewUnstartedServer(env.server.Handler())
		srv.TLS = pki.ServerTLSConfig(issue(t, env.ca, uraIndex, "90000003"), roots, pki.AcceptNonUZIPeer())
		srv.StartTLS()
		defer srv.Close()
		noID, err := env.ca.IssueWithoutUZIIdentity(pki.ServerCertRequest{CommonName: "anonymous"})
		if err != nil {
			t.Fatal(err)
		}
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(noID, roots)}}
		resp, err := cl.Post(srv.URL+"/fhir/$oprf-evaluate", "application/fhir+json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || decodeOutcome(t, body)[0].Code != "forbidden" {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
}
