package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/pki"
)

// testStore is an opened store plus what a test needs to reach below it.
type testStore struct {
	*Store
	cfg  Config
	keys jwk.Set // public checkpoint keys
}

// backends are the store kinds every conformance test runs on: SQLite
// always, PostgreSQL when SCHAKEL_TEST_POSTGRES is set.
func backends(t *testing.T) map[string]func(t *testing.T, tune func(*Config)) *testStore {
	out := map[string]func(*testing.T, func(*Config)) *testStore{
		"sqlite": func(t *testing.T, tune func(*Config)) *testStore {
			return newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, tune)
		},
		"sqlite-direct": func(t *testing.T, tune func(*Config)) *testStore {
			return newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db"), NoJournal: true}, tune)
		},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		out["postgres"] = func(t *testing.T, tune func(*Config)) *testStore {
			schema := fmt.Sprintf("audit_test_%d", time.Now().UnixNano())
			t.Cleanup(func() {
				c, err := pgx.Connect(context.Background(), dsn)
				if err == nil {
					_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
					c.Close(context.Background())
				}
			})
			return newTestStore(t, Config{Postgres: dsn, Schema: schema}, tune)
		}
	}
	return out
}

func newTestStore(t *testing.T, cfg Config, tune func(*Config)) *testStore {
	t.Helper()
	key, err := ephemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pki.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node, cfg.Key = "node-a", key
	cfg.Logger = slog.New(slog.DiscardHandler)
	if tune != nil {
		tune(&cfg)
	}
	s, err := OpenWith(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testStore{Store: s, cfg: cfg, keys: keys}
	t.Cleanup(func() { ts.Close() })
	return ts
}

// reopenReadOnly closes the store (final checkpoint) and opens it for Verify.
func (ts *testStore) reopenReadOnly(t *testing.T) *Store {
	t.Helper()
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := ts.cfg
	cfg.ReadOnly, cfg.Key = true, nil
	s, err := OpenWith(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func record(i int) Record {
	patients := []string{"999909587", "999911259"}
	return Record{Action: ActionRead, Interaction: "search-type", Outcome: 200, Tenant: "00000001",
		ActorURA: "00000002", ActorSystem: "90000001", ActorUser: "900000123", ActorRole: "01.015", PurposeOfUse: "TREAT",
		Address: "127.0.0.1:5555", Patient: patients[i%2], Types: []string{"Condition", "Condition"},
		Query: fmt.Sprintf("Condition?patient.identifier=x&n=%d", i), AuthzProtocol: "np-authorization-base",
		ConsentProfile: "presumed-referral", Checks: []string{"mtls", "token-cnf"}}
}

func TestAppendListAndAppendOnly(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, func(c *Config) { c.CheckpointEvery = 2 })
			for i := range 3 {
				if err := s.Append(ctx, record(i*2)); err != nil { // the same patient twice, then another
					t.Fatal(err)
				}
			}
			if err := s.Append(ctx, record(1)); err != nil {
				t.Fatal(err)
			}
			got, err := s.List(ctx, Filter{Patient: "999909587"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 {
				t.Fatalf("got %d records for patient, want 3", len(got))
			}
			r := got[0]
			if r.Node != "node-a" || r.EventID == "" || r.Time.IsZero() || len(r.Types) != 1 || r.Seq != 1 {
				t.Errorf("record not completed: %+v", r)
			}
			if r.Type != "rest" || r.PurposeOfUse != "TREAT" || r.NotRequestor || len(r.Checks) != 2 || r.ConsentProfile == "" {
				t.Errorf("record fields lost: %+v", r)
			}
			newest, _ := s.List(ctx, Filter{Newest: true, Limit: 1})
			if len(newest) != 1 || newest[0].Seq != 4 {
				t.Errorf("newest first: got %+v", newest)
			}
			for _, stmt := range []string{"UPDATE %s SET outcome = 500", "DELETE FROM %s"} {
				for _, table := range []string{"audit_event", "audit_checkpoint"} {
					if err := s.rawExec(ctx, fmt.Sprintf(stmt, table)); err == nil {
						t.Errorf("%q succeeded; the log must be append-only", fmt.Sprintf(stmt, table))
					}
				}
			}
		})
	}
}

// rawExec runs SQL on the store's own database, as an attacker with SQL
// access would, with the append-only guards in place.
func (ts *testStore) rawExec(ctx context.Context, q string) error {
	switch be := ts.be.(type) {
	case *journaled:
		_, err := be.index.db.ExecContext(ctx, q)
		return err
	case *sqliteBackend:
		_, err := be.db.ExecContext(ctx, q)
		return err
	case *pgBackend:
		q = strings.NewReplacer("audit_event", be.schema+".audit_event", "audit_checkpoint", be.schema+".audit_checkpoint").Replace(q)
		_, err := be.writer.Exec(ctx, q)
		return err
	}
	return errors.New("unknown backend")
}

func TestGroupCommitBatchesConcurrentAppends(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, func(c *Config) { c.CheckpointEvery = 100 })
			const writers, each = 16, 40
			var wg sync.WaitGroup
			errs := make(chan error, writers*each)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						errs <- s.Append(ctx, record(w*each+i))
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			if st.Records != writers*each {
				t.Fatalf("committed %d records, want %d", st.Records, writers*each)
			}
			if st.Batches >= st.Records {
				t.Errorf("%d batches for %d records: concurrent appends were not grouped", st.Batches, st.Records)
			}
			rep, err := Verify(ctx, s.reopenReadOnly(t), s.keys)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Records != writers*each || rep.LastAnchored != writers*each || rep.Checkpoints < 6 {
				t.Errorf("verify after concurrent appends: %+v", rep)
			}
		})
	}
}

