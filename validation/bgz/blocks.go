package bgz

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
)

// srcBlock cites, for one block, the query of the kit's implementation
// guide and the FHIR search rules its answer obeys.
func (k *kit) srcBlock(b bgz.Block) string {
	return fmt.Sprintf("%s, block %s (SPEC §5); %s (searchset, _include)", k.guide, b.Name, k.fhirSearch)
}

// blockSlug turns a block's zib name into a case id part:
// "HealthProfessional/CareTeam" → "health-professional-care-team".
func blockSlug(name string) string {
	var sb strings.Builder
	prev := rune(0)
	for _, r := range name {
		switch {
		case r == '/':
			sb.WriteByte('-')
		case unicode.IsUpper(r):
			if prev != 0 && prev != '/' {
				sb.WriteByte('-')
			}
			sb.WriteRune(unicode.ToLower(r))
		default:
			sb.WriteRune(r)
		}
		prev = r
	}
	return sb.String()
}

// blockCases are one holder case per BgZ block: the Nictiz qualification
// judges every query on its own, and a holder that answers twenty-five
// blocks right and one wrong must show which.
func (k *kit) blockCases() []validation.Case {
	var cs []validation.Case
	for _, b := range k.blocks {
		typ, _, _ := strings.Cut(b.Template, "?")
		cs = append(cs, validation.Case{ID: k.name + ".holder.block." + blockSlug(b.Name), Roles: holder, Mandatory: true,
			Title: fmt.Sprintf("BgZ block %s: %s", b.Name, typ),
			Requirement: fmt.Sprintf("The search %s for a consenting patient answers 200 with a searchset Bundle: every match is a valid %s %s that meets the search's parameters (category, code, status), about this patient and no other; included resources are only those the query's _include allows; the Bundle's links stay on the holder's FHIR endpoint.",
				b.Template, k.fhirName, strings.Split(typ, "/")[0]) + k.versionRequirement(),
			Source: k.srcBlock(b),
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := k.consultAll(p)
				if c == nil {
					return validation.Fail("%v", err)
				}
				resp := c.answers[b.Name]
				q := "/" + b.Query(p.Env().Config.Patient)
				for _, ex := range p.ScenarioExchanges(k.name + ".holder.queries") {
					if strings.HasSuffix(ex.URL, q) {
						p.Record(ex)
					}
				}
				if resp == nil {
					return validation.Fail("the block was not answered: %s", strings.Join(c.ps, "; "))
				}
				ps := k.judgeBlock(b, p.Env().Config.Patient, c.patientRefs, p.Env().Target.FHIRBase(), resp)
				return ps.Verdict(fmt.Sprintf("HTTP %d, conformant searchset", resp.Status))
			}})
	}
	return cs
}

// blockEntry is an entry of a searchset Bundle as judgeBlock reads it.
type blockEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Search   struct {
		Mode string `json:"mode"`
	} `json:"search"`
}

