package node

import (
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/plateau"
)

func TestIdentificationConfig(t *testing.T) {
	at := func(p int) plateau.Plateaus {
		ps := plateau.Uniform(1)
		ps[plateau.Identification] = p
		return ps
	}
	agreement := func(p int) []plateau.PartnerConfig {
		return []plateau.PartnerConfig{{URA: "90000002", Name: "Ziekenhuis B", Plateaus: at(p)}}
	}
	const service = "https://sbvz.example/cibg.sbv.interface.xis.webservice.mrt21/opvragenverifieren.asmx"
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want []string // parts of the error; none = valid
	}{
		{"plateau 2 needs no service", func(c *Config) { c.Partners.Agreements = agreement(2) }, nil},
		{"plateau 3 without a service", func(c *Config) { c.Partners.Agreements = agreement(3) },
			[]string{"partners.agreements[0] (Ziekenhuis B)", "plateau 3", "identification.url"}},
		{"default at plateau 4 without a service", func(c *Config) { c.Partners.Default = at(4) },
			[]string{"partners.default", "plateau 4", "identification.url"}},
		{"plateau 3 with a service", func(c *Config) {
			c.Partners.Agreements = agreement(3)
			c.Identification.URL = service
		}, nil},
		{"plain http service", func(c *Config) { c.Identification.URL = "http://sbvz.example/x" }, []string{"identification.url must be an https URL"}},
		{"certificate without key", func(c *Config) {
			c.Identification.URL = service
			c.Identification.CertFile = "sbvz.pem"
		}, []string{"identification: certfile and keyfile go together"}},
		{"negative cache lifetime", func(c *Config) { c.Identification.CacheTTL = -1 }, []string{"identification.cachettl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mod(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
