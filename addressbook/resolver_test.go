package addressbook

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	dir := func(name, url, replica string, uras ...string) DirectoryConfig {
		return DirectoryConfig{Name: name, URL: url, Replica: replica, URAs: uras}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"one directory for all", Config{[]DirectoryConfig{dir("lrza", "https://lrza/fhir", "a.db", "*")}}, ""},
		{"split", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "a.db", "90000001", "90000002"), dir("b", "https://b/fhir", "b.db", "*")}}, ""},
		{"none", Config{}, "no directories"},
		{"no name", Config{[]DirectoryConfig{dir("", "https://a/fhir", "a.db", "*")}}, "needs a name"},
		{"name twice", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "a.db", "90000001"), dir("a", "https://b/fhir", "b.db", "*")}}, "used twice"},
		{"plain http", Config{[]DirectoryConfig{dir("a", "http://a/fhir", "a.db", "*")}}, "https"},
		{"no replica", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "", "*")}}, "replica"},
		{"shared replica", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "x.db", "90000001"), dir("b", "https://b/fhir", "x.db", "*")}}, "used by another"},
		{"no URAs", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "a.db")}}, "uras"},
		{"bad URA", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "a.db", "123")}}, "8 digits"},
		{"URA held twice", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "a.db", "90000001"), dir("b", "https://b/fhir", "b.db", "90000001")}}, "held by both"},
		{"two wildcards", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "a.db", "*"), dir("b", "https://b/fhir", "b.db", "*")}}, "only one"},
		{"wildcard with URAs", Config{[]DirectoryConfig{dir("a", "https://a/fhir", "a.db", "*", "90000001")}}, "stands alone"},
		{"negative interval", Config{[]DirectoryConfig{{Name: "a", URL: "https://a/fhir", Replica: "a.db", URAs: []string{"*"}, Interval: -time.Second}}}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Validate() = %v, want %q", err, tc.err)
			}
		})
	}
}

// TestResolverTakesEachURAFromItsDirectory: two directories that both
// carry entries for both URAs; each URA resolves only from the directory
// configured to hold it.
func TestResolverTakesEachURAFromItsDirectory(t *testing.T) {
	p := newPKI(t)
	a, b := orgEntry(1), orgEntry(2)
	spoofA := a
	spoofA.ID, spoofA.Endpoints = "spoof-a", []EndpointSpec{{ID: "spoof-a-n", PayloadType: PayloadNotification, Address: "https://evil/a", FHIRVersion: "3.0"}}
	spoofB := b
	spoofB.ID, spoofB.Endpoints = "spoof-b", []EndpointSpec{{ID: "spoof-b-n", PayloadType: PayloadNotification, Address: "https://evil/b", FHIRVersion: "3.0"}}
	regional := startDirectory(t, p, a, spoofB)
	national := startDirectory(t, p, b, spoofA)

	tmp := t.TempDir()
	cfg := Config{Directories: []DirectoryConfig{
		{Name: "regional", URL: regional.base, URAs: []string{a.URA}, Replica: filepath.Join(tmp, "regional.db")},
		{Name: "national", URL: national.base, URAs: []string{AnyURA}, Replica: filepath.Join(tmp, "national.db")},
	}}
	ds, err := OpenDirectories(context.Background(), cfg, p.client(t, "90000000"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	for name, r := range ds.Replicas {
		st, err := r.Sync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Ignored != 1 {
			t.Errorf("%s ignored %d entries, want 1 (the spoofed one)", name, st.Ignored)
		}
	}
	resolve(t, ds, a.URA, a.Endpoints[0].Address)
	resolve(t, ds, b.URA, b.Endpoints[0].Address)
	if d, ok := ds.Authority(a.URA); !ok || d != "regional" {
		t.Errorf("Authority(%s) = %s, %v", a.URA, d, ok)
	}
	if d, ok := ds.Authority("90000077"); !ok || d != "national" {
		t.Errorf("Authority(90000077) = %s, %v", d, ok)
	}

	// Without a wildcard, a URA no directory lists is not resolved at all.
	only := Config{Directories: cfg.Directories[:1]}
	r, err := NewResolver(only, map[string]EndpointResolver{"regional": ds.Replicas["regional"]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Endpoint(context.Background(), b.URA, PayloadNotification, "3.0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("URA of no directory: %v", err)
	}
}

func TestSyncerDelay(t *testing.T) {
	s := &Syncer{Interval: time.Minute, MaxBackoff: 10 * time.Minute, Jitter: 0.2}
	for _, tc := range []struct {
		failures int
		r        float64
		want     time.Duration
	}{
		{0, 0.5, time.Minute},
		{0, 0, 54 * time.Second}, // -10%
		{0, 1, 66 * time.Second}, // +10%
		{1, 0.5, 5 * time.Second},
		{2, 0.5, 10 * time.Second},
		{5, 0.5, 80 * time.Second}, // past the interval: a failing directory is spared
		{9, 0.5, 10 * time.Minute},
		{200, 0.5, 10 * time.Minute},
	} {
		if got := s.delay(tc.failures, tc.r); got != tc.want {
			t.Errorf("delay(%d, %v) = %v, want %v", tc.failures, tc.r, got, tc.want)
		}
	}
	short := &Syncer{Interval: time.Second}
	if got := short.delay(1, 0.5); got != time.Second {
		t.Errorf("first backoff with a 1s interval = %v, want 1s", got)
	}
}

// TestSyncerKeepsGoingThroughFailures: a directory that fails twice, then
// recovers; the syncer reports the failures and then the sync.
func TestSyncerKeepsGoingThroughFailures(t *testing.T) {
	p := newPKI(t)
	d := startDirectory(t, p, orgEntry(1))
	r := d.replica(t, ReplicaConfig{})
	n := 0
	d.setHook(func(w http.ResponseWriter, _ *http.Request) bool {
		if n++; n <= 2 {
			http.Error(w, "down", http.StatusBadGateway)
			return true
		}
		return false
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var results []error
	s := &Syncer{Replica: r, Name: "test", Interval: time.Millisecond, OnSync: func(st SyncStats, err error) {
		results = append(results, err)
		if err == nil {
			cancel()
		}
	}}
	if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	if len(results) != 3 || results[0] == nil || results[1] == nil || results[2] != nil {
		t.Errorf("sync results = %v; want two failures, then success", results)
	}
	resolve(t, r, "90000001", orgEntry(1).Endpoints[0].Address)
}
