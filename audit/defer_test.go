package audit

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// queries returns the Query of every record in the store, in chain order.
func queries(t *testing.T, s *Store) []string {
	t.Helper()
	got, err := s.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(got))
	for i, r := range got {
		out[i] = r.Query
	}
	return out
}

func TestDeferredRecordsRideWithTheNextAppend(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			// Deferred records wait for an Append however long it takes.
			s := open(t, func(c *Config) { c.MaxDefer = time.Hour })
			for i := range 2 {
				if err := s.Defer(ctx, record(i)); err != nil {
					t.Fatal(err)
				}
			}
			if st := s.Stats(); st.Records != 0 {
				t.Fatalf("deferred records were committed on their own: %+v", st)
			}
			if err := s.Append(ctx, record(2)); err != nil {
				t.Fatal(err)
			}
			// The Append returns once its batch is durable, and that batch
			// holds the records deferred before it.
			if st := s.Stats(); st.Records != 3 || st.Batches != 1 || st.Awaited != 1 {
				t.Errorf("after two deferred records and one Append: %+v, want 3 records in 1 awaited batch", st)
			}
			got := queries(t, s.Store)
			for i := range 3 {
				if got[i] != record(i).Query {
					t.Fatalf("records in chain order: %q, want the deferred ones first", got)
				}
			}
			rep, err := Verify(ctx, s.reopenReadOnly(t), s.keys)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Records != 3 {
				t.Errorf("verify: %+v", rep)
			}
		})
	}
}

func TestDeferredRecordsAreWrittenWithoutAnAppend(t *testing.T) {
	ctx := context.Background()
	t.Run("after MaxDefer", func(t *testing.T) {
		s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, func(c *Config) { c.MaxDefer = time.Millisecond })
		if err := s.Defer(ctx, record(0)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the deferred record is committed on its own", func() bool { return s.Stats().Records == 1 })
		if st := s.Stats(); st.Batches != 1 || st.Awaited != 0 {
			t.Errorf("a batch of one deferred record: %+v, want 1 batch that no one waited on", st)
		}
	})
	t.Run("on Close", func(t *testing.T) {
		s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, func(c *Config) { c.MaxDefer = time.Hour })
		if err := s.Defer(ctx, record(0)); err != nil {
			t.Fatal(err)
		}
		verifyClosed(t, s, s.Store, 1)
		if err := s.Defer(ctx, record(1)); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Defer on a closed store: %v, want ErrUnavailable", err)
		}
	})
}

func TestDeferredRecordOfAFailedBatchGoesBeforeLaterRecords(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t, Config{Path: filepath.Join(t.TempDir(), "audit.db")}, func(c *Config) { c.MaxDefer = time.Hour })
	if err := s.Append(ctx, record(0)); err != nil {
		t.Fatal(err)
	}
	j := s.be.(*journaled).j
	ff := &faultyFile{journalFile: j.file}
	ff.failWrite.Store(true)
	j.file = ff
	if err := s.Defer(ctx, record(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, record(2)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append on a full disk: %v, want ErrUnavailable", err)
	}
	// The disk has room again (the next batch goes to a fresh segment): the
	// deferred record of the failed batch is written before the next one.
	if err := s.Append(ctx, record(3)); err != nil {
		t.Fatal(err)
	}
	got := queries(t, s.Store)
	if len(got) != 3 || got[0] != record(0).Query || got[1] != record(1).Query || got[2] != record(3).Query {
		t.Fatalf("records after a failed batch: %q, want records 0, 1 (deferred, retried) and 3", got)
	}
	verifyClosed(t, s, s.Store, 3)
}
