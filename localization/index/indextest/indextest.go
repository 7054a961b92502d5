// Package indextest is the behaviour every index.Store backend must show,
// run by each backend's tests against a real database, plus helpers for
// building large indexes in benchmarks.
package indextest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/schakel-nl/schakel/localization/index"
)

// Pseudonym returns a deterministic test pseudonym for n.
func Pseudonym(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	sum := sha256.Sum256(b[:])
	return sum[:]
}

// Care contexts and holders of the synthetic index.
var (
	CareContexts = []index.Coding{
		{System: "http://nictiz.nl/fhir/hcim-2024", Code: "MedicationAgreement"},
		{System: "http://nictiz.nl/fhir/hcim-2024", Code: "LaboratoryTestResult"},
		{System: "http://nictiz.nl/fhir/hcim-2024", Code: "Problem"},
		{System: "http://nictiz.nl/fhir/hcim-2024", Code: "ImagingStudy"},
	}
	SourceTypes = []string{"Z3", "A1", "H1", "J8"}
)

// Holders is the number of organisations in the synthetic index, about the
// number of care providers with an URA that hold patient records.
const Holders = 20000

// Synthetic yields n entries spread over n/4 patients (pseudonyms 0..n/4-1),
// each with entries at four holders in varying care contexts, the shape of a
// real index where most patients are known at a few organisations.
func Synthetic(n int64) iter.Seq[index.Entry] {
	return func(yield func(index.Entry) bool) {
		for i := int64(0); i < n; i++ {
			patient := uint64(i / 4)
			slot := i % 4
			e := index.Entry{
				Pseudonym:   Pseudonym(patient),
				HolderURA:   fmt.Sprintf("%08d", 10000000+(int64(patient)*7+slot*1009)%Holders),
				CareContext: CareContexts[(int64(patient)+slot)%int64(len(CareContexts))],
				SourceType:  SourceTypes[slot],
				Device:      "00001234",
			}
			if !yield(e) {
				return
			}
		}
	}
}

