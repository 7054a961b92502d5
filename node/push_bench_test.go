package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/internal/benchfloor"
)

// BenchmarkMessageIntake measures what a participant's system gets from
// POST /internal/messages of a real node: the internal API's
// authentication, the care application's and the STU3 validation, the
// outbox's durable group commit and the durable push-send audit record,
// then the 202. "clients-N": N systems posting at once over kept-alive
// connections; accepted/s is messages answered 202 per second of wall
// time. The receiver's node is not there, so delivery costs one failed
// attempt per message (the addressbook does not answer; the next attempt
// is an hour later): what is measured is the intake, not deliveries
// sharing the two cores (network's BenchmarkPush measures both).
// cpu-µs/op is the process's CPU time (getrusage: user and system) per
// accepted message, clients included.
func BenchmarkMessageIntake(b *testing.B) {
	cfg := startableConfig(b)
	cfg.Push.RetryBase, cfg.Push.RetryMax = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	n, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	benchfloor.Run(b, cfg.DataDir)
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			b.Error(err)
		}
	}()
	payload, err := correspondentie.Letter(correspondentie.LetterSpec{ID: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
		Type: correspondentie.DischargeLetter, PatientBSN: "999911120", PatientName: "J. Jansen", BirthDate: "1950-01-01",
		AuthorUZI: "900012345", AuthorName: "dr. A. Internist", CustodianURA: "90000001", Custodian: "Huisartsenpraktijk",
		Date: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), Text: "Ontslagen in goede conditie."})
	if err != nil {
		b.Fatal(err)
	}
	url := n.InternalURL() + "/internal/messages"
	token := cfg.Participants[0].InternalToken
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients-%d", clients), func(b *testing.B) {
			hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
			defer hc.CloseIdleConnections()
			send := func() error {
				var rnd [16]byte
				_, _ = rand.Read(rnd[:])
				body := fmt.Sprintf(`{"id":"%x-%x-4%x-8%x-%x","receiver":"90000002","application":"correspondentie","payload":%s}`,
					rnd[0:4], rnd[4:6], rnd[6:8][1:], rnd[8:10][1:], rnd[10:], payload)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				answer, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusAccepted {
					return fmt.Errorf("status %d: %s", resp.StatusCode, answer)
				}
				return nil
			}
			if err := send(); err != nil { // a connection, warm caches
				b.Fatal(err)
			}
			st0, ob0 := n.Audit().Stats(), n.pushDB.OutboxStats()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime(b)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := send(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			took, cpu := time.Since(start), cpuTime(b)-cpu0
			b.ReportMetric(float64(b.N)/took.Seconds(), "accepted/s")
			// CPU per message of the whole process (node and clients): what
			// two free cores could accept, whatever else shares them now.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			st, ob := n.Audit().Stats(), n.pushDB.OutboxStats()
			b.ReportMetric(float64(st.Batches-st0.Batches)/float64(b.N), "audit-commits/op")
			b.ReportMetric(float64(ob.Batches-ob0.Batches)/float64(b.N), "outbox-commits/op")
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
