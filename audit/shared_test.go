package audit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/pki"
)

// TestReplicasAppendToOneChain opens two Stores on one PostgreSQL schema, as
// two replicas of a node do, appends from both at once and checks that the
// log is one chain that verifies, anchored by checkpoints from both.
func TestReplicasAppendToOneChain(t *testing.T) {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	ctx := context.Background()
	schema := fmt.Sprintf("audit_replicas_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	// The replicas of a node share its checkpoint key.
	key, err := ephemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pki.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	open := func() *Store {
		s, err := OpenWith(ctx, Config{Postgres: dsn, Schema: schema, Node: "node-a", Key: key,
			CheckpointEvery: 7, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	replicas := []*Store{open(), open()}
	const writers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, len(replicas)*writers*each)
	for r, s := range replicas {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					rec := record(i)
					rec.Query = fmt.Sprintf("replica=%d&writer=%d&i=%d", r, w, i)
					if err := s.Append(ctx, rec); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	for _, s := range replicas {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ro, err := OpenWith(ctx, Config{Postgres: dsn, Schema: schema, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rep, err := Verify(ctx, ro, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(len(replicas) * writers * each)
	if !rep.OK() || rep.Records != want || rep.LastAnchored != want {
		t.Fatalf("verify: %d records, last anchored %d, problems %v; want %d records, all anchored", rep.Records, rep.LastAnchored, rep.Problems, want)
	}
	cps, err := ro.be.checkpoints(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) < 2 {
		t.Fatalf("%d checkpoints, want several", len(cps))
	}
	for i := 1; i < len(cps); i++ {
		if cps[i].Seq <= cps[i-1].Seq {
			t.Errorf("checkpoint %d at seq %d after one at %d", i, cps[i].Seq, cps[i-1].Seq)
		}
	}
	// Every replica's records are there, each once.
	seen := map[string]bool{}
	recs, err := ro.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if seen[r.Query] {
			t.Errorf("record %s twice", r.Query)
		}
		seen[r.Query] = true
	}
	if len(seen) != int(want) {
		t.Errorf("%d distinct records, want %d", len(seen), want)
	}
}