// judgeBlock checks the holder's answer to one BgZ block beyond what
// judgeSearchset does: the search's parameters honoured, the patient's
// references, the included types and the links. patientRefs are the
// references ("Patient/<id>", full URLs) of the patient as the holder's
// Patient block returned it; empty when that is unknown.
func (k *kit) judgeBlock(b bgz.Block, bsn string, patientRefs []string, base string, resp *validation.Response) validation.Problems {
	var ps validation.Problems
	k.judgeSearchset(&ps, b, bsn, resp)
	status, body := resp.Status, resp.Body
	if status != 200 {
		return ps
	}
	var bundle struct {
		Link []struct {
			Relation string `json:"relation"`
			URL      string `json:"url"`
		} `json:"link"`
		Entry []blockEntry `json:"entry"`
	}
	if json.Unmarshal(body, &bundle) != nil {
		return ps
	}
	for _, l := range bundle.Link {
		ps.Check(strings.HasPrefix(l.URL, base+"/") || l.URL == base, "%s: the %s link %q leaves the holder's FHIR endpoint %s", b.Name, l.Relation, l.URL, base)
	}
	_, rawQuery, _ := strings.Cut(b.Template, "?")
	params, _ := url.ParseQuery(rawQuery)
	var allowed []string
	for _, inc := range params["_include"] {
		allowed = append(allowed, k.includes[inc]...)
	}
	for i, e := range bundle.Entry {
		var res map[string]any
		if json.Unmarshal(e.Resource, &res) != nil {
			continue
		}
		typ := str(res["resourceType"])
		switch e.Search.Mode {
		case "match":
			for _, key := range []string{"category", "code"} {
				if want := params.Get(key); want != "" && !hasAnyCoding(res[key], want) {
					ps.Add("%s: entry %d (%s/%s) does not have the %s %s the search asks for", b.Name, i, typ, str(res["id"]), key, want)
				}
			}
			if want := params.Get("status"); want != "" {
				ps.Check(str(res["status"]) == want, "%s: entry %d (%s/%s) has status %q, the search asks for %s", b.Name, i, typ, str(res["id"]), str(res["status"]), want)
			}
			if typ != "Patient" {
				if other := otherPatient(res, bsn, patientRefs); other != "" {
					ps.Add("%s: entry %d (%s/%s) is about another patient (%s)", b.Name, i, typ, str(res["id"]), other)
				}
			}
		case "include":
			ps.Check(slices.Contains(allowed, typ), "%s: an included %s, which the query's _include %v does not ask for", b.Name, typ, params["_include"])
			if typ == "Patient" {
				got, _, _ := nl.Patient(e.Resource)
				ps.Check(got == bsn, "%s: an included Patient with BSN %q, want %s", b.Name, got, bsn)
			}
		case "outcome":
			ps.Check(typ == "OperationOutcome", "%s: an outcome entry of type %s", b.Name, typ)
		default:
			ps.Add("%s: entry %d (%s) has search.mode %q, want match, include or outcome", b.Name, i, typ, e.Search.Mode)
		}
	}
	return ps
}

// hasAnyCoding reports whether a CodeableConcept, or one of a list of
// them, has a coding among the search's alternatives ("sys|code,sys|code").
func hasAnyCoding(v any, alternatives string) bool {
	var ccs []any
	switch t := v.(type) {
	case []any:
		ccs = t
	case map[string]any:
		ccs = []any{t}
	}
	for _, alt := range strings.Split(alternatives, ",") {
		system, code, _ := strings.Cut(alt, "|")
		for _, cc := range ccs {
			if hasCoding(cc, system, code) {
				return true
			}
		}
	}
	return false
}

// otherPatient returns the patient reference or BSN of res that is not the
// searched patient's, or "" when every one names the patient.
func otherPatient(res map[string]any, bsn string, patientRefs []string) string {
	for _, key := range []string{"subject", "patient", "beneficiary"} {
		ref, ok := res[key].(map[string]any)
		if !ok {
			continue
		}
		if r := str(ref["reference"]); strings.Contains(r, "Patient/") && len(patientRefs) > 0 {
			same := false
			for _, pr := range patientRefs {
				same = same || r == pr || strings.HasSuffix(r, "/"+pr) || strings.HasSuffix(pr, "/"+r)
			}
			if !same {
				return r
			}
		}
		if id, ok := ref["identifier"].(map[string]any); ok && nl.CanonicalSystem(str(id["system"])) == nl.SystemBSN && str(id["value"]) != bsn {
			return "BSN " + str(id["value"])
		}
	}
	return ""
}

// patientReferences are the ways the holder's own resources can refer to
// the patient its Patient block returned.
func patientReferences(body []byte) []string {
	var bundle struct {
		Entry []blockEntry `json:"entry"`
	}
	if json.Unmarshal(body, &bundle) != nil {
		return nil
	}
	var refs []string
	for _, e := range bundle.Entry {
		var head struct{ ResourceType, ID string }
		if e.Search.Mode != "match" || json.Unmarshal(e.Resource, &head) != nil || head.ResourceType != "Patient" {
			continue
		}
		if head.ID != "" {
			refs = append(refs, "Patient/"+head.ID)
		}
		if e.FullURL != "" {
			refs = append(refs, e.FullURL)
		}
	}
	return refs
}
