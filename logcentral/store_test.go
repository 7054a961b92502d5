package logcentral

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
)

// TestStoreContract is the contract every Store backend meets.
func TestStoreContract(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := open(t)
			log := nodeLog(t, t.TempDir())
			appendN(t, log, 0, 5)
			entries, err := log.Entries(ctx, audit.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if h, err := st.Head(ctx, uraA); err != nil || h.Seq != 0 {
				t.Fatalf("head of an unknown node: %+v %v", h, err)
			}
			at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			if err := st.Append(ctx, uraA, entries[:3], at); err != nil {
				t.Fatal(err)
			}
			if err := st.Append(ctx, uraA, entries[3:], at.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			h, err := st.Head(ctx, uraA)
			if err != nil {
				t.Fatal(err)
			}
			_, last, _ := entries[4].Links()
			if h.Seq != 5 || h.Hash != last || !h.Received.Equal(at.Add(time.Second)) {
				t.Fatalf("head %+v, want seq 5, the last hash, the second time", h)
			}
			got, err := st.Entries(ctx, uraA, 1, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || got[0] != entries[1] || got[2] != entries[3] {
				t.Fatalf("entries after 1: %+v", got)
			}
			// Stored byte for byte: the hash still follows.
			for _, e := range got {
				if _, err := e.Check(); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Append(ctx, uraA, entries[4:], at); !errors.Is(err, ErrConflict) {
				t.Fatalf("a seq stored twice: %v, want ErrConflict", err)
			}
			// Nodes are apart: the same seqs for another node are its own.
			if err := st.Append(ctx, uraB, entries[:1], at); err != nil {
				t.Fatal(err)
			}
			heads, err := st.Heads(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(heads) != 2 || heads[0].Node != uraA || heads[0].Seq != 5 || heads[1].Node != uraB || heads[1].Seq != 1 {
				t.Fatalf("heads %+v", heads)
			}
		})
	}
}
