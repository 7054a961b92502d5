package notifiedpull

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestReadLimited(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		declared int64 // Content-Length; -1 unknown
		max      int64
		wantErr  bool
	}{
		{name: "declared", body: "0123456789", declared: 10, max: 10},
		{name: "unknown length", body: "0123456789", declared: -1, max: 10},
		{name: "over the limit, unknown length", body: "0123456789x", declared: -1, max: 10, wantErr: true},
		{name: "over the limit, declared", body: "0123456789x", declared: 11, max: 10, wantErr: true},
		{name: "longer than declared", body: "0123456789x", declared: 4, max: 10, wantErr: true},
		{name: "shorter than declared", body: "0123", declared: 10, max: 10},
		{name: "empty", body: "", declared: 0, max: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{Body: io.NopCloser(strings.NewReader(tc.body)), ContentLength: tc.declared}
			got, err := readLimited(resp, tc.max)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("read %q past the limit of %d", got, tc.max)
				}
				return
			}
			if err != nil || string(got) != tc.body {
				t.Fatalf("readLimited = %q, %v; want %q", got, err, tc.body)
			}
		})
	}
}
