package network

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/push"
)

// Every benchmark here runs on a complete network with audit on (every
// request on both nodes writes a durable, hash-chained record before it is
// answered), and reports the machine's floors (one fdatasync in the
// network's data directory, one ES256 signature) in the same run, so its
// figures can be quoted as multiples of them.

// auditStats sums the nodes' audit records and durable commits.
func auditStats(nw *Network) (records, batches int64) {
	for _, n := range nw.Nodes {
		st := n.Audit().Stats()
		records, batches = records+st.Records, batches+st.Batches
	}
	return records, batches
}

// reportAudit reports audit records and durable audit commits per op since
// the counts r0, c0.
func reportAudit(b *testing.B, nw *Network, r0, c0 int64) {
	r, c := auditStats(nw)
	b.ReportMetric(float64(r-r0)/float64(b.N), "audit-records/op")
	b.ReportMetric(float64(c-c0)/float64(b.N), "audit-commits/op")
}

// BenchmarkNotifiedPull measures one complete BgZ Notified Pull between two
// nodes on loopback: the GP's system asks its node to refer, the node
// notifies the hospital (token + POST Task), the hospital's node gets a
// token with the authorization base, reads the workflow Task, runs all BgZ
// queries, stores the result and reports completion to the sender.
// "fresh" drops every idle connection first, so each exchange pays its TLS
// handshakes; "reuse" keeps connections open between exchanges. ns/op runs
// until the hospital's node reports completion; sender-sees-ms/op is what
// the GP's system gets: from its POST until the instant its node recorded
// the referral completed (the referral's updated time, read back through
// the internal API), the earliest a polling system can read "completed".
func BenchmarkNotifiedPull(b *testing.B) {
	nw := startNetwork(b, 1)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: &http.Client{Timeout: 30 * time.Second}}
	req := notifiedpull.ReferRequest{PatientBSN: nw.Patients[0].BSN, ReceiverURA: Hospital.URA, Application: "bgz"}
	for _, mode := range []string{"fresh", "reuse"} {
		b.Run(mode, func(b *testing.B) {
			var cpu time.Duration // CPU time of the timed part of each exchange
			run := func() (notify, pull, seen time.Duration) {
				if mode == "fresh" {
					for _, n := range nw.Nodes {
						n.CloseIdleConnections()
					}
				}
				cpu0 := cpuTime(b)
				start := time.Now()
				var ref node.Referral
				if err := gp.do(ctx, http.MethodPost, "/internal/referrals", req, &ref); err != nil {
					b.Fatal(err)
				}
				notified := time.Now()
				// The hospital's node completes; the GP's node learns it from
				// the workflow Task's update, which the hospital does not wait for.
				for completed, reported := false, false; !completed || !reported; {
					select {
					case e := <-nw.done:
						switch {
						case e.Step == "failed":
							b.Fatalf("exchange %s: %v", e.Step, e.Err)
						case e.Step == "completed":
							completed = true
							pull = time.Since(notified)
						default:
							reported = true
						}
					case <-time.After(30 * time.Second):
						b.Fatal("exchange did not complete")
					}
				}
				notify = notified.Sub(start)
				b.StopTimer()
				cpu += cpuTime(b) - cpu0
				if err := gp.do(ctx, http.MethodGet, "/internal/referrals/"+url.PathEscape(ref.ID), nil, &ref); err != nil {
					b.Fatal(err)
				}
				if ref.Status != notifiedpull.StatusCompleted {
					b.Fatalf("the sender sees referral %s as %s after the receiver reported completion", ref.ID, ref.Status)
				}
				b.StartTimer()
				return notify, pull, ref.Updated.Sub(start)
			}
			run() // warm caches: addressbook answers, client key sets
			records0, batches0 := auditStats(nw)
			awaited0 := awaitedCommits(nw)
			cpu = 0
			b.ResetTimer()
			var notify, pull, seen time.Duration
			for i := 0; i < b.N; i++ {
				n, p, s := run()
				notify += n
				pull += p
				seen += s
			}
			b.ReportMetric(float64(notify.Microseconds())/float64(b.N)/1000, "notify-ms/op")
			b.ReportMetric(float64(pull.Microseconds())/float64(b.N)/1000, "pull-ms/op")
			b.ReportMetric(float64(seen.Microseconds())/float64(b.N)/1000, "sender-sees-ms/op")
			// Durable audit commits (one fsync each) per exchange, both nodes:
			// how well the group commit batches the parallel queries.
			reportAudit(b, nw, records0, batches0)
			// CPU per exchange, both nodes: on two cores, the exchange is
			// CPU-bound once its durable waits are few.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/1000, "cpu-ms/op")
			// The commits some request waited on: the durable waits on the
			// critical path (deferred records ride along without one).
			b.ReportMetric(float64(awaitedCommits(nw)-awaited0)/float64(b.N), "critical-commits/op")
		})
	}
}

