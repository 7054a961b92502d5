package scan

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

type testPKI struct {
	ca      *pki.CA
	node    tls.Certificate
	client  tls.Certificate
	dir     string
	caFile  string
	crtFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := pki.NewCA("scan test CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, dir: t.TempDir()}
	if p.node, err = ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "90000001", URA: "00000001", AGB: "00000000"}}); err != nil {
		t.Fatal(err)
	}
	if p.client, err = ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "90000002", URA: "00000002", AGB: "00000000"}}); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKeyPair(p.dir, "node", p.node); err != nil {
		t.Fatal(err)
	}
	p.caFile = filepath.Join(p.dir, "ca.pem")
	if err := os.WriteFile(p.caFile, pemCert(ca.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	p.crtFile = filepath.Join(p.dir, "node.pem")
	return p
}

func pemCert(c *x509.Certificate) []byte {
	var b bytes.Buffer
	b.WriteString("-----BEGIN CERTIFICATE-----\n")
	s := base64Std(c.Raw)
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s + "\n-----END CERTIFICATE-----\n")
	return b.Bytes()
}

// serveAS runs a real authorization server behind the node's TLS
// configuration on 127.0.0.1 and returns its base URL.
func serveAS(t *testing.T, p *testPKI) string {
	t.Helper()
	return serveASWith(t, p, clientKeys{}, oauth.GrantResolverFunc(func(context.Context, oauth.GrantRequest) (oauth.Grant, error) {
		return oauth.Grant{}, oauth.ErrInvalidGrant
	}))
}

