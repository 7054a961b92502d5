// Package bgz holds the validation kit's cases for the BgZ care
// applications (SPEC §5): BgZ MSZ 2.0 on FHIR STU3 ("bgz") and BgZ on FHIR
// R4 with the zib2020 models ("bgz-r4"). Per application, the Notified Pull
// of a referral (node as sender or receiver) and the Direct Pull of a
// consult (node as holder or requester). One code serves both: a kit value
// per version carries what differs — the query set, the FHIR version of
// the data and its endpoint, the profiles, the sources — and every case
// takes it. They live here rather than in the bgz packages because the
// node imports those: the kit's machinery stays out of the node's packages.
package bgz

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/bgzr4"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	fhirvalidate "github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/np"
)

// Name is the care application's name and its OAuth scope; NameR4 that of
// BgZ on R4. They prefix the case ids: "bgz.sender.…", "bgz-r4.sender.…".
const (
	Name   = bgz.Name
	NameR4 = bgzr4.Name
)

// Sources the BgZ cases cite.
const (
	srcTANP     = "Twiin TA Notified Pull (SPEC §4)"
	srcTANPTask = "Twiin TA Notified Pull, notification Task nl-vzvz-TaskNotifiedPull (SPEC §4 step 2)"
	srcTANPPull = "Twiin TA Notified Pull, the receiver's pull (SPEC §4 step 4)"
	srcTANPStat = "Twiin TA Notified Pull, Task status (SPEC §4 step 3)"
	srcBgZ      = "BgZ MSZ 2.0 query set (SPEC §5; Nictiz BgZ-MSZ-2-0 qualification)"
	srcBgZR4    = "BgZ on R4 query set (package bgzr4; docs/care-applications.md \"BgZ on R4\"; Nictiz nictiz-r4-zib2020 profiles)"
	srcDP       = "Twiin Direct Pull, targeted query (SPEC §4); RFC 8707 resource indicator"
	srcConsent  = "Consent: no exchange without the patient's consent (Mitz closed question, SPEC §6, §9)"
	srcBSN      = "Citizen identification: BSN verified and valid, every plateau (SPEC §3, §6)"
)

// kit is the BgZ kit for one FHIR version: what its cases check that
// differs between BgZ on STU3 and on R4.
type kit struct {
	// name is the care application, its OAuth scope and the case ids'
	// prefix; title its name in reports.
	name, title string
	// version is the FHIR version of the data (the Notified Pull Tasks
	// are STU3 in either: the technical agreement's); fhirName as people
	// write it ("STU3", "R4").
	version  fhir.Version
	fhirName string
	// payload is the addressbook payloadType of the data endpoint.
	payload string
	// blocks are the query set, one search per BgZ block.
	blocks []bgz.Block
	// includes are the resource types each _include of the query set may
	// bring in (the reference's target types in the version's search
	// parameter definitions).
	includes map[string][]string
	// querySet and guide are the sources of the query set and of each
	// block's search; fhirSearch that of the FHIR search rules.
	querySet, guide, fhirSearch string
	// profilePrefix, when set, is the canonical URL prefix every match
	// must claim a profile under (nl-core of nictiz-r4-zib2020), and
	// staleProfile that of profiles of the other version a match must not
	// claim (the zib2017 STU3 profiles).
	profilePrefix, staleProfile string
	// record is the kit's own patient in the version.
	record func() (string, [][]byte, error)
}

// includeTargetsSTU3 are the resource types an STU3 _include parameter of
// the BgZ query set can bring in: anything else in an include entry is
// data the query did not ask for.
var includeTargetsSTU3 = map[string][]string{
	"Patient:general-practitioner":   {"Organization", "Practitioner"},
	"Coverage:payor":                 {"Organization", "Patient", "RelatedPerson"},
	"MedicationStatement:medication": {"Medication"},
	"MedicationRequest:medication":   {"Medication"},
	"MedicationDispense:medication":  {"Medication"},
	"DeviceUseStatement:device":      {"Device"},
	"Observation:related-target":     {"Observation", "QuestionnaireResponse", "Sequence"},
	"Procedure:based-on":             {"CarePlan", "ProcedureRequest", "ReferralRequest"},
	"CareTeam:participant":           {"CareTeam", "Organization", "Patient", "Practitioner", "RelatedPerson"},
}

