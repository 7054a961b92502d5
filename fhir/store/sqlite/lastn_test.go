package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

// windowLastN is $lastn as one SQL statement (a window function over the
// codes): the reference the store's ranking must agree with, order
// included.
const windowLastN = `WITH m AS MATERIALIZED (SELECT r.rid, r.last_updated, r.id FROM resource r
		WHERE r.tenant = ? AND r.type = 'Observation' AND r.deleted = FALSE
		AND r.rid IN (SELECT x.rid FROM idx_ref x WHERE x.param = 'patient' AND x.target_id = ?)),
	c AS (SELECT m.rid, m.last_updated, m.id, t.system, t.code,
		(SELECT MAX(d.low) FROM idx_date d WHERE d.rid = m.rid AND d.param = 'date') AS eff
		FROM m JOIN idx_token t ON t.rid = m.rid AND t.param = 'code' AND t.code <> ''),
	ranked AS (SELECT rid, eff, last_updated, id, ROW_NUMBER() OVER (PARTITION BY system, code ORDER BY eff DESC NULLS LAST, last_updated DESC, id DESC) AS rn FROM c)
	SELECT r.id FROM resource r
	JOIN (SELECT rid, MAX(eff) AS eff FROM ranked WHERE rn <= ? GROUP BY rid) k ON k.rid = r.rid
	ORDER BY k.eff DESC NULLS LAST, r.last_updated DESC, r.id DESC`

func TestLastNMatchesWindowFunction(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fhir.STU3)
	// Few distinct lastUpdated instants, so that the id decides ties.
	clock := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	s.eng.Now = func() time.Time { return clock.Add(time.Duration(rng.IntN(3)) * time.Millisecond) }
	codes := []string{
		`{"system":"http://loinc.org","code":"85354-9"}`,
		`{"system":"http://loinc.org","code":"29463-7"}`,
		`{"system":"http://snomed.info/sct","code":"29463-7"}`,
		`{"system":"http://loinc.org","code":"8302-2"}`,
		`{"system":"http://loinc.org","code":""}`,
	}
	dates := []string{``, `,"effectiveDateTime":"2020"`, `,"effectiveDateTime":"2021-03-04"`, `,"effectiveDateTime":"2021-03-04T10:00:00Z"`,
		`,"effectivePeriod":{"start":"2019-01-01","end":"2022-01-01"}`, `,"effectivePeriod":{"end":"2021-01-01"}`}
	for i := range 120 {
		coding := codes[rng.IntN(len(codes))]
		switch rng.IntN(4) {
		case 0: // two codes
			coding += "," + codes[rng.IntN(len(codes))]
		case 1: // the same code twice
			coding += "," + coding
		}
		body := fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final","subject":{"reference":"Patient/p%d"},"code":{"coding":[%s]}%s}`,
			i, rng.IntN(2), coding, dates[rng.IntN(len(dates))])
		if _, _, err := s.Update(ctx, tenantA, json.RawMessage(body), ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, patient := range []string{"p0", "p1"} {
		for _, n := range []int{1, 2, 5} {
			rs, err := s.rdb.QueryContext(ctx, windowLastN, tenantA, patient, n)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for rs.Next() {
				var id string
				if err := rs.Scan(&id); err != nil {
					t.Fatal(err)
				}
				want = append(want, "Observation/"+id)
			}
			rs.Close()
			if len(want) < 3 {
				t.Fatalf("%s max %d: only %d matches, the data does not test much", patient, n, len(want))
			}
			for _, count := range []int{3, 1000} {
				var got []string
				for offset := 0; ; offset += count {
					params := url.Values{"patient": {patient}, "_count": {fmt.Sprint(count)}, "_offset": {fmt.Sprint(offset)}}
					page, err := s.Search(ctx, tenantA, store.Query{Type: "Observation", Params: params, LastN: n, Strict: true})
					if err != nil {
						t.Fatal(err)
					}
					if page.Total != len(want) {
						t.Fatalf("%s max %d: total %d, want %d", patient, n, page.Total, len(want))
					}
					for _, r := range page.Matches {
						got = append(got, r.Type+"/"+r.ID)
					}
					if page.NextOffset < 0 {
						break
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s max %d _count %d:\n got %v\nwant %v", patient, n, count, got, want)
				}
			}
		}
	}
}