// serveASWith is serveAS with the given client keys and grant decisions.
func serveASWith(t *testing.T, p *testPKI, clients oauth.ClientKeys, grants oauth.GrantResolver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "https://" + ln.Addr().String()
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "as.pem"))
	if err != nil {
		t.Fatal(err)
	}
	as, err := oauth.NewServer(oauth.ServerConfig{
		Issuer: issuer, SigningKey: key, PeerURA: pki.PeerURA, Logger: slog.New(slog.DiscardHandler),
		Clients: clients,
		Grants:  grants,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	as.Routes(mux)
	srv := &http.Server{Handler: mux, TLSConfig: pki.ServerTLSConfig(p.node, pki.CertPool(p.ca.Cert)), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return issuer
}

type clientKeys struct{}

func (clientKeys) ClientKeySet(context.Context, string) (jwk.Set, error) {
	return nil, oauth.ErrInvalidClient
}

func writeConfig(t *testing.T, p *testPKI, extra string) string {
	t.Helper()
	cfg := `name: scan-node
datadir: ` + filepath.Join(p.dir, "data") + `
public:
  addr: 127.0.0.1:8443
tls:
  certfile: ` + p.crtFile + `
  keyfile: ` + filepath.Join(p.dir, "node-key.pem") + `
  cafiles: [` + p.caFile + `]
addressbookurl: https://127.0.0.1:9443/fhir
participants:
  - ura: "00000001"
    name: Ziekenhuis A
` + extra
	f := filepath.Join(p.dir, "node.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

const partners = `partners:
  identityissuers: ["https://dezi.example"]
  agreements:
    - ura: "00000002"
      name: Ziekenhuis B
      plateaus: {authentication: 3, authorization: 2, network: 4, consent: 4}
    - collaboration: ["00000003", "00000004"]
      name: Regio Noord
      plateaus: {authentication: 2, authorization: 2}
`

func reached(r *Report) map[plateau.Function]int {
	out := map[plateau.Function]int{}
	for _, f := range r.Functions {
		out[f.Function] = f.Reached
	}
	return out
}

func TestScanConfiguration(t *testing.T) {
	p := newTestPKI(t)
	cases := []struct {
		name  string
		extra string
		want  map[plateau.Function]int
	}{
		{"no partners", "", map[plateau.Function]int{
			plateau.Identification: 4, plateau.Authentication: 1, plateau.Authorization: 0,
			plateau.Consent: 1, plateau.Localization: 1, plateau.Addressing: 2, plateau.Logging: 2, plateau.Network: 3}},
		{"partners and services", partners + "consent:\n  local: true\n  url: https://mitz.example\n  subscribe: true\n  notifierura: \"90000998\"\nlocalization:\n  url: https://nvi.example\n", map[plateau.Function]int{
			plateau.Identification: 4, plateau.Authentication: 3, plateau.Authorization: 2,
			plateau.Consent: 4, plateau.Localization: 4, plateau.Addressing: 2, plateau.Logging: 2, plateau.Network: 3}},
		// Configuration presence is not evidence of a value.
		{"empty and unusable values", partners + "consent:\n  url: \"\"\n  regional:\n    url: mitz.example\n  subscribe: true\nlocalization:\n  url: \"\"\naudit:\n  checkpointkeyfile: " + filepath.Join(p.dir, "no-such-key.pem") + "\n", map[plateau.Function]int{
			plateau.Consent: 1, plateau.Localization: 1, plateau.Logging: 0}},
		{"a checkpoint key that is a certificate", "audit:\n  checkpointkeyfile: " + p.caFile + "\n", map[plateau.Function]int{plateau.Logging: 0}},
		{"a readable checkpoint key", "audit:\n  checkpointkeyfile: " + filepath.Join(p.dir, "node-key.pem") + "\n", map[plateau.Function]int{plateau.Logging: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, p, tc.extra)
			cfg, err := LoadConfig(file)
			if err != nil {
				t.Fatal(err)
			}
			r := Run(cfg, file, nil)
			got := reached(r)
			for f, w := range tc.want {
				if got[f] != w {
					t.Errorf("%s: reached %d, want %d", f, got[f], w)
				}
			}
			for _, f := range r.Functions {
				if f.Reached < 4 && (f.Next == nil || len(f.Next.Steps) == 0) {
					t.Errorf("%s: no steps to plateau %d", f.Function, f.Reached+1)
				}
			}
		})
	}
}

// A plateau is reached only when it and every plateau below it have
// criteria and all of them are met: a plateau without criteria is not.
func TestAssessHonestly(t *testing.T) {
	met := criterion{judge: builtIn("yes")}
	unmet := criterion{judge: func(*inputs) (bool, string, string) { return false, "configuration", "no" }, step: "do it"}
	cases := []struct {
		name  string
		cs    []criterion
		want  int
		steps string
	}{
		{"no criteria at all", nil, 0, "no criteria for logging plateau 1"},
		{"a gap at plateau 2", []criterion{at(1, met), at(3, met), at(4, met)}, 1, "no criteria for logging plateau 2"},
		{"unmet at plateau 3", []criterion{at(1, met), at(2, met), at(3, unmet), at(4, met)}, 2, "do it"},
		{"all four", []criterion{at(1, met), at(2, met), at(3, met), at(4, met)}, 4, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fr := assess(plateau.Logging, tc.cs, &inputs{cfg: &NodeConfig{}})
			if fr.Reached != tc.want {
				t.Fatalf("reached %d, want %d", fr.Reached, tc.want)
			}
			if tc.want < 4 && (fr.Next == nil || !strings.Contains(strings.Join(fr.Next.Steps, " "), tc.steps)) {
				t.Errorf("next %+v, want a step ~%q", fr.Next, tc.steps)
			}
		})
	}
	// Every function has criteria of its own at every plateau.
	for _, f := range plateau.Functions {
		var has [plateau.Highest + 1]bool
		for _, c := range criteria[f] {
			has[c.plateau] = true
		}
		for p := plateau.Lowest; p <= plateau.Highest; p++ {
			if !has[p] {
				t.Errorf("%s has no criteria at plateau %d", f, p)
			}
		}
	}
}

func TestScanAgreementWarnings(t *testing.T) {
	p := newTestPKI(t)
	file := writeConfig(t, p, partners)
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	r := Run(cfg, file, nil)
	if len(r.Agreements) != 2 {
		t.Fatalf("%d agreements", len(r.Agreements))
	}
	w := strings.Join(r.Agreements[0].Warnings, "\n")
	if !strings.Contains(w, "consent is agreed at plateau 4, but the node reaches plateau 1") || !strings.Contains(w, "network is agreed at plateau 4") {
		t.Fatalf("warnings: %q", w)
	}
}

func TestProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts TLS listeners")
	}
	p := newTestPKI(t)
	base := serveAS(t, p)
	roots := pki.CertPool(p.ca.Cert)

	t.Run("without client certificate", func(t *testing.T) {
		pr, err := RunProbe(context.Background(), ProbeOptions{URL: base, Roots: roots})
		if err != nil {
			t.Fatal(err)
		}
		if !pr.Reachable || pr.TLSVersion != "TLS 1.3" || !pr.AsksCert || !pr.DemandsCert || !pr.RefusesTLS12 || pr.Authed {
			t.Fatalf("probe: %+v", pr)
		}
	})
	t.Run("with client certificate", func(t *testing.T) {
		pr, err := RunProbe(context.Background(), ProbeOptions{URL: base, Roots: roots, Certificate: &p.client})
		if err != nil {
			t.Fatal(err)
		}
		if !pr.Metadata || !pr.PrivateKeyJW || !pr.JWTBearer || !pr.BoundTokens || !pr.JWKS || !pr.RefusesNone {
			t.Fatalf("probe: %+v\n%v", pr, pr.Observations)
		}
	})
	t.Run("unverified server", func(t *testing.T) {
		pr, err := RunProbe(context.Background(), ProbeOptions{URL: base})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Verified || !pr.DemandsCert {
			t.Fatalf("probe: %+v", pr)
		}
	})
	t.Run("plain listener that answers without a certificate", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Second, ErrorLog: log.New(io.Discard, "", 0),
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.node}, MinVersion: tls.VersionTLS12}}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		defer srv.Close()
		pr, err := RunProbe(context.Background(), ProbeOptions{URL: "https://" + ln.Addr().String(), Roots: roots})
		if err != nil {
			t.Fatal(err)
		}
		if pr.AsksCert || pr.DemandsCert || pr.RefusesTLS12 {
			t.Fatalf("a lax server looked strict: %+v", pr)
		}
		file := writeConfig(t, p, partners)
		cfg, _ := LoadConfig(file)
		if got := reached(Run(cfg, file, pr)); got[plateau.Network] != 0 || got[plateau.Authentication] != 0 {
			t.Fatalf("lax server reached %v", got)
		}
	})
}

