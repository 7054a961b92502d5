package bgz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
)

// The user the kit consults for, and the one the node is asked to consult
// for: an internist (UZI role 01.016) with a test UZI number.
const (
	kitUserID   = "900012345"
	kitUserRole = "01.016"
)

// consultRequest is a Direct Pull token request for the target's base.
func (k *kit) consultRequest(p *validation.Probe, withUser bool, resource string) oauth.TokenRequest {
	claims := map[string]any{}
	if withUser {
		claims = map[string]any{"user_id": kitUserID, "user_id_system": "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers",
			"user_role": kitUserRole, "user_role_system": "http://fhir.nl/fhir/NamingSystem/uzi-rolcode", "requester_type": "Z3"}
	}
	return oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer, Scope: []string{k.name}, Resource: resource, AssertionClaims: claims}
}

// consultToken is the kit's Direct Pull token at the holder.
func (k *kit) consultToken(p *validation.Probe) (string, error) {
	v, err := p.Once(k.name+".holder.token", func(p *validation.Probe) (any, error) {
		base := p.Env().Target.FHIRBase()
		if base == "" {
			return "", errors.New("the addressbook lists no FHIR endpoint")
		}
		tok, resp, err := p.Token(p.Env().HTTP, k.consultRequest(p, true, base))
		if err != nil {
			return "", err
		}
		if tok == "" {
			return "", fmt.Errorf("no consult token: HTTP %d %s", resp.Status, resp.OAuthError())
		}
		return tok, nil
	})
	s, _ := v.(string)
	return s, err
}

// consulted is the kit's run of the BgZ query set at the holder.
type consulted struct {
	results []searchResult
	ps      validation.Problems
	// answers are the holder's answers by block; patientRefs the ways
	// the holder's resources refer to the patient its Patient block found.
	answers     map[string]*validation.Response
	patientRefs []string
}

func (k *kit) consultAll(p *validation.Probe) (*consulted, error) {
	v, err := p.Once(k.name+".holder.queries", func(p *validation.Probe) (any, error) {
		tok, err := k.consultToken(p)
		if err != nil {
			return nil, err
		}
		bsn := p.Env().Config.Patient
		if bsn == "" {
			return nil, errors.New("no patient: give the BSN of a patient the node holds with consent for the kit (--patient)")
		}
		c := &consulted{answers: map[string]*validation.Response{}}
		for _, b := range k.blocks {
			resp, err := p.Get(p.Env().HTTP, p.Env().Target.FHIRBase()+"/"+b.Query(bsn), tok)
			if err != nil {
				c.ps.Add("%s: %v", b.Name, err)
				continue
			}
			c.answers[b.Name] = resp
			if b.Name == "Patient" && resp.Status == http.StatusOK {
				c.patientRefs = patientReferences(resp.Body)
			}
			c.results = append(c.results, k.judgeSearchset(&c.ps, b, bsn, resp))
		}
		return c, nil
	})
	c, _ := v.(*consulted)
	return c, err
}