// BenchmarkDirectPull measures one BgZ Direct Pull as the hospital's
// system gets it: POST /internal/consult on the hospital's node, which gets
// a token from the GP's node and runs every BgZ query there; the GP's node
// asks the consent service playing Mitz (plateau 4) before each answer,
// from its consent cache after the first, and audits every query on both
// sides. "fresh" drops idle connections before each consult.
func BenchmarkDirectPull(b *testing.B) {
	nw := startNetwork(b, 1)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	hosp := &xis{base: nw.HospNode.InternalURL(), token: nw.Token(Hospital.URA), http: &http.Client{Timeout: 30 * time.Second}}
	req := consult.Request{PatientBSN: nw.Patients[0].BSN, HolderURA: GP.URA, Application: "bgz", UserID: "900012345", UserRole: "01.016"}
	for _, mode := range []string{"fresh", "reuse"} {
		b.Run(mode, func(b *testing.B) {
			run := func() {
				if mode == "fresh" {
					for _, n := range nw.Nodes {
						n.CloseIdleConnections()
					}
				}
				var res consult.Result
				if err := hosp.do(ctx, http.MethodPost, "/internal/consult", req, &res); err != nil {
					b.Fatal(err)
				}
				if !res.Complete || res.Resources == 0 {
					b.Fatalf("incomplete consult: %d resources", res.Resources)
				}
			}
			run() // warm caches and connections
			records0, batches0 := auditStats(nw)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
			reportAudit(b, nw, records0, batches0)
		})
	}
}

// BenchmarkInternalRead measures what a participant's system gets reading
// one resource at a time from its own node: GET /internal/fhir/Patient/{id}
// with the participant's token, each read audited durably before it is
// answered. "sequential" is one client; "parallel" four clients at once,
// whose audit records share durable writes.
func BenchmarkInternalRead(b *testing.B) {
	nw := startNetwork(b, 1)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: &http.Client{Timeout: 30 * time.Second}}
	var found struct {
		Entry []struct {
			Resource struct{ ID string } `json:"resource"`
		} `json:"entry"`
	}
	q := "/internal/fhir/Patient?identifier=" + url.QueryEscape("http://fhir.nl/fhir/NamingSystem/bsn|"+nw.Patients[0].BSN)
	if err := gp.do(ctx, http.MethodGet, q, nil, &found); err != nil || len(found.Entry) != 1 {
		b.Fatalf("find the demo patient: %v (%d found)", err, len(found.Entry))
	}
	path := "/internal/fhir/Patient/" + found.Entry[0].Resource.ID
	read := func(b *testing.B) {
		if err := gp.do(ctx, http.MethodGet, path, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("sequential", func(b *testing.B) {
		read(b)
		records0, batches0 := auditStats(nw)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			read(b)
		}
		reportAudit(b, nw, records0, batches0)
	})
	b.Run("parallel", func(b *testing.B) {
		records0, batches0 := auditStats(nw)
		b.ReportAllocs()
		b.SetParallelism(2) // 2 × GOMAXPROCS(2) = four clients
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := gp.do(ctx, http.MethodGet, path, nil, nil); err != nil {
					panic(fmt.Sprintf("read: %v", err))
				}
			}
		})
		reportAudit(b, nw, records0, batches0)
	})
}

