package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

func testCRUD(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)

	body := `{"resourceType":"Patient","meta":{"profile":["http://fhir.nl/fhir/StructureDefinition/nl-core-patient"],"versionId":"9"},"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999909587"}],  "active" : true}`
	created, err := s.Create(ctx, tenantA, json.RawMessage(body))
	if err != nil {
		t.Fatal(err)
	}
	if created.ID == "" || created.VersionID != "1" {
		t.Fatalf("created %+v", created)
	}
	want := `{"resourceType":"Patient","id":"` + created.ID + `","meta":{"versionId":"1","lastUpdated":"` +
		created.LastUpdated.Format(lastUpdatedLayout) + `","profile":["http://fhir.nl/fhir/StructureDefinition/nl-core-patient"]},"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999909587"}],"active":true}`
	if string(created.Body) != want {
		t.Fatalf("body\n got %s\nwant %s", created.Body, want)
	}
	got, err := s.Read(ctx, tenantA, "Patient", created.ID)
	if err != nil || string(got.Body) != want {
		t.Fatalf("read: %v %s", err, got.Body)
	}

	upd := strings.Replace(string(created.Body), `"active":true`, `"active":false`, 1)
	v2, isNew, err := s.Update(ctx, tenantA, json.RawMessage(upd), "1")
	if err != nil || isNew || v2.VersionID != "2" {
		t.Fatalf("update: %v %v %+v", err, isNew, v2)
	}
	if _, _, err := s.Update(ctx, tenantA, json.RawMessage(upd), `W/"1"`); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if _, _, err := s.Update(ctx, tenantA, json.RawMessage(upd), `W/"2"`); err != nil {
		t.Fatalf("weak etag If-Match: %v", err)
	}
	old, err := s.VRead(ctx, tenantA, "Patient", created.ID, "1")
	if err != nil || string(old.Body) != want {
		t.Fatalf("vread 1: %v %s", err, old.Body)
	}
	if err := s.Delete(ctx, tenantA, "Patient", created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, tenantA, "Patient", created.ID); !errors.Is(err, store.ErrDeleted) {
		t.Fatalf("read deleted: %v", err)
	}
	if _, err := s.VRead(ctx, tenantA, "Patient", created.ID, "4"); !errors.Is(err, store.ErrDeleted) {
		t.Fatalf("vread deleted version: %v", err)
	}
	if err := s.Delete(ctx, tenantA, "Patient", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	page, err := s.Search(ctx, tenantA, store.Query{Type: "Patient", Params: url.Values{"identifier": {bsnSys + "|999909587"}}})
	if err != nil || page.Total != 0 {
		t.Fatalf("deleted resource found: %v %+v", err, page)
	}
	// Update-as-create, and re-creating a deleted resource.
	if _, isNew, err := s.Update(ctx, tenantA, json.RawMessage(`{"resourceType":"Patient","id":"p1"}`), ""); err != nil || !isNew {
		t.Fatalf("update as create: %v %v", err, isNew)
	}
	res, isNew, err := s.Update(ctx, tenantA, json.RawMessage(upd), "")
	if err != nil || !isNew || res.VersionID != "5" {
		t.Fatalf("recreate: %v %v %+v", err, isNew, res)
	}
}

