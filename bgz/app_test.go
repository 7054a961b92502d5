package bgz

import (
	"errors"
	"net/url"
	"testing"

	"github.com/schakel-nl/schakel/careapp"
)

// The BgZ application registers as a Notified Pull, Direct Pull and
// Indexed Pull application, and its query set is the package's.
func TestAppShape(t *testing.T) {
	reg, err := careapp.NewRegistry(New())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []careapp.Pattern{careapp.NotifiedPull, careapp.DirectPull, careapp.IndexedPull} {
		if _, err := reg.QuerySet(Name, p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	const bsn = "999911120"
	qs := New().Queries(bsn)
	if len(qs) != len(blocks) {
		t.Fatalf("%d queries, want %d", len(qs), len(blocks))
	}
	for i, q := range qs {
		if q.Name != blocks[i].Name || q.Search != blocks[i].Query(bsn) || q.Read != "" || q.Code.Code != blocks[i].Code.Code {
			t.Errorf("query %d: %+v", i, q)
		}
		typ, op, params, err := ParseQuery(q.Search)
		if err != nil {
			t.Fatal(err)
		}
		params.Set("_count", "10") // a holder's own paging
		got, err := New().Match(careapp.Request{Type: typ, Operation: op, Params: params}, bsn)
		if err != nil || got.Name != q.Name {
			t.Errorf("%s: matched %q, %v", q.Name, got.Name, err)
		}
		if _, err := New().Match(careapp.Request{Type: typ, Operation: op, Params: params}, "999990020"); !errors.Is(err, careapp.ErrNotInSet) || !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s for another patient: %v", q.Name, err)
		}
	}
	if bsn2, ok := New().PatientBSN(url.Values{"patient.identifier": {"urn:oid:2.16.840.1.113883.2.4.6.3|" + bsn}}); !ok || bsn2 != bsn {
		t.Errorf("PatientBSN: %q %v", bsn2, ok)
	}
	if k := New().WorkflowTasks(); len(k) != 1 || k[0].Code.Code != "3457005" {
		t.Errorf("WorkflowTasks %+v", k)
	}
}
