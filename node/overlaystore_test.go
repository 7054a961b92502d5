package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// TestAdminChangesReachEveryReplica: on PostgreSQL a change made through
// one replica's admin API is taken up by another replica of the node, and
// a change saved over changes it has not seen yet is refused (409), not
// lost.
func TestAdminChangesReachEveryReplica(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "node_overlay_")
	a := newAdminEnv(t, func(c *Config) { c.Store = StoreConfig{Postgres: dsn, Schema: schema} })
	ctx := context.Background()

	// The second replica: the same configuration file, its own listeners
	// and datadir.
	c := a.n.admin.seed
	c.DataDir += "-b"
	c.Public.Addr, c.Internal.Addr, c.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	b, err := New(ctx, c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	raise := `{"name": "Partner B", "plateaus": {"authentication": 2}, "endpoints": ` +
		mustJSON(t, koanfShape(Endpoints(a.n.PublicURL(), edgeURA2))) + `}`
	if status, body := a.call(t, http.MethodPut, "/admin/agreements/"+edgeURA2, raise); status != http.StatusOK {
		t.Fatalf("change at the first replica: %d %s", status, body)
	}
	authentication := func(n *Node) int {
		for _, ag := range n.snapshot().Partners.Agreements {
			if ag.URA == edgeURA2 {
				return ag.Plateaus[plateau.Authentication]
			}
		}
		return -1
	}
	if got := authentication(b); got != 1 {
		t.Fatalf("the second replica saw the change before taking it up: plateau %d", got)
	}
	// What watchOverlay does every overlayPoll.
	if err := b.takeOverlay(ctx); err != nil {
		t.Fatal(err)
	}
	if got := authentication(b); got != 2 {
		t.Fatalf("the second replica after taking up the change: authentication plateau %d, want 2", got)
	}

	// The first replica changes again; the second, not having taken that
	// up, saves over it: refused, and the first's change stands.
	lower := strings.Replace(raise, `"authentication": 2`, `"authentication": 1`, 1)
	if status, body := a.call(t, http.MethodPut, "/admin/agreements/"+edgeURA2, lower); status != http.StatusOK {
		t.Fatalf("second change at the first replica: %d %s", status, body)
	}
	stale := a.n.snapshot().Partners.Agreements[0]
	stale.Plateaus = plateau.Plateaus{plateau.Authentication: 3}
	_, _, _, err = b.change(ctx, "bob", "127.0.0.1", adminChange{kind: "agreement", key: edgeURA2, agreement: &stale})
	var ae *adminError
	if !errors.As(err, &ae) || ae.status != http.StatusConflict {
		t.Fatalf("a change over changes not yet taken up: %v, want 409", err)
	}
	if err := b.takeOverlay(ctx); err != nil {
		t.Fatal(err)
	}
	if got := authentication(b); got != 1 {
		t.Fatalf("after the refused change: authentication plateau %d at the second replica, want the first's 1", got)
	}

	// A participant added and withdrawn through the first replica comes
	// and goes at the second.
	dir := filepath.Dir(a.cfg.DataDir)
	const newURA = "90000003"
	tokenFile := filepath.Join(dir, "p3-token")
	if err := os.WriteFile(tokenFile, []byte("third-participant-token-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrIssueUZIServer(filepath.Join(dir, "tls"), "p3", ca, pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000033", URA: newURA, AGB: "00000000"}}); err != nil {
		t.Fatal(err)
	}
	add := `{"name": "Huisarts C", "certfile": "` + filepath.Join(dir, "tls", "p3.pem") + `", "keyfile": "` + filepath.Join(dir, "tls", "p3-key.pem") +
		`", "signingkeyfile": "` + filepath.Join(dir, "p3-signing.pem") + `", "internaltokenfile": "` + tokenFile + `"}`
	if status, out := a.call(t, http.MethodPut, "/admin/participants/"+newURA, add); status != http.StatusCreated {
		t.Fatalf("add at the first replica: %d %s", status, out)
	}
	if err := b.takeOverlay(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.parts.get(newURA); !ok {
		t.Fatal("the participant added at the first replica is not served by the second")
	}
	if status, out := a.call(t, http.MethodDelete, "/admin/participants/"+newURA, ""); status != http.StatusOK && status != http.StatusNoContent {
		t.Fatalf("withdraw at the first replica: %d %s", status, out)
	}
	if err := b.takeOverlay(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.parts.get(newURA); ok {
		t.Fatal("the participant withdrawn at the first replica is still served by the second")
	}
}