func testInvalid(t *testing.T, open Opener) {
	s := open(t, fhir.STU3)
	for name, body := range map[string]string{
		"not json":          `{"resourceType":`,
		"array":             `[]`,
		"no resourceType":   `{"id":"x"}`,
		"bad resourceType":  `{"resourceType":42}`,
		"unknown type":      `{"resourceType":"ServiceRequest"}`, // R4 only
		"trailing data":     `{"resourceType":"Patient"} {}`,
		"invalid id":        `{"resourceType":"Patient","id":"a/b"}`,
		"meta not object":   `{"resourceType":"Patient","meta":[]}`,
		"update without id": `{"resourceType":"Patient"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := s.Update(context.Background(), tenantA, json.RawMessage(body), "")
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	// Nothing was written by the failed writes.
	assertEmpty(t, s, tenantA)
}

func testTenantIsolation(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)
	put(t, s, tenantA, `{"resourceType":"Patient","id":"p1","identifier":[{"system":"`+bsnSys+`","value":"999909587"}]}`)
	put(t, s, tenantA, `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"`+sct+`","code":"365508006"}]}}`)
	put(t, s, tenantB, `{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"`+sct+`","code":"365508006"}]}}`)

	if _, err := s.Read(ctx, tenantB, "Patient", "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("read across tenants: %v", err)
	}
	// The chain must not resolve tenant A's patient for tenant B, nor include it.
	page, err := s.Search(ctx, tenantB, store.Query{Type: "Observation", Params: url.Values{
		"patient.identifier": {bsnSys + "|999909587"},
	}})
	if err != nil || page.Total != 0 {
		t.Fatalf("chain across tenants: %v %+v", err, page)
	}
	page, err = s.Search(ctx, tenantB, store.Query{Type: "Observation", Params: url.Values{
		"code": {sct + "|365508006"}, "_include": {"Observation:patient"},
	}})
	if err != nil || !slices.Equal(ids(page.Matches), []string{"Observation/o2"}) || len(page.Included) != 0 {
		t.Fatalf("search across tenants: %v %+v", err, page)
	}
	// The same id may exist in both tenants independently.
	put(t, s, tenantB, `{"resourceType":"Patient","id":"p1"}`)
	a, _ := s.Read(ctx, tenantA, "Patient", "p1")
	b, _ := s.Read(ctx, tenantB, "Patient", "p1")
	if a.VersionID != "1" || b.VersionID != "1" || string(a.Body) == string(b.Body) {
		t.Fatalf("same id across tenants: %s %s", a.Body, b.Body)
	}
}

// bgzFixtures is a small zib2017-shaped patient record (STU3).
var bgzFixtures = []string{
	`{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:2.16.840.1.113883.2.4.6.3","value":"999909587"}],"name":[{"family":"Jansen","given":["Émile"]}],"birthDate":"1970-03-15","generalPractitioner":[{"reference":"Practitioner/gp1"}]}`,
	`{"resourceType":"Patient","id":"p2","identifier":[{"system":"` + bsnSys + `","value":"999911120"}],"name":[{"family":"de Vries"}],"birthDate":"1985"}`,
	`{"resourceType":"Practitioner","id":"gp1","name":[{"family":"Huisarts"}]}`,
	`{"resourceType":"Organization","id":"zk1","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/uzovi","value":"3311"}]}`,
	`{"resourceType":"Coverage","id":"cov1","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/zk1"}]}`,
	`{"resourceType":"Consent","id":"c1","patient":{"reference":"Patient/p1"},"category":[{"coding":[{"system":"` + sct + `","code":"11291000146105"}]}],"status":"active"}`,
	`{"resourceType":"Observation","id":"func1","subject":{"reference":"Patient/p1"},"category":[{"coding":[{"system":"` + sct + `","code":"118228005"}]}],"code":{"coding":[{"system":"` + sct + `","code":"1"}]},"status":"final"}`,
	`{"resourceType":"Observation","id":"func2","subject":{"reference":"Patient/p1"},"category":[{"coding":[{"system":"` + sct + `","code":"384821006"}]}],"code":{"coding":[{"system":"` + sct + `","code":"2"}]},"status":"final"}`,
	`{"resourceType":"Observation","id":"living","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"` + sct + `","code":"365508006"}],"text":"Woonsituatie"},"status":"final"}`,
	`{"resourceType":"Observation","id":"bp1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"` + loinc + `","code":"85354-9"}]},"effectiveDateTime":"2020-01-01T10:00:00+01:00","status":"final"}`,
	`{"resourceType":"Observation","id":"bp2","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"` + loinc + `","code":"85354-9"}]},"effectiveDateTime":"2021-06-01","status":"final"}`,
	`{"resourceType":"Observation","id":"bp3","subject":{"reference":"Patient/p2"},"code":{"coding":[{"system":"` + loinc + `","code":"85354-9"}]},"effectiveDateTime":"2022-06-01","status":"final"}`,
	`{"resourceType":"Observation","id":"w1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"` + loinc + `","code":"29463-7"}]},"effectivePeriod":{"start":"2019-05-01","end":"2019-05-02"},"valueQuantity":{"value":72.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"},"status":"final"}`,
	`{"resourceType":"Observation","id":"lab1","subject":{"reference":"Patient/p1"},"category":[{"coding":[{"system":"` + sct + `","code":"49581000146104"}]}],"code":{"coding":[{"system":"` + loinc + `","code":"2345-7"}]},"effectiveDateTime":"2021-01-01","related":[{"type":"has-member","target":{"reference":"Observation/lab2"}}],"status":"final"}`,
	`{"resourceType":"Observation","id":"lab2","subject":{"reference":"Patient/p1"},"category":[{"coding":[{"system":"` + sct + `","code":"49581000146104"}]}],"code":{"coding":[{"system":"` + loinc + `","code":"2345-7"}]},"effectiveDateTime":"2020-01-01","status":"final"}`,
	`{"resourceType":"Condition","id":"cond1","subject":{"reference":"http://example.org/fhir/Patient/p1"},"code":{"text":"Astma"}}`,
	`{"resourceType":"Medication","id":"med1","code":{"coding":[{"system":"urn:oid:2.16.840.1.113883.2.4.4.10","code":"1234"}]}}`,
	`{"resourceType":"MedicationStatement","id":"ms1","subject":{"reference":"Patient/p1"},"category":{"coding":[{"system":"urn:oid:2.16.840.1.113883.2.4.3.11.60.20.77.5.3","code":"6"}]},"medicationReference":{"reference":"Medication/med1"},"status":"active","taken":"y"}`,
	`{"resourceType":"MedicationStatement","id":"ms2","subject":{"reference":"Patient/p1"},"category":{"coding":[{"system":"urn:oid:2.16.840.1.113883.2.4.3.11.60.20.77.5.3","code":"1"}]},"medicationReference":{"reference":"#m"},"contained":[{"resourceType":"Medication","id":"m"}],"status":"active","taken":"y"}`,
	`{"resourceType":"MedicationDispense","id":"md1","subject":{"reference":"Patient/p1"},"category":{"coding":[{"system":"` + sct + `","code":"422037009"}]},"medicationReference":{"reference":"Medication/med1"},"status":"completed"}`,
	`{"resourceType":"MedicationDispense","id":"md2","subject":{"reference":"Patient/p1"},"category":{"coding":[{"system":"` + sct + `","code":"373784005"}]},"medicationReference":{"reference":"Medication/med1"},"status":"completed"}`,
	`{"resourceType":"Immunization","id":"imm1","patient":{"reference":"Patient/p1"},"status":"completed","notGiven":false,"primarySource":true,"vaccineCode":{"text":"x"}}`,
	`{"resourceType":"Immunization","id":"imm2","patient":{"reference":"Patient/p1"},"status":"entered-in-error","notGiven":false,"primarySource":true,"vaccineCode":{"text":"x"}}`,
	`{"resourceType":"ProcedureRequest","id":"pr1","subject":{"reference":"Patient/p1"},"status":"active","intent":"order","code":{"text":"x"}}`,
	`{"resourceType":"Procedure","id":"proc1","subject":{"reference":"Patient/p1"},"category":{"coding":[{"system":"` + sct + `","code":"387713003"}]},"basedOn":[{"reference":"ProcedureRequest/pr1"}],"status":"completed","performedPeriod":{"start":"2018-02-01"}}`,
	`{"resourceType":"CareTeam","id":"ct1","subject":{"reference":"Patient/p1"},"status":"active","participant":[{"member":{"reference":"Practitioner/gp1"}}]}`,
	`{"resourceType":"DeviceUseStatement","id":"dus1","subject":{"reference":"Patient/p1"},"device":{"reference":"Device/d1"},"status":"active"}`,
	`{"resourceType":"Device","id":"d1","patient":{"reference":"Patient/p1"}}`,
	`{"resourceType":"Provenance","id":"prov1","target":[{"reference":"Observation/living"},{"reference":"Patient/p1"}],"recorded":"2020-01-01T00:00:00Z","agent":[{"whoReference":{"reference":"Practitioner/gp1"}}]}`,
	`{"resourceType":"Task","id":"task1","identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:uuid:1"}],"groupIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:g"},"owner":{"reference":"Organization/zk1"},"status":"requested","intent":"order"}`,
}

