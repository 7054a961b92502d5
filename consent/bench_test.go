package consent

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDecide measures one consent decision: from the registry alone
// (plateau 1), and through the client over loopback mTLS to the server
// (SOAP/XACML, SQLite, audit write), with and without the client's cache.
func BenchmarkDecide(b *testing.B) {
	if testing.Short() {
		b.Skip("needs a consent service")
	}
	ctx := context.Background()
	e := newEnv(b, nil)
	patient := bsn(b, 60)
	if _, err := e.srv.Store().Register(ctx, Registration{PatientBSN: patient, Effect: Permit, HolderType: "Z3",
		Source: SourceProvider, RegisteredBy: uraHolder}); err != nil {
		b.Fatal(err)
	}
	q := question(patient)
	run := func(b *testing.B, c Checker) {
		if d, err := c.Decide(ctx, q); err != nil || d != DecisionPermit {
			b.Fatalf("Decide = %s, %v", d, err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if d, err := c.Decide(ctx, q); err != nil || d != DecisionPermit {
				b.Fatalf("Decide = %s, %v", d, err)
			}
		}
	}
	b.Run("registry", func(b *testing.B) { run(b, &LocalChecker{Store: e.srv.Store()}) })
	b.Run("client-uncached", func(b *testing.B) { run(b, e.client(b, uraHolder, nil)) })
	b.Run("client-cached", func(b *testing.B) {
		run(b, e.client(b, uraHolder, func(c *ClientConfig) { c.CacheTTL = time.Hour }))
	})
}

// BenchmarkParseQuery measures the server's strict parse of a closed question.
func BenchmarkParseQuery(b *testing.B) {
	q, err := question(bsn(b, 61)).Normalize()
	if err != nil {
		b.Fatal(err)
	}
	body := buildQuery(q, testMessageID, "https://consent.example"+ClosedQuestionPath)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseQuery(body); err != nil {
			b.Fatal(err)
		}
	}
}
