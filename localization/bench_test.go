package localization

import (
	"context"
	"testing"
)

// BenchmarkClientLocalize is a node's whole localization over mTLS: the
// pseudonym round trip ($oprf-evaluate) and $localize, both audited, against
// a SQLite index, with keep-alive connections.
func BenchmarkClientLocalize(b *testing.B) {
	// The evaluation limit guards against enumeration; it would stop this loop.
	env := newEnv(b, func(c *ServerConfig) { c.EvaluateRate, c.EvaluateBurst = 1e9, 1e9 })
	a := env.client(uraA, "Z3", PresumedConsent)
	mustRegister(b, a, bsn1, med)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := a.Localize(ctx, LocalizeRequest{BSN: bsn1, CareContext: med})
		if err != nil || len(res.Holders) != 1 {
			b.Fatal(res, err)
		}
	}
}
