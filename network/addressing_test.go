package network

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// TestExchangeWithConfiguredEndpoints: at addressing plateau 1 the GP
// practice and the hospital know each other's endpoints from their
// agreement (own mechanism); neither node has an addressbook, the network's
// directory lists neither, and the whole Notified Pull still succeeds.
func TestExchangeWithConfiguredEndpoints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	nw, err := Up(ctx, Options{DataDir: dir, Patients: 1, OwnAddressing: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })

	page, err := nw.dirStore.Search(ctx, "addressbook", store.Query{Type: "Organization", Params: url.Values{}})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 0 {
		t.Fatalf("the directory lists %d organisations; with own addressing it must not be what the nodes use", page.Total)
	}
	s, err := nw.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != notifiedpull.StatusCompleted || s.Sender != notifiedpull.StatusCompleted {
		t.Fatalf("statuses: receiver %s, sender %s", s.Status, s.Sender)
	}
	for _, r := range s.Results {
		if r.Matches == 0 {
			t.Errorf("block %s: no matches", r.Block)
		}
	}
	// What the network wrote for `schakel node` says the same.
	yaml, err := os.ReadFile(filepath.Join(dir, "gp-node", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(yaml), "notification: "+nw.HospNode.PublicURL()+"/fhir/stu3/"+Hospital.URA+"/Task") ||
		!strings.Contains(string(yaml), "addressbookurl: \"\"") {
		t.Errorf("the GP node's configuration does not carry the hospital's endpoints without an addressbook:\n%s", yaml)
	}
}
