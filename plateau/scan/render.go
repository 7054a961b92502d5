package scan

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"

	"github.com/schakel-nl/schakel/plateau"
)

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Twiin maturity scan of node %q (%s), %s\n", r.Node, r.ConfigFile, r.Generated.Format("2006-01-02 15:04 UTC"))
	if r.Probe != nil {
		fmt.Fprintf(&b, "Probed %s\n", r.Probe.URL)
	}
	b.WriteString("\n")
	for _, f := range r.Functions {
		fmt.Fprintf(&b, "%s — plateau %s\n", f.Title, plateauLabel(f.Reached))
		if f.Characteristic != "" {
			fmt.Fprintf(&b, "  %s\n", f.Characteristic)
		}
		b.WriteString("  Evidence:\n")
		for _, e := range f.Evidence {
			fmt.Fprintf(&b, "    [%s] plateau %d, %s: %s\n", textMark[e.State()], e.Plateau, e.Source, e.Text)
		}
		for _, c := range f.Confirm {
			fmt.Fprintf(&b, "  Confirm: %s\n", c)
		}
		if f.Next != nil {
			fmt.Fprintf(&b, "  To plateau %d:\n", f.Next.Plateau)
			for _, s := range f.Next.Steps {
				fmt.Fprintf(&b, "    - %s\n", s)
			}
		}
		b.WriteString("\n")
	}
	if r.Probe != nil {
		b.WriteString("Observed behaviour:\n")
		for _, o := range r.Probe.Observations {
			fmt.Fprintf(&b, "  [%s] %s: %s\n", mark(o.OK), o.Check, o.Detail)
		}
		b.WriteString("\n")
	}
	if len(r.Agreements) > 0 {
		b.WriteString("Partner agreements:\n")
		for _, a := range r.Agreements {
			fmt.Fprintf(&b, "  %s (%s): %s\n", a.Name, strings.Join(a.URAs, ", "), plateausText(a.Plateaus))
			for _, w := range a.Warnings {
				fmt.Fprintf(&b, "    ! %s\n", w)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// State is how the evidence reads: met, unmet (nothing shows it), or
// failed (the probe saw the running node fall short).
func (e Evidence) State() string {
	switch {
	case e.Met:
		return "met"
	case e.Source == "observed":
		return "failed"
	}
	return "unmet"
}

var textMark = map[string]string{"met": "ok", "unmet": "--", "failed": "!!"}

func mark(ok bool) string {
	if ok {
		return "ok"
	}
	return "--"
}

func plateauLabel(p int) string {
	if p < plateau.Lowest {
		return "none (plateau 1 not met)"
	}
	return fmt.Sprintf("%d of 4", p)
}

func plateausText(p plateau.Plateaus) string {
	var parts []string
	for _, f := range plateau.Functions {
		if v, ok := p[f]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", f, v))
		}
	}
	if len(parts) == 0 {
		return "default plateaus"
	}
	return strings.Join(parts, ", ")
}

// WriteHTML writes a self-contained page: inline CSS, no scripts, no
// external assets, so it can be mailed or archived as it is.
func (r *Report) WriteHTML(w io.Writer) error {
	return page.Execute(w, struct {
		*Report
		Levels [plateau.Highest]plateau.Level
	}{r, plateau.Levels})
}

var page = template.Must(template.New("scan").Funcs(template.FuncMap{
	"label":    plateauLabel,
	"plateaus": plateausText,
	"seq":      func() []int { return []int{1, 2, 3, 4} },
	"ge":       func(a, b int) bool { return a >= b },
	"state":    func(e Evidence) string { return e.State() },
	"stateLabel": func(e Evidence) string {
		return map[string]string{"met": "✓ met", "unmet": "! not met", "failed": "✗ failed"}[e.State()]
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>Twiin maturity scan — {{.Node}}</title>
<style>
/* Colours say the state and text says it too (WCAG 1.4.1); every text
   colour on its background reaches a contrast of at least 4.5:1. */
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f8fa;color:#1f2328}
header{background:#1f2f46;color:#fff;padding:24px 32px}
header h1{margin:0 0 4px;font-size:24px}
header p{margin:0}
main{max-width:1040px;margin:0 auto;padding:24px 32px}
table.overview{border-collapse:collapse;width:100%;background:#fff;margin-bottom:12px}
.overview th,.overview td{border:1px solid #d0d7de;padding:6px 10px;text-align:left}
.overview td.cell{width:14%;text-align:center}
.on{background:#1a7f37;color:#fff;font-weight:600}
.off{background:#eaeef2;color:#424a53}
.legend{display:flex;flex-wrap:wrap;gap:8px 20px;list-style:none;padding:0;margin:0 0 24px;font-size:14px}
.legend li{display:flex;align-items:center;gap:6px}
.swatch{display:inline-block;min-width:64px;text-align:center;border-radius:3px;padding:0 6px;font-size:13px}
section.function{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:16px 20px;margin-bottom:16px}
section.function h2{margin:0 0 8px;font-size:19px;display:flex;justify-content:space-between;align-items:baseline}
.badge{font-size:14px;background:#1a7f37;color:#fff;border-radius:12px;padding:2px 10px}
.badge.none{background:#57606a}
blockquote{margin:8px 0;padding:6px 12px;border-left:4px solid #1f2f46;background:#f6f8fa}
ul.evidence{list-style:none;padding:0}
ul.evidence li{padding:3px 0}
.mark{display:inline-block;min-width:5.5em;font-weight:700;font-size:13px}
.met .mark{color:#1a7f37}
.unmet .mark{color:#9a6700}
.failed .mark{color:#cf222e}
.failed{background:#ffebe9}
.src{color:#57606a;font-size:13px}
.next{background:#fff8c5;border-radius:4px;padding:8px 12px}
.next h3,.confirm h3{margin:0 0 4px;font-size:15px}
.confirm{font-size:14px;color:#424a53}
h2.part{margin-top:32px}
footer{color:#57606a;font-size:13px;padding:16px 32px;text-align:center}
</style>
</head>
<body>
<header>
<h1>Twiin maturity scan</h1>
<p>Node <strong>{{.Node}}</strong> · configuration {{.ConfigFile}}{{if .Probe}} · probed {{.Probe.URL}}{{end}} · {{.Generated.Format "2006-01-02 15:04 UTC"}}</p>
</header>
<main>
<section id="overview">
<h2>Plateau per generic function</h2>
<table class="overview">
<thead><tr><th>Generic function</th>{{range .Levels}}<th>{{.Plateau}}. {{.Name}}</th>{{end}}</tr></thead>
<tbody>
{{range .Functions}}{{$r := .Reached}}<tr><th><a href="#{{.Function}}">{{.Title}}</a></th>{{range seq}}<td class="cell {{if ge $r .}}on{{else}}off{{end}}">{{if ge $r .}}reached{{else}}—{{end}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
<ul class="legend" id="legend" aria-label="Legend">
<li><span class="swatch on">reached</span> every criterion of the plateau, and of those below it, has evidence</li>
<li><span class="swatch off">—</span> not reached</li>
<li class="met"><span class="mark">✓ met</span> criterion with evidence</li>
<li class="unmet"><span class="mark">! not met</span> no evidence in the configuration</li>
<li class="failed"><span class="mark">✗ failed</span> the probe saw the running node fall short</li>
</ul>
</section>
{{range .Functions}}
<section class="function" id="{{.Function}}" data-function="{{.Function}}" data-reached="{{.Reached}}">
<h2>{{.Title}} <span class="badge{{if lt .Reached 1}} none{{end}}">plateau {{label .Reached}}</span></h2>
{{if .Characteristic}}<blockquote>{{.Characteristic}}</blockquote>{{end}}
<h3>Evidence</h3>
<ul class="evidence">
{{range .Evidence}}<li class="{{state .}}"><span class="mark">{{stateLabel .}}</span> {{.Text}} <span class="src">(plateau {{.Plateau}}, {{.Source}})</span></li>
{{end}}</ul>
{{if .Confirm}}<div class="confirm"><h3>To confirm yourself</h3><ul>{{range .Confirm}}<li>{{.}}</li>{{end}}</ul></div>{{end}}
{{with .Next}}<div class="next"><h3>Steps to plateau {{.Plateau}}</h3>
<p><em>{{.Characteristic}}</em></p>
<ol>{{range .Steps}}<li>{{.}}</li>{{end}}</ol></div>{{end}}
</section>
{{end}}
{{if .Probe}}
<h2 class="part" id="observed">Observed behaviour</h2>
<section class="function">
<ul class="evidence">
{{range .Probe.Observations}}<li class="{{if .OK}}met{{else}}failed{{end}}"><span class="mark">{{if .OK}}✓ met{{else}}✗ failed{{end}}</span> <strong>{{.Check}}</strong>: {{.Detail}}</li>
{{end}}</ul>
</section>
{{end}}
{{if .Agreements}}
<h2 class="part" id="agreements">Partner agreements</h2>
<section class="function">
<table class="overview">
<thead><tr><th>Partner</th><th>URAs</th><th>Agreed plateaus</th></tr></thead>
<tbody>
{{range .Agreements}}<tr><td>{{.Name}}</td><td>{{range $i, $u := .URAs}}{{if $i}}, {{end}}{{$u}}{{end}}</td><td>{{plateaus .Plateaus}}{{range .Warnings}}<br/><strong>! {{.}}</strong>{{end}}</td></tr>
{{end}}</tbody>
</table>
</section>
{{end}}
</main>
<footer>The characteristics are those of the growth model “Groeien met Twiin”, translated. A plateau is reached when each of its criteria, and of the plateaus below it, has evidence; a plateau the scan has no criteria for is not reached.</footer>
</body>
</html>
`))
