package demo

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/nl"
)

func generate(t *testing.T, opts Options) []Patient {
	t.Helper()
	ps, err := Generate(opts)
	if err != nil {
		t.Fatalf("Generate(%+v): %v", opts, err)
	}
	if len(ps) != opts.Count {
		t.Fatalf("Generate made %d patients, want %d", len(ps), opts.Count)
	}
	return ps
}

func TestGenerateDistinctValidBSNs(t *testing.T) {
	ps := generate(t, Options{Count: 200, Seed: 42})
	seen := map[string]bool{}
	for _, p := range ps {
		if err := nl.ValidateBSN(p.BSN); err != nil {
			t.Errorf("BSN %s: %v", p.BSN, err)
		}
		if !strings.HasPrefix(p.BSN, "9999") {
			t.Errorf("BSN %s is not in the 9999 test range", p.BSN)
		}
		if fixtureBSNs[p.BSN] {
			t.Errorf("BSN %s belongs to a Nictiz fixture patient", p.BSN)
		}
		if seen[p.BSN] {
			t.Errorf("BSN %s used twice", p.BSN)
		}
		seen[p.BSN] = true
		if p.Name == "" {
			t.Errorf("patient %s has no name", p.BSN)
		}
	}
}

func TestTestBSNsCapacity(t *testing.T) {
	for _, seed := range []int64{0, 1, -7, 1 << 40} {
		bsns, err := testBSNs(seed, MaxCount)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(bsns)))) != MaxCount {
			t.Errorf("seed %d: BSNs not distinct", seed)
		}
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, n := range []int{-1, MaxCount + 1} {
		if _, err := Generate(Options{Count: n}); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Count %d: err = %v, want ErrInvalidOptions", n, err)
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a := generate(t, Options{Count: 5, Seed: 7})
	b := generate(t, Options{Count: 5, Seed: 7})
	if !equalPatients(a, b) {
		t.Fatal("same seed gave different patients")
	}
	// Patient i does not depend on how many are made.
	c := generate(t, Options{Count: 2, Seed: 7})
	if !equalPatients(a[:2], c) {
		t.Error("patients depend on Count")
	}
	d := generate(t, Options{Count: 5, Seed: 8})
	if equalPatients(a, d) {
		t.Error("different seeds gave the same patients")
	}
}

func equalPatients(a, b []Patient) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].BSN != b[i].BSN || a[i].Name != b[i].Name || len(a[i].Resources) != len(b[i].Resources) {
			return false
		}
		for j := range a[i].Resources {
			if !bytes.Equal(a[i].Resources[j], b[i].Resources[j]) {
				return false
			}
		}
	}
	return true
}

type resource = map[string]any

// parse returns the patient's resources keyed by "Type/id", in order.
func parse(t *testing.T, p Patient) (map[string]resource, []resource) {
	t.Helper()
	byRef := map[string]resource{}
	var list []resource
	for _, raw := range p.Resources {
		var r resource
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("patient %s: invalid JSON: %v", p.BSN, err)
		}
		typ, _ := r["resourceType"].(string)
		id, _ := r["id"].(string)
		if typ == "" || id == "" {
			t.Fatalf("patient %s: resource without resourceType or id: %s", p.BSN, raw)
		}
		if byRef[typ+"/"+id] != nil {
			t.Errorf("patient %s: %s/%s twice", p.BSN, typ, id)
		}
		byRef[typ+"/"+id] = r
		list = append(list, r)
	}
	return byRef, list
}