// htmlNode is a minimal DOM for the structural test.
type htmlNode struct {
	name     string
	attrs    map[string]string
	text     strings.Builder
	children []*htmlNode
}

func parseHTML(t *testing.T, b []byte) *htmlNode {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict, d.AutoClose, d.Entity = false, xml.HTMLAutoClose, xml.HTMLEntity
	root := &htmlNode{name: "#root"}
	stack := []*htmlNode{root}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("HTML does not parse: %v", err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			n := &htmlNode{name: v.Name.Local, attrs: map[string]string{}}
			for _, a := range v.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			top := stack[len(stack)-1]
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			for _, n := range stack {
				n.text.Write(v)
			}
		}
	}
	if len(stack) != 1 {
		t.Fatalf("unclosed elements: %d", len(stack)-1)
	}
	return root
}

func (n *htmlNode) find(pred func(*htmlNode) bool) []*htmlNode {
	var out []*htmlNode
	for _, c := range n.children {
		if pred(c) {
			out = append(out, c)
		}
		out = append(out, c.find(pred)...)
	}
	return out
}

func sampleReport(t *testing.T) *Report {
	p := newTestPKI(t)
	file := writeConfig(t, p, partners+"consent:\n  url: https://portaal.example\n")
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	pr := &Probe{URL: "https://node.example", Reachable: true, TLSVersion: "TLS 1.3", AsksCert: true, DemandsCert: true, RefusesTLS12: true}
	pr.observe("tls-version", true, "negotiated TLS 1.3 <&>")
	return Run(cfg, file, pr)
}

