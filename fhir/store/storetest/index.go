package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir/store"
)

// IndexRows returns the index rows of the current version of typ/id of
// tenant "00000001" as text in a fixed order (none for a deleted or
// missing resource): what the backend's search tables hold for it.
type IndexRows func(t *testing.T, typ, id string) []string

// IndexAfterUpdates checks that the index of a resource updated through a
// series of versions (parameters changing, appearing, disappearing, the
// same values again, deleted and written again) is at every step the
// index a fresh write of the same content gets. s is an empty STU3 store.
func IndexAfterUpdates(t *testing.T, s store.Store, rows IndexRows) {
	ctx := context.Background()
	task := func(members string) string {
		return `{"resourceType":"Task","id":"%s",` + members + `}`
	}
	for _, series := range [][]string{
		{
			task(`"status":"requested","intent":"order","identifier":[{"system":"urn:a","value":"1"},{"system":"urn:a","value":"2"}],"for":{"reference":"Patient/p1"},"owner":{"reference":"Organization/o1"},"authoredOn":"2026-01-02","lastModified":"2026-01-02T10:00:00Z"`),
			// Only the status and lastModified change.
			task(`"status":"in-progress","intent":"order","identifier":[{"system":"urn:a","value":"1"},{"system":"urn:a","value":"2"}],"for":{"reference":"Patient/p1"},"owner":{"reference":"Organization/o1"},"authoredOn":"2026-01-02","lastModified":"2026-01-02T10:00:01Z"`),
			// The same again.
			task(`"status":"in-progress","intent":"order","identifier":[{"system":"urn:a","value":"1"},{"system":"urn:a","value":"2"}],"for":{"reference":"Patient/p1"},"owner":{"reference":"Organization/o1"},"authoredOn":"2026-01-02","lastModified":"2026-01-02T10:00:01Z"`),
			// An identifier fewer, the other changed; owner gone, partOf new.
			task(`"status":"in-progress","intent":"order","identifier":[{"system":"urn:a","value":"3"}],"for":{"reference":"Patient/p1"},"partOf":[{"reference":"Task/t0"}],"authoredOn":"2026-01-02","lastModified":"2026-01-02T10:00:01Z"`),
			// The identifiers in the other order, one repeated.
			task(`"status":"completed","intent":"order","identifier":[{"system":"urn:a","value":"2"},{"system":"urn:a","value":"1"},{"system":"urn:a","value":"1"}],"for":{"reference":"Patient/p2"},"authoredOn":"2026-01-02"`),
			// Almost nothing left.
			task(`"status":"cancelled","intent":"order"`),
			// Everything back.
			task(`"status":"requested","intent":"order","identifier":[{"system":"urn:a","value":"1"}],"for":{"reference":"Patient/p1"},"owner":{"reference":"Organization/o1"},"authoredOn":"2026-01-02","lastModified":"2026-01-02T10:00:00Z"`),
			"", // deleted
			task(`"status":"requested","intent":"order","for":{"reference":"Patient/p1"}`),
		},
		{
			`{"resourceType":"Observation","id":"%s","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-01-02","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`,
			`{"resourceType":"Observation","id":"%s","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-01-02","valueQuantity":{"value":72.5,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`,
			`{"resourceType":"Observation","id":"%s","status":"amended","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-01-03","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`,
		},
		{
			`{"resourceType":"Patient","id":"%s","name":[{"family":"Jansen","given":["Jan"]}],"birthDate":"1970-01-01"}`,
			`{"resourceType":"Patient","id":"%s","name":[{"family":"Jansen","given":["Jan","Piet"]},{"family":"de Vries"}],"birthDate":"1970-01-01","telecom":[{"system":"phone","value":"0612345678"}]}`,
			`{"resourceType":"Patient","id":"%s","name":[{"family":"Jansen","given":["Piet"]}],"birthDate":"1970-01-02"}`,
		},
	} {
		typ := series[0][len(`{"resourceType":"`):]
		typ = typ[:strings.IndexByte(typ, '"')]
		for step, body := range series {
			if body == "" {
				if err := s.Delete(ctx, tenantA, typ, "updated"); err != nil {
					t.Fatal(err)
				}
				if got := rows(t, typ, "updated"); len(got) > 0 {
					t.Fatalf("%s, step %d: index rows of a deleted resource: %q", typ, step, got)
				}
				continue
			}
			if _, _, err := s.Update(ctx, tenantA, json.RawMessage(fmt.Sprintf(body, "updated")), ""); err != nil {
				t.Fatalf("%s, step %d: %v", typ, step, err)
			}
			fresh := fmt.Sprintf("fresh%d", step)
			if _, _, err := s.Update(ctx, tenantA, json.RawMessage(fmt.Sprintf(body, fresh)), ""); err != nil {
				t.Fatalf("%s, step %d: %v", typ, step, err)
			}
			got, want := rows(t, typ, "updated"), rows(t, typ, fresh)
			if len(want) == 0 {
				t.Fatalf("%s, step %d: no index rows", typ, step)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s, step %d: index after the update\n%s\nwant the fresh write's\n%s", typ, step, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
	}
}
