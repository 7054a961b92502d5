package sqlstore

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestDecodeValid: decodeValid decodes as encoding/json with UseNumber.
func TestDecodeValid(t *testing.T) {
	for _, in := range []string{
		`{}`, `[]`, `""`, `0`, `-1.5e+3`, `true`, `false`, `null`,
		` { "a" : [ 1 , 2.50 , { } , [ ] , null , true ] , "b" : { "c" : "d" } } `,
		`{"a":1,"a":2}`,
		`"caf\u00e9 \"quoted\" \\ \/ \n\t \ud83d\ude00"`,
		`"é ü 日本"`,
		"\"invalid \xff utf-8\"",
		`"lone surrogate \ud800"`,
		`{"k\u00e9y":"v","kéy2":"w"}`,
		`[[[["deep"]]], {"x": [{"y": [0.1, -0, 1E9]}]}]`,
	} {
		got, err := decodeValid([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		dec := json.NewDecoder(strings.NewReader(in))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %#v, want %#v", in, got, want)
		}
	}
}

var validJSONCases = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `-`, `01`, `1.`, `.5`, `1.5e`, `1e+`, `1E-7`, `-12.50e+30`, `+1`, `1 2`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `NaN`,
	`{"a":1}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1 "b":2}`, `[1,]`, `[,1]`, `[1 2]`, ` [ 1 , [ ] , { } ] `,
	`"\u00e9"`, `"\u00g9"`, `"\u00e"`, `"\x"`, `"\/\b\f\n\r\t\"\\"`, "\"tab\tinside\"", "\"\x7f\"", "\"\xff\xfe\"", `"unterminated`, `"a\"`,
	`{"resourceType":"Patient"} {}`, `{"resourceType":"Patient",}`, `[[[[[]]]]]`, `{"a":[{"b":{"c":[null,true,false,"x",1]}}]}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
}

// TestValidJSON: validJSON answers as json.Valid.
func TestValidJSON(t *testing.T) {
	for _, in := range validJSONCases {
		if got, want := validJSON([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("validJSON(%.40q) = %v, json.Valid %v", in, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, in := range validJSONCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Errorf("validJSON(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}