func TestHTMLStructure(t *testing.T) {
	r := sampleReport(t)
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	doc := parseHTML(t, b.Bytes())
	byName := func(name string) func(*htmlNode) bool { return func(n *htmlNode) bool { return n.name == name } }
	if n := doc.find(byName("script")); len(n) != 0 {
		t.Error("the page has scripts")
	}
	for _, l := range doc.find(byName("link")) {
		t.Errorf("external asset: %v", l.attrs)
	}
	for _, img := range doc.find(byName("img")) {
		t.Errorf("image: %v", img.attrs)
	}
	if len(doc.find(byName("style"))) != 1 {
		t.Error("want one inline style sheet")
	}
	sections := doc.find(func(n *htmlNode) bool { return n.name == "section" && n.attrs["data-function"] != "" })
	if len(sections) != len(plateau.Functions) {
		t.Fatalf("%d function sections, want %d", len(sections), len(plateau.Functions))
	}
	for i, s := range sections {
		f := r.Functions[i]
		if s.attrs["data-function"] != string(f.Function) || s.attrs["id"] != string(f.Function) {
			t.Errorf("section %d is %v, want %s", i, s.attrs, f.Function)
		}
		text := s.text.String()
		if !strings.Contains(text, f.Title) || !strings.Contains(text, "Evidence") {
			t.Errorf("%s section lacks title or evidence", f.Function)
		}
		items := s.find(func(n *htmlNode) bool {
			return n.name == "li" && (n.attrs["class"] == "met" || n.attrs["class"] == "unmet" || n.attrs["class"] == "failed") && n.attrs["id"] == ""
		})
		if len(items) != len(f.Evidence) {
			t.Errorf("%s: %d evidence items, want %d", f.Function, len(items), len(f.Evidence))
		}
		if f.Next != nil && !strings.Contains(text, "Steps to plateau") {
			t.Errorf("%s: no steps", f.Function)
		}
		if f.Characteristic != "" && !strings.Contains(text, f.Characteristic[:40]) {
			t.Errorf("%s: characteristic missing", f.Function)
		}
	}
	rows := doc.find(func(n *htmlNode) bool { return n.name == "tr" })
	if len(rows) < len(plateau.Functions)+1 {
		t.Errorf("overview has %d rows", len(rows))
	}
	if !strings.Contains(b.String(), "TLS 1.3 &lt;&amp;&gt;") {
		t.Error("observations are not escaped")
	}
	for _, id := range []string{"overview", "observed", "agreements"} {
		if len(doc.find(func(n *htmlNode) bool { return n.attrs["id"] == id })) != 1 {
			t.Errorf("no #%s", id)
		}
	}
}

func TestTextAndJSON(t *testing.T) {
	r := sampleReport(t)
	var txt bytes.Buffer
	if err := r.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Functions {
		if !strings.Contains(txt.String(), f.Title+" — plateau") {
			t.Errorf("text lacks %s", f.Title)
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Functions) != 8 || back.Functions[1].Function != plateau.Authentication || back.Functions[1].Reached != r.Functions[1].Reached {
		t.Fatalf("JSON round trip: %+v", back.Functions)
	}
}

// TestHTMLInChromium renders the page in headless Chromium, when installed,
// and keeps a screenshot in SCHAKEL_SCAN_SCREENSHOT if set.
func TestHTMLInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	browser, err := exec.LookPath("chromium")
	if err != nil {
		if browser, err = exec.LookPath("/usr/bin/chromium"); err != nil {
			t.Skip("chromium is not installed")
		}
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "scan.html")
	var b bytes.Buffer
	if err := sampleReport(t).WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	shot := os.Getenv("SCHAKEL_SCAN_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(dir, "scan.png")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--window-size=1200,2400", "--screenshot="+shot, "file://"+page)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 20000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("no screenshot of substance (%d bytes): %v", len(png), err)
	}
	dump := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--user-data-dir="+filepath.Join(dir, "profile2"), "--dump-dom", "file://"+page)
	dom, err := dump.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	if n := strings.Count(string(dom), `data-function="`); n != len(plateau.Functions) {
		t.Fatalf("the browser's DOM has %d function sections", n)
	}
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestScanOwnAddressing: without an addressbook, addressing reaches plateau
// 2 only when every agreement lists its partner's endpoints.
func TestScanOwnAddressing(t *testing.T) {
	p := newTestPKI(t)
	for _, tc := range []struct {
		name, agreements string
		want             int
	}{
		{"every partner's endpoints configured", `partners:
  agreements:
    - ura: "00000002"
      name: Ziekenhuis B
      plateaus: {addressing: 1}
      endpoints: {notification: "https://b.example/fhir/stu3/00000002/Task", bgz: "https://b.example/fhir/stu3/00000002", authserver: "https://b.example", jwks: "https://b.example/jwks/00000002"}
`, 2},
		{"a partner without endpoints", `partners:
  agreements:
    - ura: "00000002"
      plateaus: {addressing: 1}
`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, p, tc.agreements)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(strings.Replace(string(data), "addressbookurl: https://127.0.0.1:9443/fhir\n", "", 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(file)
			if err != nil {
				t.Fatal(err)
			}
			r := Run(cfg, file, nil)
			if got := reached(r)[plateau.Addressing]; got != tc.want {
				t.Errorf("addressing reached %d, want %d", got, tc.want)
			}
		})
	}
}

