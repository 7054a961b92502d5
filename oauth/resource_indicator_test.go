package oauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestResourceIndicator covers RFC 8707: the resource parameter reaches the
// resolver, restricts the token's audience, and is refused with
// invalid_target when malformed, repeated or not granted.
func TestResourceIndicator(t *testing.T) {
	e := newTestEnv(t, true)
	a := e.orgs[uraA]

	tok, err := e.client(a).Token(context.Background(), e.srv.TokenEndpoint(), TokenRequest{
		GrantType: GrantTypeJWTBearer, Scope: []string{"read"}, Resource: e.audience,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.lastReq.Resource; got != e.audience {
		t.Errorf("resolver saw resource %q, want %q", got, e.audience)
	}
	r := tlsRequest(http.MethodGet, "/fhir/Patient", nil, a)
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if _, err := e.srv.Verify(r, e.audience); err != nil {
		t.Fatalf("token for the indicated resource: %v", err)
	}

	for _, tc := range []struct {
		name     string
		resource []string
		status   int
		code     string
		resolved bool // whether the resolver may have been asked
	}{
		{"relative", []string{"/fhir"}, 400, "invalid_target", false},
		{"no scheme", []string{"127.0.0.1/fhir"}, 400, "invalid_target", false},
		{"fragment", []string{e.audience + "#x"}, 400, "invalid_target", false},
		{"empty", []string{""}, 400, "invalid_target", false},
		{"user info", []string{"https://u:p@127.0.0.1/fhir"}, 400, "invalid_target", false},
		{"urn", []string{"urn:example:fhir"}, 400, "invalid_target", false},
		{"too long", []string{e.audience + "/" + strings.Repeat("a", maxResourceLength)}, 400, "invalid_target", false},
		{"repeated", []string{e.audience, e.audience}, 400, "invalid_target", false},
		{"refused by the resolver", []string{"https://elsewhere.example/fhir"}, 400, "invalid_target", true},
		{"other audience granted", []string{e.issuer + "/other"}, 400, "invalid_target", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.requests
			form := e.form(t, a)
			form["resource"] = tc.resource
			status, body := e.post(t, a, form)
			if status != tc.status || body["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.code)
			}
			if desc, _ := body["error_description"].(string); desc == "" {
				t.Error("no error_description")
			}
			if !tc.resolved && e.requests != before {
				t.Error("a malformed resource reached the resolver")
			}
		})
	}

	// The client surfaces the refusal as ErrInvalidTarget.
	_, err = e.client(a).Token(context.Background(), e.srv.TokenEndpoint(), TokenRequest{
		GrantType: GrantTypeClientCredentials, Resource: "https://elsewhere.example/fhir",
	})
	if !errors.Is(err, ErrInvalidTarget) {
		t.Errorf("client error %v, want ErrInvalidTarget", err)
	}
}

func TestParseResource(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
		ok   bool
	}{
		{nil, "", true},
		{[]string{"https://node.example/fhir/stu3/00000001"}, "https://node.example/fhir/stu3/00000001", true},
		{[]string{"https://node.example:8443/fhir?x=1"}, "https://node.example:8443/fhir?x=1", true},
		{[]string{"https:///fhir"}, "", false},
		{[]string{"%zz"}, "", false},
		{[]string{"https://node.example/fhir#"}, "", false},
	} {
		got, err := parseResource(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseResource(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidTarget) {
			t.Errorf("parseResource(%q) error %v is not ErrInvalidTarget", tc.in, err)
		}
	}
}
