package eoverdracht

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
)

// document is a minimal aanmeldbericht document Bundle; edit changes its
// Composition and Patient before it is rendered.
func document(edit func(comp, patient map[string]any, bundle map[string]any)) []byte {
	comp := map[string]any{"resourceType": "Composition", "id": "c1", "status": "final", "title": "Aanmeldbericht", "date": "2025-01-01",
		"meta":    map[string]any{"profile": []any{eoverdracht.ProfileAdvanceNotice}},
		"type":    map[string]any{"coding": []any{map[string]any{"system": eoverdracht.InputAdvanceNotice.System, "code": eoverdracht.InputAdvanceNotice.Code}}},
		"subject": map[string]any{"reference": "Patient/p1"}, "author": []any{map[string]any{"reference": "Organization/o1"}}}
	patient := map[string]any{"resourceType": "Patient", "id": "p1",
		"identifier": []any{map[string]any{"system": nl.SystemBSN, "value": scenarioPatient}}}
	bundle := map[string]any{"resourceType": "Bundle", "type": "document", "identifier": map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0"}}
	if edit != nil {
		edit(comp, patient, bundle)
	}
	bundle["entry"] = []any{map[string]any{"resource": comp}, map[string]any{"resource": patient}}
	b, _ := json.Marshal(bundle)
	return b
}

func TestJudgeDocument(t *testing.T) {
	notice := documentInput{System: eoverdracht.InputAdvanceNotice.System, Code: eoverdracht.InputAdvanceNotice.Code, Reference: eoverdracht.DemoAdvanceNotice}
	for _, c := range []struct {
		name   string
		status int
		body   []byte
		says   string // "" when it conforms
	}{
		{"conformant", http.StatusOK, document(nil), ""},
		{"refused", http.StatusForbidden, document(nil), "HTTP 403"},
		{"a searchset", http.StatusOK, document(func(_, _, b map[string]any) { b["type"] = "searchset" }), "not a document Bundle"},
		{"no identifier", http.StatusOK, document(func(_, _, b map[string]any) { delete(b, "identifier") }), "no identifier"},
		{"another profile", http.StatusOK, document(func(c, _, _ map[string]any) {
			c["meta"] = map[string]any{"profile": []any{eoverdracht.ProfileHandoffAdults}}
		}), "lacks profile"},
		{"another type", http.StatusOK, document(func(c, _, _ map[string]any) {
			c["type"] = map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "1"}}}
		}), "Composition.type"},
		{"another patient", http.StatusOK, document(func(_, p, _ map[string]any) {
			p["identifier"] = []any{map[string]any{"system": nl.SystemBSN, "value": "999990020"}}
		}), "has BSN"},
		{"no subject Patient", http.StatusOK, document(func(c, _, _ map[string]any) { c["subject"] = map[string]any{"reference": "Patient/elsewhere"} }), "does not hold its subject"},
	} {
		var ps validation.Problems
		judgeDocument(&ps, notice, &validation.Response{Status: c.status, Body: c.body})
		got := strings.Join(ps, "; ")
		if c.says == "" && got != "" || c.says != "" && !strings.Contains(got, c.says) {
			t.Errorf("%s: %q, want %q", c.name, got, c.says)
		}
	}
}

func TestDeliverySteps(t *testing.T) {
	cp := &validation.Counterpart{URL: "https://kit"}
	d := &delivery{}
	d.n.Workflow = "https://kit/fhir/stu3/90000995/Task/wf"
	put := func(status, reason string) validation.Inbound {
		b := map[string]any{"resourceType": "Task", "status": status}
		if reason != "" {
			b["statusReason"] = map[string]any{"text": reason}
		}
		body, _ := json.Marshal(b)
		return validation.Inbound{Method: http.MethodPut, Path: "/fhir/stu3/90000995/Task/wf", Body: body}
	}
	read := func(ref string) validation.Inbound {
		return validation.Inbound{Method: http.MethodGet, Path: "/fhir/stu3/90000995/" + ref + "/$document"}
	}
	ins := []validation.Inbound{read(eoverdracht.DemoAdvanceNotice), put("rejected", "geen plaats"),
		{Method: http.MethodPut, Path: "/fhir/stu3/90000995/Task/other", Body: []byte(`{"status":"completed"}`)}}
	ss, rs, _ := d.statusPuts(cp, ins)
	if strings.Join(ss, ",") != "rejected" || strings.Join(rs, ",") != "geen plaats" {
		t.Errorf("statuses %v, reasons %v", ss, rs)
	}
	if !reads(ins, eoverdracht.DemoAdvanceNotice) || reads(ins, eoverdracht.DemoNursingHandoff) {
		t.Error("reads: the aanmeldbericht was read, the overdrachtbericht not")
	}
}

func TestWorkflowTaskInputs(t *testing.T) {
	var wf map[string]any
	if err := json.Unmarshal(workflowTask(scenarioPatient, "90000995", "90000003", timeZero), &wf); err != nil {
		t.Fatal(err)
	}
	in := documentInputs(wf)
	if len(in) != 2 || in[0].Reference != eoverdracht.DemoAdvanceNotice || in[0].Code != eoverdracht.InputAdvanceNotice.Code ||
		in[1].Reference != eoverdracht.DemoNursingHandoff || in[1].Code != eoverdracht.InputNursingHandoff.Code {
		t.Errorf("inputs %+v", in)
	}
	if got := statusReason(map[string]any{"statusReason": map[string]any{"coding": []any{map[string]any{"display": "Geen bed"}}}}); got != "Geen bed" {
		t.Errorf("coded reason %q", got)
	}
}

var timeZero = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