type keySet struct {
	ura string
	set jwk.Set
}

func (k keySet) ClientKeySet(_ context.Context, id string) (jwk.Set, error) {
	if id != k.ura {
		return nil, oauth.ErrInvalidClient
	}
	return k.set, nil
}

// The probe's behavioural check: with its own signing key it asks for a
// token without user data. An authorization server that holds the probe's
// URA to authentication plateau 2 refuses; the scan believes what it saw
// over what the configuration promises.
func TestProbeTokenRequestWithoutUser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts TLS listeners")
	}
	p := newTestPKI(t)
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "probe-signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pki.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	roots := pki.CertPool(p.ca.Cert)
	const probeURA = "00000002" // the URA of p.client
	cases := []struct {
		name      string
		keys      oauth.ClientKeys
		agreed    []plateau.PartnerConfig // what the running node enforces
		signing   bool
		want      UserlessAnswer
		configAt  int // the authentication plateau the scanned configuration agrees with the probe's URA
		wantAuthn int // authentication plateau the scan then reports
	}{
		{"held to plateau 2", keySet{probeURA, pub}, []plateau.PartnerConfig{{URA: probeURA, Plateaus: plateau.Uniform(2)}}, true, UserlessRefusedAuthn, 2, 2},
		{"not a partner", keySet{probeURA, pub}, []plateau.PartnerConfig{{URA: "00000007", Plateaus: plateau.Uniform(2)}}, true, UserlessRefusedPartner, 2, 2},
		// The configuration says 2, the running node holds the URA to 1:
		// what was observed wins.
		{"node lets it through", keySet{probeURA, pub}, []plateau.PartnerConfig{{URA: probeURA, Plateaus: plateau.Uniform(1)}}, true, UserlessAccepted, 2, 1},
		{"agreed at 1 and let through", keySet{probeURA, pub}, []plateau.PartnerConfig{{URA: probeURA, Plateaus: plateau.Uniform(1)}}, true, UserlessAccepted, 1, 1},
		{"key unknown to the node", clientKeys{}, []plateau.PartnerConfig{{URA: probeURA, Plateaus: plateau.Uniform(2)}}, true, UserlessInconclusive, 2, 2},
		{"no signing key", keySet{probeURA, pub}, nil, false, "", 2, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := plateau.New(plateau.Config{Agreements: tc.agreed}, nil)
			if err != nil {
				t.Fatal(err)
			}
			base := serveASWith(t, p, tc.keys, oauth.GrantResolverFunc(func(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
				if err := e.CheckTokenRequest(ctx, plateau.TokenContext{ClientURA: req.ClientID, GrantType: req.GrantType, Scope: req.Scope, Assertion: req.Assertion}); err != nil {
					if r := plateau.AsRefusal(err); r != nil {
						return oauth.Grant{}, r.OAuthError()
					}
					return oauth.Grant{}, err
				}
				return oauth.Grant{}, oauth.RefuseGrant("no referral", nil) // the exchange's own refusal
			}))
			opts := ProbeOptions{URL: base, Roots: roots, Certificate: &p.client}
			if tc.signing {
				opts.SigningKey = key
			}
			pr, err := RunProbe(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if pr.Userless != tc.want || pr.ProbeURA != probeURA {
				t.Fatalf("userless %q (URA %s), want %q\n%v", pr.Userless, pr.ProbeURA, tc.want, pr.Observations)
			}
			cfgText := fmt.Sprintf("partners:\n  identityissuers: [\"https://dezi.example\"]\n  agreements:\n    - ura: %q\n      plateaus: {authentication: %d, authorization: %d}\n", probeURA, tc.configAt, tc.configAt)
			file := writeConfig(t, p, cfgText)
			cfg, err := LoadConfig(file)
			if err != nil {
				t.Fatal(err)
			}
			if got := reached(Run(cfg, file, pr))[plateau.Authentication]; got != tc.wantAuthn {
				t.Errorf("authentication reached %d, want %d", got, tc.wantAuthn)
			}
		})
	}
}