// sqlLimits put a SQLite connection in a state where writes fail, and
// return the function that lifts it.
var sqlLimits = []struct {
	name  string
	limit func(t *testing.T, db execer) func()
}{
	{"full", func(t *testing.T, db execer) func() {
		var pages int
		if err := db.QueryRowContext(context.Background(), `PRAGMA page_count`).Scan(&pages); err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages))
		return func() { mustExec(t, db, `PRAGMA max_page_count = 1000000`) }
	}},
	{"read-only", func(t *testing.T, db execer) func() {
		mustExec(t, db, `PRAGMA query_only = 1`)
		return func() { mustExec(t, db, `PRAGMA query_only = 0`) }
	}},
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// bigRecord needs new database pages.
func bigRecord(i int) Record {
	r := record(i)
	r.OutcomeText = strings.Repeat("x", 64<<10)
	return r
}

func TestAppendRefusesWhenStoreBroken(t *testing.T) {
	ctx := context.Background()
	// Without the journal, the commit that fails is the Append's own.
	for _, tc := range sqlLimits {
		t.Run("direct "+tc.name, func(t *testing.T) {
			s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db"), NoJournal: true}, nil)
			if err := s.Append(ctx, record(0)); err != nil {
				t.Fatal(err)
			}
			db := s.be.(*sqliteBackend).db
			db.SetMaxOpenConns(1) // the pragmas are per connection
			lift := tc.limit(t, db)
			err := s.Append(ctx, bigRecord(1))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("append on a %s store: err = %v, want ErrUnavailable", tc.name, err)
			}
			lift()
			if err := s.Append(ctx, record(2)); err != nil {
				t.Fatalf("append after the store recovered: %v", err)
			}
			rep, err := Verify(ctx, s.reopenReadOnly(t), s.keys)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Records != 2 {
				t.Errorf("chain after a refused batch: %+v", rep)
			}
		})
	}
	// With the journal, a record the journal holds is answered; the index
	// failing behind it makes the store refuse every later record (and
	// searches) until the index recovers, and nothing answered is lost.
	for _, tc := range sqlLimits {
		t.Run("index "+tc.name, func(t *testing.T) {
			s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, nil)
			if err := s.Append(ctx, record(0)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.List(ctx, Filter{}); err != nil { // the index has caught up; its connection is idle
				t.Fatal(err)
			}
			lift := tc.limit(t, s.be.(*journaled).conn)
			accepted := 1
			if err := s.Append(ctx, bigRecord(1)); err != nil {
				t.Fatalf("the journal holds the record, yet Append failed: %v", err)
			}
			accepted++
			eventually(t, "the store refuses records while its index fails", func() bool {
				err := s.Append(ctx, record(accepted))
				if err == nil {
					accepted++
				}
				return errors.Is(err, ErrUnavailable)
			})
			if _, err := s.List(ctx, Filter{}); !errors.Is(err, ErrUnavailable) {
				t.Errorf("search on a failing index: %v, want ErrUnavailable", err)
			}
			lift()
			eventually(t, "the store accepts records once its index recovers", func() bool {
				return s.Append(ctx, record(accepted)) == nil
			})
			accepted++
			got, err := s.List(ctx, Filter{})
			if err != nil || len(got) != accepted {
				t.Fatalf("after recovery: %d records (err %v), want every accepted one: %d", len(got), err, accepted)
			}
			rep, err := Verify(ctx, s.reopenReadOnly(t), s.keys)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Records != int64(accepted) {
				t.Errorf("chain after the index failed and recovered: %+v", rep)
			}
		})
	}
	t.Run("closed", func(t *testing.T) {
		s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, nil)
		s.Close()
		if err := s.Append(ctx, record(0)); !errors.Is(err, ErrUnavailable) {
			t.Errorf("append on a closed store: %v", err)
		}
	})
	t.Run("read-only open", func(t *testing.T) {
		s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, nil)
		if err := s.Append(ctx, record(0)); err != nil {
			t.Fatal(err)
		}
		ro := s.reopenReadOnly(t)
		if err := ro.Append(ctx, record(1)); !errors.Is(err, ErrUnavailable) {
			t.Errorf("append on a read-only store: %v", err)
		}
	})
}

