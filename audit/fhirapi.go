package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/nl"
)

// Code systems Schakel defines for events that are not FHIR REST interactions.
const (
	SystemEventType    = "https://schakel.dev/fhir/CodeSystem/audit-event-type"
	SystemEventSubtype = "https://schakel.dev/fhir/CodeSystem/audit-event-subtype"
	SystemDetailType   = "https://schakel.dev/fhir/CodeSystem/audit-detail-type"
)

const (
	defaultCount = 50
	maxCount     = 1000
)

// FHIRHandler serves the log as FHIR AuditEvent resources in version v:
// GET [base]/AuditEvent?patient=…&date=…&outcome=…&agent=…&action=…&_count=…
// (a searchset Bundle, newest first) and GET [base]/AuditEvent/{id}. When
// tenantFrom is not nil it names the participant (URA) the request is for and
// only that participant's records are visible; it returning "" refuses the
// request. Mount it where the path ends in AuditEvent or AuditEvent/{id}.
func FHIRHandler(store *Store, v fhir.Version, tenantFrom func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := fhirAPI{store: store, v: v}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.fail(w, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "the audit log is read-only: only GET"))
			return
		}
		tenant := ""
		if tenantFrom != nil {
			if tenant = tenantFrom(r); tenant == "" {
				h.fail(w, fhir.Errorf(http.StatusNotFound, "not-found", "no participant for this address"))
				return
			}
		}
		path := strings.TrimSuffix(r.URL.Path, "/")
		i := strings.LastIndex(path, "/AuditEvent")
		if i < 0 && strings.HasPrefix(path, "AuditEvent") {
			path, i = "/"+path, 0
		}
		if i < 0 {
			h.fail(w, fhir.Errorf(http.StatusNotFound, "not-found", "only AuditEvent is served here"))
			return
		}
		base, rest := path[:i], strings.TrimPrefix(path[i:], "/AuditEvent")
		switch {
		case rest == "":
			h.search(w, r, tenant, base)
		case strings.Count(rest, "/") == 1:
			h.read(w, r, tenant, strings.TrimPrefix(rest, "/"))
		default:
			h.fail(w, fhir.Errorf(http.StatusNotFound, "not-found", "unknown path"))
		}
	})
}

type fhirAPI struct {
	store *Store
	v     fhir.Version
}

func (h fhirAPI) read(w http.ResponseWriter, r *http.Request, tenant, id string) {
	recs, err := h.store.List(r.Context(), Filter{EventID: id, Tenant: tenant, Limit: 1})
	if err != nil {
		h.fail(w, &fhir.Error{Status: http.StatusInternalServerError, Cause: err,
			Issues: []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: "the audit log could not be read"}}})
		return
	}
	if len(recs) == 0 {
		h.fail(w, fhir.Errorf(http.StatusNotFound, "not-found", "AuditEvent/%s is not known", id))
		return
	}
	h.write(w, http.StatusOK, AuditEvent(recs[0], h.v))
}

func (h fhirAPI) search(w http.ResponseWriter, r *http.Request, tenant, base string) {
	f, err := parseSearch(r.URL.Query())
	if err != nil {
		h.fail(w, err)
		return
	}
	f.Tenant = tenant
	total, err := h.store.Count(r.Context(), f)
	var recs []Record
	if err == nil && f.Limit > 0 {
		recs, err = h.store.List(r.Context(), f)
	}
	if err != nil {
		h.fail(w, &fhir.Error{Status: http.StatusInternalServerError, Cause: err,
			Issues: []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: "the audit log could not be read"}}})
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	baseURL := scheme + "://" + r.Host + base
	page := func(offset int) string {
		q := r.URL.Query()
		q.Set("_offset", strconv.Itoa(offset))
		q.Set("_count", strconv.Itoa(f.Limit))
		return baseURL + "/AuditEvent?" + q.Encode()
	}
	links := []map[string]string{{"relation": "self", "url": page(f.Offset)}}
	if f.Limit > 0 && f.Offset+len(recs) < total {
		links = append(links, map[string]string{"relation": "next", "url": page(f.Offset + f.Limit)})
	}
	entries := make([]map[string]any, 0, len(recs))
	for _, rec := range recs {
		entries = append(entries, map[string]any{"fullUrl": baseURL + "/AuditEvent/" + url.PathEscape(rec.EventID),
			"resource": AuditEvent(rec, h.v), "search": map[string]string{"mode": "match"}})
	}
	h.write(w, http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "searchset", "total": total,
		"link": links, "entry": entries})
}

