package monitor_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/schakel-nl/schakel/internal/browser"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/pki"
)

// TestMonitorInBrowser drives the Twiin Monitor of a running demo network
// in headless Chromium as an operator would: logs in, finds both nodes,
// their participants and their validation status, sees an exchange appear
// live and a refused request counted, and never sees patient data.
func TestMonitorInBrowser(t *testing.T) {
	ctx := browser.New(t)
	dir := t.TempDir()
	runCtx, cancel := context.WithCancel(context.Background())
	nw, err := network.Up(runCtx, network.Options{DataDir: dir})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(runCtx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })
	if _, err := nw.Validate(runCtx, network.ValidationTarget{URA: network.GP.URA, Role: "sender"}); err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(filepath.Join(dir, network.MonitorPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	// Every wait below ends when the page shows what it waits for; this
	// bounds them all.
	ctx, stop := context.WithTimeout(ctx, 40*time.Second)
	defer stop()

	base := nw.MonitorURL()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-submit")),
		chromedp.SendKeys(chromedp.CSS("#username"), network.MonitorUser),
		chromedp.SendKeys(chromedp.CSS("#password"), strings.TrimSpace(string(pw))),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("table.participants")),
	); err != nil {
		t.Fatalf("log in: %v\n%s", err, pageText(ctx))
	}

	// Both demo nodes and their participants; the GP practice's proof as
	// sender (the page updates itself until the register's read shows it).
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`table.nodes tr[data-node="gp-node"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.nodes tr[data-node="hospital-node"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-ura="`+network.GP.URA+`"] .proof.valid[data-care="bgz"][data-role="sender"]`)),
	); err != nil {
		t.Fatalf("overview: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{network.GP.Name, network.Hospital.Name, "deelnemer", "validated, until"} {
		if !strings.Contains(text, want) {
			t.Errorf("the overview lacks %q:\n%s", want, text)
		}
	}
	browser.Screenshot(t, ctx, "monitor-overview.png")

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/agreements"), chromedp.WaitVisible(chromedp.CSS(`section.matrix[data-function="consent"] td.p4`))); err != nil {
		t.Fatalf("agreements: %v", err)
	}
	browser.Screenshot(t, ctx, "monitor-agreements.png")

	// An exchange appears live: the page is not reloaded.
	const exchanges = `Array.from(document.querySelectorAll(".exchange-count")).reduce((s, e) => s + Number(e.textContent), 0)`
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/exchanges"), chromedp.WaitVisible(chromedp.CSS(`section.node-figures[data-node="hospital-node"]`))); err != nil {
		t.Fatalf("exchanges: %v", err)
	}
	before, err := chromedp.Run(ctx, chromedp.Evaluate[float64](exchanges))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nw.Exchange(runCtx); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](exchanges+` > `+ftoa(before))); err != nil {
		t.Fatalf("the exchange did not appear (before: %v): %v", before, err)
	}

	// A bad request: a trusted organisation asks the GP's FHIR API without a token.
	const refusals = `Array.from(document.querySelectorAll(".refusals-total")).reduce((s, e) => s + Number(e.textContent), 0)`
	refusedBefore, err := chromedp.Run(ctx, chromedp.Evaluate[float64](refusals))
	if err != nil {
		t.Fatal(err)
	}
	badRequest(t, nw)
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](refusals+` > `+ftoa(refusedBefore))); err != nil {
		t.Fatalf("the refusal was not counted (before: %v): %v", refusedBefore, err)
	}
	browser.Screenshot(t, ctx, "monitor-exchanges.png")

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/nodes/gp-node"), chromedp.WaitVisible(chromedp.CSS("table.families"))); err != nil {
		t.Fatalf("node page: %v", err)
	}
	browser.Screenshot(t, ctx, "monitor-node.png")

	// No patient data on any page: no BSN, no name of the demo patients.
	for _, page := range []string{"/", "/agreements", "/exchanges", "/nodes/gp-node", "/nodes/hospital-node"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+page), chromedp.WaitVisible(chromedp.CSS("footer"))); err != nil {
			t.Fatal(err)
		}
		html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range nw.Patients {
			if strings.Contains(html, p.BSN) || strings.Contains(html, p.Name) {
				t.Errorf("%s shows patient data (%s)", page, p.BSN)
			}
		}
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// badRequest asks the GP practice's FHIR API, over mTLS with a certificate
// the network trusts, without an access token: the node must refuse it.
func badRequest(t *testing.T, nw *network.Network) {
	t.Helper()
	cert, err := nw.CA.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000077", URA: "90000007", AGB: "01000007"}})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}
	resp, err := client.Get(nw.GPNode.PublicURL() + "/fhir/stu3/" + network.GP.URA + "/Patient")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a request without a token: HTTP %d, want 401", resp.StatusCode)
	}
}

// pageText is what the browser shows, for a failure's message.
func pageText(ctx context.Context) string {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	u, _ := chromedp.Run(c, chromedp.Location())
	html, err := chromedp.Run(c, chromedp.OuterHTML(chromedp.CSS("body")))
	if err != nil {
		return "(the page could not be read: " + err.Error() + ")"
	}
	return u + "\n" + html
}
