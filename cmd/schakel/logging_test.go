package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// TestAuditFetch runs `schakel audit fetch` as a partner would against a
// served node: its own records come back verified; with a pinned key that
// is not the node's, the export is refused.
func TestAuditFetch(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	for name, ura := range map[string]string{"node": "90000001", "partner": "90000002"} {
		if _, err := pki.LoadOrIssueUZIServer(filepath.Join(dir, "pki"), name, ca,
			pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "9" + ura, URA: ura, AGB: "00000000"}}); err != nil {
			t.Fatal(err)
		}
	}
	pkiFile := func(name string) string { return filepath.Join(dir, "pki", name) }
	cfg := node.Config{Name: "n", DataDir: filepath.Join(dir, "data"),
		Public: node.ListenerConfig{Addr: "127.0.0.1:0"}, Internal: node.ListenerConfig{Addr: "127.0.0.1:0"},
		TLS:            node.TLSConfig{CertFile: pkiFile("node.pem"), KeyFile: pkiFile("node-key.pem"), CAFiles: []string{pkiFile("ca.pem")}},
		SigningKeyFile: filepath.Join(dir, "as.pem"), AddressbookURL: "https://127.0.0.1:1/fhir",
		Partners: plateau.Config{Agreements: []plateau.PartnerConfig{{URA: "90000002", Name: "Partner", Plateaus: plateau.Plateaus{plateau.Logging: 2}}}},
		Participants: []node.ParticipantConfig{{URA: "90000001", SigningKeyFile: filepath.Join(dir, "p.pem"),
			InternalToken: "0123456789abcdef0123"}}}
	n, err := node.New(context.Background(), cfg, node.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, ura := range []string{"90000002", "90000009"} {
		if err := n.Audit().Append(context.Background(), audit.Record{Action: audit.ActionRead, Interaction: "search-type",
			Outcome: 200, Tenant: "90000001", ActorURA: ura, Patient: "999909587", Query: "Condition?of=" + ura}); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, error) {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"audit", "fetch", "--node", n.PublicURL(), "--cert", pkiFile("partner.pem"),
			"--key", pkiFile("partner-key.pem"), "--ca", pkiFile("ca.pem")}, args...))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	raw := filepath.Join(dir, "exports.jws")
	out, err := run("--json", "--out", raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got struct {
		URA      string
		Verified bool
		Records  []audit.Record
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !got.Verified || got.URA != "90000002" || len(got.Records) != 2 ||
		got.Records[0].Query != "Condition?of=90000002" || got.Records[1].Interaction != "audit-export" {
		t.Fatalf("fetched %+v", got)
	}
	if b, err := os.ReadFile(raw); err != nil || !strings.HasPrefix(string(b), "ey") {
		t.Fatalf("raw export not kept: %v %.40q", err, b)
	}

	// A pinned key that is not the node's: nothing is believed.
	other, err := pki.LoadOrCreateSigningKey(filepath.Join(dir, "other.pem"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := pki.PublicJWKS(other)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(set)
	pinned := filepath.Join(dir, "pinned.jwks")
	if err := os.WriteFile(pinned, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run("--jwks", pinned); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Fatalf("export verified with another key: %v\n%s", err, out)
	}
}

// TestLoggingPlateau3NeedsCentralLogAtStartup: `schakel node` with an
// agreement at logging plateau 3 and no audit.central.url exits with the
// agreement and the key named; audit.central.url is a known key.
func TestLoggingPlateau3NeedsCentralLogAtStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the schakel binary")
	}
	f := newNodeFixture(t)
	path := f.write(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte("plateaus: {addressing: 1}"), []byte("plateaus: {addressing: 1, logging: 3}"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runSchakel(t, nil, "node", "--config", path)
	if err == nil || !strings.Contains(out, "partners.agreements[0] (Ziekenhuis Rijnstroom): logging is agreed at plateau 3") ||
		!strings.Contains(out, "audit.central.url") {
		t.Fatalf("exit %v, output:\n%s", err, out)
	}
	cfg, err := loadFile(t, participantYAML+"audit:\n  central:\n    url: https://logcentral.example:8447\n")
	if err != nil || cfg.Audit.Central.URL != "https://logcentral.example:8447" {
		t.Fatalf("audit.central.url not read: %v %+v", err, cfg.Audit)
	}
}

// TestLogcentralServe runs `schakel logcentral serve` and ships a node's
// log to it over mTLS: the records are acknowledged, and the metrics
// listener shows the node's position.
func TestLogcentralServe(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]tls.Certificate{}
	for name, ura := range map[string]string{"central": "90000990", "node": "90000001"} {
		if certs[name], err = pki.LoadOrIssueUZIServer(filepath.Join(dir, "pki"), name, ca,
			pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "9" + ura, URA: ura, AGB: "00000000"}}); err != nil {
			t.Fatal(err)
		}
	}
	metricsAddr := freeLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	served := make(chan error, 1)
	go func() {
		root := newRootCommand()
		root.SetOut(pw)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"logcentral", "serve", "--data-dir", filepath.Join(dir, "central"), "--addr", "127.0.0.1:0",
			"--metrics-addr", metricsAddr, "--log-level", "error",
			"--cert", filepath.Join(dir, "pki", "central.pem"), "--key", filepath.Join(dir, "pki", "central-key.pem"),
			"--ca", filepath.Join(dir, "pki", "ca.pem")})
		served <- root.ExecuteContext(ctx)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	rd := bufio.NewReader(pr)
	var base string
	for base == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
		if rest, ok := strings.CutPrefix(line, "logcentral https://"); ok {
			base = "https://" + strings.Fields(rest)[0]
		}
	}
	go io.Copy(io.Discard, rd) //nolint:errcheck // drain

	log, err := audit.Open(context.Background(), filepath.Join(dir, "node", "audit.db"), "n", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for range 3 {
		if err := log.Append(context.Background(), audit.Record{Action: audit.ActionRead, Interaction: "read", Outcome: 200, Tenant: "90000001"}); err != nil {
			t.Fatal(err)
		}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(certs["node"], pki.CertPool(ca.Cert))}}
	sh, err := audit.NewShipper(audit.ShipperConfig{Store: log, URL: base, HTTP: hc, CursorFile: filepath.Join(dir, "node", "cursor")})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := sh.ShipOnce(context.Background()); err != nil || n != 3 {
		t.Fatalf("shipped %d: %v", n, err)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `schakel_logcentral_acknowledged_seq{node="90000001"} 3`) {
		t.Fatalf("metrics lack the node's position:\n%s", body)
	}
}

// freeLoopback is a loopback address nothing listens on right now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