// parseSearch turns AuditEvent search parameters into a Filter. Unknown
// parameters are refused: silently ignoring a filter on an audit log would
// show more than was asked for.
func parseSearch(q url.Values) (Filter, error) {
	f := Filter{Limit: defaultCount, Newest: true}
	bad := func(format string, args ...any) (Filter, error) {
		return Filter{}, fhir.Errorf(http.StatusBadRequest, "invalid", format, args...)
	}
	for name, values := range q {
		for _, val := range values {
			switch name {
			case "patient", "patient.identifier":
				system, bsn, hasSystem := strings.Cut(val, "|")
				if !hasSystem {
					system, bsn = "", val
				}
				if (hasSystem && nl.CanonicalSystem(system) != nl.SystemBSN) || nl.ValidateBSN(bsn) != nil {
					return bad("%s must be a BSN: %s=%s|<BSN>", name, name, nl.SystemBSN)
				}
				if f.Patient != "" && f.Patient != bsn {
					return bad("one patient per search")
				}
				f.Patient = bsn
			case "agent", "agent.identifier":
				system, ura, hasSystem := strings.Cut(val, "|")
				if !hasSystem {
					system, ura = "", val
				}
				if (hasSystem && nl.CanonicalSystem(system) != nl.SystemURA) || nl.ValidateURA(ura) != nil {
					return bad("%s must be a URA: %s=%s|<URA>", name, name, nl.SystemURA)
				}
				f.ActorURA = ura
			case "date":
				if err := dateBound(&f, val); err != nil {
					return bad("date: %v", err)
				}
			case "outcome":
				for _, code := range strings.Split(val, ",") {
					if _, _, ok := outcomeRange(code); !ok {
						return bad("outcome must be 0, 4, 8 or 12, not %q", code)
					}
					f.Outcome = append(f.Outcome, code)
				}
			case "action":
				if !strings.Contains("CRUDE", val) || len(val) != 1 {
					return bad("action must be one of C, R, U, D, E")
				}
				f.Action = val
			case "_count":
				n, err := strconv.Atoi(val)
				if err != nil || n < 0 {
					return bad("_count must be a number of at least 0")
				}
				f.Limit = min(n, maxCount)
			case "_offset":
				n, err := strconv.Atoi(val)
				if err != nil || n < 0 {
					return bad("_offset must be a number of at least 0")
				}
				f.Offset = n
			case "_sort":
				switch val {
				case "-date":
					f.Newest = true
				case "date":
					f.Newest = false
				default:
					return bad("_sort must be date or -date")
				}
			case "_format":
				if !strings.Contains(val, "json") {
					return Filter{}, fhir.Errorf(http.StatusNotAcceptable, "not-supported", "the audit log is served as FHIR JSON only")
				}
			default:
				return bad("unknown search parameter %q; supported: patient, date, outcome, agent, action, _count, _sort", name)
			}
		}
	}
	return f, nil
}

// dateBound narrows f by one date parameter value (prefix + FHIR date).
func dateBound(f *Filter, val string) error {
	prefix := "eq"
	if len(val) > 2 && val[0] >= 'a' && val[0] <= 'z' {
		prefix, val = val[:2], val[2:]
	}
	low, high, err := search.ParseDateRange(val)
	if err != nil {
		return err
	}
	lo, hi := time.UnixMilli(low), time.UnixMilli(high).Add(time.Millisecond) // [lo, hi)
	since := func(t time.Time) {
		if t.After(f.Since) {
			f.Since = t
		}
	}
	until := func(t time.Time) {
		if f.Until.IsZero() || t.Before(f.Until) {
			f.Until = t
		}
	}
	switch prefix {
	case "eq":
		since(lo)
		until(hi)
	case "ge":
		since(lo)
	case "gt", "sa":
		since(hi)
	case "le":
		until(hi)
	case "lt", "eb":
		until(lo)
	default:
		return errors.New("supported prefixes are eq, ge, gt, le, lt, sa, eb")
	}
	return nil
}