// BenchmarkNotifiedPullAtPlateau compares the Notified Pull with every
// function agreed at plateau 1 and at plateau 4, where the hospital's
// specialist accepts the referral and the pull carries the user identity
// the identity issuer signs, checked by the GP's node (the bound:
// plateau 4 within 1.5× plateau 1). Connections are reused, as between
// production nodes; the accept is part of each exchange.
func BenchmarkNotifiedPullAtPlateau(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("plateau %d", n), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			nw, err := Up(ctx, Options{DataDir: b.TempDir(), Patients: 1, Plateau: n})
			if err != nil {
				cancel()
				b.Fatal(err)
			}
			nw.Start(ctx)
			defer func() { cancel(); _ = nw.Wait() }()
			benchfloor.Run(b, nw.opts.DataDir)
			hc := &http.Client{Timeout: 30 * time.Second}
			gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: hc}
			hosp := &xis{base: nw.HospNode.InternalURL(), token: nw.Token(Hospital.URA), http: hc}
			req := notifiedpull.ReferRequest{PatientBSN: nw.Patients[0].BSN, ReceiverURA: Hospital.URA, Application: "bgz"}
			run := func(b *testing.B) {
				var ref node.Referral
				if err := gp.do(ctx, http.MethodPost, "/internal/referrals", req, &ref); err != nil {
					b.Fatal(err)
				}
				for i := 0; n >= 2; i++ {
					// The referral waits for the specialist (plateau 2 and up).
					var list []node.Referral
					if err := hosp.do(ctx, http.MethodGet, "/internal/referrals?direction=received&status=requested", nil, &list); err != nil {
						b.Fatal(err)
					}
					id := ""
					for _, r := range list {
						if r.Identifier == ref.ID && r.AwaitingUser {
							id = r.ID
						}
					}
					if id != "" {
						if err := hosp.do(ctx, http.MethodPost, "/internal/referrals/"+id+"/accept",
							plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}, nil); err != nil {
							b.Fatal(err)
						}
						break
					}
					if i > 3000 {
						b.Fatal("the referral did not arrive")
					}
					time.Sleep(2 * time.Millisecond)
				}
				select {
				case e := <-nw.done:
					if e.Step != "completed" {
						b.Fatalf("exchange %s: %v", e.Step, e.Err)
					}
				case <-time.After(30 * time.Second):
					b.Fatal("exchange did not complete")
				}
			}
			b.Run("exchange", func(b *testing.B) {
				run(b) // warm caches: addressbook answers, client key sets, the identity issuer's keys
				records0, batches0 := auditStats(nw)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					run(b)
				}
				reportAudit(b, nw, records0, batches0)
			})
		})
	}
}

// BenchmarkPush measures Push as the hospital's system gets it, audit on
// at both nodes. "accept-16": sixteen clients POST /internal/messages at
// once; each answer (202) means the letter is in the outbox and its
// push-send record in the audit log — ns/op is the time per accepted
// message, accepted/s its inverse, while the node's workers deliver what
// was accepted. "e2e-sequential" and "e2e-16": from the POST until the
// sender's node has stored the GP node's verified, signed receipt (status
// delivered, read back on the internal API every 2 ms), one at a time and
// sixteen in flight.
func BenchmarkPush(b *testing.B) {
	nw := startNetwork(b, 1)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	hosp := &xis{base: nw.HospNode.InternalURL(), token: nw.Token(Hospital.URA), http: hc}
	p := nw.Patients[0]
	_, born, _ := nl.Patient(p.Resources[0])
	letter, err := correspondentie.Letter(correspondentie.LetterSpec{ID: newID(), Type: correspondentie.DischargeLetter,
		PatientBSN: p.BSN, PatientName: p.Name, BirthDate: born, AuthorUZI: "900000123", AuthorName: "dr. M. Internist",
		CustodianURA: Hospital.URA, Custodian: Hospital.Name, Date: time.Now(), Text: "Ontslagbrief."})
	if err != nil {
		b.Fatal(err)
	}
	send := func(b *testing.B) string {
		var m push.OutMessage
		if err := hosp.do(ctx, http.MethodPost, "/internal/messages", push.SendRequest{ID: newID(), ReceiverURA: GP.URA,
			Application: "correspondentie", Payload: letter}, &m); err != nil {
			b.Error(err)
			return ""
		}
		return m.ID
	}
	delivered := func(b *testing.B, id string) {
		for i := 0; ; i++ {
			var view node.MessageView
			if err := hosp.do(ctx, http.MethodGet, "/internal/messages/"+id, nil, &view); err != nil {
				b.Error(err)
				return
			}
			if view.OutMessage != nil && view.Status == push.StatusDelivered && view.Receipt != "" {
				return
			}
			if view.OutMessage == nil || view.Status != push.StatusQueued || i == 15000 {
				b.Errorf("message %s not delivered: %+v", id, view.OutMessage)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	delivered(b, send(b)) // warm caches: addressbook, token, key set
	drain := func(b *testing.B) {
		// What accept-16 queued is delivered before the next variant runs.
		b.StopTimer()
		var list struct{ Messages []push.OutMessage }
		for i := 0; i < 3000; i++ {
			if err := hosp.do(ctx, http.MethodGet, "/internal/messages?direction=sent&status=queued", nil, &list); err != nil {
				b.Fatal(err)
			}
			if len(list.Messages) == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.StartTimer()
	}
	b.Run("accept-16", func(b *testing.B) {
		b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		records0, batches0 := auditStats(nw)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				send(b)
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "accepted/s")
		reportAudit(b, nw, records0, batches0)
		drain(b)
	})
	b.Run("e2e-sequential", func(b *testing.B) {
		for b.Loop() {
			delivered(b, send(b))
		}
	})
	b.Run("e2e-16", func(b *testing.B) {
		b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				delivered(b, send(b))
			}
		})
	})
}
