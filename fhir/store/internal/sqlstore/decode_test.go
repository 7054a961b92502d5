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
