package node

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The request log line is written at DEBUG, with the status the handler
// answered and without the query string; at INFO there is none.
func TestRequestLogLine(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var buf bytes.Buffer
		n := &Node{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))}
		h := n.logRequests("public", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTeapot)
		}))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/fhir/stu3/01234567/Patient?identifier=999911120", nil))
		line := buf.String()
		if level == slog.LevelInfo {
			if line != "" {
				t.Errorf("at INFO: %q, want no line", line)
			}
			continue
		}
		if !strings.Contains(line, "msg=request") || !strings.Contains(line, "status=418") ||
			!strings.Contains(line, "path=/fhir/stu3/01234567/Patient ") || strings.Contains(line, "999911120") {
			t.Errorf("at DEBUG: %q", line)
		}
	}
}