func TestResourcesWellFormed(t *testing.T) {
	ps := generate(t, Options{Count: 20, Seed: 3, GPName: "Huisartsenpraktijk Het Proefplein"})
	shared := map[string][]byte{} // id -> bytes, for resources several patients hold
	for _, p := range ps {
		byRef, list := parse(t, p)
		if list[0]["resourceType"] != "Patient" {
			t.Errorf("patient %s: first resource is %v, want Patient", p.BSN, list[0]["resourceType"])
		}
		for i, r := range list {
			ref := r["resourceType"].(string) + "/" + r["id"].(string)
			profiles, _ := r["meta"].(map[string]any)["profile"].([]any)
			if len(profiles) == 0 {
				t.Errorf("%s has no meta.profile", ref)
			}
			for _, target := range references(r) {
				if byRef[target] == nil {
					t.Errorf("%s refers to %s, which the patient does not hold", ref, target)
				}
			}
			if prev, ok := shared[ref]; ok && !bytes.Equal(prev, p.Resources[i]) {
				t.Errorf("%s differs between patients", ref)
			}
			shared[ref] = p.Resources[i]
		}
		if gp := byRef["Organization/demo-gp-organization"]; gp == nil || gp["name"] != "Huisartsenpraktijk Het Proefplein" {
			t.Errorf("patient %s: GP organisation missing or misnamed: %v", p.BSN, gp)
		}
	}
}

// The element each resource type's STU3 "patient" search parameter reads
// (search-parameters.json, SearchParameter clinical-patient and friends).
var patientElement = map[string]string{
	"Consent": "patient", "AllergyIntolerance": "patient", "Immunization": "patient",
	"NutritionOrder": "patient", "Device": "patient",
	"Observation": "subject", "Condition": "subject", "Flag": "subject",
	"MedicationStatement": "subject", "MedicationRequest": "subject", "MedicationDispense": "subject",
	"DeviceUseStatement": "subject", "Encounter": "subject", "Procedure": "subject",
	"ProcedureRequest": "subject", "CareTeam": "subject",
}

// The element each _include of the BgZ queries follows.
var includeElement = map[string]string{
	"Patient:general-practitioner":   "generalPractitioner",
	"Coverage:payor":                 "payor",
	"MedicationStatement:medication": "medicationReference",
	"MedicationRequest:medication":   "medicationReference",
	"MedicationDispense:medication":  "medicationReference",
	"DeviceUseStatement:device":      "device",
	"Observation:related-target":     "related",
	"Procedure:based-on":             "basedOn",
	"CareTeam:participant":           "participant",
}

// TestEveryBlockHasData runs each BgZ search, as bgz.ParseQuery reads it,
// against each patient's parsed resources: a block without data fails.
func TestEveryBlockHasData(t *testing.T) {
	ps := generate(t, Options{Count: 10, Seed: 99})
	for _, p := range ps {
		byRef, list := parse(t, p)
		patientRef := ""
		for _, r := range list {
			if r["resourceType"] == "Patient" && slices.Contains(identifiers(r), nl.SystemBSN+"|"+p.BSN) {
				patientRef = "Patient/" + r["id"].(string)
			}
		}
		if patientRef == "" {
			t.Fatalf("no Patient with BSN %s", p.BSN)
		}
		for _, b := range bgz.Queries() {
			typ, op, params, err := bgz.ParseQuery(b.Query(p.BSN))
			if err != nil {
				t.Fatalf("%s: %v", b.Name, err)
			}
			var hits []resource
			for _, r := range list {
				if r["resourceType"] == typ && matches(t, r, params, patientRef) {
					hits = append(hits, r)
				}
			}
			if len(hits) == 0 {
				t.Errorf("patient %s: no data for block %s (%s)", p.BSN, b.Name, b.Query(p.BSN))
				continue
			}
			for _, inc := range params["_include"] {
				found := false
				for _, h := range hits {
					targets := references(h[includeElement[inc]])
					for _, target := range targets {
						if byRef[target] == nil {
							t.Errorf("%s: %s target %s missing", b.Name, inc, target)
						}
					}
					found = found || len(targets) > 0
				}
				if !found {
					t.Errorf("patient %s: block %s: nothing to %s", p.BSN, b.Name, inc)
				}
			}
			// Vital signs come as a series, so $lastn has a latest to pick.
			if op == bgz.OperationLastN && params.Has("code") {
				dates := map[any]bool{}
				for _, h := range hits {
					dates[h["effectiveDateTime"]] = true
				}
				if len(dates) < 2 {
					t.Errorf("patient %s: block %s has %d dated measurements, want several", p.BSN, b.Name, len(dates))
				}
			}
		}
	}
}

