package push_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/push"
	"github.com/schakel-nl/schakel/push/storetest"
)

func TestStoreSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() push.Store {
		path := filepath.Join(t.TempDir(), "push.db")
		return func() push.Store {
			db, err := push.OpenDB(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	})
}

// TestStorePostgres runs the contract on PostgreSQL, each test in a fresh
// schema dropped when it ends, when SCHAKEL_TEST_POSTGRES is set.
func TestStorePostgres(t *testing.T) {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	storetest.Run(t, func(t *testing.T) func() push.Store {
		var b [6]byte
		_, _ = rand.Read(b[:])
		schema := "push_test_" + hex.EncodeToString(b[:])
		t.Cleanup(func() {
			c, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Error(err)
			}
		})
		return func() push.Store {
			db, err := push.OpenPostgres(context.Background(), dsn, schema)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	})
}

func TestOpenPostgresRefusesBadInput(t *testing.T) {
	if db, err := push.OpenPostgres(context.Background(), "postgres://%zz", ""); err == nil {
		db.Close()
		t.Fatal("opened with an invalid DSN")
	}
	if db, err := push.OpenPostgres(context.Background(), "postgres://127.0.0.1:1/x", "A;DROP"); err == nil {
		db.Close()
		t.Fatal("opened with an invalid schema")
	}
}

// TestOutboxGroupCommit: concurrent Enqueues share durable commits, each
// answered as created exactly once per id, and every one is on disk when
// its Enqueue returns (read back after closing and reopening).
func TestOutboxGroupCommit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "push.db")
	db, err := push.OpenDB(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	const senders, ids = 64, 48 // some ids sent twice at once
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	created := make([]bool, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("m%02d", i%ids)
			m := push.OutMessage{ID: id, Tenant: "90000002", ReceiverURA: "90000001", Application: "correspondentie",
				Kind: push.KindMessage, Body: []byte(`{"id":"` + id + `"}`), BodySHA256: "sha-" + id, Status: push.StatusQueued,
				NextAttempt: at, Expires: at.Add(time.Hour), Created: at, Updated: at}
			got, ok, err := db.Enqueue(ctx, m)
			if err != nil || got.ID != id {
				t.Errorf("enqueue %s: %+v %v", id, got, err)
			}
			created[i] = ok
		}()
	}
	wg.Wait()
	perID := map[string]int{}
	for i, ok := range created {
		if ok {
			perID[fmt.Sprintf("m%02d", i%ids)]++
		}
	}
	for i := range ids {
		if id := fmt.Sprintf("m%02d", i); perID[id] != 1 {
			t.Errorf("%s created %d times, want once", id, perID[id])
		}
	}
	st := db.OutboxStats()
	if st.Messages != senders || st.Batches >= senders {
		t.Errorf("group commit: %d messages in %d commits, want %d in fewer", st.Messages, st.Batches, senders)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Enqueue(ctx, push.OutMessage{ID: "late", Tenant: "90000002"}); !errors.Is(err, push.ErrClosed) {
		t.Errorf("enqueue after close: %v, want ErrClosed", err)
	}
	db, err = push.OpenDB(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list, err := db.OutList(ctx, "90000002")
	if err != nil || len(list) != ids {
		t.Fatalf("after reopening: %d messages (%v), want %d", len(list), err, ids)
	}
}