func testSearch(t *testing.T, open Opener) {
	s := open(t, fhir.STU3)
	loadFixtures(t, s, tenantA, bgzFixtures)
	const P = "patient.identifier"
	bsn := bsnSys + "|999909587"

	for _, tc := range []struct {
		name     string
		typ      string
		params   string
		lastN    int
		matches  []string
		included []string
		total    int // when not len(matches)
	}{
		{name: "patient by bsn, OID form stored", typ: "Patient", params: "identifier=" + bsn + "&_include=Patient:general-practitioner",
			matches: []string{"Patient/p1"}, included: []string{"Practitioner/gp1"}},
		{name: "patient by OID system", typ: "Patient", params: "identifier=urn:oid:2.16.840.1.113883.2.4.6.3|999911120",
			matches: []string{"Patient/p2"}},
		{name: "token code only", typ: "Patient", params: "identifier=999909587", matches: []string{"Patient/p1"}},
		{name: "token system only", typ: "Patient", params: "identifier=" + bsnSys + "|", matches: []string{"Patient/p1", "Patient/p2"}},
		{name: "token no system", typ: "Patient", params: "identifier=|999909587"},
		{name: "token not", typ: "Immunization", params: "status:not=completed", matches: []string{"Immunization/imm2"}},
		{name: "token text", typ: "Observation", params: "code:text=woon", matches: []string{"Observation/living"}},
		{name: "token text on CodeableConcept.text only", typ: "Condition", params: "code:text=astma", matches: []string{"Condition/cond1"}},
		{name: "coverage chained beneficiary", typ: "Coverage", params: "beneficiary.identifier=" + bsn + "&_include=Coverage:payor",
			matches: []string{"Coverage/cov1"}, included: []string{"Organization/zk1"}},
		{name: "consent", typ: "Consent", params: P + "=" + bsn + "&category=" + sct + "|11291000146105", matches: []string{"Consent/c1"}},
		{name: "functional status OR", typ: "Observation", params: P + "=" + bsn + "&category=" + sct + "|118228005," + sct + "|384821006",
			matches: []string{"Observation/func1", "Observation/func2"}},
		{name: "condition absolute reference", typ: "Condition", params: P + "=" + bsn, matches: []string{"Condition/cond1"}},
		{name: "living situation", typ: "Observation", params: P + "=" + bsn + "&code=" + sct + "|365508006&_revinclude=Provenance:target",
			matches: []string{"Observation/living"}, included: []string{"Provenance/prov1"}},
		{name: "medication statement", typ: "MedicationStatement", params: P + "=" + bsn + "&category=urn:oid:2.16.840.1.113883.2.4.3.11.60.20.77.5.3|6&_include=MedicationStatement:medication",
			matches: []string{"MedicationStatement/ms1"}, included: []string{"Medication/med1"}},
		{name: "contained reference not followed", typ: "MedicationStatement", params: P + "=" + bsn + "&_include=MedicationStatement:medication",
			matches: []string{"MedicationStatement/ms1", "MedicationStatement/ms2"}, included: []string{"Medication/med1"}},
		// category on MedicationDispense is Nictiz's, not in the STU3 core.
		{name: "medication dispense category", typ: "MedicationDispense", params: P + "=" + bsn + "&category=" + sct + "|422037009&_include=MedicationDispense:medication",
			matches: []string{"MedicationDispense/md1"}, included: []string{"Medication/med1"}},
		{name: "immunization completed", typ: "Immunization", params: P + "=" + bsn + "&status=completed", matches: []string{"Immunization/imm1"}},
		{name: "procedure based-on", typ: "Procedure", params: P + "=" + bsn + "&category=" + sct + "|387713003," + sct + "|258174001&_include=Procedure:based-on",
			matches: []string{"Procedure/proc1"}, included: []string{"ProcedureRequest/pr1"}},
		{name: "procedure request", typ: "ProcedureRequest", params: P + "=" + bsn + "&status=active", matches: []string{"ProcedureRequest/pr1"}},
		{name: "careteam participant", typ: "CareTeam", params: P + "=" + bsn + "&status=active&_include=CareTeam:participant",
			matches: []string{"CareTeam/ct1"}, included: []string{"Practitioner/gp1"}},
		{name: "device use", typ: "DeviceUseStatement", params: P + "=" + bsn + "&_include=DeviceUseStatement:device",
			matches: []string{"DeviceUseStatement/dus1"}, included: []string{"Device/d1"}},
		{name: "chain to string", typ: "Condition", params: "patient.family=jans", matches: []string{"Condition/cond1"}},
		{name: "chain to _id", typ: "Immunization", params: "patient._id=p1&status=completed", matches: []string{"Immunization/imm1"}},
		{name: "chain to missing", typ: "Coverage", params: "beneficiary.birthdate:missing=false", matches: []string{"Coverage/cov1"}},
		{name: "chain of chain", typ: "Coverage", params: "beneficiary.general-practitioner.family=huis", matches: []string{"Coverage/cov1"}},
		{name: "chain with two values", typ: "Observation", params: "subject:Patient.identifier=" + bsnSys + "|999911120,urn:oid:2.16.840.1.113883.2.4.6.3|999909587&code=" + loinc + "|85354-9",
			matches: []string{"Observation/bp1", "Observation/bp2", "Observation/bp3"}},
		{name: "subject typed chain", typ: "Observation", params: "subject:Patient.identifier=" + bsnSys + "|999911120", matches: []string{"Observation/bp3"}},
		{name: "reference by id", typ: "Observation", params: "patient=p2", matches: []string{"Observation/bp3"}},
		{name: "reference by type/id", typ: "Observation", params: "subject=Patient/p2", matches: []string{"Observation/bp3"}},
		{name: "reference by absolute url", typ: "Condition", params: "subject=https://other.example/fhir/Patient/p1", matches: []string{"Condition/cond1"}},
		{name: "lastn blood pressure", typ: "Observation", params: P + "=" + bsn + "&code=" + loinc + "|85354-9", lastN: 1,
			matches: []string{"Observation/bp2"}},
		{name: "lastn max 2", typ: "Observation", params: P + "=" + bsn + "&code=" + loinc + "|85354-9&max=2", lastN: 2,
			matches: []string{"Observation/bp1", "Observation/bp2"}},
		{name: "lastn lab with related", typ: "Observation", params: P + "=" + bsn + "&category=" + sct + "|49581000146104&_include=Observation:related-target", lastN: 1,
			matches: []string{"Observation/lab1"}, included: []string{"Observation/lab2"}},
		{name: "date eq year", typ: "Observation", params: "date=2021", matches: []string{"Observation/bp2", "Observation/lab1"}},
		{name: "date eq day against dateTime", typ: "Observation", params: "date=2020-01-01", matches: []string{"Observation/bp1", "Observation/lab2"}},
		{name: "date ge", typ: "Observation", params: "date=ge2021-06-01", matches: []string{"Observation/bp2", "Observation/bp3"}},
		{name: "date lt", typ: "Observation", params: "date=lt2020", matches: []string{"Observation/w1"}},
		{name: "date period contains", typ: "Observation", params: "date=eq2019-05", matches: []string{"Observation/w1"}},
		{name: "date AND range", typ: "Observation", params: "date=gt2019-12-31&date=lt2021", matches: []string{"Observation/bp1", "Observation/lab2"}},
		{name: "date ne", typ: "Patient", params: "birthdate=ne1970-03-15", matches: []string{"Patient/p2"}},
		{name: "date sa", typ: "Patient", params: "birthdate=sa1984", matches: []string{"Patient/p2"}},
		{name: "date eb", typ: "Patient", params: "birthdate=eb1984", matches: []string{"Patient/p1"}},
		{name: "date open period", typ: "Procedure", params: "date=ge2030", matches: []string{"Procedure/proc1"}},
		{name: "string prefix accents", typ: "Patient", params: "name=emi", matches: []string{"Patient/p1"}},
		{name: "string prefix family", typ: "Patient", params: "family=DE V", matches: []string{"Patient/p2"}},
		{name: "string exact", typ: "Patient", params: "family:exact=Jansen", matches: []string{"Patient/p1"}},
		{name: "string exact case", typ: "Patient", params: "family:exact=jansen"},
		{name: "string contains", typ: "Patient", params: "name:contains=vri", matches: []string{"Patient/p2"}},
		{name: "quantity", typ: "Observation", params: "value-quantity=72.5|http://unitsofmeasure.org|kg", matches: []string{"Observation/w1"}},
		{name: "quantity precision", typ: "Observation", params: "value-quantity=73", matches: []string{"Observation/w1"}},
		{name: "quantity gt unit", typ: "Observation", params: "value-quantity=gt70||kg", matches: []string{"Observation/w1"}},
		{name: "quantity lt", typ: "Observation", params: "value-quantity=lt70"},
		{name: "uri profile", typ: "Patient", params: "_profile=http://x"},
		{name: "_id", typ: "Observation", params: "_id=bp1,bp3", matches: []string{"Observation/bp1", "Observation/bp3"}},
		{name: "missing", typ: "Observation", params: "category:missing=true&patient=p1&date:missing=false", matches: []string{"Observation/bp1", "Observation/bp2", "Observation/w1"}},
		{name: "task", typ: "Task", params: "identifier=urn:ietf:rfc:3986|urn:uuid:1&owner=Organization/zk1&status=requested&group-identifier=urn:uuid:g",
			matches: []string{"Task/task1"}},
		{name: "summary count", typ: "Observation", params: "patient=p1&_summary=count", total: 8},
		{name: "ignored params", typ: "Observation", params: "_id=bp1&_format=json&_elements=id", matches: []string{"Observation/bp1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params, err := url.ParseQuery(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			page, err := s.Search(context.Background(), tenantA, store.Query{Type: tc.typ, Params: params, Strict: true, LastN: tc.lastN})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(page.Matches); !slices.Equal(got, tc.matches) && (len(got) > 0 || len(tc.matches) > 0) {
				t.Errorf("matches %v, want %v", got, tc.matches)
			}
			if got := ids(page.Included); !slices.Equal(got, tc.included) && (len(got) > 0 || len(tc.included) > 0) {
				t.Errorf("included %v, want %v", got, tc.included)
			}
			total := tc.total
			if total == 0 {
				total = len(tc.matches)
			}
			if page.Total != total {
				t.Errorf("total %d, want %d", page.Total, total)
			}
		})
	}
}

