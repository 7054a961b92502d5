package node

import (
	"net/http"
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

// TestReferralBSNNamesIdentification: a BSN failing the 11-proef is
// refused before a referral is made, the reason naming the identification
// plateau agreed with the receiver; without an agreement Refer refuses it.
func TestReferralBSNNamesIdentification(t *testing.T) {
	e := newEdgeEnv(t, func(c *Config) {
		c.Partners.Agreements = []plateau.PartnerConfig{{URA: edgePartnerURA, Name: "Partner",
			Plateaus: plateau.Plateaus{plateau.Identification: 2}}}
	})
	for _, tc := range []struct {
		receiver, want string
	}{
		{edgePartnerURA, "patient: invalid BSN: fails the 11-proef (identification, plateau 2)"},
		{"90000077", "fails the 11-proef"},
	} {
		h := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + e.tokens[edgeURA1]}}
		resp, body := do(t, e.internal, http.MethodPost, e.n.InternalURL()+"/internal/referrals", h,
			[]byte(`{"patient":"123456789","receiver":"`+tc.receiver+`","application":"bgz"}`))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
			t.Errorf("receiver %s: %d %s, want 400 naming %q", tc.receiver, resp.StatusCode, body, tc.want)
		}
		if tc.receiver == "90000077" && strings.Contains(string(body), "identification, plateau") {
			t.Errorf("receiver without agreement: %s names a plateau", body)
		}
	}
}
