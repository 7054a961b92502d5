package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/admission"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/plateau"
)

// maxPages bounds how many Bundle pages one search follows: the register
// and the addressbook of a network are thousands of resources at most.
const maxPages = 50

// searchAll runs a FHIR search and follows the Bundle's next links.
func searchAll(ctx context.Context, client *http.Client, base, query string) ([]json.RawMessage, error) {
	next := strings.TrimSuffix(base, "/") + "/" + query
	var out []json.RawMessage
	for range maxPages {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/fhir+json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: HTTP %d", query, resp.StatusCode)
		}
		var bundle struct {
			ResourceType string `json:"resourceType"`
			Link         []struct {
				Relation string `json:"relation"`
				URL      string `json:"url"`
			} `json:"link"`
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil || bundle.ResourceType != "Bundle" {
			return nil, fmt.Errorf("%s: the answer is not a Bundle", query)
		}
		for _, e := range bundle.Entry {
			out = append(out, e.Resource)
		}
		next = ""
		for _, l := range bundle.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			return out, nil
		}
	}
	return out, fmt.Errorf("%s: more than %d pages", query, maxPages)
}

type reference struct {
	Reference  string `json:"reference"`
	Identifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
}

type organization struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Active     *bool  `json:"active"`
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Type []struct {
		Coding []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"coding"`
	} `json:"type"`
	Extension []struct {
		URL            string    `json:"url"`
		ValueReference reference `json:"valueReference"`
		ValueString    string    `json:"valueString"`
	} `json:"extension"`
	Endpoint []reference `json:"endpoint"`
}

func (o organization) ura() string {
	for _, id := range o.Identifier {
		if id.System == nl.SystemURA {
			return id.Value
		}
	}
	return ""
}

// Party is an organisation as the register and the addressbook know it.
type Party struct {
	URA, Name string
	// Roles are its Twiin roles from its declaration; none when it has not
	// admitted itself.
	Roles    []string
	Admitted bool
	// ServedBy is the URA of the GtK operator that serves it.
	ServedBy string
	// Endpoints is how many endpoints the addressbook lists for it; -1 when
	// it is not in the addressbook.
	Endpoints int
	// Node is the node (of the monitored ones) that serves it, "" if none.
	Node   string
	Proofs []Proof
}

// Proof is a proof of validation as the register lists it, verified
// against the validation authority's keys.
type Proof struct {
	Care, Role string
	Valid      bool
	Expiry     time.Time
	// Problem says why a listed proof is not valid.
	Problem string
}

// readRegister reads the parties and their proofs from the admission
// register, verifying each proof.
func readRegister(ctx context.Context, client *http.Client, base string, authority jwk.Set, now time.Time) (map[string]*Party, error) {
	orgs, err := searchAll(ctx, client, base, "Organization?_count=100")
	if err != nil {
		return nil, fmt.Errorf("admission register: %w", err)
	}
	parties := map[string]*Party{}
	for _, b := range orgs {
		var o organization
		if json.Unmarshal(b, &o) != nil || o.ura() == "" {
			continue
		}
		p := &Party{URA: o.ura(), Name: o.Name, Admitted: true, Endpoints: -1}
		for _, t := range o.Type {
			for _, c := range t.Coding {
				if c.System == admission.SystemRole {
					p.Roles = append(p.Roles, c.Code)
				}
			}
		}
		for _, e := range o.Extension {
			if e.URL == admission.ExtServedBy {
				p.ServedBy = e.ValueReference.Identifier.Value
			}
		}
		parties[p.URA] = p
	}
	results, err := searchAll(ctx, client, base, "VerificationResult?_count=100")
	if err != nil {
		return nil, fmt.Errorf("admission register: %w", err)
	}
	for _, b := range results {
		var vr struct {
			Target            []reference `json:"target"`
			NextScheduled     string      `json:"nextScheduled"`
			ValidationProcess []struct {
				Coding []struct {
					System string `json:"system"`
					Code   string `json:"code"`
				} `json:"coding"`
			} `json:"validationProcess"`
		}
		if json.Unmarshal(b, &vr) != nil || len(vr.Target) == 0 {
			continue
		}
		ura := vr.Target[0].Identifier.Value
		var pr Proof
		for _, vp := range vr.ValidationProcess {
			for _, c := range vp.Coding {
				switch c.System {
				case admission.SystemCare:
					pr.Care = c.Code
				case admission.SystemExchangeRole:
					pr.Role = c.Code
				}
			}
		}
		pr.Expiry, _ = time.Parse(time.DateOnly, vr.NextScheduled)
		// The register is read, not trusted: the proof inside must verify.
		if claims, err := admission.ValidProofs([]json.RawMessage{b}, authority, ura, pr.Care, now); err != nil {
			pr.Problem = err.Error()
		} else {
			pr.Valid = true
			for _, c := range claims {
				if string(c.Role) == pr.Role {
					pr.Expiry = time.Unix(c.Expiry, 0).UTC()
				}
			}
		}
		p := parties[ura]
		if p == nil {
			p = &Party{URA: ura, Endpoints: -1}
			parties[ura] = p
		}
		p.Proofs = append(p.Proofs, pr)
	}
	for _, p := range parties {
		sort.Slice(p.Proofs, func(i, j int) bool {
			return p.Proofs[i].Care+p.Proofs[i].Role < p.Proofs[j].Care+p.Proofs[j].Role
		})
	}
	return parties, nil
}

// readAddressbook counts each organisation's endpoints in the mCSD
// addressbook and adds those the register does not know.
func readAddressbook(ctx context.Context, client *http.Client, base string, parties map[string]*Party) error {
	orgs, err := searchAll(ctx, client, base, "Organization?_count=100")
	if err != nil {
		return fmt.Errorf("addressbook: %w", err)
	}
	for _, b := range orgs {
		var o organization
		if json.Unmarshal(b, &o) != nil || o.ura() == "" {
			continue
		}
		p := parties[o.ura()]
		if p == nil {
			p = &Party{URA: o.ura(), Name: o.Name}
			parties[p.URA] = p
		}
		if p.Name == "" {
			p.Name = o.Name
		}
		p.Endpoints = len(o.Endpoint)
	}
	return nil
}

// NodeSource is a node the monitor watches.
type NodeSource struct {
	// Name is how the monitor shows the node.
	Name string
	// MetricsURL is the node's /metrics on its internal listener.
	MetricsURL string
	// Replicas, for a node run as several replicas, lists each replica's
	// /metrics instead: the monitor reads every one and adds them up, as
	// a balancer in front of them would answer from one replica at a
	// time and its counters would jump between theirs.
	Replicas []string
	// ConfigFile is the node's YAML configuration, read for its
	// participants and partner agreements; optional.
	ConfigFile string
}

// nodeConfig is what the monitor reads of a node's configuration: who it
// serves and what it agreed, nothing secret.
type nodeConfig struct {
	Participants []struct {
		URA  string `koanf:"ura"`
		Name string `koanf:"name"`
	} `koanf:"participants"`
	Partners plateau.Config `koanf:"partners"`
}

// readNodeConfig reads the participants and agreements of a node's
// configuration file. Only these keys are read: the file also names key
// files and token files, which the monitor never opens.
func readNodeConfig(path string) (*nodeConfig, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		return nil, err
	}
	var c nodeConfig
	if err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return nil, err
	}
	if err := c.Partners.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Agreement is one side's agreement with a partner: the plateau per
// generic function as that side enforces it.
type Agreement struct {
	Node     string
	From     []string // the URAs of the node's participants
	Partner  string   // a URA, or the collaboration's URAs joined by ", "
	Name     string
	Plateaus map[plateau.Function]int
	Apps     []string
	Default  bool // the fallback for partners without an agreement of their own
}

// At is the plateau agreed for f.
func (a Agreement) At(f plateau.Function) int { return a.Plateaus[f] }

func agreementsOf(nodeName string, c *nodeConfig) []Agreement {
	var from []string
	for _, p := range c.Participants {
		from = append(from, p.URA)
	}
	var out []Agreement
	for _, a := range c.Partners.Agreements {
		ag := Agreement{Node: nodeName, From: from, Partner: a.URA, Name: a.Name, Apps: slices.Clone(a.Applications),
			Plateaus: map[plateau.Function]int{}}
		if len(a.Collaboration) > 0 {
			ag.Partner = strings.Join(a.Collaboration, ", ")
		}
		for _, f := range plateau.Functions {
			ag.Plateaus[f] = c.Partners.Plateau(a, f)
		}
		out = append(out, ag)
	}
	if c.Partners.Default != nil {
		ag := Agreement{Node: nodeName, From: from, Partner: "(default)", Name: "partners without an agreement",
			Plateaus: map[plateau.Function]int{}, Default: true}
		for _, f := range plateau.Functions {
			ag.Plateaus[f] = c.Partners.Plateau(plateau.PartnerConfig{}, f)
		}
		out = append(out, ag)
	}
	return out
}

var errNoSource = errors.New("not configured")

// metricsURL checks a node's metrics address.
func checkURL(s string) error {
	if s == "" {
		return errNoSource
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// metricsURLs are the /metrics the monitor reads for the node.
func (n NodeSource) metricsURLs() []string {
	if len(n.Replicas) > 0 {
		return n.Replicas
	}
	return []string{n.MetricsURL}
}