func testSearchR4Addressbook(t *testing.T, open Opener) {
	s := open(t, fhir.R4)
	loadFixtures(t, s, tenantA, []string{
		`{"resourceType":"Organization","id":"o1","identifier":[{"system":"urn:oid:2.16.528.1.1007.3.3","value":"00000001"}],"endpoint":[{"reference":"Endpoint/e1"}]}`,
		`{"resourceType":"Endpoint","id":"e1","status":"active","managingOrganization":{"reference":"Organization/o1"},"payloadType":[{"coding":[{"system":"http://nuts-foundation.github.io/nl-generic-functions-ig/CodeSystem/nl-gf-data-exchange-capabilities","code":"bgz"}]}],"connectionType":{"code":"hl7-fhir-rest"},"address":"https://example.org/fhir"}`,
		`{"resourceType":"Endpoint","id":"e2","status":"off","payloadType":[{"coding":[{"code":"bgz"}]}],"connectionType":{"code":"hl7-fhir-rest"},"address":"https://example.org/old"}`,
		`{"resourceType":"Observation","id":"obs","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p"},"effectiveInstant":"2024-01-01T00:00:00.000Z"}`,
	})
	for _, tc := range []struct {
		params            string
		matches, included []string
	}{
		{"identifier=http://fhir.nl/fhir/NamingSystem/ura|00000001&_include=Organization:endpoint", []string{"Organization/o1"}, []string{"Endpoint/e1"}},
		{"organization.identifier=http://fhir.nl/fhir/NamingSystem/ura|00000001", []string{"Endpoint/e1"}, nil},
		{"payload-type=bgz&status=active", []string{"Endpoint/e1"}, nil},
		{"patient=p&date=2024", []string{"Observation/obs"}, nil},
	} {
		params, _ := url.ParseQuery(tc.params)
		typ := "Endpoint"
		switch {
		case strings.HasPrefix(tc.params, "identifier"):
			typ = "Organization"
		case strings.HasPrefix(tc.params, "patient"):
			typ = "Observation"
		}
		page, err := s.Search(context.Background(), tenantA, store.Query{Type: typ, Params: params, Strict: true})
		if err != nil {
			t.Fatalf("%s: %v", tc.params, err)
		}
		if got := ids(page.Matches); !slices.Equal(got, tc.matches) {
			t.Errorf("%s: matches %v, want %v", tc.params, got, tc.matches)
		}
		if got := ids(page.Included); len(got)+len(tc.included) > 0 && !slices.Equal(got, tc.included) {
			t.Errorf("%s: included %v, want %v", tc.params, got, tc.included)
		}
	}
}

