package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// TestReplicasOnOneSchema starts two nodes from one configuration on one
// PostgreSQL schema, each with its own listeners and datadir, as two
// replicas behind a load balancer: a consent registered through one is
// decided on by the other, an assertion ID used at one is refused at the
// other, and the audit records both write form one chain.
// network/TestReplicasShareState runs the exchange across replicas.
func TestReplicasOnOneSchema(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "node_replicas_")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := startableConfig(t)
	cfg.Store = StoreConfig{Postgres: dsn, Schema: schema}
	cfg.Consent.Local = true
	cfg.Audit.CheckpointKeyFile = cfg.SigningKeyFile + ".audit" // shared by both, as the replicas' secrets are
	var nodes [2]*Node
	served := make(chan struct{}, 2)
	for i := range nodes {
		c := cfg
		c.DataDir = fmt.Sprintf("%s-%d", cfg.DataDir, i)
		n, err := New(ctx, c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
		go func() { _ = n.Serve(ctx); served <- struct{}{} }()
	}
	stop := func() {
		cancel()
		<-served
		<-served
	}
	defer func() {
		if ctx.Err() == nil {
			stop()
		}
	}()

	// A consent registered through the first replica.
	patient := "999911120"
	body, _ := json.Marshal(consent.Registration{PatientBSN: patient, Effect: consent.Permit, HolderType: "Z3"})
	req, _ := http.NewRequest(http.MethodPost, nodes[0].InternalURL()+"/internal/consent", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cfg.Participants[0].InternalToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register consent: %s", resp.Status)
	}
	regs, err := nodes[1].consents.List(ctx, patient, false)
	if err != nil || len(regs) != 1 || regs[0].HolderURA != "90000001" {
		t.Fatalf("the second replica's registry: %+v %v; want the consent registered through the first", regs, err)
	}

	// An assertion ID used at one replica is a replay at the other.
	exp := time.Now().Add(time.Minute)
	if err := nodes[0].replay.Use(ctx, "90000002", "jti-1", exp); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].replay.Use(ctx, "90000002", "jti-1", exp); !errors.Is(err, oauth.ErrReplay) {
		t.Fatalf("replay at the second replica: %v, want ErrReplay", err)
	}

	// Both write to one audit chain.
	for i, n := range nodes {
		if err := n.Audit().Append(ctx, audit.Record{Action: audit.ActionRead, Interaction: "test", Outcome: 200,
			Tenant: "90000001", Query: fmt.Sprintf("replica=%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	key, err := pki.LoadOrCreateSigningKey(cfg.Audit.CheckpointKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pki.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := audit.OpenWith(context.Background(), audit.Config{Postgres: dsn, Schema: schema, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rep, err := audit.Verify(context.Background(), ro, keys)
	if err != nil {
		t.Fatal(err)
	}
	// The consent's record, and one test record from each replica.
	if !rep.OK() || rep.Records != 3 || rep.LastAnchored != 3 {
		t.Fatalf("audit chain: %d records, last anchored %d, problems %v; want 3, all anchored", rep.Records, rep.LastAnchored, rep.Problems)
	}
}
