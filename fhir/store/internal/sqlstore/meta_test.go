package sqlstore

import (
	"testing"
	"time"
)

func TestWithMeta(t *testing.T) {
	lu := time.Date(2024, 5, 6, 7, 8, 9, 10_000_000, time.FixedZone("CEST", 7200))
	const head = `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-05-06T05:08:09.010Z"`
	for _, tc := range []struct{ in, want string }{
		{`{"resourceType":"Patient"}`, head + `}}`},
		{`{"id":"old","resourceType":"Patient","meta":null}`, head + `}}`},
		// Profiles, tags and every other member stay as written, in order.
		{`{"resourceType":"Patient","active" : true,"meta":{"profile":[ "a" ,"b"],"versionId":"9","tag":[{"code":"x"}]},"name":[{"given":["Ä"]}]}`,
			head + `,"profile":[ "a" ,"b"],"tag":[{"code":"x"}]},"active":true,"name":[{"given":["Ä"]}]}`},
	} {
		got, err := withMeta([]byte(tc.in), "p1", "2", lu)
		if err != nil || string(got) != tc.want {
			t.Errorf("withMeta(%s)\n got %s %v\nwant %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`[]`, `{"resourceType":"Patient","meta":[]}`, `{"resourceType":"Patient","meta":{"a":}}`} {
		if _, err := withMeta([]byte(bad), "p1", "1", lu); err == nil {
			t.Errorf("withMeta(%s) accepted", bad)
		}
	}
}
