package bgz

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
)

// consultation is what the node (as requester) did when told to consult
// the kit for the kit's patient.
type consultation struct {
	inbound []validation.Inbound
	grants  []oauth.GrantRequest
}

func (k *kit) runConsultation(p *validation.Probe) (*consultation, error) {
	v, err := p.Once(k.name+".requester.consult", func(p *validation.Probe) (any, error) {
		env := p.Env()
		cp := env.Counterpart
		mark, grants := cp.Mark(), len(cp.Grants())
		if err := env.Driver.Consult(p.Context(), cp.PatientBSN, cp.URA, k.name, kitUserID, kitUserRole); err != nil {
			return nil, fmt.Errorf("the driver could not make the node consult: %w", err)
		}
		want := len(k.blocks)
		cp.Await(p.Context(), mark, env.Config.Wait, func(ins []validation.Inbound) bool {
			n := 0
			for _, in := range ins {
				if cp.IsData(in) {
					n++
				}
			}
			return n >= want
		})
		c := &consultation{inbound: cp.Inbound(mark), grants: cp.Grants()[grants:]}
		p.Record(cp.Exchanges(c.inbound)...)
		return c, nil
	})
	c, _ := v.(*consultation)
	p.Record(p.ScenarioExchanges(k.name + ".requester.consult")...)
	return c, err
}

// scriptedConsult has the node consult the kit once more while the kit's
// holder answers the searches answer claims; it returns the node's
// requests and the driver's error (the consult as the participant saw it).
func (k *kit) scriptedConsult(p *validation.Probe, answer func(r *http.Request, path string) (int, []byte, bool)) ([]validation.Inbound, error) {
	env := p.Env()
	cp := env.Counterpart
	cp.Answer(answer)
	defer cp.Answer(nil)
	mark := cp.Mark()
	derr := env.Driver.Consult(p.Context(), cp.PatientBSN, cp.URA, k.name, kitUserID, kitUserRole)
	want := len(k.blocks)
	cp.Await(p.Context(), mark, env.Config.Wait, func(ins []validation.Inbound) bool {
		n := 0
		for _, in := range ins {
			if cp.IsData(in) {
				n++
			}
		}
		return n >= want
	})
	ins := cp.Inbound(mark)
	p.Record(cp.Exchanges(ins)...)
	return ins, derr
}

// searchedBlocks counts the node's searches on the kit's base by block.
func (k *kit) searchedBlocks(cp *validation.Counterpart, ins []validation.Inbound) map[string]int {
	basePath := cp.DataPath()
	seen := map[string]int{}
	for _, in := range ins {
		if in.Method != http.MethodGet || !strings.HasPrefix(in.Path, basePath+"/") {
			continue
		}
		if b, err := k.blockOf(in.Path, in.Query, basePath, cp.PatientBSN); err == nil {
			seen[b.Name]++
		}
	}
	return seen
}

// onBlock answers the search of one block, and leaves the others to the record.
func (k *kit) onBlock(block string, status int, body []byte) func(r *http.Request, path string) (int, []byte, bool) {
	return func(r *http.Request, path string) (int, []byte, bool) {
		typ, op, _ := strings.Cut(path, "/")
		bsn, ok := bgz.PatientBSN(r.URL.Query())
		if !ok {
			return 0, nil, false
		}
		b, err := k.match(bgz.SearchOf(typ, op, r.URL.Query()), bsn)
		if err != nil || b.Name != block {
			return 0, nil, false
		}
		return status, body, true
	}
}

