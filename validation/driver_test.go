package validation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
)

// TestSchakelDriverRequestImages: the driver asks the node's internal
// imaging API for a retrieval and reads what the system received; a
// refusal comes back as the internal API's error with its status.
func TestSchakelDriverRequestImages(t *testing.T) {
	var refuse atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Patient, Holder string
			User            struct{ ID, Role string }
			Retrieve        bool
		}
		if r.Method != http.MethodPost || r.URL.Path != "/internal/imaging" || r.Header.Get("Authorization") != "Bearer tok" ||
			json.NewDecoder(r.Body).Decode(&req) != nil || req.Patient != "999990019" || req.Holder != "90000995" ||
			req.User.ID != "900012345" || req.User.Role != "01.016" || !req.Retrieve {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		if refuse.Load() {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`{"detail":"the holder answered the WADO-RS retrieval with 403"}`))
			return
		}
		_, _ = w.Write([]byte(`{"studies":[{"uid":"2.25.1"},{"uid":"2.25.2"}],"retrieved":{"study":"2.25.1","verified":true,
			"instances":[{"sopInstanceUid":"2.25.11"},{"sopInstanceUid":"2.25.12"}]}}`))
	}))
	defer srv.Close()
	d := SchakelDriver{InternalURL: srv.URL, Token: "tok"}
	got, err := d.RequestImages(context.Background(), "999990019", "90000995", "900012345", "01.016")
	if err != nil {
		t.Fatal(err)
	}
	if got.Study != "2.25.1" || !got.Verified || !slices.Equal(got.Studies, []string{"2.25.1", "2.25.2"}) || !slices.Equal(got.SOPInstanceUIDs, []string{"2.25.11", "2.25.12"}) {
		t.Errorf("images %+v", got)
	}
	refuse.Store(true)
	got, err = d.RequestImages(context.Background(), "999990019", "90000995", "900012345", "01.016")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadGateway || len(got.SOPInstanceUIDs) != 0 {
		t.Fatalf("a refusal: %+v, %v", got, err)
	}
	if _, err := (Manual{}).RequestImages(context.Background(), "999990019", "90000995", "900012345", "01.016"); !errors.Is(err, ErrNotDriven) {
		t.Errorf("the manual driver: %v", err)
	}
}
