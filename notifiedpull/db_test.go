package notifiedpull

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

// TestGrantCacheCoherent checks that the in-memory copy of grants never
// answers with a state older than the database's after a write returned.
func TestGrantCacheCoherent(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		db := open()
		now := time.Now().UTC()
		g := Grant{ID: "urn:uuid:1", Tenant: "90000001", ReceiverURA: "90000002", WorkflowTask: "wf", AuthBaseHash: "h1",
			Application: ApplicationBgZ, Queries: []string{"Patient?x"}, Expires: now.Add(time.Hour), Status: StatusRequested,
			Created: now, Updated: now}
		if err := db.insertGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name   string
			write  func() error
			status string
		}{
			{"after insert", func() error { return nil }, StatusRequested},
			{"after status change", func() error { return db.setGrantStatus(ctx, g.ID, StatusInProgress, "", now) }, StatusInProgress},
			{"after notification URL", func() error { return db.setGrantNotificationURL(ctx, g.ID, "https://x/Task") }, StatusInProgress},
			{"after cancel", func() error { return db.setGrantStatus(ctx, g.ID, StatusCancelled, "", now) }, StatusCancelled},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				if err := st.write(); err != nil {
					t.Fatal(err)
				}
				for range 2 { // the second read is served from memory
					byID, err := db.grant(ctx, g.Tenant, g.ID)
					if err != nil || byID.Status != st.status {
						t.Fatalf("grant: status %q, err %v; want %q", byID.Status, err, st.status)
					}
					byHash, err := db.grantByHash(ctx, g.AuthBaseHash)
					if err != nil || byHash.Status != st.status {
						t.Fatalf("grantByHash: status %q, err %v; want %q", byHash.Status, err, st.status)
					}
				}
			})
		}
		if _, err := db.grant(ctx, "90000003", g.ID); !errors.Is(err, errNoRow) {
			t.Errorf("another tenant's grant: err %v, want errNoRow", err)
		}
		// A read that raced with a write is not kept.
		_, gen, _ := db.cache.get(g.ID, "")
		db.cache.forget(g.ID)
		stale := g
		stale.Status = StatusRequested
		db.cache.put(stale, gen)
		if cur, _ := db.grant(ctx, g.Tenant, g.ID); cur.Status != StatusCancelled {
			t.Errorf("stale read kept: status %q, want cancelled", cur.Status)
		}
	})
}

func TestStatementsPreparedOnce(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		db := open()
		now := time.Now().UTC()
		for i, id := range []string{"urn:uuid:1", "urn:uuid:2", "urn:uuid:3"} {
			r := Received{ID: id, Tenant: "90000002", Identifier: id, SenderURA: "90000001", Status: StatusRequested,
				Expires: now.Add(time.Hour), Created: now, Updated: now}
			if ok, err := db.insertReceived(ctx, r); err != nil || !ok {
				t.Fatalf("insert %d: %v %v", i, ok, err)
			}
			if err := db.setReceivedStatus(ctx, id, StatusAccepted, "", now); err != nil {
				t.Fatal(err)
			}
			if got, err := db.received(ctx, "90000002", id); err != nil || got.Status != StatusAccepted {
				t.Fatalf("read back %d: %+v %v", i, got, err)
			}
		}
		if n := len(db.stmts.m); n != 3 {
			t.Errorf("%d prepared statements after three rounds of the same three, want 3", n)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		// Closed: an error, from the unprepared run, not a panic.
		if _, err := db.received(ctx, "90000002", "urn:uuid:1"); err == nil {
			t.Error("read from a closed database succeeded")
		}
	})
}

// TestGroupMigration: a notification stored before groups were kept (no
// group) is its own group after the migration that gives it its
// identifier as group, and the group's lookup uses the group index.
func TestGroupMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "np.db")
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sqlitedb.OpenAt(ctx, path, sub, 6)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO np_received (id, tenant, identifier, sender_ura, patient_bsn, workflow_task,
		auth_base, expires_at, status, created_at, updated_at) VALUES ('a', '90000002', 'urn:uuid:g1', '90000001', '999911120', 'wf',
		'', '2025-03-01T10:00:00Z', 'completed', '2025-03-01T10:00:00Z', '2025-03-01T10:00:00Z')`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	db, err := OpenDB(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	group, err := db.receivedInGroup(ctx, "90000002", "90000001", "urn:uuid:g1")
	if err != nil || len(group) != 1 || group[0].ID != "a" || group[0].Group != "urn:uuid:g1" {
		t.Fatalf("group after migration: %+v %v", group, err)
	}
	var detail string
	var id, parent, notused int
	if err := db.db.QueryRowContext(ctx, `EXPLAIN QUERY PLAN SELECT id FROM np_received
		WHERE tenant = ? AND sender_ura = ? AND group_identifier = ?`+db.byCreation(), "a", "b", "c").Scan(&id, &parent, &notused, &detail); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(detail, "np_received_group") {
		t.Errorf("a group is looked up by %q, not by its index", detail)
	}
}