// matches applies the BgZ search parameters to one resource.
func matches(t *testing.T, r resource, params map[string][]string, patientRef string) bool {
	t.Helper()
	for key, values := range params {
		for _, value := range values {
			alternatives := strings.Split(value, ",")
			var ok bool
			switch key {
			case "_include":
				ok = true // checked by the caller
			case "identifier":
				ok = anyIn(alternatives, identifiers(r))
			case "patient.identifier":
				ok = slices.Contains(references(r[patientElement[r["resourceType"].(string)]]), patientRef)
			case "beneficiary.identifier":
				ok = slices.Contains(references(r["beneficiary"]), patientRef)
			case "category", "code":
				ok = anyIn(alternatives, codings(r[key]))
			case "status":
				s, _ := r["status"].(string)
				ok = slices.Contains(alternatives, s)
			default:
				t.Fatalf("search parameter %q not understood by this test", key)
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

func anyIn(want, have []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

func identifiers(r resource) []string {
	var out []string
	ids, _ := r["identifier"].([]any)
	for _, id := range ids {
		m, _ := id.(map[string]any)
		out = append(out, str(m["system"])+"|"+str(m["value"]))
	}
	return out
}

// codings returns "system|code" of a CodeableConcept or a list of them.
func codings(v any) []string {
	var out []string
	switch v := v.(type) {
	case []any:
		for _, c := range v {
			out = append(out, codings(c)...)
		}
	case map[string]any:
		cs, _ := v["coding"].([]any)
		for _, c := range cs {
			m, _ := c.(map[string]any)
			out = append(out, str(m["system"])+"|"+str(m["code"]))
		}
	}
	return out
}

// references returns every Reference.reference under v.
func references(v any) []string {
	var out []string
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			out = append(out, references(x)...)
		}
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "reference" {
				out = append(out, s)
			} else {
				out = append(out, references(x)...)
			}
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

func TestTransactionBundle(t *testing.T) {
	p := generate(t, Options{Count: 1, Seed: 1})[0]
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
			Request  struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(TransactionBundle(p), &bundle); err != nil {
		t.Fatal(err)
	}
	if bundle.ResourceType != "Bundle" || bundle.Type != "transaction" {
		t.Errorf("bundle is %s/%s, want Bundle/transaction", bundle.ResourceType, bundle.Type)
	}
	if len(bundle.Entry) != len(p.Resources) {
		t.Fatalf("%d entries for %d resources", len(bundle.Entry), len(p.Resources))
	}
	for i, e := range bundle.Entry {
		var r struct{ ResourceType, ID string }
		if err := json.Unmarshal(e.Resource, &r); err != nil {
			t.Fatal(err)
		}
		if e.Request.Method != "PUT" || e.Request.URL != r.ResourceType+"/"+r.ID {
			t.Errorf("entry %d: %s %s for %s/%s", i, e.Request.Method, e.Request.URL, r.ResourceType, r.ID)
		}
		if !bytes.Equal(compact(t, e.Resource), compact(t, p.Resources[i])) {
			t.Errorf("entry %d: resource changed in the bundle", i)
		}
	}
}

func compact(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestReferenceDate(t *testing.T) {
	ref := time.Date(2030, 3, 15, 0, 0, 0, 0, time.UTC)
	p := generate(t, Options{Count: 1, Seed: 1, Reference: ref})[0]
	_, list := parse(t, p)
	for _, r := range list {
		if d, ok := r["effectiveDateTime"].(string); ok && d > "2030-03-16" {
			t.Errorf("%s/%s dated %s, after the reference date", r["resourceType"], r["id"], d)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(Options{Count: 10, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
