package node

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
	"github.com/schakel-nl/schakel/localization"
)

// TestHitKeepers is the contract of the hit memory, on every keeper: memory
// always, the PostgreSQL table when SCHAKEL_TEST_POSTGRES is set, where a
// second keeper on the same schema (another replica) finds what the first
// remembered.
func TestHitKeepers(t *testing.T) {
	type keepers func(t *testing.T, now func() time.Time) (first, second hitKeeper)
	backends := map[string]keepers{
		"memory": func(_ *testing.T, now func() time.Time) (hitKeeper, hitKeeper) {
			m := newHitMemory(now)
			return m, m
		},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		backends["postgres"] = func(t *testing.T, now func() time.Time) (hitKeeper, hitKeeper) {
			_, schema := pgtest.Schema(t, "hits_test_")
			open := func() hitKeeper {
				h, err := openHitTable(context.Background(), dsn, schema, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					t.Fatal(err)
				}
				h.now = now
				t.Cleanup(func() { h.Close() })
				return h
			}
			return open(), open()
		}
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			now := time.Now()
			first, second := open(t, func() time.Time { return now })
			const tenant, bsn = "00000001", "999911120"
			first.remember(tenant, bsn, localization.LocalizeResult{Salt: []byte("s1"), Holders: []localization.Holder{
				{URA: "00000011", Hit: fakeHit("00000011", localization.ScopeNational, now.Add(time.Minute))},
				{URA: "00000012", Hit: fakeHit("00000012", localization.ScopeNational, now.Add(2*time.Minute))},
				{URA: "00000013"}, // no hit
				{URA: "00000014", Hit: fakeHit("00000099", localization.ScopeNational, now.Add(time.Minute))}, // names another holder
			}})
			h, salt, ok := second.lookup(tenant, bsn, "00000011")
			if !ok || string(salt) != "s1" || h.hit.Holder != "00000011" || h.raw == "" {
				t.Fatalf("lookup: %+v %q %v; want the remembered hit and salt", h, salt, ok)
			}
			for _, tc := range []struct{ tenant, holder, why string }{
				{"00000002", "00000011", "another participant's localization"},
				{tenant, "00000013", "a holder named without a hit"},
				{tenant, "00000014", "a hit naming another holder"},
			} {
				if _, _, ok := second.lookup(tc.tenant, bsn, tc.holder); ok {
					t.Errorf("%s opens a consult", tc.why)
				}
			}
			now = now.Add(90 * time.Second)
			if _, _, ok := second.lookup(tenant, bsn, "00000011"); ok {
				t.Error("an expired hit opens a consult")
			}
			if _, _, ok := second.lookup(tenant, bsn, "00000012"); !ok {
				t.Error("a live hit is gone")
			}
			// A new localization replaces the last one.
			second.remember(tenant, bsn, localization.LocalizeResult{Salt: []byte("s2"), Holders: []localization.Holder{
				{URA: "00000013", Hit: fakeHit("00000013", localization.ScopeNational, now.Add(time.Minute))}}})
			if _, _, ok := first.lookup(tenant, bsn, "00000012"); ok {
				t.Error("a holder the last localization did not name opens a consult")
			}
			if _, salt, ok := first.lookup(tenant, bsn, "00000013"); !ok || string(salt) != "s2" {
				t.Errorf("the new localization's hit: %q %v", salt, ok)
			}
		})
	}
}