func mustExec(t *testing.T, db execer, q string) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds, failing the test after 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOpenKeepsKeyBesideDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.db")
	for i := range 2 { // the second Open must reuse the key and continue the chain
		s, err := Open(ctx, path, "node-a", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, record(i)); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	key, err := pki.LoadOrCreateSigningKey(path + ".key")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := pki.PublicJWKS(key)
	s, err := OpenWith(ctx, Config{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := Verify(ctx, s, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records != 2 || rep.Checkpoints != 2 || rep.LastAnchored != 2 || !rep.Signed {
		t.Errorf("report: %+v", rep)
	}
}

// An event id is a UUIDv7 (RFC 9562) in its text form, and ids of
// successive records sort in the order they were made.
func TestNewIDIsUUIDv7(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	last := ""
	for range 100 {
		id := newID()
		if !uuid.MatchString(id) || id <= last {
			t.Fatalf("newID() = %q after %q: not a fresh, later UUIDv7", id, last)
		}
		last = id
	}
}

// With requests under way that will append (Config.Siblings), a batch that
// holds every Append in progress waits up to CommitDelay for theirs: two
// records arriving apart share one durable write. Alone, the first is
// committed at once.
func TestSiblingsShareADurableWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		siblings func() int
		batches  int64
	}{
		{"no siblings", nil, 2},
		{"a sibling under way", func() int { return 2 }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db"), Siblings: tc.siblings,
				MaxDelay: 10 * time.Second, CommitDelay: 5 * time.Second}, nil)
			ctx := context.Background()
			before := s.Stats().Batches
			first := make(chan error, 1)
			go func() { first <- s.Append(ctx, record(0)) }()
			time.Sleep(100 * time.Millisecond)
			if err := s.Append(ctx, record(1)); err != nil {
				t.Fatal(err)
			}
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if got := s.Stats().Batches - before; got != tc.batches {
				t.Errorf("%d durable writes for two records, want %d", got, tc.batches)
			}
		})
	}
}
