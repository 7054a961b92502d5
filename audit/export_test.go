package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// appendMixed writes records of two requesting organisations, 00000002 on
// even i and 00000003 on odd, so an export of one must skip the other's.
func appendMixed(t *testing.T, s *Store, n int) {
	t.Helper()
	for i := range n {
		r := record(i)
		if i%2 == 1 {
			r.ActorURA = "00000003"
		}
		if err := s.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExportHoldsOnlyTheRequestersRecordsAndVerifies(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ts := open(t, func(c *Config) { c.CheckpointEvery = 4 })
			appendMixed(t, ts.Store, 10)
			compact, err := ts.Export(context.Background(), "00000002", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			v, err := VerifyExport(compact, ts.keys, "00000002")
			if err != nil {
				t.Fatal(err)
			}
			if len(v.Records) != 5 || v.More {
				t.Fatalf("records %d more %v, want 5 of 00000002's and no more", len(v.Records), v.More)
			}
			for _, r := range v.Records {
				if r.ActorURA != "00000002" || r.Seq%2 != 1 {
					t.Errorf("seq %d of %s in 00000002's export", r.Seq, r.ActorURA)
				}
			}
			if v.AnchoredThrough < 8 {
				t.Errorf("anchored through %d, want the checkpoint at 8", v.AnchoredThrough)
			}
			// Paging: after the second record, with a limit of two.
			compact, err = ts.Export(context.Background(), "00000002", v.Records[1].Seq, 2)
			if err != nil {
				t.Fatal(err)
			}
			page, err := VerifyExport(compact, ts.keys, "00000002")
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Records) != 2 || !page.More || page.Records[0].Seq != v.Records[2].Seq {
				t.Fatalf("page %+v, want records 3 and 4 with more", page.Export)
			}
			// Another organisation cannot pass the export off as its own.
			if _, err := VerifyExport(compact, ts.keys, "00000003"); !errors.Is(err, ErrInvalidExport) {
				t.Fatalf("export of 00000002 verified as 00000003's: %v", err)
			}
		})
	}
}

func TestTamperedExportIsRefused(t *testing.T) {
	ts := backends(t)["sqlite"](t, nil)
	appendMixed(t, ts.Store, 6)
	compact, err := ts.Export(context.Background(), "00000002", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(compact, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var ex Export
	if err := json.Unmarshal(payload, &ex); err != nil {
		t.Fatal(err)
	}
	other, err := ephemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	resign := func(t *testing.T, ex Export) string {
		b, _ := json.Marshal(ex)
		s, err := signWith(ts.cfg.Key, ExportType, b)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := map[string]func(t *testing.T) string{
		"payload changed, signature kept": func(t *testing.T) string {
			changed := strings.Replace(string(payload), "999909587", "999911259", 1)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(changed)) + "." + parts[2]
		},
		"signed by another key": func(t *testing.T) string {
			b, _ := json.Marshal(ex)
			s, err := signWith(other, ExportType, b)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"body changed, hash kept (signed anew)": func(t *testing.T) string {
			e := ex
			e.Items = append([]Entry(nil), ex.Items...)
			e.Items[0].Body = strings.Replace(e.Items[0].Body, `"outcome":200`, `"outcome":403`, 1)
			return resign(t, e)
		},
		"another organisation's record slipped in (signed anew)": func(t *testing.T) string {
			all, err := ts.Entries(context.Background(), Filter{})
			if err != nil {
				t.Fatal(err)
			}
			e := ex
			e.Items = []Entry{ex.Items[0], all[1], ex.Items[1]}
			return resign(t, e)
		},
		"checkpoint signed by another key": func(t *testing.T) string {
			signer, err := checkpointSigner(other)
			if err != nil {
				t.Fatal(err)
			}
			cp, err := signer(checkpointClaims{Node: "node-a", Seq: 6, Head: strings.Repeat("00", 32), IAT: time.Now().Unix()})
			if err != nil {
				t.Fatal(err)
			}
			e := ex
			e.Checkpoint = cp
			return resign(t, e)
		},
	}
	if _, err := VerifyExport(compact, ts.keys, "00000002"); err != nil {
		t.Fatalf("untampered export: %v", err)
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := VerifyExport(tamper(t), ts.keys, "00000002"); !errors.Is(err, ErrInvalidExport) {
				t.Fatalf("tampered export verified: %v", err)
			}
		})
	}
}
