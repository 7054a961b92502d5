package notifiedpull

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestGetSentAgainOnBrokenConnection: a query whose connection breaks
// under it (the sender's node, or one replica of it, went away) is sent
// once more on a new connection; an answer, even a refusal, is not.
func TestGetSentAgainOnBrokenConnection(t *testing.T) {
	for _, tc := range []struct {
		name     string
		breaks   int // how many requests find their connection cut
		status   int // the answer after that
		want     int // requests the server saw
		wantFail bool
	}{
		{"one broken connection", 1, http.StatusOK, 2, false},
		{"broken twice", 2, http.StatusOK, 2, true},
		{"refused", 0, http.StatusForbidden, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if int(seen.Add(1)) <= tc.breaks {
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close() // no answer: the process went away
					}
					return
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset"}`))
			}))
			defer srv.Close()
			f := &fetcher{http: srv.Client(), token: "t", base: srv.URL + "/fhir"}
			_, err := f.get(context.Background(), srv.URL+"/fhir/Patient?identifier=x")
			if (err != nil) != tc.wantFail {
				t.Fatalf("err %v, want failure %v", err, tc.wantFail)
			}
			if got := int(seen.Load()); got != tc.want {
				t.Fatalf("%d requests, want %d", got, tc.want)
			}
		})
	}
}