func (h fhirAPI) write(w http.ResponseWriter, status int, doc any) {
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion="+h.v.MimeVersion()+"; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(doc)
}

func (h fhirAPI) fail(w http.ResponseWriter, err error) {
	fe := fhir.AsError(err)
	if fe == nil {
		fe = &fhir.Error{Status: http.StatusInternalServerError, Issues: []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: "internal error"}}}
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion="+h.v.MimeVersion()+"; charset=utf-8")
	w.WriteHeader(fe.Status)
	_, _ = w.Write(fhir.OperationOutcome(fe.Issues...))
}

// AuditEvent renders r as a FHIR AuditEvent of version v (R4 or STU3). The
// node's own identity is the source (observer: the participant's URA); the
// requester is up to three agents: the user, the organisation and its system.
func AuditEvent(r Record, v fhir.Version) map[string]any {
	sys := codeSystems(v)
	ev := map[string]any{"resourceType": "AuditEvent", "id": r.EventID, "action": r.Action,
		"recorded": r.Time.UTC().Format(time.RFC3339Nano), "outcome": outcomeCode(r.Outcome)}
	typ := r.Type
	if typ == "" {
		typ = r.Interaction
		if restful[typ] {
			typ = "rest"
		}
	}
	if typ == "rest" {
		ev["type"] = coding(sys.eventType, "rest", "RESTful Operation")
	} else {
		ev["type"] = coding(SystemEventType, typ, "")
	}
	if restful[r.Interaction] {
		ev["subtype"] = []any{coding("http://hl7.org/fhir/restful-interaction", r.Interaction, "")}
	} else if r.Interaction != "" {
		ev["subtype"] = []any{coding(SystemEventSubtype, r.Interaction, "")}
	}
	if r.OutcomeText != "" {
		ev["outcomeDesc"] = r.OutcomeText
	}
	if r.PurposeOfUse != "" {
		ev["purposeOfEvent"] = []any{concept(sys.actReason, r.PurposeOfUse)}
	}
	ev["agent"] = agents(r, v, sys)
	source := map[string]any{"site": r.Node, "type": []any{coding(sys.sourceType, "4", "Application Server")}}
	observer := map[string]any{"system": nl.SystemURA, "value": r.Tenant}
	if v == fhir.R4 {
		source["observer"] = map[string]any{"identifier": observer, "display": r.Node}
	} else {
		source["identifier"] = observer
	}
	ev["source"] = source
	if ents := entities(r, v, sys); len(ents) > 0 {
		ev["entity"] = ents
	}
	return ev
}

func agents(r Record, v fhir.Version, sys systems) []any {
	var out []any
	network := map[string]any{}
	if r.Address != "" {
		network = map[string]any{"address": r.Address, "type": "2"}
	}
	add := func(who map[string]any, requestor bool, extra map[string]any) {
		a := map[string]any{"requestor": requestor}
		if v == fhir.R4 {
			a["who"] = who
		} else if id, ok := who["identifier"]; ok {
			// STU3 names the agent by userId (an Identifier) and reference.
			a["userId"] = id
			if d, ok := who["display"]; ok {
				a["reference"] = map[string]any{"display": d}
			}
		}
		for k, val := range extra {
			a[k] = val
		}
		out = append(out, a)
	}
	requestorDone := false
	if r.ActorUser != "" || r.ActorName != "" || r.ActorAltID != "" || r.ActorRole != "" {
		who := map[string]any{}
		if r.ActorUser != "" {
			who["identifier"] = map[string]any{"system": nl.SystemUZIPers, "value": r.ActorUser}
		}
		if r.ActorName != "" {
			who["display"] = r.ActorName
		}
		extra := map[string]any{}
		if v == fhir.R4 {
			extra["type"] = concept("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser")
		}
		if r.ActorRole != "" {
			extra["role"] = []any{concept(nl.SystemUZIRole, r.ActorRole)}
		}
		if r.ActorAltID != "" {
			extra["altId"] = r.ActorAltID
		}
		if r.ActorName != "" {
			extra["name"] = r.ActorName
		}
		if len(network) > 0 {
			extra["network"] = network
		}
		if r.PurposeOfUse != "" {
			extra["purposeOfUse"] = []any{concept(sys.actReason, r.PurposeOfUse)}
		}
		add(who, !r.NotRequestor, extra)
		requestorDone = true
	}
	if r.ActorURA != "" {
		extra := map[string]any{}
		if !requestorDone && len(network) > 0 {
			extra["network"] = network
		}
		add(map[string]any{"identifier": map[string]any{"system": nl.SystemURA, "value": r.ActorURA}},
			!requestorDone && !r.NotRequestor, extra)
		requestorDone = true
	}
	if r.ActorSystem != "" {
		add(map[string]any{"identifier": map[string]any{"system": nl.SystemUZISys, "value": r.ActorSystem}}, false, nil)
	}
	if len(out) == 0 {
		// Refused before the requester could be identified: all we know is where it came from.
		extra := map[string]any{}
		if len(network) > 0 {
			extra["network"] = network
		}
		add(map[string]any{"display": "unidentified requester"}, true, extra)
		if v != fhir.R4 {
			out[0].(map[string]any)["name"] = "unidentified requester"
		}
	}
	return out
}

