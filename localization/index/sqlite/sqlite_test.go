package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/localization/index/indextest"
)

func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	indextest.Run(t, func(t *testing.T) index.Store { return openTest(t) })
}

func TestMemoryStore(t *testing.T) {
	indextest.Run(t, func(t *testing.T) index.Store {
		s, err := Open(context.Background(), ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestReopenKeepsEntries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := s.Register(ctx, index.Entry{Pseudonym: indextest.Pseudonym(1), HolderURA: "11111111", CareContext: indextest.CareContexts[0], SourceType: "Z3"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, e.ID); err != nil {
		t.Fatalf("entry lost on reopen: %v", err)
	}
}

// BenchmarkLookup1M measures lookups on an index of one million entries
// (250 000 patients at four holders each).
func BenchmarkLookup1M(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 1M-entry index")
	}
	s := openTest(b)
	indextest.BenchmarkLookup(b, s, 1_000_000)
}
