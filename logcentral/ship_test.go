package logcentral

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
)

func newShipper(t testing.TB, log *audit.Store, dir, url string, client *http.Client) *audit.Shipper {
	t.Helper()
	sh, err := audit.NewShipper(audit.ShipperConfig{Store: log, URL: url, HTTP: client, CursorFile: filepath.Join(dir, "ship.cursor"),
		Batch: 100, Poll: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// run starts sh and returns a function that stops it and waits.
func run(sh *audit.Shipper) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { sh.Run(ctx) })
	return func() { cancel(); wg.Wait() }
}

// checkCentralChain reads everything the central log holds of node and
// checks it is seqs 1..n, each hashing right and linking to the one before.
func checkCentralChain(t *testing.T, st Store, node string, n int64) {
	t.Helper()
	var all []audit.Entry
	for after := int64(0); ; {
		page, err := st.Entries(context.Background(), node, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
	if int64(len(all)) != n {
		t.Fatalf("central log holds %d records of %s, want %d", len(all), node, n)
	}
	for i, e := range all {
		if e.Seq != int64(i+1) {
			t.Fatalf("record %d has seq %d", i, e.Seq)
		}
		if _, err := e.Check(); err != nil {
			t.Fatal(err)
		}
		if i > 0 && e.Prev != all[i-1].Hash {
			t.Fatalf("seq %d does not link to seq %d", e.Seq, e.Seq-1)
		}
	}
}

func TestShipperSurvivesReceiverOutageAndNodeRestart(t *testing.T) {
	p := newTestPKI(t)
	central := stores(t)["sqlite"](t)
	recv := startReceiver(t, p, central)
	dir := t.TempDir()
	log := nodeLog(t, dir)
	sh := newShipper(t, log, dir, recv.url(), p.client(p.nodeA))
	stop := run(sh)

	appendN(t, log, 0, 250)
	eventually(t, "the first 250 records acknowledged", func() bool { return sh.Acknowledged() == 250 })

	// The receiver goes away: the node's Appends go on, unhindered, and the
	// shipper falls behind by exactly what was written since.
	recv.stop()
	appendN(t, log, 250, 400)
	if lag := sh.Lag(); lag != 400 {
		t.Fatalf("lag %d with the receiver down, want 400", lag)
	}
	eventually(t, "failed shipments counted", func() bool { return sh.Failures() > 0 })

	recv.start()
	eventually(t, "all 650 acknowledged", func() bool { return sh.Acknowledged() == 650 })
	if sh.Lag() != 0 {
		t.Fatalf("lag %d after catching up", sh.Lag())
	}
	checkCentralChain(t, central, uraA, 650)

	// The node restarts: the new shipper starts at the durable cursor and
	// sends only what came after it.
	stop()
	appendN(t, log, 650, 50)
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	log = nodeLog(t, dir)
	sh = newShipper(t, log, dir, recv.url(), p.client(p.nodeA))
	if sh.Acknowledged() != 650 {
		t.Fatalf("cursor after restart %d, want 650", sh.Acknowledged())
	}
	stop = run(sh)
	defer stop()
	eventually(t, "all 700 acknowledged", func() bool { return sh.Acknowledged() == 700 })
	checkCentralChain(t, central, uraA, 700)
	if d := recv.value("schakel_logcentral_duplicate_records_total", "node", uraA); d != 0 {
		t.Fatalf("%v records sent twice", d)
	}
	if n := recv.value("schakel_logcentral_records_total", "node", uraA); n != 700 {
		t.Fatalf("%v records stored, want 700", n)
	}
}

// TestShipperResumesFromTheCentralPosition: a cursor lost with the node's
// disk (or a central log restored from an older backup) is corrected by
// the position the central log reports, without losing or doubling records.
func TestShipperResumesFromTheCentralPosition(t *testing.T) {
	p := newTestPKI(t)
	central := stores(t)["sqlite"](t)
	recv := startReceiver(t, p, central)
	dir := t.TempDir()
	log := nodeLog(t, dir)
	appendN(t, log, 0, 120)
	sh := newShipper(t, log, dir, recv.url(), p.client(p.nodeA))
	for sh.Acknowledged() < 120 {
		if _, err := sh.ShipOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// A fresh cursor: the shipper sends seq 1.. again; the receiver knows them.
	other := newShipper(t, log, t.TempDir(), recv.url(), p.client(p.nodeA))
	if _, err := other.ShipOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if other.Acknowledged() != 120 {
		t.Fatalf("after a resend the cursor is %d, want the central 120", other.Acknowledged())
	}
	checkCentralChain(t, central, uraA, 120)
}

// post sends a batch as node cert and returns the status and the decoded answer.
func post(t *testing.T, c *http.Client, url string, entries []audit.Entry) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(Batch{Entries: entries})
	resp, err := c.Post(url+EntriesPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestReceiverRefusesBatchesThatBreakTheChain(t *testing.T) {
	p := newTestPKI(t)
	central := stores(t)["sqlite"](t)
	recv := startReceiver(t, p, central)
	ctx := context.Background()
	log := nodeLog(t, t.TempDir())
	appendN(t, log, 0, 10)
	entries, err := log.Entries(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// Another log: the same seqs, another chain (a fork).
	fork := nodeLog(t, t.TempDir())
	appendN(t, fork, 100, 10)
	forked, err := fork.Entries(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	a := p.client(p.nodeA)
	if code, out := post(t, a, recv.url(), entries[:4]); code != http.StatusOK || out["acknowledged"] != 4.0 {
		t.Fatalf("first batch: %d %v", code, out)
	}
	changed := append([]audit.Entry(nil), entries[4:6]...)
	changed[0].Body = strings.Replace(changed[0].Body, `"outcome":200`, `"outcome":403`, 1)
	cases := []struct {
		name    string
		batch   []audit.Entry
		status  int
		reason  string
		counted string // refusal counter label
	}{
		{"gap: seq 5 missing", entries[5:7], http.StatusConflict, RefusedGap, RefusedGap},
		{"fork: another chain at seq 5", forked[4:6], http.StatusConflict, RefusedFork, RefusedFork},
		{"fork: another record at an acknowledged seq", forked[2:4], http.StatusConflict, RefusedFork, RefusedFork},
		{"changed body, hash kept", changed, http.StatusConflict, RefusedBroken, RefusedBroken},
		{"not consecutive within the batch", []audit.Entry{entries[4], entries[6]}, http.StatusConflict, RefusedBroken, RefusedBroken},
		{"empty batch", nil, http.StatusBadRequest, "", RefusedBroken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := recv.value("schakel_logcentral_refused_batches_total", "node", uraA, "reason", tc.counted)
			code, out := post(t, a, recv.url(), tc.batch)
			if code != tc.status {
				t.Fatalf("status %d (%v), want %d", code, out, tc.status)
			}
			if tc.reason != "" && (out["reason"] != tc.reason || out["acknowledged"] != 4.0) {
				t.Fatalf("answer %v, want reason %s at acknowledged 4", out, tc.reason)
			}
			if after := recv.value("schakel_logcentral_refused_batches_total", "node", uraA, "reason", tc.counted); after != before+1 {
				t.Fatalf("refusal not reported (counter %v → %v)", before, after)
			}
		})
	}
	// A resend after a lost acknowledgement is no fork: acknowledged again.
	if code, out := post(t, a, recv.url(), entries[2:6]); code != http.StatusOK || out["acknowledged"] != 6.0 || out["duplicates"] != 2.0 {
		t.Fatalf("resend with two new: %d %v", code, out)
	}
	// Node B's certificate ships into B's chain, never A's.
	if code, out := post(t, p.client(p.nodeB), recv.url(), entries[6:8]); code != http.StatusConflict || out["reason"] != RefusedGap {
		t.Fatalf("node B continuing node A's chain: %d %v", code, out)
	}
	checkCentralChain(t, central, uraA, 6)
}

// value reads a metric of the receiver as Prometheus would scrape it: the
// series of name whose labels include all of labels (name, value pairs).
func (r *receiver) value(name string, labels ...string) float64 {
	families, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
