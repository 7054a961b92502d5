package addressbook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestMCSDConsumerSync follows the addressbook as an mCSD update client
// does: _history with _since and _sort=-_lastUpdated, the next _since taken
// from the answer's Bundle.meta.lastUpdated rather than the client's clock.
func TestMCSDConsumerSync(t *testing.T) {
	p := newPKI(t)
	entries := []Entry{orgEntry(1), orgEntry(2)}
	d := startDirectory(t, p, entries...)
	c := p.client(t, "90000000")

	type bundle struct {
		Meta      struct{ LastUpdated string }
		Timestamp string
		Total     int
		Link      []struct{ Relation, URL string }
		Entry     []struct{ FullURL string }
	}
	history := func(query string, header ...string) (int, bundle, string) {
		t.Helper()
		status, _, body := do(t, c, "GET", d.base+"/_history?"+query, "", header...)
		var b bundle
		if status == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &b); err != nil {
				t.Fatal(err)
			}
		}
		return status, b, body
	}

	status, full, body := history("_since=2000-01-01T00:00:00Z&_sort=-_lastUpdated")
	if status != http.StatusOK {
		t.Fatalf("_history with _sort=-_lastUpdated = %d, want 200: %s", status, body)
	}
	if full.Total == 0 {
		t.Fatalf("full sync found nothing: %s", body)
	}
	asOf, err := time.Parse(time.RFC3339Nano, full.Meta.LastUpdated)
	if err != nil {
		t.Fatalf("history Bundle.meta.lastUpdated %q: %v", full.Meta.LastUpdated, err)
	}
	// The addressbook serves R4, whose Bundle has a timestamp.
	if full.Timestamp != full.Meta.LastUpdated {
		t.Errorf("Bundle.timestamp %q, want %q", full.Timestamp, full.Meta.LastUpdated)
	}

	// Loading unchanged entries again is no change at all.
	if err := d.ab.Load(context.Background(), entries...); err != nil {
		t.Fatal(err)
	}
	since := url.QueryEscape(asOf.Format(time.RFC3339Nano))
	if _, b, body := history("_since=" + since); b.Total != 0 {
		t.Errorf("reloading unchanged entries added %d versions: %s", b.Total, body)
	}

	// A change made after the answer is in the next incremental sync.
	changed := orgEntry(2)
	changed.Name = "Renamed"
	if err := d.ab.Load(context.Background(), changed); err != nil {
		t.Fatal(err)
	}
	// (The Endpoints' names carry the organisation's name: 3 versions.)
	_, inc, body := history("_since=" + since)
	renamed := false
	for _, e := range inc.Entry {
		renamed = renamed || strings.HasSuffix(e.FullURL, "/Organization/"+changed.ID)
	}
	if inc.Total != 3 || !renamed {
		t.Errorf("incremental sync: want the renamed Organization and its 2 Endpoints: %s", body)
	}

	// An unknown parameter is ignored (and left out of the self link), unless
	// the client asks for strict handling.
	status, b, body := history("_since=" + since + "&_foo=1")
	if status != http.StatusOK || b.Total != inc.Total || strings.Contains(b.Link[0].URL, "_foo") {
		t.Errorf("unknown parameter on _history: %d %s", status, body)
	}
	if status, _, body := history("_foo=1", "Prefer", "handling=strict"); status != http.StatusBadRequest || !strings.Contains(body, "_foo") {
		t.Errorf("strict unknown parameter on _history: %d %s", status, body)
	}
	// A parameter that would change the answer if ignored is refused.
	for _, q := range []string{"_sort=_lastUpdated", "_at=2020", "_since=yesterday"} {
		if status, _, body := history(q); status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400: %s", q, status, body)
		}
	}

	// Searches say when they were answered too.
	_, _, body = do(t, c, "GET", d.base+"/Organization", "")
	var s bundle
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.Meta.LastUpdated == "" || s.Timestamp == "" {
		t.Errorf("searchset without meta.lastUpdated or timestamp: %s", body)
	}
}
