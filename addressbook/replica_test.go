package addressbook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// resolve asserts what the replica resolves for ura's notification endpoint.
func resolve(t *testing.T, r EndpointResolver, ura, want string) {
	t.Helper()
	got, err := r.Endpoint(context.Background(), ura, PayloadNotification, "3.0")
	if want == "" {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Endpoint(%s) = %q, %v; want ErrNotFound", ura, got, err)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("Endpoint(%s) = %q, %v; want %q", ura, got, err, want)
	}
}

func TestReplicaInitialLoadAcrossPages(t *testing.T) {
	p := newPKI(t)
	var entries []Entry
	for i := range 25 {
		entries = append(entries, orgEntry(i))
	}
	d := startDirectory(t, p, entries...)
	r := d.replica(t, ReplicaConfig{PageSize: 7})
	ctx := context.Background()

	st, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 25 Organizations (4 pages), 50 Endpoints (8 pages), and one empty
	// page for each of the 5 other types.
	if !st.Initial || st.Pages != 4+8+5 || st.Versions != 75 || st.Upserted != 75 || st.Deleted != 0 || st.Ignored != 0 {
		t.Errorf("initial sync: %+v", st)
	}
	for _, u := range d.requests() {
		if strings.Contains(u, "_since") {
			t.Errorf("initial load asked %s; want the whole history", u)
		}
	}
	counts, err := r.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"Organization": 25, "Endpoint": 50}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
	for _, i := range []int{0, 13, 24} {
		e := orgEntry(i)
		resolve(t, r, e.URA, e.Endpoints[0].Address)
	}
	resolve(t, r, "90000099", "")
	if last, err := r.LastSync(ctx); err != nil || last.IsZero() {
		t.Errorf("LastSync = %v, %v", last, err)
	}
}