// The page explains its colours, reached reads green and never red, a
// criterion the probe saw fail is marked apart from one merely unmet, and
// every text colour keeps a WCAG AA contrast (4.5:1) on its background.
func TestHTMLLegendAndColours(t *testing.T) {
	r := sampleReport(t)
	r.Functions[1].Evidence = append(r.Functions[1].Evidence, Evidence{Plateau: 2, Source: "observed", Text: "fell short"})
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	doc := parseHTML(t, b.Bytes())
	legend := doc.find(func(n *htmlNode) bool { return n.attrs["id"] == "legend" })
	if len(legend) != 1 {
		t.Fatal("no legend")
	}
	for _, w := range []string{"reached", "not reached", "not met", "failed"} {
		if !strings.Contains(legend[0].text.String(), w) {
			t.Errorf("the legend does not explain %q", w)
		}
	}
	if n := doc.find(func(n *htmlNode) bool {
		return n.name == "li" && n.attrs["class"] == "failed" && strings.Contains(n.text.String(), "fell short")
	}); len(n) != 1 {
		t.Error("an observed failure is not marked failed")
	}
	css := doc.find(func(n *htmlNode) bool { return n.name == "style" })[0].text.String()
	rule := func(sel string) map[string]string {
		i := strings.Index(css, "\n"+sel+"{")
		if i < 0 {
			t.Fatalf("no CSS rule %s", sel)
		}
		body := css[i+len(sel)+2:]
		body = body[:strings.Index(body, "}")]
		out := map[string]string{}
		for _, decl := range strings.Split(body, ";") {
			k, v, _ := strings.Cut(decl, ":")
			out[k] = v
		}
		return out
	}
	on := rule(".on")
	if hue(on["background"]) != "green" {
		t.Errorf("reached is %s, not green", on["background"])
	}
	pairs := []struct{ what, fg, bg string }{
		{"reached cell", on["color"], on["background"]},
		{"unreached cell", rule(".off")["color"], rule(".off")["background"]},
		{"header", rule("header")["color"], rule("header")["background"]},
		{"badge", rule(".badge")["color"], rule(".badge")["background"]},
		{"badge none", "#fff", rule(".badge.none")["background"]},
		{"met mark", rule(".met .mark")["color"], "#fff"},
		{"unmet mark", rule(".unmet .mark")["color"], "#fff"},
		{"failed mark", rule(".failed .mark")["color"], rule(".failed")["background"]},
		{"source", rule(".src")["color"], "#fff"},
		{"steps", "#1f2328", rule(".next")["background"]},
	}
	for _, p := range pairs {
		if c := contrast(t, p.fg, p.bg); c < 4.5 {
			t.Errorf("%s: %s on %s has contrast %.2f:1", p.what, p.fg, p.bg, c)
		}
	}
}

func hexRGB(t *testing.T, s string) [3]float64 {
	t.Helper()
	s = strings.TrimPrefix(strings.TrimSpace(s), "#")
	if len(s) == 3 {
		s = string([]byte{s[0], s[0], s[1], s[1], s[2], s[2]})
	}
	var rgb [3]float64
	for i := range rgb {
		var v int
		if _, err := fmt.Sscanf(s[2*i:2*i+2], "%02x", &v); err != nil {
			t.Fatalf("colour %q: %v", s, err)
		}
		rgb[i] = float64(v) / 255
	}
	return rgb
}

// contrast is the WCAG 2 contrast ratio of two sRGB colours.
func contrast(t *testing.T, a, b string) float64 {
	lum := func(rgb [3]float64) float64 {
		var l [3]float64
		for i, c := range rgb {
			if c <= 0.03928 {
				l[i] = c / 12.92
			} else {
				l[i] = math.Pow((c+0.055)/1.055, 2.4)
			}
		}
		return 0.2126*l[0] + 0.7152*l[1] + 0.0722*l[2]
	}
	la, lb := lum(hexRGB(t, a)), lum(hexRGB(t, b))
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// hue names the dominant channel of a colour, enough to tell green from red.
func hue(s string) string {
	var r, g, b int
	if _, err := fmt.Sscanf(strings.TrimPrefix(s, "#"), "%02x%02x%02x", &r, &g, &b); err != nil {
		return "unknown"
	}
	switch {
	case g > r && g > b:
		return "green"
	case r > g && r > b:
		return "red"
	}
	return "other"
}
