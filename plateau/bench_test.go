package plateau

import (
	"context"
	"net/url"
	"testing"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/policy"
)

// BenchmarkCheckAccess measures the per-request decision on the data
// endpoint with the embedded BgZ policy, at plateau 1 and at plateau 4.
func BenchmarkCheckAccess(b *testing.B) {
	set, err := policy.Load("")
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(Config{Agreements: []PartnerConfig{
		{URA: uraP1, Plateaus: Uniform(1)},
		{URA: uraP4, Plateaus: Uniform(4)},
	}, IdentityIssuers: []string{dezi}}, set)
	if err != nil {
		b.Fatal(err)
	}
	lab := url.Values{
		"patient.identifier": {nl.SystemBSN + "|999999011"},
		"category":           {"http://snomed.info/sct|49581000146104"},
		"_include":           {"Observation:related-target"},
		"_revinclude":        {"Provenance:target"},
	}
	cases := []struct {
		name string
		ac   AccessContext
	}{
		{"plateau1", AccessContext{PartnerURA: uraP1, Authenticated: 1, Application: "bgz", Interaction: "operation", ResourceType: "Observation", Operation: "$lastn", Params: lab}},
		{"plateau4", AccessContext{PartnerURA: uraP4, Authenticated: 4, UserRole: "01.015", Application: "bgz", Interaction: "operation", ResourceType: "Observation", Operation: "$lastn", Params: lab}},
	}
	for _, c := range cases {
		if err := e.CheckAccess(context.Background(), c.ac); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := e.CheckAccess(context.Background(), c.ac); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
