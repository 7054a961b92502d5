package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// tamperer edits a closed store's tables directly, around the append-only
// guards, as someone with access to the database files or server would.
type tamperer struct {
	t     *testing.T
	exec  func(q string, args ...any)
	query func(q string, args ...any) [][]any
}

func newTamperer(t *testing.T, ts *testStore) *tamperer {
	ctx := context.Background()
	if ts.cfg.Path != "" {
		db, err := sql.Open("sqlite", "file:"+ts.cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		tp := &tamperer{t: t}
		tp.exec = func(q string, args ...any) {
			t.Helper()
			if _, err := db.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		tp.query = func(q string, args ...any) [][]any {
			t.Helper()
			rows, err := db.QueryContext(ctx, q, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			cols, _ := rows.Columns()
			var out [][]any
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				out = append(out, vals)
			}
			return out
		}
		for _, trg := range []string{"audit_event_no_update", "audit_event_no_delete", "audit_checkpoint_no_update", "audit_checkpoint_no_delete"} {
			tp.exec("DROP TRIGGER " + trg)
		}
		return tp
	}
	conn, err := pgx.Connect(ctx, ts.cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	schema := pgx.Identifier{ts.cfg.Schema}.Sanitize()
	rewrite := func(q string) string {
		q = strings.NewReplacer("audit_event", schema+".audit_event", "audit_checkpoint", schema+".audit_checkpoint").Replace(q)
		for n := 1; strings.Contains(q, "?"); n++ {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", n), 1)
		}
		return q
	}
	tp := &tamperer{t: t}
	tp.exec = func(q string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, rewrite(q), args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	tp.query = func(q string, args ...any) [][]any {
		t.Helper()
		rows, err := conn.Query(ctx, rewrite(q), args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out [][]any
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, vals)
		}
		return out
	}
	tp.exec("SET session_replication_role = replica") // triggers off for this session (superuser)
	return tp
}

func (tp *tamperer) hash(seq int64) []byte {
	rows := tp.query(`SELECT hash FROM audit_event WHERE seq = ?`, seq)
	return rows[0][0].([]byte)
}

// rechain recomputes the links and hashes of every record from seq on, as a
// tamperer who knows the (public) chain rule would.
func (tp *tamperer) rechain(from int64) {
	var prev [32]byte
	copy(prev[:], tp.hash(from-1))
	for _, r := range tp.query(`SELECT seq, body FROM audit_event WHERE seq >= ? ORDER BY seq`, from) {
		body := fmt.Sprint(r[1])
		if b, ok := r[1].([]byte); ok {
			body = string(b)
		}
		h := chainHash(prev, []byte(body))
		tp.exec(`UPDATE audit_event SET prev = ?, hash = ? WHERE seq = ?`, prev[:], h[:], r[0])
		prev = h
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	const forged = -1 // the event id of the record a case inserts
	type want struct {
		kind  string
		seq   int64
		event int64 // seq of the original record whose event id is reported; 0 for none
	}
	cases := []struct {
		name   string
		tamper func(tp *tamperer)
		want   []want
	}{
		{"intact", func(*tamperer) {}, nil},
		{"changed content", func(tp *tamperer) {
			tp.exec(`UPDATE audit_event SET body = replace(body, '"outcome":200', '"outcome":403') WHERE seq = 3`)
		}, []want{{ProblemChanged, 3, 3}}},
		{"changed search column", func(tp *tamperer) {
			tp.exec(`UPDATE audit_event SET patient = '999911259' WHERE seq = 5`)
		}, []want{{ProblemChanged, 5, 5}}},
		{"removed", func(tp *tamperer) {
			tp.exec(`DELETE FROM audit_event WHERE seq = 6`)
		}, []want{{ProblemRemoved, 6, 0}}},
		{"removed first", func(tp *tamperer) {
			tp.exec(`DELETE FROM audit_event WHERE seq = 1`)
		}, []want{{ProblemRemoved, 1, 0}}},
		{"removed and renumbered", func(tp *tamperer) {
			tp.exec(`DELETE FROM audit_event WHERE seq = 6`)
			tp.exec(`UPDATE audit_event SET seq = -seq WHERE seq > 6`)
			tp.exec(`UPDATE audit_event SET seq = -seq - 1 WHERE seq < 0`)
		}, []want{{ProblemRemoved, 6, 7}}},
		{"inserted", func(tp *tamperer) {
			tp.exec(`UPDATE audit_event SET seq = -seq WHERE seq >= 5`)
			tp.exec(`UPDATE audit_event SET seq = -seq + 1 WHERE seq < 0`)
			rec := record(99)
			rec.EventID, rec.Time, rec.Node = "forged-event", record(0).Time, "node-a"
			body, _ := encodeBody(rec)
			var prev [32]byte
			copy(prev[:], tp.hash(4))
			h := chainHash(prev, body)
			tp.exec(insertRows, append([]any{5, prev[:], h[:], string(body)}, columnsOf(rec).args()...)...)
		}, []want{{ProblemInserted, 5, forged}}},
		{"reordered", func(tp *tamperer) {
			tp.exec(`UPDATE audit_event SET seq = -1 WHERE seq = 3`)
			tp.exec(`UPDATE audit_event SET seq = 3 WHERE seq = 4`)
			tp.exec(`UPDATE audit_event SET seq = 4 WHERE seq = -1`)
		}, []want{{ProblemReordered, 3, 4}, {ProblemReordered, 4, 3}}},
		{"changed and chain recomputed", func(tp *tamperer) {
			tp.exec(`UPDATE audit_event SET body = replace(body, '"outcome":200', '"outcome":403'), outcome = 403 WHERE seq = 2`)
			tp.rechain(2)
		}, []want{{ProblemChanged, 4, 4}, {ProblemChanged, 8, 8}}},
		{"truncated", func(tp *tamperer) {
			tp.exec(`DELETE FROM audit_event WHERE seq > 8`)
		}, []want{{ProblemTruncated, 10, 0}}},
		{"forged checkpoint", func(tp *tamperer) {
			key, _ := ephemeralKey()
			sign, _ := checkpointSigner(key)
			rows := tp.query(`SELECT jws FROM audit_checkpoint WHERE seq = 8`)
			claims, err := parseCheckpoint(fmt.Sprint(rows[0][0]), nil)
			if err != nil {
				tp.t.Fatal(err)
			}
			jws, _ := sign(claims)
			tp.exec(`UPDATE audit_checkpoint SET jws = ? WHERE seq = 8`, jws)
		}, []want{{ProblemCheckpoint, 8, 0}}},
	}
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					ctx := context.Background()
					s := open(t, func(c *Config) { c.CheckpointEvery = 4 })
					ids := map[int64]string{forged: "forged-event"}
					for i := range 10 {
						if err := s.Append(ctx, record(i)); err != nil {
							t.Fatal(err)
						}
					}
					recs, _ := s.List(ctx, Filter{})
					for _, r := range recs {
						ids[r.Seq] = r.EventID
					}
					ro := s.reopenReadOnly(t) // final checkpoint at 10
					tc.tamper(newTamperer(t, s))
					rep, err := Verify(ctx, ro, s.keys)
					if err != nil {
						t.Fatal(err)
					}
					if len(tc.want) == 0 && !rep.OK() {
						t.Fatalf("intact log reported: %v", rep.Problems)
					}
					for _, w := range tc.want {
						found := false
						for _, p := range rep.Problems {
							found = found || (p.Kind == w.kind && p.Seq == w.seq && p.EventID == ids[w.event])
						}
						if !found {
							t.Errorf("want %s at seq %d (event %q); got %v", w.kind, w.seq, ids[w.event], rep.Problems)
						}
					}
				})
			}
		})
	}
}

func TestVerifyWithoutKeysChecksContentOnly(t *testing.T) {
	ctx := context.Background()
	s := backends(t)["sqlite"](t, nil)
	if err := s.Append(ctx, record(0)); err != nil {
		t.Fatal(err)
	}
	ro := s.reopenReadOnly(t)
	rep, err := Verify(ctx, ro, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Signed || rep.Checkpoints != 1 || rep.LastAnchored != 1 {
		t.Errorf("report: %+v", rep)
	}
}
