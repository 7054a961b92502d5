package node

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/oauth"
)

func TestWithID(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"OperationOutcome", `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}`,
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}],"extension":[{"url":"` + requestIDExtension + `","valueString":"r1"}]}` + "\n"},
		{"OAuth error", `{"error":"invalid_grant","error_description":"no"}` + "\n",
			`{"error":"invalid_grant","error_description":"no","request_id":"r1"}` + "\n"},
		{"problem", `{"type":"https://schakel.dev/problems/x","status":401,"detail":"no"}`,
			`{"type":"https://schakel.dev/problems/x","status":401,"detail":"no","request_id":"r1"}` + "\n"},
		{"already has one", `{"error":"x","request_id":"theirs"}`, `{"error":"x","request_id":"theirs"}`},
		{"OperationOutcome with extensions", `{"resourceType":"OperationOutcome","extension":[]}`, `{"resourceType":"OperationOutcome","extension":[]}`},
		{"other resource", `{"resourceType":"Bundle"}`, `{"resourceType":"Bundle"}`},
		{"other object", `{"total":1}`, `{"total":1}`},
		{"array", `[1,2]`, `[1,2]`},
		{"not JSON", `oops`, `oops`},
		{"empty object", `{}`, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(withID([]byte(tc.body), "r1"))
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if got != tc.body && !json.Valid([]byte(got)) {
				t.Errorf("not JSON: %s", got)
			}
		})
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"abc-123": true, "0f8e.a_b:c": true, strings.Repeat("a", maxRequestID): true,
		"": false, strings.Repeat("a", maxRequestID+1): false, "a b": false, "a\nb": false, "é": false, `a"b`: false,
	} {
		if got := validRequestID(id); got != want {
			t.Errorf("validRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}

// requestIDIn is the request id an error answer carries in its body.
func requestIDIn(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		RequestID string `json:"request_id"`
		Extension []struct {
			URL         string `json:"url"`
			ValueString string `json:"valueString"`
		} `json:"extension"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("answer not JSON: %s", body)
	}
	for _, e := range v.Extension {
		if e.URL == requestIDExtension {
			return e.ValueString
		}
	}
	return v.RequestID
}

// TestRequestIDEverywhere: each error answer of both listeners, in each of
// its formats, names the request id of its header; a caller's valid id is
// kept and an unsafe one replaced; the request's log lines carry it.
func TestRequestIDEverywhere(t *testing.T) {
	e := newEdgeEnv(t)
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	for _, tc := range []struct {
		name, method, url, sent, format string
		client                          *http.Client
		header                          http.Header
		body                            string
		status                          int
	}{
		{"FHIR without token", http.MethodGet, e.n.PublicURL() + "/fhir/stu3/" + edgeURA1 + "/Patient", "", "OperationOutcome", e.public, nil, "", http.StatusUnauthorized},
		{"OAuth without client assertion", http.MethodPost, e.n.PublicURL() + oauth.TokenPath, "support-42", "oauth", e.public,
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form, http.StatusUnauthorized},
		{"internal without token", http.MethodGet, e.n.InternalURL() + "/internal/referrals", "bad id\twith tab", "problem", e.internal, nil, "", http.StatusUnauthorized},
		{"internal FHIR without token", http.MethodGet, e.n.InternalURL() + "/internal/fhir/Patient", strings.Repeat("x", 65), "OperationOutcome", e.internal, nil, "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.header {
				h[k] = v
			}
			if tc.sent != "" {
				h.Set(RequestIDHeader, tc.sent)
			}
			resp, body := do(t, tc.client, tc.method, tc.url, h, []byte(tc.body))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			id := resp.Header.Get(RequestIDHeader)
			if !validRequestID(id) {
				t.Fatalf("header %s %q", RequestIDHeader, id)
			}
			if validRequestID(tc.sent) && id != tc.sent {
				t.Errorf("the caller's id %q was replaced by %q", tc.sent, id)
			}
			if tc.sent != "" && !validRequestID(tc.sent) && id == tc.sent {
				t.Errorf("an unsafe id was kept")
			}
			if got := requestIDIn(t, body); got != id {
				t.Errorf("the %s names request id %q, the header %q: %s", tc.format, got, id, body)
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %s for a body of %d", cl, len(body))
			}
			if !strings.Contains(e.log.String(), "request_id="+id) {
				t.Errorf("no log line carries request_id=%s", id)
			}
		})
	}
}