func testSearchErrors(t *testing.T, open Opener) {
	s := open(t, fhir.STU3)
	loadFixtures(t, s, tenantA, bgzFixtures[:2])
	for _, tc := range []struct {
		typ, params string
		bad         string // the parameter named in the error (and in Ignored)
		unknown     bool   // skipped in lenient mode; a malformed known parameter never is
	}{
		{"Patient", "foo=bar", "foo", true},
		{"Observation", "max=3", "max", true},
		{"Patient", "birthdate=2020-13", "birthdate", false},
		{"Patient", "birthdate=yesterday", "birthdate", false},
		{"Patient", "identifier:exact=1", "identifier:exact", false},
		{"Patient", "identifier=|", "identifier", false},
		{"Patient", "_count=many", "_count", false},
		{"Patient", "_sort=nope", "_sort", false},
		{"Patient", "_include=Patient:name", "_include", false},
		{"Patient", "_include=Observation:subject", "_include", false},
		{"Patient", "family.identifier=1", "family.identifier", false},
		{"Observation", "patient.nope=1", "patient.nope", false},
		{"Observation", "value-quantity=abc", "value-quantity", false},
	} {
		t.Run(tc.params, func(t *testing.T) {
			params, _ := url.ParseQuery(tc.params)
			_, err := s.Search(context.Background(), tenantA, store.Query{Type: tc.typ, Params: params, Strict: true})
			if !errors.Is(err, store.ErrInvalidSearch) || !strings.Contains(err.Error(), `"`+tc.bad+`"`) {
				t.Fatalf("strict: %v", err)
			}
			page, err := s.Search(context.Background(), tenantA, store.Query{Type: tc.typ, Params: params})
			if !tc.unknown {
				if !errors.Is(err, store.ErrInvalidSearch) || !strings.Contains(err.Error(), `"`+tc.bad+`"`) {
					t.Fatalf("lenient: %v (%d matches): a malformed value must not widen the search", err, len(page.Matches))
				}
				return
			}
			if err != nil || !slices.Equal(page.Ignored, []string{tc.bad}) {
				t.Fatalf("lenient: %v %+v", err, page.Ignored)
			}
		})
	}
	if _, err := s.Search(context.Background(), tenantA, store.Query{Type: "Nope"}); !errors.Is(err, store.ErrInvalidSearch) {
		t.Fatalf("unknown type: %v", err)
	}
}

