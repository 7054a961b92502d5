package notifiedpull

import (
	"encoding/json"
	"strings"
	"testing"
)

var scanSeeds = []string{
	`{}`, `[]`, `""`, `0`, `-0.5e+10`, `1E3`, `true`, `false`, `null`, ` {"a" : [1, 2.0, "x\u00e9\n\"", {"b":null}] } `,
	`01`, `1.`, `.5`, `-`, `1e`, `+1`, `"\x"`, `"\u12g4"`, "\"a\tb\"", `{"a":1,}`, `[1,]`, `{"a" 1}`, `{a:1}`, `[1 2]`,
	`{"a":1}}`, `nul`, `truex`, `"abc`, `{"a":`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), "\"\xff\xfe\"", ``, ` `,
}

func TestValidJSON(t *testing.T) {
	for _, s := range scanSeeds {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%.40q) = %v, json.Valid %v", s, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	body := []byte(searchPageSeeds[0])
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !validJSON(body) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkJSONValid(b *testing.B) {
	body := []byte(searchPageSeeds[0])
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !json.Valid(body) {
			b.Fatal("invalid")
		}
	}
}
