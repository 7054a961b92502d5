package validation

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html/template"
	"io"
	"strings"
)

// JSON is the report as the proof hashes it.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReadReport decodes a JSON report.
func ReadReport(b []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("validation: not a report: %w", err)
	}
	return &r, nil
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML, one testcase per case, for CI
// systems.
func (r *Report) WriteJUnit(w io.Writer) error {
	s := junitSuite{Name: fmt.Sprintf("%s %s %s plateau %d", r.Target.URL, r.Care, r.Role, r.Plateau), Tests: r.Summary.Total,
		Failures: r.Summary.Failed, Errors: r.Summary.Errors, Skipped: r.Summary.Skipped, Timestamp: r.Started.Format("2006-01-02T15:04:05")}
	for _, res := range r.Results {
		c := junitCase{Name: res.ID + ": " + res.Title, Classname: "validation." + r.Care + "." + string(r.Role),
			Time:      fmt.Sprintf("%.3f", float64(res.Millis)/1000),
			SystemOut: fmt.Sprintf("requirement: %s\nsource: %s\nmandatory: %v\nverdict: %s", res.Requirement, res.Source, res.Mandatory, res.Detail)}
		msg := &junitMessage{Message: res.Detail, Text: res.Detail}
		switch res.Status {
		case Failed:
			c.Failure = msg
		case Skipped:
			c.Skipped = msg
		case Passed:
		default:
			c.Error = msg
		}
		s.Cases = append(s.Cases, c)
	}
	out := junitSuites{Name: KitName, Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Skipped: s.Skipped, Suites: []junitSuite{s}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteHTML writes a self-contained report (no external assets) a vendor
// can hand over: per case the requirement and its source, the requests
// and answers, the verdict.
func (r *Report) WriteHTML(w io.Writer) error {
	return htmlReport.Execute(w, r)
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"join": func(rs []Role) string {
		var s []string
		for _, r := range rs {
			s = append(s, string(r))
		}
		if len(s) == 0 {
			return "every role"
		}
		return strings.Join(s, ", ")
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Validation report: {{.Target.URL}} — {{.Care}} {{.Role}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}
h1{font-size:1.5em} table.meta td{padding:.1em 1em .1em 0}
.case{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.5em 1em}
.passed{border-left:8px solid #2a7} .failed{border-left:8px solid #c33} .skipped{border-left:8px solid #aaa} .error{border-left:8px solid #e90}
.badge{font-weight:bold;text-transform:uppercase}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;white-space:pre-wrap;font-size:.85em}
.src{color:#555;font-size:.9em} details{margin:.3em 0}
.summary{font-size:1.1em;padding:.5em 1em;border-radius:6px}
.ok{background:#e3f5ea} .nok{background:#fbe4e4}
</style></head><body>
<h1>Validation report — {{.Care}}, node as {{.Role}}</h1>
<table class="meta">
<tr><td>Node</td><td>{{.Target.URL}} (URA {{.Target.URA}})</td></tr>
<tr><td>Server certificate SHA-256</td><td><code>{{.Target.CertificateSHA256}}</code></td></tr>
{{if .Vendor}}<tr><td>Vendor, version</td><td>{{.Vendor}} {{.Version}}</td></tr>{{end}}
<tr><td>Care application</td><td>{{.Care}}</td></tr>
<tr><td>Role (kit plays)</td><td>{{.Role}} ({{.Counterpart}})</td></tr>
<tr><td>Plateau</td><td>{{.Plateau}}</td></tr>
<tr><td>Run</td><td>{{.Started.Format "2006-01-02 15:04:05"}} – {{.Finished.Format "15:04:05"}} UTC, {{.Kit}} (URA {{.KitURA}})</td></tr>
</table>
<p class="summary {{if .Summary.Conformant}}ok{{else}}nok{{end}}">
{{.Summary.Total}} cases: {{.Summary.Passed}} passed, {{.Summary.Failed}} failed, {{.Summary.Skipped}} skipped, {{.Summary.Errors}} errors.
{{if .Summary.Conformant}}Every mandatory case passed: the node conforms.{{else}}{{.Summary.MandatoryNotPass}} mandatory case(s) did not pass: the node does not conform.{{end}}</p>
{{range .Results}}
<div class="case {{.Status}}" id="{{.ID}}">
<p><span class="badge">{{.Status}}</span> <strong>{{.Title}}</strong> <code>{{.ID}}</code>
{{if .Mandatory}}· mandatory{{end}}{{if .Negative}} · the node must refuse{{end}} · {{join .Roles}}</p>
<p><em>Requirement:</em> {{.Requirement}}<br><span class="src">Source: {{.Source}}</span></p>
<p><em>Verdict:</em> {{.Detail}}</p>
{{range .Exchanges}}<details><summary>{{.Direction}} {{.Method}} {{.URL}}{{if .Status}} → {{.Status}}{{end}}{{if .Error}} → {{.Error}}{{end}}</summary>
{{if .RequestHeaders}}<pre>{{range $k, $v := .RequestHeaders}}{{$k}}: {{$v}}
{{end}}</pre>{{end}}{{if .RequestBody}}<p>Request</p><pre>{{.RequestBody}}</pre>{{end}}
{{if .ResponseBody}}<p>Answer</p><pre>{{.ResponseBody}}</pre>{{end}}
</details>{{end}}
</div>{{end}}
</body></html>
`))
