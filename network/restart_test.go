package network

import (
	"context"
	"net/http"
	"testing"

	"github.com/schakel-nl/schakel/fhir/store"
)

// TestRestartStoresNothingNew: starting the network again on its data
// directory re-imports the same demo data; unchanged content gets no new
// version, and the demo consent is not registered again.
func TestRestartStoresNothingNew(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	counts := func() (versions, consents int) {
		t.Helper()
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		nw, err := Up(runCtx, Options{DataDir: dir, Patients: 2})
		if err != nil {
			t.Fatal(err)
		}
		nw.Start(runCtx)
		defer func() { cancel(); _ = nw.Wait() }()
		// Stopping a node that has not begun serving leaves its stores
		// open; one answered request shows it serves.
		if resp, err := http.Get(nw.GPNode.InternalURL() + "/internal/referrals"); err != nil {
			t.Fatal(err)
		} else {
			resp.Body.Close()
		}
		page, err := nw.GPNode.Store().(store.Historian).History(ctx, GP.URA, store.HistoryQuery{Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		regs, err := nw.Consent().Store().List(ctx, nw.Patients[0].BSN, true)
		if err != nil {
			t.Fatal(err)
		}
		return page.Total, len(regs)
	}
	v1, c1 := counts()
	v2, c2 := counts()
	if v1 == 0 || v2 != v1 {
		t.Errorf("GP store versions: %d after the first start, %d after the second", v1, v2)
	}
	if c1 != 1 || c2 != c1 {
		t.Errorf("demo consent registrations (with history): %d after the first start, %d after the second", c1, c2)
	}
}
