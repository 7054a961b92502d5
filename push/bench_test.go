package push_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/push"
)

// BenchmarkOutboxAccept measures the sender's side of Push on its own: a
// message handed to Service.Send (the application's validation, the STU3
// validation of the message, the durable, group-committed outbox insert and the durable push-send
// audit record) with sixteen senders at once, on SQLite files and a real
// audit store in one directory, with the machine's floors of the same run.
// Nothing is delivered: accepted/s is the outbox's intake; cpu-µs/op the
// process's CPU time (getrusage) per accepted message.
func BenchmarkOutboxAccept(b *testing.B) {
	dir := b.TempDir()
	benchfloor.Run(b, dir)
	ctx := context.Background()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, _ := jwk.Import(ec)
	_ = key.Set(jwk.KeyIDKey, "checkpoint")
	_ = key.Set(jwk.AlgorithmKey, jwa.ES256())
	log, err := audit.OpenWith(ctx, audit.Config{Path: filepath.Join(dir, "audit.db"), Node: "bench", Key: key})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	payload, err := correspondentie.Letter(correspondentie.LetterSpec{ID: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
		Type: correspondentie.DischargeLetter, PatientBSN: "999911120", PatientName: "J. Jansen", BirthDate: "1950-01-01",
		AuthorUZI: "900012345", AuthorName: "dr. A. Internist", CustodianURA: hospital, Custodian: "Ziekenhuis",
		Date: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), Text: "Ontslagen in goede conditie."})
	if err != nil {
		b.Fatal(err)
	}
	stores := []struct {
		name string
		open func(b *testing.B) *push.DB
	}{{"accept-16", func(b *testing.B) *push.DB {
		db, err := push.OpenDB(ctx, filepath.Join(dir, "push.db"))
		if err != nil {
			b.Fatal(err)
		}
		return db
	}}}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		// The outbox in PostgreSQL (a fresh schema, dropped after), the
		// audit log as before: its COMMIT is the durable write.
		stores = append(stores, struct {
			name string
			open func(b *testing.B) *push.DB
		}{"accept-16-postgres", func(b *testing.B) *push.DB {
			var r [6]byte
			_, _ = rand.Read(r[:])
			schema := fmt.Sprintf("push_bench_%x", r)
			db, err := push.OpenPostgres(ctx, dsn, schema)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				c, err := pgx.Connect(ctx, dsn)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close(ctx)
				if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
					b.Error(err)
				}
			})
			return db
		}})
	}
	for _, st := range stores {
		db := st.open(b)
		defer db.Close()
		party := &push.Party{URA: hospital, Name: "Ziekenhuis", SystemUZI: "900000002", HTTP: http.DefaultClient}
		svc, err := push.New(push.Config{Node: "bench", Store: db, Audit: log,
			Parties:      func(u string) (*push.Party, bool) { return party, u == hospital },
			Endpoint:     func(t string) string { return "https://node.example/fhir/stu3/" + t + "/$process-message" },
			Applications: []push.Application{correspondentie.New()},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(st.name, func(b *testing.B) {
			b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			st0, ob0 := log.Stats(), db.OutboxStats()
			start, cpu0 := time.Now(), cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				var rnd [16]byte
				for pb.Next() {
					_, _ = rand.Read(rnd[:])
					id := fmt.Sprintf("%x-%x-4%x-8%x-%x", rnd[0:4], rnd[4:6], rnd[6:8][1:], rnd[8:10][1:], rnd[10:])
					if _, _, err := svc.Send(ctx, hospital, push.SendRequest{ID: id, ReceiverURA: gp,
						Application: "correspondentie", Payload: payload}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "accepted/s")
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			st := log.Stats()
			b.ReportMetric(float64(st.Batches-st0.Batches)/float64(b.N), "audit-commits/op")
			ob := db.OutboxStats()
			b.ReportMetric(float64(ob.Batches-ob0.Batches)/float64(ob.Messages-ob0.Messages), "outbox-commits/op")
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
