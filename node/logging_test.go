package node

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/logcentral"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// withPartner agrees plateau 1 with the edge environment's partner.
func withPartner(logging int) func(*Config) {
	return func(c *Config) {
		c.Partners.Agreements = []plateau.PartnerConfig{{URA: edgePartnerURA, Name: "Partner",
			Plateaus: plateau.Plateaus{plateau.Logging: logging}}}
	}
}

func TestAuditExportHoldsThePartnersOwnRecordsOnly(t *testing.T) {
	e := newEdgeEnv(t, withPartner(1))
	ctx := context.Background()
	// Records of the partner's requests and of another organisation's.
	for i, ura := range []string{edgePartnerURA, "90000009", edgePartnerURA} {
		if err := e.n.Audit().Append(ctx, audit.Record{Action: audit.ActionRead, Interaction: "search-type", Outcome: 200,
			Tenant: edgeURA1, ActorURA: ura, Patient: "999909587", Query: "Condition?n=" + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	base := e.n.PublicURL()
	keys, err := audit.FetchExportKeys(ctx, e.public, base)
	if err != nil {
		t.Fatal(err)
	}
	compact, err := audit.FetchExport(ctx, e.public, base, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.VerifyExport(compact, keys, edgePartnerURA)
	if err != nil {
		t.Fatal(err)
	}
	// The two records of its requests and the export request itself.
	if len(v.Records) != 3 {
		t.Fatalf("%d records in the export, want 3", len(v.Records))
	}
	for _, r := range v.Records {
		if r.ActorURA != edgePartnerURA {
			t.Errorf("seq %d of URA %s in the partner's export", r.Seq, r.ActorURA)
		}
	}
	if last := v.Records[2]; last.Interaction != "audit-export" || last.Outcome != http.StatusOK {
		t.Errorf("the export request is not recorded: %+v", last)
	}

	// Asking for another organisation's records is refused, and recorded.
	for _, tc := range []struct {
		query  string
		status int
		reason string
	}{
		{"?agent=90000009", http.StatusForbidden, "own organisation (URA " + edgePartnerURA + ") only, not of URA 90000009 (logging, plateau 1)"},
		{"?after=-1", http.StatusBadRequest, "non-negative"},
		{"?patient=999909587", http.StatusBadRequest, "unknown parameter"},
	} {
		resp, body := do(t, e.public, http.MethodGet, base+audit.ExportPath+tc.query, nil, nil)
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), tc.reason) {
			t.Fatalf("%s: %d %s %s", tc.query, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		rec := lastRecord(t, e.n)
		if rec.Interaction != "audit-export" || rec.Outcome != tc.status || rec.ActorURA != edgePartnerURA || !strings.Contains(rec.OutcomeText, tc.reason) {
			t.Fatalf("%s: refusal recorded as %+v", tc.query, rec)
		}
	}
}

func TestAuditExportRefusesPartnersWithoutAgreement(t *testing.T) {
	e := newEdgeEnv(t) // no agreement with the partner
	resp, body := do(t, e.public, http.MethodGet, e.n.PublicURL()+audit.ExportPath, nil, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "no agreement") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if rec := lastRecord(t, e.n); rec.Interaction != "audit-export" || rec.Outcome != http.StatusForbidden {
		t.Fatalf("refusal recorded as %+v", rec)
	}
}

func TestLoggingPlateau3NeedsTheCentralLog(t *testing.T) {
	for _, tc := range []struct {
		name string
		tune func(*Config)
		want string // "" = valid
	}{
		{"plateau 2 without central log", withPartner(2), ""},
		{"plateau 3 without central log", withPartner(3),
			`partners.agreements[0] (Partner): logging is agreed at plateau 3, which requires shipping to the central log: set audit.central.url`},
		{"default at plateau 4 without central log", func(c *Config) { c.Partners.Default = plateau.Plateaus{plateau.Logging: 4} },
			"partners.default: logging is agreed at plateau 4"},
		{"plateau 3 with central log", func(c *Config) {
			withPartner(3)(c)
			c.Audit.Central.URL = "https://central.example:8447"
		}, ""},
		{"central log not https", func(c *Config) { c.Audit.Central.URL = "http://central.example" }, "audit.central.url must be an https URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := startableConfig(t)
			tc.tune(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestNodeShipsToTheCentralLog: a served node with audit.central.url ships
// its records to a central log that knows it by its certificate's URA, and
// reports its position and lag as metrics.
func TestNodeShipsToTheCentralLog(t *testing.T) {
	var central logcentral.Store
	e := newEdgeEnv(t, withPartner(3), func(c *Config) {
		st, err := logcentral.Open(context.Background(), filepath.Join(t.TempDir(), "central.db"), "", "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		central = st
		srv, err := logcentral.NewServer(logcentral.ServerConfig{Store: st, PeerURA: logcentral.PeerURAFromUZI})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		roots, err := pki.LoadCertPool(c.TLS.CAFiles...)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: srv.Handler(), TLSConfig: pki.ServerTLSConfig(cert, roots)}
		go func() { _ = hs.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { hs.Close() })
		c.Audit.Central.URL = "https://" + ln.Addr().String()
	})
	ctx := context.Background()
	for range 20 {
		if err := e.n.Audit().Append(ctx, audit.Record{Action: audit.ActionRead, Interaction: "read", Outcome: 200,
			Tenant: edgeURA1, ActorURA: edgePartnerURA}); err != nil {
			t.Fatal(err)
		}
	}
	last := e.n.Audit().LastSeq()
	for i := 0; e.n.Shipper().Acknowledged() < last; i++ {
		if i > 6000 {
			t.Fatalf("acknowledged %d of %d", e.n.Shipper().Acknowledged(), last)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, err := central.Head(ctx, edgeURA1) // the node's certificate carries edgeURA1
	if err != nil || h.Seq < last {
		t.Fatalf("central head %+v %v, want ≥ %d", h, err, last)
	}
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		seen[f.GetName()] = true
	}
	for _, m := range []string{"schakel_audit_ship_lag_records", "schakel_audit_ship_acknowledged_seq", "schakel_audit_ship_failures_total"} {
		if !seen[m] {
			t.Errorf("metric %s not published", m)
		}
	}
}