// includeTargetsR4 are the same for the R4 query set (FHIR R4 search
// parameter definitions: ServiceRequest for ProcedureRequest and
// ReferralRequest, PractitionerRole as a participant, has-member for the
// laboratory panel).
var includeTargetsR4 = map[string][]string{
	"Patient:general-practitioner":   {"Organization", "Practitioner", "PractitionerRole"},
	"Coverage:payor":                 {"Organization", "Patient", "RelatedPerson"},
	"MedicationStatement:medication": {"Medication"},
	"MedicationRequest:medication":   {"Medication"},
	"MedicationDispense:medication":  {"Medication"},
	"DeviceUseStatement:device":      {"Device"},
	"Observation:has-member":         {"Observation", "QuestionnaireResponse", "MolecularSequence"},
	"Procedure:based-on":             {"CarePlan", "ServiceRequest"},
	"CareTeam:participant":           {"CareTeam", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"},
}

// kitPatient is the kit's own synthetic patient, the same in either version.
func kitPatient() (demo.Patient, error) {
	ps, err := demo.Generate(demo.Options{Count: 1, Seed: 9511, GPName: "Twiin validatieservice", IDPrefix: "kit"})
	if err != nil {
		return demo.Patient{}, err
	}
	return ps[0], nil
}

var (
	stu3 = &kit{name: Name, title: "Basisgegevensset Zorg (BgZ MSZ 2.0, STU3)", version: fhir.STU3, fhirName: "STU3",
		payload: bgz.PayloadServer, blocks: bgz.Queries(), includes: includeTargetsSTU3,
		querySet: srcBgZ, guide: "Nictiz BgZ 2017 (STU3) implementation guide and qualification script", fhirSearch: "FHIR STU3 search §3.1.1",
		record: func() (string, [][]byte, error) {
			p, err := kitPatient()
			if err != nil {
				return "", nil, err
			}
			return p.BSN, [][]byte{demo.TransactionBundle(p)}, nil
		}}
	r4 = &kit{name: NameR4, title: "Basisgegevensset Zorg on FHIR R4 (zib2020)", version: fhir.R4, fhirName: "R4",
		payload: bgzr4.PayloadServer, blocks: bgzr4.Blocks(), includes: includeTargetsR4,
		querySet: srcBgZR4, guide: "BgZ on R4 query set (package bgzr4) with the Nictiz nictiz-r4-zib2020 profiles", fhirSearch: "FHIR R4 search §3.1.1",
		profilePrefix: bgzr4.Profile(""), staleProfile: "http://nictiz.nl/fhir/StructureDefinition/zib-",
		record: func() (string, [][]byte, error) {
			p, err := kitPatient()
			if err != nil {
				return "", nil, err
			}
			if p, err = demo.R4(p); err != nil {
				return "", nil, err
			}
			return p.BSN, [][]byte{demo.TransactionBundle(p)}, nil
		}}
)

// Application is BgZ as the kit needs it: the record the kit serves when
// it plays the sender or the holder (a synthetic patient from demo).
func Application() validation.Application { return stu3.application() }

// ApplicationR4 is BgZ on R4 as the kit needs it: the same patient in R4.
func ApplicationR4() validation.Application { return r4.application() }

func (k *kit) application() validation.Application {
	return validation.Application{Name: k.name, Title: k.title, FHIRVersion: k.version, ServerPayloadType: k.payload, Record: k.record}
}

// Cases returns every BgZ case, per role of the node under test.
func Cases() []validation.Case { return stu3.cases() }

// CasesR4 returns every case of BgZ on R4, per role of the node under test.
func CasesR4() []validation.Case { return r4.cases() }

func (k *kit) cases() []validation.Case {
	var cs []validation.Case
	cs = append(cs, k.senderCases()...)
	cs = append(cs, k.receiverCases()...)
	cs = append(cs, k.receiverTASteps()...)
	cs = append(cs, k.holderCases()...)
	cs = append(cs, k.requesterCases()...)
	cs = append(cs, k.versionCases()...)
	return cs
}

// Register adds BgZ and its cases to reg.
func Register(reg *validation.Registry) error { return reg.AddApplication(Application(), Cases()...) }

// RegisterR4 adds BgZ on R4 and its cases to reg.
func RegisterR4(reg *validation.Registry) error {
	return reg.AddApplication(ApplicationR4(), CasesR4()...)
}

// match is bgz.Match against the kit's query set.
func (k *kit) match(request, bsn string) (bgz.Block, error) {
	return bgz.MatchIn(k.blocks, request, bsn)
}

// stu3Data reports whether the data is on the STU3 base, beside the Tasks.
func (k *kit) stu3Data() bool { return k.version == fhir.STU3 }

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
// valid resources of the kit's FHIR version, whose matches are of the
// searched type, about the patient only. Where the kit names profiles (R4:
// zib2020 nl-core) every match claims one and no entry claims a profile of
// the other version; outside STU3 the answer's media type names the
// version (fhirVersion=4.0).
func (k *kit) judgeSearchset(ps *validation.Problems, b bgz.Block, bsn string, resp *validation.Response) searchResult {
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
	if !k.stu3Data() {
		ct := ""
		if resp.Header != nil {
			ct = resp.Header.Get("Content-Type")
		}
		_, params, err := mime.ParseMediaType(ct)
		ps.Check(err == nil && params["fhirversion"] == k.version.MimeVersion(), "%s: Content-Type %q does not name fhirVersion=%s", b.Name, ct, k.version.MimeVersion())
	}
	typ, _, _ := strings.Cut(b.Template, "?")
	typ, _, _ = strings.Cut(typ, "/")
	for i, e := range bundle.Entry {
		var head struct{ ResourceType string }
		_ = json.Unmarshal(e.Resource, &head)
		for _, is := range fhirvalidate.Resource(k.version, e.Resource) {
			if is.Severity == "error" || is.Severity == "fatal" {
				ps.Add("%s: entry %d (%s) is not valid %s: %s", b.Name, i, head.ResourceType, k.fhirName, is.Diagnostics)
				break
			}
		}
		profiles := claimedProfiles(e.Resource)
		if k.staleProfile != "" {
			for _, pr := range profiles {
				ps.Check(!strings.HasPrefix(pr, k.staleProfile), "%s: entry %d (%s) claims %s, a profile of another FHIR version than the agreed %s", b.Name, i, head.ResourceType, pr, k.fhirName)
			}
		}
		if e.Search.Mode != "match" {
			continue
		}
		r.matches++
		if k.profilePrefix != "" {
			ps.Check(slices.ContainsFunc(profiles, func(pr string) bool { return strings.HasPrefix(pr, k.profilePrefix) }),
				"%s: entry %d (%s) claims no %s profile (meta.profile %v)", b.Name, i, head.ResourceType, k.profilePrefix+"…", profiles)
		}
		ps.Check(head.ResourceType == typ, "%s: a match of type %s, want %s", b.Name, head.ResourceType, typ)
		if head.ResourceType == "Patient" {
			got, _, _ := nl.Patient(e.Resource)
			ps.Check(got == bsn, "%s: a Patient with BSN %q, want %s", b.Name, got, bsn)
		}
	}
	return r
}

// claimedProfiles are a resource's meta.profile.
func claimedProfiles(res json.RawMessage) []string {
	var m struct {
		Meta struct {
			Profile []string `json:"profile"`
		} `json:"meta"`
	}
	_ = json.Unmarshal(res, &m)
	return m.Meta.Profile
}

// blockOf matches a request the node made on the kit's base against the
// BgZ query set for bsn.
func (k *kit) blockOf(path, rawQuery, base string, bsn string) (bgz.Block, error) {
	rel := strings.TrimPrefix(path, base)
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return bgz.Block{}, err
	}
	typ, op, _ := strings.Cut(strings.TrimPrefix(rel, "/"), "/")
	return k.match(bgz.SearchOf(typ, op, params), bsn)
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

// cite is the STU3 or the other version's citation of the same rule.
func (k *kit) cite(stu3, other string) string {
	if k.stu3Data() {
		return stu3
	}
	return other
}

// versionRequirement is what a data answer must show of its FHIR version
// beyond STU3: the media type's fhirVersion and the zib2020 profiles.
func (k *kit) versionRequirement() string {
	if k.stu3Data() {
		return ""
	}
	return fmt.Sprintf(" The answer's media type is application/fhir+json; fhirVersion=%s; every match claims a zib2020 profile (%s…) and no entry a zib2017 (STU3) profile (%s…).",
		k.version.MimeVersion(), k.profilePrefix, k.staleProfile)
}