func entities(r Record, v fhir.Version, sys systems) []any {
	var out []any
	var labels []any
	if r.Sensitivity != "" {
		labels = []any{coding(sys.confidentiality, r.Sensitivity, "")}
	}
	add := func(what map[string]any, typ, role, roleDisplay string, extra map[string]any) map[string]any {
		e := map[string]any{"type": coding(sys.entityType, typ, ""), "role": coding(sys.objectRole, role, roleDisplay)}
		switch id, isID := what["identifier"]; {
		case len(what) == 0:
		case v == fhir.R4:
			e["what"] = what
		case isID:
			e["identifier"] = id
		default:
			e["reference"] = what
		}
		if labels != nil {
			e["securityLabel"] = labels
		}
		for k, val := range extra {
			e[k] = val
		}
		out = append(out, e)
		return e
	}
	if r.Patient != "" {
		add(map[string]any{"identifier": map[string]any{"system": nl.SystemBSN, "value": r.Patient}}, "1", "1", "Patient", nil)
	}
	for _, ref := range r.Resources {
		add(map[string]any{"reference": ref}, "2", "4", "Domain Resource", nil)
	}
	var ctx map[string]any
	if r.Query != "" || len(r.Types) > 0 {
		extra := map[string]any{}
		if r.Query != "" {
			extra["query"] = base64.StdEncoding.EncodeToString([]byte(r.Query))
		}
		if len(r.Types) > 0 {
			extra["description"] = strings.Join(r.Types, " ")
		}
		ctx = add(nil, "2", "24", "Query", extra)
	}
	var details []any
	detail := func(typ, val string) {
		if val == "" {
			return
		}
		d := map[string]any{"type": typ}
		if v == fhir.R4 {
			d["valueString"] = val
		} else {
			d["value"] = base64.StdEncoding.EncodeToString([]byte(val))
		}
		details = append(details, d)
	}
	detail("task", r.Task)
	detail("authorization-protocol", r.AuthzProtocol)
	detail("consent-profile", r.ConsentProfile)
	for _, c := range r.Checks {
		detail("check", c)
	}
	if len(details) > 0 {
		if ctx == nil {
			ctx = add(nil, "2", "24", "Query", nil)
		}
		ctx["detail"] = details
	}
	return out
}

type systems struct {
	eventType, entityType, objectRole, sourceType, actReason, confidentiality string
}

func codeSystems(v fhir.Version) systems {
	if v == fhir.R4 {
		t := "http://terminology.hl7.org/CodeSystem/"
		return systems{t + "audit-event-type", t + "audit-entity-type", t + "object-role", t + "security-source-type",
			t + "v3-ActReason", t + "v3-Confidentiality"}
	}
	return systems{"http://hl7.org/fhir/audit-event-type", "http://hl7.org/fhir/audit-entity-type",
		"http://hl7.org/fhir/object-role", "http://hl7.org/fhir/security-source-type",
		"http://hl7.org/fhir/v3/ActReason", "http://hl7.org/fhir/v3/Confidentiality"}
}

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(system, code string) map[string]any {
	return map[string]any{"coding": []any{coding(system, code, "")}}
}
