package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/push"
)

// TestRollingRestart: every replica of both nodes is stopped (SIGTERM) and
// started again in turn, one at a time, as in a rolling upgrade, while
// participants' systems refer, send letters and consult through the
// balancers. No request fails: a stopping replica finishes what it has
// accepted and the balancer sends the rest to the other; every
// acknowledged referral completes and every letter is delivered once.
func TestRollingRestart(t *testing.T) {
	t.Setenv("SCHAKEL_LEASE", replicaLease.String())
	nw, procs := upReplicas(t, func(real string) string { return real })
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	gp := &xisClient{base: nw.InternalURL(network.GP.URA), token: nw.Token(network.GP.URA), http: hc}
	hosp := &xisClient{base: nw.InternalURL(network.Hospital.URA), token: nw.Token(network.Hospital.URA), http: hc}
	patient := nw.Patients[0]
	_, born, _ := nl.Patient(patient.Resources[0])

	var (
		mu                 sync.Mutex
		referrals, letters []string
		reads              int
		failures           []string
		servedBy           = map[string]int{}
		stop               atomic.Bool
		wg                 sync.WaitGroup
		n                  atomic.Int64
		user               atomic.Int64
		deadline           = time.Now().Add(5 * time.Minute)
	)
	user.Store(900040000)
	operations := []string{"refer", "push", "consult"}
	acknowledged := map[string]int{"refer": http.StatusCreated, "push": http.StatusAccepted, "consult": http.StatusOK}
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && time.Now().Before(deadline) {
				i := n.Add(1)
				op := operations[i%3]
				var (
					code    int
					body    []byte
					replica string
					err     error
					id      string
				)
				switch op {
				case "refer":
					code, body, replica, err = gp.do(http.MethodPost, "/internal/referrals", notifiedpull.ReferRequest{
						PatientBSN: patient.BSN, ReceiverURA: network.Hospital.URA, Application: "bgz", Description: fmt.Sprintf("rolling %d", i)})
					var r node.Referral
					if err == nil && code == http.StatusCreated && json.Unmarshal(body, &r) == nil {
						id = r.ID
					}
				case "push":
					id = uuid()
					letter, lerr := correspondentie.Letter(correspondentie.LetterSpec{ID: id, Date: time.Now(),
						Type: correspondentie.DischargeLetter, PatientBSN: patient.BSN, PatientName: patient.Name, BirthDate: born,
						AuthorUZI: "900000123", AuthorName: "dr. M. Internist", CustodianURA: network.Hospital.URA,
						Custodian: network.Hospital.Name, Text: "Ontslagbrief."})
					if lerr != nil {
						t.Error(lerr)
						return
					}
					code, body, replica, err = hosp.do(http.MethodPost, "/internal/messages", push.SendRequest{
						ID: id, ReceiverURA: network.GP.URA, Application: "correspondentie", Payload: letter})
				case "consult":
					code, body, replica, err = hosp.do(http.MethodPost, "/internal/consult", consult.Request{PatientBSN: patient.BSN,
						HolderURA: network.GP.URA, Application: "bgz", User: &plateau.Caller{ID: strconv.FormatInt(user.Add(1), 10), Role: "01.016"}})
					var res consult.Result
					if err == nil && code == http.StatusOK && (json.Unmarshal(body, &res) != nil || !res.Complete) {
						code, body = -1, []byte(fmt.Sprintf("%d of %d queries answered", answered(res), len(res.Queries)))
					}
				}
				mu.Lock()
				switch {
				case err == nil && code == acknowledged[op]:
					servedBy[replica]++
					switch op {
					case "refer":
						referrals = append(referrals, id)
					case "push":
						letters = append(letters, id)
					default:
						reads++
					}
				case err != nil:
					failures = append(failures, fmt.Sprintf("%s: %v", op, err))
				default:
					failures = append(failures, fmt.Sprintf("%s: %d %s", op, code, clip(body)))
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

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
				b, _ := os.ReadFile(p.Log)
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				return false, err.Error() + "\n" + string(b)
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
	wg.Wait()
	t.Logf("%d requests during the rolling restart: %d referrals, %d letters, %d reads acknowledged; internal answers by replica %v",
		n.Load(), len(referrals), len(letters), reads, servedBy)
	for _, f := range failures {
		t.Errorf("failed during the rolling restart: %s", f)
	}
	if len(referrals) == 0 || len(letters) == 0 || reads == 0 {
		t.Fatalf("too little acknowledged to check: %d referrals, %d letters, %d reads", len(referrals), len(letters), reads)
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
		_ = c.Process.Signal(syscall.SIGTERM)
		if err := c.Wait(); err != nil {
			t.Errorf("a restarted replica after SIGTERM: %v", err)
		}
	}
	dir := filepath.Dir(filepath.Dir(procs["gp-node/1"].Log))
	verifyReplicaAudits(t, dir, "gp-node")
	verifyReplicaAudits(t, dir, "hospital-node")
}

// answered counts the queries of a consultation that the holder answered.
func answered(res consult.Result) int {
	n := 0
	for _, q := range res.Queries {
		if q.Status == http.StatusOK {
			n++
		}
	}
	return n
}

// TestReplicasAuditTheClientAddress: behind the balancer, which passes TLS
// through, a replica's audit records name the partner's address (from the
// balancer's PROXY header), not the balancer's own connection to it.
func TestReplicasAuditTheClientAddress(t *testing.T) {
	nw, procs := upReplicas(t, func(real string) string { return real })
	s, err := nw.Exchange(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != notifiedpull.StatusCompleted {
		t.Fatalf("exchange: %s", s.Status)
	}
	nw.StopProcesses()
	// The clients the hospital's balancer took connections from, by its log:
	// "public 127.0.0.1:40404 hospital-node_public/hospital-node-2 0/0".
	clients := map[string]bool{}
	for _, p := range nw.Processes() {
		if p.Name != "hospital-node" {
			continue
		}
		b, err := os.ReadFile(p.Log)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "public" {
				clients[f[1]] = true
			}
		}
	}
	if len(clients) == 0 {
		t.Fatal("the hospital's balancer logged no public connection")
	}
	dir := filepath.Dir(filepath.Dir(procs["hospital-node/1"].Log))
	var checked int
	for _, r := range verifyReplicaAudits(t, dir, "hospital-node") {
		if r.ActorURA != network.GP.URA || r.Address == "" {
			continue
		}
		checked++
		if !clients[r.Address] {
			t.Errorf("%s audited from %s, not a client of the balancer (%d logged)", r.Interaction, r.Address, len(clients))
		}
	}
	if checked == 0 {
		t.Fatal("no audit record of the GP's requests at the hospital")
	}
	t.Logf("%d audit records of the GP's requests checked", checked)
}
