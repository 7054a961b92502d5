package bgz

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/validation"
)

// srcVersion cites where the FHIR version of an exchange is agreed and
// shown: the partner agreement names the application (and so its
// version), the addressbook lists the data endpoint with its version, the
// media type carries it.
const srcVersion = "FHIR R4 http, the fhirVersion parameter of the FHIR media type; addressbook Endpoint.payloadMimeType (SPEC §9); partner agreement per care application (docs/care-applications.md \"BgZ on R4\")"

// versionCases are the cases of a kit whose data is not STU3: the data
// endpoint of its version apart from the Tasks' STU3 base, and STU3 asked
// where the partners agreed R4 refused. BgZ on STU3 has none.
func (k *kit) versionCases() []validation.Case {
	if k.stu3Data() {
		return nil
	}
	v := k.version.MimeVersion()
	return []validation.Case{
		{ID: k.name + ".holder.data-endpoint", Title: "The holder lists its " + k.fhirName + " data endpoint in the addressbook", Roles: holder, Mandatory: true,
			Requirement: fmt.Sprintf("The addressbook lists the holder's %s data endpoint under payload type %s with payloadMimeType application/fhir+json; fhirVersion=%s, an https FHIR base of its own, apart from the STU3 base of its Notified Pull Task endpoint.", k.fhirName, k.payload, v),
			Source:      srcVersion,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				return k.dataEndpoint(p.Env().Target).Verdict("data endpoint " + p.Env().Target.FHIRBase())
			}},
		{ID: k.name + ".sender.data-endpoint", Title: "The sender lists its " + k.fhirName + " data endpoint in the addressbook", Roles: sender, Mandatory: true,
			Requirement: fmt.Sprintf("The addressbook lists the sender's %s data endpoint under payload type %s with payloadMimeType application/fhir+json; fhirVersion=%s, apart from the STU3 base its workflow Task and notification endpoint are on: the receiver pulls the data there.", k.fhirName, k.payload, v),
			Source:      srcVersion + "; " + srcTANPPull,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				return k.dataEndpoint(p.Env().Target).Verdict("data endpoint " + p.Env().Target.FHIRBase())
			}},
		{ID: k.name + ".holder.stu3-media-type", Title: "STU3 asked of the " + k.fhirName + " endpoint is refused", Roles: holder, Mandatory: true, Negative: true,
			Requirement: fmt.Sprintf("A BgZ search on the %s data endpoint that accepts only application/fhir+json; fhirVersion=3.0 is refused with a 4xx OperationOutcome: the partners agreed %s, and the holder does not answer another version than it serves there.", k.fhirName, k.fhirName),
			Source:      srcVersion,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				tok, err := k.consultToken(p)
				if err != nil {
					return validation.Error("no consult token to try: %v", err)
				}
				return k.stu3Asked(p, p.Env().Target.FHIRBase(), tok)
			}},
		{ID: k.name + ".holder.stu3-search", Title: "The STU3 search of a block is refused on the " + k.fhirName + " endpoint", Roles: holder, Mandatory: true, Negative: true,
			Requirement: fmt.Sprintf("The STU3 BgZ search of a block whose %s search differs (PlannedCareActivity: ProcedureRequest, which %s has not) is refused on the %s data endpoint with a 4xx OperationOutcome, and nothing is returned.", k.fhirName, k.fhirName, k.fhirName),
			Source:      srcVersion + "; " + k.querySet,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				tok, err := k.consultToken(p)
				if err != nil {
					return validation.Error("no consult token to try: %v", err)
				}
				q, err := k.stu3Only(p.Env().Config.Patient)
				if err != nil {
					return validation.Error("%v", err)
				}
				resp, err := p.Get(p.Env().HTTP, p.Env().Target.FHIRBase()+"/"+q, tok)
				if err != nil {
					return validation.Fail("%v", err)
				}
				return refused4xx(resp)
			}},
		{ID: k.name + ".sender.stu3-media-type", Title: "STU3 asked of the referral's " + k.fhirName + " data is refused", Roles: sender, Mandatory: true, Negative: true,
			Requirement: fmt.Sprintf("A search of the workflow Task on the sender's %s data endpoint, with the referral's token, that accepts only application/fhir+json; fhirVersion=3.0 is refused with a 4xx OperationOutcome.", k.fhirName),
			Source:      srcVersion + "; " + srcTANPPull,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				pl, err := k.pull(p)
				if pl == nil || pl.token == "" {
					return validation.Error("no referral token to try: %v", err)
				}
				return k.stu3Asked(p, p.Env().Target.FHIRBase(), pl.token)
			}},
		{ID: k.name + ".sender.data-not-on-task-base", Title: "The referral's " + k.fhirName + " data is not served on the STU3 Task base", Roles: sender, Mandatory: true, Negative: true,
			Requirement: fmt.Sprintf("A search of the workflow Task sent, with the referral's token, to the STU3 base the workflow Task is on instead of the %s data endpoint is refused with a 4xx OperationOutcome: the referral's data is %s, only its Tasks are STU3.", k.fhirName, k.fhirName),
			Source:      srcVersion + "; " + srcTANPPull,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				pl, err := k.pull(p)
				if pl == nil || pl.token == "" {
					return validation.Error("no referral token to try: %v", err)
				}
				if len(pl.queries) == 0 {
					return validation.Error("the workflow Task offers no search to try")
				}
				taskBase := strings.TrimSuffix(pl.workflowURL, "/Task/"+lastSegment(pl.workflowURL))
				resp, err := p.Get(p.Env().HTTP, taskBase+"/"+strings.TrimPrefix(pl.queries[len(pl.queries)-1], "/"), pl.token)
				if err != nil {
					return validation.Fail("%v", err)
				}
				return refused4xx(resp)
			}},
	}
}

