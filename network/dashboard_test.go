package network

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestDashboardAfterExchange renders each participant's node dashboard
// after an exchange: it answers, and none of the demo patients' BSNs or
// names is on it.
func TestDashboardAfterExchange(t *testing.T) {
	nw := startNetwork(t, 2)
	if _, err := nw.Exchange(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, ura := range []string{GP.URA, Hospital.URA} {
		req, _ := http.NewRequest(http.MethodGet, nw.internalURLs[ura]+"/internal/dashboard", nil)
		req.Header.Set("Authorization", "Bearer "+nw.Token(ura))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="participants"`) || !strings.Contains(page, ura) {
			t.Fatalf("%s: %d %s", ura, resp.StatusCode, page)
		}
		for _, p := range nw.Patients {
			if strings.Contains(page, p.BSN) || strings.Contains(page, p.Name) {
				t.Errorf("%s's dashboard shows patient %s (%s)", ura, p.Name, p.BSN)
			}
		}
	}
}