func testPagingAndSort(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)
	for _, d := range []string{"2020-01-05", "2020-01-01", "2020-01-03", "2020-01-02", "2020-01-04"} {
		put(t, s, tenantA, `{"resourceType":"Observation","id":"o`+d[len(d)-1:]+`","status":"final","code":{"text":"x"},"effectiveDateTime":"`+d+`"}`)
	}
	var got []string
	offset := 0
	for offset >= 0 {
		page, err := s.Search(ctx, tenantA, store.Query{Type: "Observation", Params: url.Values{
			"_sort": {"-date"}, "_count": {"2"}, "_offset": {strconv.Itoa(offset)},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 5 {
			t.Fatalf("total %d", page.Total)
		}
		for _, m := range page.Matches {
			got = append(got, m.ID)
		}
		offset = page.NextOffset
	}
	if want := []string{"o5", "o4", "o3", "o2", "o1"}; !slices.Equal(got, want) {
		t.Fatalf("sorted pages %v, want %v", got, want)
	}
	// Default order: lastUpdated then id, i.e. insertion order here.
	page, err := s.Search(ctx, tenantA, store.Query{Type: "Observation", Params: url.Values{"_count": {"0"}}})
	if err != nil || page.Total != 5 || len(page.Matches) != 0 {
		t.Fatalf("_count=0: %v %+v", err, page)
	}
	page, err = s.Search(ctx, tenantA, store.Query{Type: "Observation", Params: url.Values{"_sort": {"_id"}}})
	if err != nil || ids(page.Matches)[0] != "Observation/o1" || page.Matches[0].ID != "o1" || page.NextOffset != -1 {
		t.Fatalf("_sort=_id: %v %+v", err, page)
	}
}
