package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
)

// TestInternalErrorStoreUnavailable: on the internal API a store outage is
// a 503 problem+json that names no internals, a failing peer stays a 502
// exchange failure, and the token endpoint's grant lookup reports an outage
// as temporarily_unavailable.
func TestInternalErrorStoreUnavailable(t *testing.T) {
	n := &Node{log: slog.New(slog.DiscardHandler)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name    string
		err     error
		status  int
		typ     string
		retry   bool
		noLeaks string
	}{
		{"FHIR store", fmt.Errorf("store workflow Task: %w: postgres store: %w", store.ErrUnavailable, io.ErrUnexpectedEOF), http.StatusServiceUnavailable, "store-unavailable", true, "EOF"},
		{"exchange store", fmt.Errorf("store grant: %w", refused), http.StatusServiceUnavailable, "store-unavailable", true, "connect"},
		{"peer", fmt.Errorf("notify: %w", &url.Error{Op: "Post", URL: "https://peer/Task", Err: refused}), http.StatusBadGateway, "exchange-failed", false, ""},
		{"unknown referral", fmt.Errorf("x: %w", notifiedpull.ErrUnknownReferral), http.StatusNotFound, "not-found", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			n.internalError(w, tc.err)
			var p struct{ Type, Detail string }
			if w.Code != tc.status || json.Unmarshal(w.Body.Bytes(), &p) != nil || !strings.HasSuffix(p.Type, "/"+tc.typ) {
				t.Fatalf("%d %s; want %d %s", w.Code, w.Body, tc.status, tc.typ)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tc.retry {
				t.Errorf("Retry-After set: %v, want %v", got, tc.retry)
			}
			if tc.noLeaks != "" && strings.Contains(p.Detail, tc.noLeaks) {
				t.Errorf("the cause leaked: %s", p.Detail)
			}
		})
	}

	if err := grantStoreUnavailable(fmt.Errorf("grant: %w", refused)); !errors.Is(err, oauth.ErrTemporarilyUnavailable) {
		t.Errorf("grant lookup during an outage: %v", err)
	}
	if err := grantStoreUnavailable(fmt.Errorf("grant: %w", oauth.ErrInvalidGrant)); errors.Is(err, oauth.ErrTemporarilyUnavailable) {
		t.Errorf("an unknown grant became temporarily_unavailable: %v", err)
	}
}