// dataEndpoint checks the target's data endpoint of the kit's version: in
// the addressbook (the run found it there under the version), https, and
// not the Tasks' STU3 base.
func (k *kit) dataEndpoint(t validation.Target) validation.Problems {
	var ps validation.Problems
	base := t.FHIRBase()
	if base == "" {
		ps.Add("the addressbook lists no endpoint of payload type %s with fhirVersion %s for URA %s", k.payload, k.version.MimeVersion(), t.URA)
		return ps
	}
	ps.Check(strings.HasPrefix(base, "https://"), "the data endpoint %s is not https", base)
	ps.Check(base != t.TaskBase(), "the %s data endpoint %s is the STU3 base of the Task endpoint", k.fhirName, base)
	return ps
}

// stu3Asked sends the Problem block's search to base accepting only FHIR
// STU3 JSON; a 4xx OperationOutcome passes.
func (k *kit) stu3Asked(p *validation.Probe, base, token string) validation.Verdict {
	b, ok := k.block("Problem")
	if !ok {
		return validation.Error("the query set has no Problem block")
	}
	req, err := http.NewRequestWithContext(p.Context(), http.MethodGet, base+"/"+b.Query(p.Env().Config.Patient), nil)
	if err != nil {
		return validation.Error("%v", err)
	}
	req.Header.Set("Accept", "application/fhir+json; fhirVersion=3.0")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := p.Do(p.Env().HTTP, req)
	if err != nil {
		return validation.Fail("%v", err)
	}
	return refused4xx(resp)
}

// stu3Only is the STU3 BgZ search of the first block whose search in the
// kit's query set is another (a resource the version renamed), for bsn.
func (k *kit) stu3Only(bsn string) (string, error) {
	for _, sb := range bgz.Queries() {
		b, ok := k.block(sb.Name)
		if !ok {
			continue
		}
		st, _, _ := strings.Cut(sb.Template, "?")
		own, _, _ := strings.Cut(b.Template, "?")
		if st != own {
			return sb.Query(bsn), nil
		}
	}
	return "", fmt.Errorf("every block of %s searches the same resource type as in STU3", k.name)
}

// block is the kit's block of that name.
func (k *kit) block(name string) (bgz.Block, bool) {
	for _, b := range k.blocks {
		if b.Name == name {
			return b, true
		}
	}
	return bgz.Block{}, false
}

// refused4xx passes a 4xx answer with an OperationOutcome that returned no
// searchset.
func refused4xx(resp *validation.Response) validation.Verdict {
	var ps validation.Problems
	ps.Check(resp.Status >= 400 && resp.Status < 500, "HTTP %d, want a 4xx refusal", resp.Status)
	ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
	return ps.Verdict(fmt.Sprintf("refused: HTTP %d", resp.Status))
}
