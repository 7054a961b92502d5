package oauth

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
)

// TestRefusalNotRecorded: when the refusal cannot be recorded (the audit
// log is down), nothing is issued and the client is told to try again
// later: 503 temporarily_unavailable, not the refusal it would have got.
func TestRefusalNotRecorded(t *testing.T) {
	e := newTestEnv(t, true, func(c *ServerConfig) {
		c.OnRefusal = func(*http.Request, Refusal) error { return errors.New("audit log unavailable") }
	})
	form := e.form(t, e.orgs[uraA])
	form.Set("grant_type", "password") // refused: unsupported_grant_type
	status, body := e.post(t, e.orgs[uraA], url.Values(form))
	if status != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" {
		t.Fatalf("%d %v; want 503 temporarily_unavailable", status, body)
	}
}
