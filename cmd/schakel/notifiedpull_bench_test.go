package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/internal/procstat"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// BenchmarkNotifiedPullProcesses measures the BgZ Notified Pull of
// BenchmarkNotifiedPull (./network, connections reused) with every component
// in a process of its own, as `network up --processes` runs them: the two
// nodes no longer share one process's locks (the SQLite driver's C
// allocator and page cache among them), as two nodes on two machines do
// not; they still share the two cores. Embedded stores (SQLite), audit on.
//
// The time of an exchange is the GP's node's own: from the referral's POST
// until the node recorded the referral completed (the referral's `updated`),
// reported as sender-sees-ms/op (mean) and median-ms. ns/op also holds the
// client's wait for that status, which it polls once most of the previous
// exchange's time has passed, so read the other two. cpu-ms/op is the CPU
// of every component process (the services and the monitor included) per
// exchange, from /proc.
//
// go test ./cmd/schakel -run '^$' -bench NotifiedPullProcesses -benchtime 30x
func BenchmarkNotifiedPullProcesses(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a network of processes")
	}
	// The children are this test binary running schakel's main.
	b.Setenv(runMainEnv, "1")
	dir := b.TempDir()
	nw, err := network.UpProcesses(context.Background(), network.Options{DataDir: dir, Patients: 1, Host: "127.0.0.1"}, os.Args[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nw.StopProcesses)
	benchfloor.Run(b, dir)
	gp := &xisClient{base: nw.InternalURL(network.GP.URA), token: nw.Token(network.GP.URA), http: &http.Client{Timeout: 30 * time.Second}}
	req := notifiedpull.ReferRequest{PatientBSN: nw.Patients[0].BSN, ReceiverURA: network.Hospital.URA, Application: "bgz"}
	prev := 10 * time.Millisecond
	exchange := func(b *testing.B) time.Duration {
		start := time.Now()
		code, body, _, err := gp.do(http.MethodPost, "/internal/referrals", req)
		if err != nil || code != http.StatusCreated {
			b.Fatalf("refer: %d %v %s", code, err, clip(body))
		}
		var ref node.Referral
		if err := json.Unmarshal(body, &ref); err != nil {
			b.Fatal(err)
		}
		// Most of the last exchange's time passes before the first look,
		// so that the polling takes little of the two cores.
		time.Sleep(time.Until(start.Add(prev * 8 / 10)))
		for deadline := start.Add(30 * time.Second); !notifiedpull.Final(ref.Status); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("referral %s not final within 30 s: %s", ref.ID, ref.Status)
			}
			code, body, _, err := gp.do(http.MethodGet, "/internal/referrals/"+url.PathEscape(ref.ID), nil)
			if err != nil || code != http.StatusOK {
				b.Fatalf("referral %s: %d %v %s", ref.ID, code, err, clip(body))
			}
			if err := json.Unmarshal(body, &ref); err != nil {
				b.Fatal(err)
			}
		}
		if ref.Status != notifiedpull.StatusCompleted {
			b.Fatalf("referral %s ended %s: %s", ref.ID, ref.Status, ref.StatusReason)
		}
		prev = ref.Updated.Sub(start)
		return prev
	}
	b.Run("reuse", func(b *testing.B) {
		exchange(b) // warm caches: addressbook answers, client key sets, connections
		procs := nw.Processes()
		cpu0, sw0 := processCPU(b, procs), processSwitches(b, procs)
		took := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			took = append(took, exchange(b))
		}
		b.StopTimer()
		var sum time.Duration
		for _, d := range took {
			sum += d
		}
		slices.Sort(took)
		b.ReportMetric(float64(sum.Microseconds())/float64(len(took))/1000, "sender-sees-ms/op")
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
		cpu1 := processCPU(b, procs)
		var all time.Duration
		var each []string
		for i, p := range procs {
			d := cpu1[i] - cpu0[i]
			all += d
			each = append(each, fmt.Sprintf("%s %.2f", p.Name, float64(d.Microseconds())/float64(b.N)/1000))
		}
		b.Logf("cpu-ms per exchange by process: %s", strings.Join(each, ", "))
		b.ReportMetric(float64(all.Microseconds())/float64(b.N)/1000, "cpu-ms/op")
		b.ReportMetric(float64(processSwitches(b, procs)-sw0)/float64(b.N), "ctx-switches/op")
	})
}

// processCPU is the CPU time each of procs has used so far.
func processCPU(b *testing.B, procs []*network.Process) []time.Duration {
	b.Helper()
	out := make([]time.Duration, len(procs))
	for i, p := range procs {
		cpu, err := procstat.CPU(p.PID)
		if err != nil {
			b.Fatalf("CPU of %s: %v", p.Name, err)
		}
		out[i] = cpu
	}
	return out
}

// processSwitches is the number of context switches of procs so far.
func processSwitches(b *testing.B, procs []*network.Process) int64 {
	b.Helper()
	var n int64
	for _, p := range procs {
		c, err := procstat.ContextSwitches(p.PID)
		if err != nil {
			b.Fatalf("context switches of %s: %v", p.Name, err)
		}
		n += c
	}
	return n
}