// Run runs the conformance tests; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) index.Store) {
	ctx := context.Background()
	med := CareContexts[0]
	lab := CareContexts[1]
	p1, p2 := Pseudonym(1), Pseudonym(2)
	entry := func(p []byte, ura string, cc index.Coding, typ string) index.Entry {
		return index.Entry{Pseudonym: p, HolderURA: ura, CareContext: cc, SourceType: typ, Device: "00001234"}
	}

	t.Run("register is idempotent", func(t *testing.T) {
		s := open(t)
		first, created, err := s.Register(ctx, entry(p1, "11111111", med, "Z3"))
		if err != nil || !created {
			t.Fatalf("first register: created=%v err=%v", created, err)
		}
		again, created, err := s.Register(ctx, entry(p1, "11111111", med, "Z3"))
		if err != nil || created {
			t.Fatalf("second register: created=%v err=%v", created, err)
		}
		if again.ID != first.ID || !again.Created.Equal(first.Created) {
			t.Fatalf("second register returned %+v, want the first %+v", again, first)
		}
		got, err := s.Get(ctx, first.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameEntry(first, got) {
			t.Fatalf("Get = %+v, Register gave %+v", got, first)
		}
	})

	t.Run("get unknown", func(t *testing.T) {
		s := open(t)
		for _, id := range []string{"0b6f1f5e-8d8e-4d38-9a55-0d3cbb0b1e2f", "not-a-uuid", ""} {
			if _, err := s.Get(ctx, id); !errors.Is(err, index.ErrNotFound) {
				t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
			}
		}
	})

	t.Run("lookup", func(t *testing.T) {
		s := open(t)
		for _, e := range []index.Entry{
			entry(p1, "22222222", med, "A1"),
			entry(p1, "11111111", med, "Z3"),
			entry(p1, "11111111", lab, "Z3"),
			entry(p1, "33333333", lab, "H1"),
			entry(p2, "44444444", med, "Z3"),
		} {
			if _, _, err := s.Register(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		cases := []struct {
			name string
			q    index.Query
			want []index.Holder
		}{
			{"care context", index.Query{Pseudonym: p1, CareContext: med},
				[]index.Holder{{URA: "11111111", SourceType: "Z3"}, {URA: "22222222", SourceType: "A1"}}},
			{"other care context", index.Query{Pseudonym: p1, CareContext: lab},
				[]index.Holder{{URA: "11111111", SourceType: "Z3"}, {URA: "33333333", SourceType: "H1"}}},
			{"type filter", index.Query{Pseudonym: p1, CareContext: med, SourceTypes: []string{"A1", "J8"}},
				[]index.Holder{{URA: "22222222", SourceType: "A1"}}},
			{"filter matches none", index.Query{Pseudonym: p1, CareContext: med, SourceTypes: []string{"J8"}}, nil},
			{"other patient", index.Query{Pseudonym: p2, CareContext: med}, []index.Holder{{URA: "44444444", SourceType: "Z3"}}},
			{"unknown patient", index.Query{Pseudonym: Pseudonym(99), CareContext: med}, nil},
			{"unknown care context", index.Query{Pseudonym: p1, CareContext: index.Coding{System: med.System, Code: "Nope"}}, nil},
			{"system matters", index.Query{Pseudonym: p1, CareContext: index.Coding{System: "urn:other", Code: med.Code}}, nil},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got, err := s.Lookup(ctx, c.q)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(c.want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("(-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("delete only own", func(t *testing.T) {
		s := open(t)
		e, _, err := s.Register(ctx, entry(p1, "11111111", med, "Z3"))
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Delete(ctx, "22222222", e.ID); err != nil || ok {
			t.Fatalf("delete by another holder: ok=%v err=%v", ok, err)
		}
		if _, err := s.Get(ctx, e.ID); err != nil {
			t.Fatalf("entry gone after foreign delete: %v", err)
		}
		if ok, err := s.Delete(ctx, "11111111", e.ID); err != nil || !ok {
			t.Fatalf("delete by holder: ok=%v err=%v", ok, err)
		}
		if _, err := s.Get(ctx, e.ID); !errors.Is(err, index.ErrNotFound) {
			t.Fatalf("Get after delete = %v", err)
		}
		if ok, err := s.Delete(ctx, "11111111", e.ID); err != nil || ok {
			t.Fatalf("second delete: ok=%v err=%v", ok, err)
		}
		if ok, err := s.Delete(ctx, "11111111", "not-a-uuid"); err != nil || ok {
			t.Fatalf("delete malformed id: ok=%v err=%v", ok, err)
		}
	})

	t.Run("delete matching", func(t *testing.T) {
		s := open(t)
		for _, e := range []index.Entry{
			entry(p1, "11111111", med, "Z3"),
			entry(p1, "11111111", lab, "Z3"),
			entry(p1, "22222222", med, "A1"),
			entry(p2, "11111111", med, "Z3"),
		} {
			if _, _, err := s.Register(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.DeleteMatching(ctx, "11111111", p1, med); err != nil || n != 1 {
			t.Fatalf("delete one care context: n=%d err=%v", n, err)
		}
		if n, err := s.DeleteMatching(ctx, "11111111", p1, index.Coding{}); err != nil || n != 1 {
			t.Fatalf("delete the rest for p1: n=%d err=%v", n, err)
		}
		got, err := s.Lookup(ctx, index.Query{Pseudonym: p1, CareContext: med})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]index.Holder{{URA: "22222222", SourceType: "A1"}}, got); diff != "" {
			t.Fatalf("other holder's entry touched (-want +got):\n%s", diff)
		}
		got, err = s.Lookup(ctx, index.Query{Pseudonym: p2, CareContext: med})
		if err != nil || len(got) != 1 {
			t.Fatalf("other patient's entry touched: %v %v", got, err)
		}
	})

	t.Run("bulk load", func(t *testing.T) {
		s := open(t)
		bl, ok := s.(index.BulkLoader)
		if !ok {
			t.Skip("store has no bulk loader")
		}
		n, err := bl.BulkLoad(ctx, Synthetic(400))
		if err != nil || n != 400 {
			t.Fatalf("BulkLoad = %d, %v", n, err)
		}
		var want []index.Holder
		for e := range Synthetic(400) {
			if string(e.Pseudonym) == string(Pseudonym(7)) && e.CareContext == CareContexts[0] {
				want = append(want, index.Holder{URA: e.HolderURA, SourceType: e.SourceType})
			}
		}
		got, err := s.Lookup(ctx, index.Query{Pseudonym: Pseudonym(7), CareContext: CareContexts[0]})
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || len(got) != len(want) {
			t.Fatalf("lookup after bulk load: got %v, want %v", got, want)
		}
	})
}

func sameEntry(a, b index.Entry) bool {
	return a.ID == b.ID && string(a.Pseudonym) == string(b.Pseudonym) && a.HolderURA == b.HolderURA &&
		a.CareContext == b.CareContext && a.SourceType == b.SourceType && a.Device == b.Device && a.Created.Equal(b.Created)
}
