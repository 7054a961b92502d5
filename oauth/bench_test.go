package oauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkTokenIssue measures the token endpoint for a client_credentials
// request with a fresh client assertion: parse, verify (ES256), replay check,
// resolve, sign (ES256). The TLS handshake is excluded (r.TLS is fabricated)
// and the assertions are signed before the timer starts.
func BenchmarkTokenIssue(b *testing.B) {
	e := newTestEnv(b, false)
	a := e.orgs[uraA]
	bodies := make([]string, b.N)
	for i := range bodies {
		bodies[i] = e.form(b, a).Encode()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		issueBench(b, e, a, bodies[i])
	}
}

// BenchmarkTokenIssueParallel is BenchmarkTokenIssue on all GOMAXPROCS.
func BenchmarkTokenIssueParallel(b *testing.B) {
	e := newTestEnv(b, false)
	a := e.orgs[uraA]
	bodies := make([]string, b.N)
	for i := range bodies {
		bodies[i] = e.form(b, a).Encode()
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			issueBench(b, e, a, bodies[next.Add(1)-1])
		}
	})
}

func issueBench(b *testing.B, e *testEnv, a *testOrg, body string) {
	r := tlsRequest(http.MethodPost, TokenPath, strings.NewReader(body), a)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	e.srv.handleToken(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("%d %s", w.Code, w.Body)
	}
}

// BenchmarkVerify measures Verify per request, with and without the
// verified-token cache; the parallel variants use all GOMAXPROCS.
func BenchmarkVerify(b *testing.B) {
	for _, bc := range []struct {
		name      string
		cacheSize int
		parallel  bool
	}{
		{"uncached", 0, false},
		{"cached", 1024, false},
		{"uncached-parallel", 0, true},
		{"cached-parallel", 1024, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newTestEnv(b, false, func(c *ServerConfig) { c.VerifiedTokenCacheSize = bc.cacheSize })
			a := e.orgs[uraA]
			token := e.issueDirect(b, a, url.Values(e.form(b, a)))
			verify := func() {
				r := tlsRequest(http.MethodGet, "/fhir/Patient", nil, a)
				r.Header.Set("Authorization", "Bearer "+token)
				if _, err := e.srv.Verify(r, e.audience); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			if !bc.parallel {
				for i := 0; i < b.N; i++ {
					verify()
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					verify()
				}
			})
		})
	}
}
