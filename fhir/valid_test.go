package fhir

import (
	"encoding/json"
	"strings"
	"testing"
)

var scanSeeds = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `-`, `01`, `1.`, `.5`, `1.5e`, `1e+`, `1E-7`, `-12.50e+30`, `+1`, `1 2`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `NaN`,
	`{"a":1}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1 "b":2}`, `[1,]`, `[,1]`, `[1 2]`, ` [ 1 , [ ] , { } ] `,
	`"\u00e9"`, `"\u00g9"`, `"\u00e"`, `"\x"`, `"\/\b\f\n\r\t\"\\"`, "\"tab\tinside\"", "\"\x7f\"", "\"\xff\xfe\"", `"unterminated`, `"a\"`,
	`{"resourceType":"Patient"} {}`, `{"resourceType":"Patient",}`, `[[[[[]]]]]`, `{"a":[{"b":{"c":[null,true,false,"x",1]}}]}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
	`{}`, `[]`, `""`, `0`, `-0.5e+10`, `1E3`, `true`, `false`, `null`, ` {"a" : [1, 2.0, "x\u00e9\n\"", {"b":null}] } `,
	`01`, `1.`, `.5`, `-`, `1e`, `+1`, `"\x"`, `"\u12g4"`, "\"a\tb\"", `{"a":1,}`, `[1,]`, `{"a" 1}`, `{a:1}`, `[1 2]`,
	`{"a":1}}`, `nul`, `truex`, `"abc`, `{"a":`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), "\"\xff\xfe\"", ``, ` `,
}

func TestValidJSON(t *testing.T) {
	for _, s := range scanSeeds {
		if got, want := ValidJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("ValidJSON(%.40q) = %v, json.Valid %v", s, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := ValidJSON(b), json.Valid(b); got != want {
			t.Fatalf("ValidJSON(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	body := validBench
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !ValidJSON(body) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkJSONValid(b *testing.B) {
	body := validBench
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !json.Valid(body) {
			b.Fatal("invalid")
		}
	}
}

// validBench is a searchset answer of the size a BgZ query returns.
var validBench = []byte(`{"resourceType":"Bundle","type":"searchset","total":3,"entry":[` +
	strings.Repeat(`{"fullUrl":"https://example.org/fhir/Observation/1","resource":{"resourceType":"Observation",`+
		`"id":"1","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00.000Z"},"status":"final",`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body height"}]},`+
		`"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2025-12-01",`+
		`"valueQuantity":{"value":182.5,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}},`+
		`"search":{"mode":"match"}},`, 2) +
	`{"fullUrl":"https://example.org/fhir/Patient/p1","resource":{"resourceType":"Patient","id":"p1",` +
	`"name":[{"family":"Jansen","given":["Anna"]}]},"search":{"mode":"include"}}]}`)