func (k *kit) requesterCases() []validation.Case {
	return []validation.Case{
		{ID: k.name + ".requester.token-request", Title: "The requester asks a consult token for the holder's endpoint", Roles: requester, Mandatory: true,
			Requirement: "The requester asks the holder's authorization server (from the addressbook) for a jwt-bearer token with scope " + k.name + ", the holder's FHIR base as RFC 8707 resource, no authorization_base, and the requesting user (user_id, user_role) in its grant assertion.",
			Source:      srcDP + "; RFC 7523 §2.1",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := k.runConsultation(p)
				if c == nil {
					return validation.Fail("%v", err)
				}
				cp := p.Env().Counterpart
				for _, in := range c.inbound {
					if !validation.IsToken(in) {
						continue
					}
					f := validation.FormOf(in)
					var ps validation.Problems
					ps.Check(f.Get("grant_type") == oauth.GrantTypeJWTBearer, "grant_type %q, want jwt-bearer", f.Get("grant_type"))
					ps.Check(f.Get("resource") == cp.DataBase, "resource %q, want the holder's FHIR base %s", f.Get("resource"), cp.DataBase)
					ps.Check(f.Get("authorization_base") == "", "an authorization_base was sent: that is a Notified Pull")
					ps.Check(strings.Contains(" "+f.Get("scope")+" ", " "+k.name+" "), "scope %q lacks %s", f.Get("scope"), k.name)
					claims, _ := validation.UnverifiedClaims(f.Get("assertion"))
					ps.Check(claims["user_id"] == kitUserID && claims["user_role"] == kitUserRole, "the grant assertion does not name the user (user_id %v, user_role %v)", claims["user_id"], claims["user_role"])
					ps.Check(in.Status == http.StatusOK, "the kit refused the request (HTTP %d): %s", in.Status, in.Answer)
					return ps.Verdict("consult token requested")
				}
				return validation.Fail("the requester asked the kit's authorization server for no token")
			}},
		{ID: k.name + ".requester.client-assertion", Title: "The requester's token request is an RFC 7523 client assertion", Roles: requester, Mandatory: true,
			Requirement: "The requester authenticates with a signed JWT client assertion (iss = sub = its URA, aud = the token endpoint, exp, iat, jti, kid, an allowed algorithm) over its own certificate; its grant assertion is signed likewise.",
			Source:      "RFC 7523 §2.1–2.2, §3",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := k.runConsultation(p)
				if c == nil {
					return validation.Fail("%v", err)
				}
				for _, in := range c.inbound {
					if validation.IsToken(in) {
						return validation.CheckTokenRequest(in, p.Env().Target.URA, p.Env().Counterpart.URL+oauth.TokenPath).Verdict("client and grant assertions conform")
					}
				}
				return validation.Fail("no token request arrived")
			}},
		{ID: k.name + ".requester.query-set", Title: "The requester runs the BgZ query set, each with its token", Roles: requester, Mandatory: true,
			Requirement: "The requester runs every BgZ search for the patient on the holder's FHIR endpoint, each with the consult token bound to its certificate, and nothing else.",
			Source:      k.querySet + "; " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := k.runConsultation(p)
				if c == nil {
					return validation.Fail("%v", err)
				}
				return k.judgeQueries(p, c.inbound, "")
			}},
		{ID: k.name + ".requester.stays-on-holder-endpoint", Title: "The requester does not follow a next link off the holder's endpoint", Roles: requester, Mandatory: true, Negative: true,
			Requirement: "The requester follows a searchset's next link only on the holder's FHIR endpoint from the addressbook: a next link elsewhere would send its token there, and must not be fetched.",
			Source:      k.cite("FHIR STU3 search §3.1.1.4.3 (paging links)", "FHIR R4 search (paging links)") + "; RFC 6750 §5.3 (bearer tokens only to the resource server); " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				cp := p.Env().Counterpart
				page := fmt.Sprintf(`{"resourceType":"Bundle","type":"searchset","total":2,"link":[{"relation":"self","url":%q},{"relation":"next","url":%q}],"entry":[]}`,
					cp.DataBase+"/Condition", cp.URL+"/elsewhere/fhir/Condition?page=2")
				ins, derr := k.scriptedConsult(p, k.onBlock("Problem", http.StatusOK, []byte(page)))
				var ps validation.Problems
				for _, in := range ins {
					ps.Check(!strings.HasPrefix(in.Path, "/elsewhere/"), "the requester fetched %s?%s, off the holder's endpoint", in.Path, in.Query)
				}
				ps.Check(k.searchedBlocks(cp, ins)["Problem"] >= 1, "the Problem block was not searched (driver: %v)", derr)
				return ps.Verdict("the next link off the endpoint was not followed")
			}},
		{ID: k.name + ".requester.partial-answer", Title: "A block refused by the holder leaves the other blocks", Roles: requester, Mandatory: true,
			Requirement: "When the holder refuses one block (403 OperationOutcome, e.g. for lack of consent for that data), the requester still runs every other block and the consult does not fail as a whole: the refusal is reported per block.",
			Source:      k.querySet + "; " + k.cite("FHIR STU3 http §2.21.0.16 (OperationOutcome on 4xx)", "FHIR R4 http (OperationOutcome on 4xx)") + "; " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				cp := p.Env().Counterpart
				outcome := []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden","diagnostics":"refused by the validation kit for this block"}]}`)
				ins, derr := k.scriptedConsult(p, k.onBlock("Alert", http.StatusForbidden, outcome))
				var ps validation.Problems
				ps.Check(derr == nil, "the consult failed as a whole: %v", derr)
				seen := k.searchedBlocks(cp, ins)
				for _, b := range k.blocks {
					ps.Check(seen[b.Name] >= 1, "block %s was not searched after the refusal", b.Name)
				}
				return ps.Verdict(fmt.Sprintf("%d blocks searched, Alert refused", len(seen)))
			}},
	}
}
