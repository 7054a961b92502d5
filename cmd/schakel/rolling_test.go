package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// TestRollingRestart: every replica of both nodes is stopped (SIGTERM) and
// started again in turn, one at a time, as in a rolling upgrade, while
// participants' systems refer, send letters and consult through the
// balancers. No request fails: a stopping replica drains first (its health
// check fails while it still serves, until the balancer has taken it out
// of rotation), then finishes what it has accepted; every
// acknowledged referral completes and every letter is delivered once.
func TestRollingRestart(t *testing.T) {
	t.Setenv("SCHAKEL_LEASE", replicaLease.String())
	nw, procs := upReplicas(t, func(real string) string { return real })
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	gp := &xisClient{base: nw.InternalURL(network.GP.URA), token: nw.Token(network.GP.URA), http: hc}
	hosp := &xisClient{base: nw.InternalURL(network.Hospital.URA), token: nw.Token(network.Hospital.URA), http: hc}
	load := newReplicaLoad(nw, gp, hosp, "rolling")
	var stop atomic.Bool
	deadline := time.Now().Add(5 * time.Minute)
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		load.run(t, 3, func(int64) bool { return !stop.Load() && time.Now().Before(deadline) },
			func(int64) { time.Sleep(20 * time.Millisecond) })
	}()

	// One replica at a time: stopped, started again, ready, and back in
	// its balancer's rotation before the next.
	var restarted []*exec.Cmd
	for _, name := range []string{"hospital-node/1", "gp-node/1", "hospital-node/2", "gp-node/2"} {
		p := procs[name]
		time.Sleep(time.Second) // load on every replica first
		start := time.Now()
		if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !waitGone(p.PID) {
			t.Fatalf("%s did not stop on SIGTERM", name)
		}
		stopped := time.Since(start)
		internal := replicaInternal(t, p)
		restarted = append(restarted, restartReplica(t, p, internal))
		waitUntil(t, 30*time.Second, name+" ready again", func() (bool, string) {
			resp, err := http.Get("http://" + internal + "/readyz")
			if err != nil {
				return false, err.Error() + "\n" + logTail(p.Log, 40)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, string(b)
		})
		// Two passed checks bring it back into rotation.
		time.Sleep(3 * time.Second)
		t.Logf("%s stopped in %s, back after %s", name, stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	stop.Store(true)
	<-loaded
	t.Log("during the rolling restart, " + load.summary())
	for _, f := range append(load.failures, load.unexpected...) {
		t.Errorf("failed during the rolling restart: %s", f)
	}
	referrals, letters := load.referrals, load.letters
	if len(referrals) == 0 || len(letters) == 0 || load.reads == 0 {
		t.Fatalf("too little acknowledged to check: %d referrals, %d letters, %d reads", len(referrals), len(letters), load.reads)
	}

	// Every acknowledged referral completes, once.
	waitUntil(t, replicaTakeOver, "every acknowledged referral completed", func() (bool, string) {
		got := map[string][]string{}
		for _, r := range hosp.referrals(t, "received") {
			got[r.Identifier] = append(got[r.Identifier], r.Status)
		}
		var open []string
		for _, id := range referrals {
			if st := got[id]; len(st) != 1 || st[0] != notifiedpull.StatusCompleted {
				open = append(open, fmt.Sprintf("%s %v", id, st))
			}
		}
		return len(open) == 0, fmt.Sprint(open)
	})
	// Every acknowledged letter is delivered once.
	hospPush := &pushClient{base: hosp.base, token: hosp.token, http: hc}
	gpPush := &pushClient{base: gp.base, token: gp.token, http: hc}
	waitDelivered(t, hospPush, letters, time.Minute)
	checkOnce(t, hospPush, gpPush, letters)

	// Stopped, the log each node's replicas share holds one chain that
	// verifies, across the restarts.
	nw.StopProcesses()
	for _, c := range restarted {
		_ = c.Process.Signal(syscall.SIGTERM) // together: each drains first
	}
	for _, c := range restarted {
		if err := c.Wait(); err != nil {
			t.Errorf("a restarted replica after SIGTERM: %v", err)
		}
	}
	dir := filepath.Dir(filepath.Dir(procs["gp-node/1"].Log))
	verifyReplicaAudits(t, dir, "gp-node")
	verifyReplicaAudits(t, dir, "hospital-node")
}
