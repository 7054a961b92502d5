package notifiedpull

import (
	"context"
	"encoding/json"
	"net/url"
	"sync"
	"testing"

	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/oauth"
)

// gatedStore holds every Update until open is closed, and logs the
// workflow Task's reads and updates in the order they happen.
type gatedStore struct {
	store.Store
	open chan struct{}
	mu   sync.Mutex
	log  []string
}

func (g *gatedStore) note(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = append(g.log, s)
}

func (g *gatedStore) Read(ctx context.Context, tenant, typ, id string) (store.Resource, error) {
	g.note("read")
	return g.Store.Read(ctx, tenant, typ, id)
}

func (g *gatedStore) Update(ctx context.Context, tenant string, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	<-g.open
	res, created, err := g.Store.Update(ctx, tenant, body, ifMatch)
	g.note("update")
	return res, created, err
}

func TestFirstTokenDoesNotWaitForTheStatusChange(t *testing.T) {
	ctx := context.Background()
	s, g, _ := grantFixture(t)
	gs := &gatedStore{Store: s.cfg.Store, open: make(chan struct{})}
	s.cfg.Store = gs
	_, apply, err := s.BeginGrant(ctx, oauth.GrantRequest{ClientID: "90000002", GrantType: GrantTypeJWT, AuthorizationBase: "the-secret"})
	if err != nil {
		t.Fatal(err)
	}
	apply() // returns while the workflow Task's update is held
	// The receiver's first request under the token: the report of
	// completion, which reads the workflow Task; it waits for the status
	// change, so it neither reads the Task before it nor is overwritten.
	cur, err := s.cfg.Store.Read(ctx, g.Tenant, "Task", g.WorkflowTask)
	if err != nil {
		t.Fatal(err)
	}
	done, _ := SetStatus(cur.Body, StatusCompleted)
	tok := &oauth.AccessToken{Subject: "90000002", Scope: []string{"bgz"}, Claims: map[string]any{ClaimGrant: g.ID}}
	upd := &rest.Request{Tenant: g.Tenant, Interaction: rest.InteractionUpdate, Type: "Task", ID: g.WorkflowTask, Body: done, Params: url.Values{}}
	authorized := make(chan error, 1)
	go func() { authorized <- s.AuthorizeData(ctx, tok, upd) }()
	close(gs.open)
	if err := <-authorized; err != nil {
		t.Fatalf("status report refused: %v", err)
	}
	gs.mu.Lock()
	got := append([]string(nil), gs.log...)
	gs.mu.Unlock()
	// read (this test's) and read+update (the status change) in either
	// order, then read (the report's check)
	if len(got) != 4 || got[1] != "read" || got[2] != "update" || got[3] != "read" {
		t.Errorf("workflow Task accesses %q: the report was checked before the status change was written", got)
	}
	if cur, _ := s.cfg.DB.grant(ctx, g.Tenant, g.ID); cur.Status != StatusInProgress {
		t.Errorf("grant status %s once settled, want in-progress", cur.Status)
	}
}