func (k *kit) holderCases() []validation.Case {
	cs := []validation.Case{
		{ID: k.name + ".holder.token", Title: "A consult token for the holder's FHIR endpoint", Roles: holder, Mandatory: true,
			Requirement: "A jwt-bearer token request without authorization_base, naming the holder's FHIR base as RFC 8707 resource, scope " + k.name + " and the requesting user (UZI number, role code), gets a token for that endpoint bound to the requester's certificate.",
			Source:      srcDP + "; RFC 7523 §2.1; RFC 8705",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				tok, err := k.consultToken(p)
				p.Record(p.ScenarioExchanges(k.name + ".holder.token")...)
				if err != nil {
					return validation.Fail("%v", err)
				}
				c, err := validation.UnverifiedClaims(tok)
				if err != nil {
					return validation.Fail("the token is not a JWT: %v", err)
				}
				var ps validation.Problems
				ps.Check(validation.AudienceHas(c["aud"], p.Env().Target.FHIRBase()), "aud %v is not the FHIR base %s", c["aud"], p.Env().Target.FHIRBase())
				cnf, _ := c["cnf"].(map[string]any)
				ps.Check(cnf != nil && cnf["x5t#S256"] != "", "the token carries no cnf x5t#S256")
				exp, _ := c["exp"].(float64)
				ps.Check(time.Unix(int64(exp), 0).Before(time.Now().Add(time.Hour+time.Minute)), "the token lives more than an hour")
				return ps.Verdict("consult token granted")
			}},
		{ID: k.name + ".holder.query-set", Title: "The holder answers the BgZ query set with conformant data", Roles: holder, Mandatory: true,
			Requirement: "Each BgZ search for a consenting patient answers 200 with a searchset Bundle of valid " + k.fhirName + " resources of the searched type; the Patient search finds the patient." + k.versionRequirement(),
			Source:      k.querySet + "; " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := k.consultAll(p)
				p.Record(p.ScenarioExchanges(k.name + ".holder.queries")...)
				if c == nil {
					return validation.Fail("%v", err)
				}
				ps := c.ps
				for _, r := range c.results {
					if r.block == "Patient" {
						ps.Check(r.matches == 1, "the Patient search found %d patients, want 1", r.matches)
					}
				}
				ps.Check(len(c.results) == len(k.blocks), "%d of %d blocks answered", len(c.results), len(k.blocks))
				return ps.Verdict(summary(c.results))
			}},
		k.consultRefusal(k.name+".holder.consent-absent", "No data without the patient's consent",
			"A BgZ search for a patient who registered no consent for this exchange is refused with 403 and an OperationOutcome.",
			srcConsent, http.StatusForbidden, func(string) string { return k.blocks[5].Query(otherBSN) }),
		k.consultRefusal(k.name+".holder.not-bgz", "A search outside the BgZ query set is refused",
			"Under a BgZ consult token only the BgZ searches are answered: another search for the patient gets 403 and an OperationOutcome.",
			k.querySet+"; "+srcDP, http.StatusForbidden, func(bsn string) string { return "Observation?patient.identifier=" + nl.SystemBSN + "|" + bsn }),
		k.consultRefusal(k.name+".holder.invalid-bsn", "A search with an invalid BSN is refused",
			"A search naming a BSN that fails the 11-proef is refused (400 or 403 OperationOutcome).",
			srcBSN, 0, func(string) string { return k.blocks[5].Query(wrongBSN) }),
		{ID: k.name + ".holder.no-user", Title: "A consult without a named user gets no token", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "A consult token request that names no user (UZI number and role) is refused: the patient's consent cannot be asked without one.",
			Source:      srcConsent + "; " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				_, resp, err := p.Token(p.Env().HTTP, k.consultRequest(p, false, p.Env().Target.FHIRBase()))
				if err != nil {
					return validation.Error("%v", err)
				}
				return refusedToken(resp)
			}},
		{ID: k.name + ".holder.wrong-resource", Title: "A consult for another endpoint gets no token", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "A consult token request whose resource is not a FHIR endpoint of the holder is refused (invalid_target).",
			Source:      "RFC 8707 §2; " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				_, resp, err := p.Token(p.Env().HTTP, k.consultRequest(p, true, "https://elsewhere.invalid/fhir"))
				if err != nil {
					return validation.Error("%v", err)
				}
				return refusedToken(resp)
			}},
		{ID: k.name + ".holder.token-binding", Title: "The consult token is useless over another certificate", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "The consult token presented over a connection with another certificate of the same organisation is refused with 401.",
			Source:      "RFC 8705 §3",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				tok, err := k.consultToken(p)
				if err != nil {
					return validation.Error("%v", err)
				}
				resp, err := p.Get(p.Env().AltHTTP, p.Env().Target.FHIRBase()+"/"+k.blocks[0].Query(p.Env().Config.Patient), tok)
				if err != nil {
					return validation.Pass("refused on the connection: %v", err)
				}
				if resp.Status != http.StatusUnauthorized {
					return validation.Fail("HTTP %d, want 401", resp.Status)
				}
				return validation.Pass("refused with 401")
			}},
	}
	return append(cs, k.blockCases()...)
}

func refusedToken(resp *validation.Response) validation.Verdict {
	var ps validation.Problems
	ps.Check(resp.Status == http.StatusBadRequest || resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden, "HTTP %d, want a refusal", resp.Status)
	ps.Check(resp.OAuthError() != "", "the refusal is not an RFC 6749 error")
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = resp.JSON(&body)
	ps.Check(body.AccessToken == "", "a token was issued")
	return ps.Verdict(fmt.Sprintf("refused: HTTP %d %s", resp.Status, resp.OAuthError()))
}

// consultRefusal searches with the consult token what the holder must
// refuse; status 0 accepts 400 and 403.
func (k *kit) consultRefusal(id, title, req, src string, status int, rel func(bsn string) string) validation.Case {
	return validation.Case{ID: id, Title: title, Roles: holder, Mandatory: true, Negative: true, Requirement: req, Source: src,
		Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
			tok, err := k.consultToken(p)
			if err != nil {
				return validation.Error("no consult token to try: %v", err)
			}
			resp, err := p.Get(p.Env().HTTP, p.Env().Target.FHIRBase()+"/"+rel(p.Env().Config.Patient), tok)
			if err != nil {
				return validation.Fail("%v", err)
			}
			var ps validation.Problems
			if status == 0 {
				ps.Check(resp.Status == http.StatusBadRequest || resp.Status == http.StatusForbidden, "HTTP %d, want 400 or 403", resp.Status)
			} else {
				ps.Check(resp.Status == status, "HTTP %d, want %d", resp.Status, status)
			}
			ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
			return ps.Verdict(fmt.Sprintf("refused: HTTP %d", resp.Status))
		}}
}
