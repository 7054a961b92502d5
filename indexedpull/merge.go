package indexedpull

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/nl"
)

// Code systems of the Provenance's agent and entity (FHIR STU3).
const (
	systemParticipationType = "http://hl7.org/fhir/v3/ParticipationType"
	codeCustodian           = "CST"
)

type entry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Search   search          `json:"search"`
}

type search struct {
	Mode string `json:"mode"`
}

// merge builds the answer Bundle: the holders' entries (search mode
// "match", each under the fullUrl the holder gave it), a Provenance per
// holder that delivered ("include"), and OperationOutcome entries
// ("outcome") for what is missing — first a summary when the answer is
// partial, then one per holder that refused, timed out or failed, or
// delivered part.
func merge(application string, results []HolderResult, data []consult.Result, warnings []string) json.RawMessage {
	var matches, provenance, outcomes []entry
	seen := map[string]bool{}
	missing := 0
	for i, r := range results {
		var targets []string
		for _, e := range holderEntries(data[i]) {
			if seen[e.FullURL] {
				continue
			}
			seen[e.FullURL] = true
			targets = append(targets, e.FullURL)
			matches = append(matches, entry{FullURL: e.FullURL, Resource: e.Resource, Search: search{"match"}})
		}
		if len(targets) > 0 {
			provenance = append(provenance, provenanceEntry(r, data[i].Base, targets))
		}
		switch r.Status {
		case StatusDelivered:
		case StatusNoData:
			outcomes = append(outcomes, outcomeEntry("information", "not-found", r.Holder, string(r.Status),
				fmt.Sprintf("holder %s answered every query and holds no %s data of this patient", r.Holder, application)))
		default:
			missing++
			outcomes = append(outcomes, outcomeEntry(severity(r.Status), issueCode(r.Status), r.Holder, string(r.Status),
				fmt.Sprintf("holder %s: %s: %s", r.Holder, r.Status, r.Detail)))
		}
	}
	var head []entry
	switch {
	case len(results) == 0:
		head = append(head, outcomeEntry("information", "not-found", "", "no-holder",
			"the referral index names no holder of this patient's data that this participant may consult"))
	case missing > 0:
		head = append(head, outcomeEntry("warning", "incomplete", "", "partial",
			fmt.Sprintf("partial result: %d of %d holders did not deliver everything; see the OperationOutcome per holder", missing, len(results))))
	}
	for _, w := range warnings {
		head = append(head, outcomeEntry("warning", "incomplete", "", "localization", w))
	}
	entries := make([]entry, 0, len(head)+len(matches)+len(provenance)+len(outcomes))
	entries = append(append(append(append(entries, head...), matches...), provenance...), outcomes...)
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "id": uuid.NewString(), "type": "searchset",
		"total": len(matches), "entry": entries})
	return b
}

// holderEntries are the entries of one holder's collection, each with an
// absolute fullUrl on the holder's base: entries of different holders must
// not collide.
func holderEntries(r consult.Result) []entry {
	if len(r.Bundle) == 0 {
		return nil
	}
	var b struct {
		Entry []entry `json:"entry"`
	}
	if json.Unmarshal(r.Bundle, &b) != nil {
		return nil
	}
	for i, e := range b.Entry {
		if !strings.Contains(e.FullURL, "://") && !strings.HasPrefix(e.FullURL, "urn:") {
			b.Entry[i].FullURL = strings.TrimSuffix(r.Base, "/") + "/" + strings.TrimPrefix(e.FullURL, "/")
		}
	}
	return b.Entry
}

// provenanceEntry says who delivered which entries, and when: the holder
// as custodian agent, the entries as targets, the holder's FHIR base as
// the source entity.
func provenanceEntry(r HolderResult, base string, targets []string) entry {
	refs := make([]map[string]string, len(targets))
	for i, t := range targets {
		refs[i] = map[string]string{"reference": t}
	}
	p := map[string]any{
		"resourceType": "Provenance",
		"target":       refs,
		"period":       map[string]string{"start": instant(r.Started), "end": instant(r.Ended)},
		"recorded":     instant(r.Ended),
		"reason": []map[string]string{{"system": "http://hl7.org/fhir/v3/ActReason", "code": "TREAT",
			"display": "treatment"}},
		"agent": []map[string]any{{
			"role": []map[string]any{{"coding": []map[string]string{{"system": systemParticipationType, "code": codeCustodian,
				"display": "custodian"}}}},
			"whoReference": map[string]any{"identifier": map[string]string{"system": nl.SystemURA, "value": r.Holder},
				"display": "URA " + r.Holder},
		}},
	}
	if base != "" {
		p["entity"] = []map[string]any{{"role": "source", "whatUri": base}}
	}
	b, _ := json.Marshal(p)
	return entry{FullURL: "urn:uuid:" + uuid.NewString(), Resource: b, Search: search{"include"}}
}

// outcomeEntry is an OperationOutcome entry; holder, when set, is named
// in the issue's details as an URA, so a system can tell the holders apart
// without parsing the text.
func outcomeEntry(sev, code, holder, status, text string) entry {
	issue := map[string]any{"severity": sev, "code": code, "diagnostics": text}
	details := map[string]any{"text": status}
	if holder != "" {
		details["coding"] = []map[string]string{{"system": nl.SystemURA, "code": holder}}
	}
	issue["details"] = details
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome", "issue": []any{issue}})
	return entry{FullURL: "urn:uuid:" + uuid.NewString(), Resource: b, Search: search{"outcome"}}
}

func severity(s Status) string {
	if s == StatusPartial {
		return "warning"
	}
	return "error"
}

func issueCode(s Status) string {
	switch s {
	case StatusRefused:
		return "forbidden"
	case StatusTimeout:
		return "timeout"
	case StatusPartial:
		return "incomplete"
	}
	return "exception"
}

func instant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