func TestReplicaIncremental(t *testing.T) {
	p := newPKI(t)
	d := startDirectory(t, p, orgEntry(1), orgEntry(2), orgEntry(3))
	r := d.replica(t, ReplicaConfig{PageSize: 2})
	ctx := context.Background()
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	d.requests()

	// A new organisation, a moved endpoint, a deleted endpoint and a
	// deleted organisation.
	moved := orgEntry(1)
	moved.Endpoints[0].Address = "https://moved.example/fhir/Task"
	if err := d.ab.Load(ctx, orgEntry(4), moved); err != nil {
		t.Fatal(err)
	}
	if err := d.store.Delete(ctx, tenant, "Endpoint", "ep-90000002-n"); err != nil {
		t.Fatal(err)
	}
	if err := d.store.Delete(ctx, tenant, "Organization", "org-90000003"); err != nil {
		t.Fatal(err)
	}
	st, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Org 4 with 2 endpoints; org 1's moved endpoint (its Organization and
	// other endpoint, loaded again unchanged, get no new version).
	if st.Initial || st.Deleted != 2 || st.Upserted != 3+1 {
		t.Errorf("incremental sync: %+v", st)
	}
	// Types the directory had versions of are followed from their cursor;
	// types it had none of are read whole again (an empty page).
	for _, u := range d.requests() {
		if (strings.Contains(u, "/Organization/") || strings.Contains(u, "/Endpoint/")) && !strings.Contains(u, "_since=") {
			t.Errorf("incremental sync asked %s without _since", u)
		}
	}
	resolve(t, r, "90000001", "https://moved.example/fhir/Task")
	resolve(t, r, "90000002", "") // its notification endpoint is gone
	resolve(t, r, "90000003", "")
	resolve(t, r, "90000004", orgEntry(4).Endpoints[0].Address)
	if got, err := r.Endpoint(ctx, "90000002", PayloadBgZServer, "3.0"); err != nil || got != orgEntry(2).Endpoints[1].Address {
		t.Errorf("BgZ endpoint of 90000002 = %q, %v", got, err)
	}

	// Nothing changed: the overlap re-reads the newest versions, and applies
	// nothing.
	st, err = r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Upserted != 0 || st.Deleted != 0 {
		t.Errorf("sync without changes: %+v", st)
	}
	// A recreated organisation comes back.
	if err := d.ab.Load(ctx, orgEntry(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	resolve(t, r, "90000003", orgEntry(3).Endpoints[0].Address)
}

func TestReplicaAntiSpoofing(t *testing.T) {
	p := newPKI(t)
	a, b := orgEntry(1), orgEntry(2)
	// An organisation that lists another's endpoint: the Endpoint names its
	// own managing organisation, so it does not serve the impostor.
	thief := Entry{ID: "thief", URA: "90000003", Name: "Thief"}
	d := startDirectory(t, p, a, b, thief)
	ctx := context.Background()
	if err := d.ab.LoadResources(ctx, json.RawMessage(`{"resourceType":"Organization","id":"thief",
		"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"90000003"}],
		"endpoint":[{"reference":"Endpoint/ep-90000001-n"}]}`)); err != nil {
		t.Fatal(err)
	}
	// This directory is the authority for 90000001 and 90000003 only.
	r := d.replica(t, ReplicaConfig{Holds: func(ura string) bool { return ura != b.URA }})
	st, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ignored != 1 {
		t.Errorf("ignored = %d, want 1 (the entry for 90000002)", st.Ignored)
	}
	resolve(t, r, a.URA, a.Endpoints[0].Address)
	resolve(t, r, b.URA, "")
	resolve(t, r, "90000003", "")
}

// failing changes the directory so that the next sync fails on its third
// request, in the way named.
var failures = []struct {
	name string
	hook func(w http.ResponseWriter, r *http.Request) bool
	want error
}{
	{"server error", func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "boom", http.StatusInternalServerError)
		return true
	}, nil},
	{"not a Bundle", func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`{"resourceType":"OperationOutcome"}`))
		return true
	}, ErrMalformed},
	{"not JSON", func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`<html>`))
		return true
	}, ErrMalformed},
	{"searchset instead of history", func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[]}`))
		return true
	}, ErrMalformed},
	{"entry without request", func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Endpoint","id":"x"}}]}`))
		return true
	}, ErrMalformed},
	{"entry of another type", func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Patient","id":"x"},"request":{"method":"PUT","url":"Patient/x"}}]}`))
		return true
	}, ErrMalformed},
	{"bad lastUpdated", func(w http.ResponseWriter, r *http.Request) bool {
		typ := strings.Split(strings.TrimPrefix(r.URL.Path, "/fhir/"), "/")[0]
		w.Write([]byte(`{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"` + typ +
			`","id":"x","meta":{"lastUpdated":"yesterday"}},"request":{"method":"PUT","url":"` + typ + `/x"}}]}`))
		return true
	}, ErrMalformed},
	{"next link leaves the directory", func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`{"resourceType":"Bundle","type":"history","link":[{"relation":"next","url":"https://elsewhere.example/fhir/Organization/_history?_offset=3"}]}`))
		return true
	}, ErrMalformed},
	{"cancelled", nil, context.Canceled},
}

func TestReplicaInterruptedSyncChangesNothing(t *testing.T) {
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			var entries []Entry
			for i := range 6 {
				entries = append(entries, orgEntry(i))
			}
			d := startDirectory(t, p, entries...)
			r := d.replica(t, ReplicaConfig{PageSize: 2})
			ctx := context.Background()
			if _, err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, r)
			// Six changes: three pages of Organization history.
			for i := range 6 {
				e := orgEntry(i)
				e.Endpoints[0].Address = "https://new.example/" + e.URA
				e.Name = "Renamed"
				if err := d.ab.Load(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			syncCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			n := 0
			d.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				n++
				if n != 3 {
					return false
				}
				if tc.hook == nil {
					cancel()
					<-r.Context().Done() // the client gave up
					return true
				}
				return tc.hook(w, r)
			})
			_, err := r.Sync(syncCtx)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("sync = %v, want %v", err, tc.want)
			}
			if after := snapshot(t, r); !reflect.DeepEqual(before, after) {
				t.Errorf("the failed sync changed the replica:\nbefore %v\nafter  %v", before, after)
			}
			resolve(t, r, "90000001", orgEntry(1).Endpoints[0].Address)

			// The directory recovers: the next sync applies everything.
			d.setHook(nil)
			st, err := r.Sync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Upserted != 18 { // 6 Organizations, 12 Endpoints
				t.Errorf("recovery sync: %+v", st)
			}
			resolve(t, r, "90000001", "https://new.example/90000001")
		})
	}
}

