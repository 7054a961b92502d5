// Package bgz holds the validation kit's cases for the BgZ care
// application (SPEC §5): the Notified Pull of a referral (node as sender or
// receiver) and the Direct Pull of a consult (node as holder or
// requester). They live here rather than in the bgz package because the
// node imports bgz: the kit's machinery stays out of the node's packages.
package bgz

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	fhirvalidate "github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/np"
)

// Name is the care application's name and its OAuth scope.
const Name = "bgz"

// Sources the BgZ cases cite.
const (
	srcTANP     = "Twiin TA Notified Pull (SPEC §4)"
	srcTANPTask = "Twiin TA Notified Pull, notification Task nl-vzvz-TaskNotifiedPull (SPEC §4 step 2)"
	srcTANPPull = "Twiin TA Notified Pull, the receiver's pull (SPEC §4 step 4)"
	srcTANPStat = "Twiin TA Notified Pull, Task status (SPEC §4 step 3)"
	srcBgZ      = "BgZ MSZ 2.0 query set (SPEC §5; Nictiz BgZ-MSZ-2-0 qualification)"
	srcDP       = "Twiin Direct Pull, targeted query (SPEC §4); RFC 8707 resource indicator"
	srcConsent  = "Consent: no exchange without the patient's consent (Mitz closed question, SPEC §6, §9)"
	srcBSN      = "Citizen identification: BSN verified and valid, every plateau (SPEC §3, §6)"
)

// Application is BgZ as the kit needs it: the record the kit serves when
// it plays the sender or the holder (a synthetic patient from demo).
func Application() validation.Application {
	return validation.Application{Name: Name, Title: "Basisgegevensset Zorg (BgZ MSZ 2.0, STU3)",
		Record: func() (string, [][]byte, error) {
			ps, err := demo.Generate(demo.Options{Count: 1, Seed: 9511, GPName: "Twiin validatieservice", IDPrefix: "kit"})
			if err != nil {
				return "", nil, err
			}
			return ps[0].BSN, [][]byte{demo.TransactionBundle(ps[0])}, nil
		}}
}

// Cases returns every BgZ case, per role of the node under test.
func Cases() []validation.Case {
	var cs []validation.Case
	cs = append(cs, senderCases()...)
	cs = append(cs, receiverCases()...)
	cs = append(cs, receiverTASteps()...)
	cs = append(cs, holderCases()...)
	cs = append(cs, requesterCases()...)
	return cs
}

// Register adds BgZ and its cases to reg.
func Register(reg *validation.Registry) error { return reg.AddApplication(Application(), Cases()...) }

var (
	sender    = []validation.Role{validation.RoleSender}
	receiver  = []validation.Role{validation.RoleReceiver}
	holder    = []validation.Role{validation.RoleHolder}
	requester = []validation.Role{validation.RoleRequester}
)

func secret() string { return np.Secret() }

func uuid() string { return np.UUID() }

// searchResult is what the kit made of one BgZ search's answer.
type searchResult struct {
	block   string
	status  int
	matches int
	outcome bool
}

// judgeSearchset checks one answer: a searchset Bundle whose entries are
// valid STU3 resources, whose matches are of the searched type, about the
// patient only.
func judgeSearchset(ps *validation.Problems, b bgz.Block, bsn string, resp *validation.Response) searchResult {
	r := searchResult{block: b.Name, status: resp.Status, outcome: resp.IsOutcome()}
	if resp.Status != 200 {
		ps.Add("%s: HTTP %d", b.Name, resp.Status)
		return r
	}
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
			Search   struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := resp.JSON(&bundle); err != nil || bundle.ResourceType != "Bundle" || bundle.Type != "searchset" {
		ps.Add("%s: the answer is not a searchset Bundle", b.Name)
		return r
	}
	typ, _, _ := strings.Cut(b.Template, "?")
	typ, _, _ = strings.Cut(typ, "/")
	for i, e := range bundle.Entry {
		var head struct{ ResourceType string }
		_ = json.Unmarshal(e.Resource, &head)
		for _, is := range fhirvalidate.Resource(fhir.STU3, e.Resource) {
			if is.Severity == "error" || is.Severity == "fatal" {
				ps.Add("%s: entry %d (%s) is not valid STU3: %s", b.Name, i, head.ResourceType, is.Diagnostics)
				break
			}
		}
		if e.Search.Mode != "match" {
			continue
		}
		r.matches++
		ps.Check(head.ResourceType == typ, "%s: a match of type %s, want %s", b.Name, head.ResourceType, typ)
		if head.ResourceType == "Patient" {
			got, _, _ := nl.Patient(e.Resource)
			ps.Check(got == bsn, "%s: a Patient with BSN %q, want %s", b.Name, got, bsn)
		}
	}
	return r
}

// blockOf matches a request the node made on the kit's base against the
// BgZ query set for bsn.
func blockOf(path, rawQuery, base string, bsn string) (bgz.Block, error) {
	rel := strings.TrimPrefix(path, base)
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return bgz.Block{}, err
	}
	typ, op, _ := strings.Cut(strings.TrimPrefix(rel, "/"), "/")
	return bgz.Match(bgz.SearchOf(typ, op, params), bsn)
}

// wrongBSN is nine digits that fail the 11-proef.
const wrongBSN = "123456789"

func otherPatientQuery(b bgz.Block) string {
	return b.Query(otherBSN)
}

// otherBSN is a valid test BSN of no patient the kit is told about.
const otherBSN = "999990020"

func summary(rs []searchResult) string {
	n := 0
	for _, r := range rs {
		n += r.matches
	}
	return fmt.Sprintf("%d searches, %d matches", len(rs), n)
}
