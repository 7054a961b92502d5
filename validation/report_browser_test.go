package validation

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/schakel-nl/schakel/internal/browser"
)

// TestHTMLReportInBrowser opens the self-contained HTML report in headless
// Chromium: every verdict renders as a row of its status, the summary
// agrees with them, and nothing is fetched from elsewhere (the report is
// handed over as one file).
func TestHTMLReportInBrowser(t *testing.T) {
	ctx := browser.New(t)
	start := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	rep := &Report{Kit: KitName, KitURA: "90000995", Target: Target{URL: "https://127.0.0.1:8443", URA: "90000001",
		CertificateSHA256: "3f1c…"}, Role: RoleSender, Counterpart: RoleReceiver, Care: "bgz", Plateau: 1,
		Vendor: "Schakel", Version: "dev", Started: start, Finished: start.Add(4 * time.Second)}
	failed, skipped := false, false
	for _, c := range GenericCases() {
		v := Pass("as required")
		switch {
		case !failed && c.Mandatory && c.Negative:
			failed = true
			v = Fail("the node answered 200 where it must refuse")
			v.Exchanges = []Exchange{{Direction: "kit → node", Method: "POST", URL: "https://127.0.0.1:8443/oauth2/token", Status: 200,
				ResponseBody: `{"access_token":"[redacted]","token_type":"DPoP"}`}}
		case !skipped && !c.Negative:
			skipped = true
			v = Skip("needs a driver")
		}
		rep.Results = append(rep.Results, Result{ID: c.ID, Title: c.Title, Roles: c.Roles, Mandatory: c.Mandatory, Negative: c.Negative,
			Requirement: c.Requirement, Source: c.Source, Verdict: v})
	}
	rep.Summary = summarize(rep.Results)
	path := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+path), chromedp.WaitVisible(chromedp.CSS("p.summary"))); err != nil {
		t.Fatal(err)
	}
	count := func(sel string) int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+sel+"`"+`).length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := count(".case"); got != rep.Summary.Total {
		t.Errorf("%d case rows, want %d", got, rep.Summary.Total)
	}
	if got := count(".case.passed"); got != rep.Summary.Passed {
		t.Errorf("%d passed rows, want %d", got, rep.Summary.Passed)
	}
	if got := count(".case.failed"); got != 1 || rep.Summary.Failed != 1 {
		t.Errorf("%d failed rows (summary %d), want 1", got, rep.Summary.Failed)
	}
	if got := count(".case.skipped"); got != 1 {
		t.Errorf("%d skipped rows, want 1", got)
	}
	if got := count("p.summary.nok"); got != 1 {
		t.Error("a report with a failed mandatory case is not shown as not conformant")
	}
	// Self-contained: no script, stylesheet or image from anywhere.
	if got := count("script, link, img, iframe"); got != 0 {
		t.Errorf("%d external elements in the report", got)
	}
	browser.Screenshot(t, ctx, "validation-report.png")
}
