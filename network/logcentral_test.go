package network

import (
	"context"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// TestLoggingPlateaus: with a partner at logging plateau 3 both nodes ship
// their audit logs to the network's central log, which holds each node's
// chain exactly as the node does; the partner (plateau 1–2 style) fetches
// and verifies the export of its own requests at the GP node.
func TestLoggingPlateaus(t *testing.T) {
	nw := startNetwork(t, 1, plateau.PartnerConfig{URA: peerURA, Name: "Testpraktijk",
		Plateaus: plateau.Plateaus{plateau.Logging: 3}})
	if nw.CentralLog() == nil {
		t.Fatal("no central log started for an agreement at logging plateau 3")
	}
	ctx := context.Background()
	if _, err := nw.Exchange(ctx); err != nil {
		t.Fatal(err)
	}
	// The partner's own requests: a referral to it and its token request.
	p := newPeer(t, nw)
	_, note := referToPeer(t, nw, p, 0)
	md, err := p.oauth.Metadata(ctx, nw.GPNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.oauth.Token(ctx, md.TokenEndpoint, oauth.TokenRequest{GrantType: notifiedpull.GrantTypeJWT,
		Scope: []string{"bgz"}, AuthorizationBase: note.AuthorizationBase}); err != nil {
		t.Fatal(err)
	}

	keys, err := audit.FetchExportKeys(ctx, p.http, nw.GPNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	compact, err := audit.FetchExport(ctx, p.http, nw.GPNode.PublicURL(), 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.VerifyExport(compact, keys, peerURA)
	if err != nil {
		t.Fatal(err)
	}
	token := false
	for _, r := range v.Records {
		token = token || r.Interaction == "token"
	}
	if !token {
		t.Fatalf("the partner's token request is not in its export (%d records)", len(v.Records))
	}

	for _, spec := range []struct {
		n   *node.Node
		ura string // of the node's certificate, its identity at the central log
	}{{nw.GPNode, GP.URA}, {nw.HospNode, Hospital.URA}} {
		n := spec.n
		last := n.Audit().LastSeq()
		for i := 0; n.Shipper().Acknowledged() < last; i++ {
			if i > 6000 {
				t.Fatalf("%s: acknowledged %d of %d", n.Name(), n.Shipper().Acknowledged(), last)
			}
			time.Sleep(10 * time.Millisecond)
		}
		own, err := n.Audit().Entries(ctx, audit.Filter{Limit: int(last)})
		if err != nil {
			t.Fatal(err)
		}
		held, err := nw.CentralLog().Entries(ctx, spec.ura, 0, int(last))
		if err != nil {
			t.Fatal(err)
		}
		if len(held) != len(own) {
			t.Fatalf("%s: central log holds %d records, the node %d", n.Name(), len(held), len(own))
		}
		for i := range own {
			if held[i] != own[i] {
				t.Fatalf("%s: seq %d differs at the central log", n.Name(), own[i].Seq)
			}
		}
	}
}
