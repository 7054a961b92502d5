package bgz

import (
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
)

func param(code string, value map[string]any) any {
	in := map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/TaskParameter", "code": code}}}}
	for k, v := range value {
		in[k] = v
	}
	return in
}

func ident(system, value string) map[string]any {
	return map[string]any{"identifier": map[string]any{"system": system, "value": value}}
}

// TestSenderShapeChecksFailWrongTasks gives the sender cases' judgements
// the Tasks a wrong sender writes: each must fail, the conformant one pass.
func TestSenderShapeChecksFailWrongTasks(t *testing.T) {
	ab := param("authorization-base", map[string]any{"valueString": "s3cret"})
	gw := param("get-workflow-task", map[string]any{"valueBoolean": true})
	const end = "2030-01-01T10:00:00Z"
	workflow := func(change func(map[string]any)) map[string]any {
		var ins []any
		for _, b := range bgz.Queries() {
			ins = append(ins, map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": b.Code.System, "code": b.Code.Code}}},
				"valueString": b.Query(testBSN)})
		}
		wf := map[string]any{"status": "requested", "requester": map[string]any{"onBehalfOf": ident(nl.SystemURA, "90000001")},
			"owner": ident(nl.SystemURA, "90000995"), "restriction": map[string]any{"period": map[string]any{"end": end}}, "input": ins}
		if change != nil {
			change(wf)
		}
		return wf
	}
	note := map[string]any{"restriction": map[string]any{"period": map[string]any{"end": end}}}
	for _, tc := range []struct {
		name  string
		check func() validation.Problems
		want  string
	}{
		{"conformant inputs", func() validation.Problems { return notificationInputs(map[string]any{"input": []any{ab, gw}}) }, ""},
		{"authorization base twice", func() validation.Problems { return notificationInputs(map[string]any{"input": []any{ab, ab, gw}}) }, "2 authorization-base"},
		{"no get-workflow-task", func() validation.Problems { return notificationInputs(map[string]any{"input": []any{ab}}) }, "0 get-workflow-task"},
		{"get-workflow-task false", func() validation.Problems {
			return notificationInputs(map[string]any{"input": []any{ab, param("get-workflow-task", map[string]any{"valueBoolean": false})}})
		}, "want true"},
		{"a search in the notification", func() validation.Problems {
			return notificationInputs(map[string]any{"input": []any{ab, gw, map[string]any{"valueString": "Condition?x"}}})
		}, "neither"},
		{"conformant workflow parties", func() validation.Problems { return workflowParties(workflow(nil), note, "90000001", "90000995") }, ""},
		{"owner is the sender", func() validation.Problems {
			return workflowParties(workflow(func(m map[string]any) { m["owner"] = ident(nl.SystemURA, "90000001") }), note, "90000001", "90000995")
		}, "owner"},
		{"already completed", func() validation.Problems {
			return workflowParties(workflow(func(m map[string]any) { m["status"] = "completed" }), note, "90000001", "90000995")
		}, "status"},
		{"a longer period than notified", func() validation.Problems {
			return workflowParties(workflow(func(m map[string]any) {
				m["restriction"] = map[string]any{"period": map[string]any{"end": "2031-01-01T10:00:00Z"}}
			}), note, "90000001", "90000995")
		}, "restriction.period.end"},
		{"conformant input codes", func() validation.Problems { return stu3.workflowInputCodes(workflow(nil), testBSN) }, ""},
		{"inputs typed with another block's code", func() validation.Problems {
			return stu3.workflowInputCodes(workflow(func(m map[string]any) {
				ins := m["input"].([]any)
				ins[0].(map[string]any)["type"], ins[1].(map[string]any)["type"] = ins[1].(map[string]any)["type"], ins[0].(map[string]any)["type"]
			}), testBSN)
		}, "is not typed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := tc.check()
			detail := strings.Join(ps, "; ")
			switch {
			case tc.want == "" && len(ps) > 0:
				t.Fatalf("a conformant Task failed: %s", detail)
			case tc.want != "" && !strings.Contains(detail, tc.want):
				t.Fatalf("problems %q, want one with %q", detail, tc.want)
			}
		})
	}
}