// snapshot is the replica's whole state.
func snapshot(t *testing.T, r *Replica) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, q := range []string{
		`SELECT 'res/' || type || '/' || id, version || '@' || updated || ':' || body FROM replica_resource`,
		`SELECT 'ura/' || ura || '/' || org_id, '' FROM replica_org_ura`,
		`SELECT 'cursor/' || type, since FROM replica_cursor`,
		`SELECT 'synced', synced_at FROM replica_sync`,
	} {
		rows, err := r.db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			out[k] = v
		}
		rows.Close()
	}
	return out
}

func TestReplicaInterruptedInitialLoadLeavesItEmpty(t *testing.T) {
	p := newPKI(t)
	d := startDirectory(t, p, orgEntry(1), orgEntry(2), orgEntry(3))
	r := d.replica(t, ReplicaConfig{PageSize: 1})
	n := 0
	d.setHook(func(w http.ResponseWriter, _ *http.Request) bool {
		if n++; n == 3 {
			http.Error(w, "boom", http.StatusBadGateway)
			return true
		}
		return false
	})
	if _, err := r.Sync(context.Background()); err == nil {
		t.Fatal("sync succeeded over a failing page")
	}
	if s := snapshot(t, r); len(s) != 0 {
		t.Errorf("replica after a failed initial load: %v", s)
	}
	d.setHook(nil)
	st, err := r.Sync(context.Background())
	if err != nil || !st.Initial {
		t.Errorf("retried initial load: %+v, %v", st, err)
	}
}

func TestReplicaHonoursRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		refusals   int
		wantWait   time.Duration
		wantErr    bool
	}{
		{"seconds", "7", 2, 7 * time.Second, false},
		{"http date", time.Unix(1_700_000_030, 0).UTC().Format(http.TimeFormat), 1, 30 * time.Second, false},
		{"capped", "86400", 1, time.Minute, false},
		{"no header", "", 1, time.Second, false},
		{"gives up", "1", 100, time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			d := startDirectory(t, p, orgEntry(1))
			r := d.replica(t, ReplicaConfig{Now: func() time.Time { return time.Unix(1_700_000_000, 0) }})
			var waits []time.Duration
			r.sleep = func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return nil
			}
			n := 0
			d.setHook(func(w http.ResponseWriter, _ *http.Request) bool {
				if n++; n > tc.refusals {
					return false
				}
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			})
			st, err := r.Sync(context.Background())
			if tc.wantErr {
				if err == nil {
					t.Fatal("sync succeeded against a directory that always refuses")
				}
				if len(waits) != maxRetries || n != maxRetries+1 {
					t.Errorf("%d waits, %d requests; want %d, %d", len(waits), n, maxRetries, maxRetries+1)
				}
				if s := snapshot(t, r); len(s) != 0 {
					t.Errorf("replica after a refused sync: %v", s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(waits) != tc.refusals || waits[0] != tc.wantWait || st.Retries != tc.refusals {
				t.Errorf("waits %v, retries %d; want %d × %v", waits, st.Retries, tc.refusals, tc.wantWait)
			}
			resolve(t, r, "90000001", orgEntry(1).Endpoints[0].Address)
		})
	}
}

func TestSameDirectory(t *testing.T) {
	r := &Replica{src: &Client{Base: "https://dir.example:8443/fhir"}}
	for _, tc := range []struct {
		link string
		ok   bool
	}{
		{"https://dir.example:8443/fhir/Organization/_history?_offset=5", true},
		{"https://DIR.example:8443/fhir/Endpoint/_history", true},
		{"http://dir.example:8443/fhir/Organization/_history", false},
		{"https://dir.example:9443/fhir/Organization/_history", false},
		{"https://dir.example:8443/fhirx/Organization/_history", false},
		{"https://dir.example:8443/fhir/../admin", false},
		{"https://dir.example:8443/other", false},
		{"https://user@dir.example:8443/fhir/Organization", false},
		{"/fhir/Organization/_history", false},
		{"https://evil.example/fhir/Organization/_history", false},
	} {
		if err := r.sameDirectory(tc.link); (err == nil) != tc.ok {
			t.Errorf("sameDirectory(%q) = %v, want ok=%v", tc.link, err, tc.ok)
		}
	}
}
