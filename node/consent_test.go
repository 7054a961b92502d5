package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// plateauOneBut is a plateau-1 agreement with function f at plateau p.
func plateauOneBut(f plateau.Function, p int) plateau.Plateaus {
	out := plateau.Uniform(1)
	out[f] = p
	return out
}

func consentPlateaus(p int) plateau.Plateaus { return plateauOneBut(plateau.Consent, p) }

func TestConfigValidateConsentSources(t *testing.T) {
	agreement := func(ura, name string, p int) plateau.PartnerConfig {
		return plateau.PartnerConfig{URA: ura, Name: name, Plateaus: consentPlateaus(p)}
	}
	const mitz, portal = "https://mitz.example/", "https://portal.example/"
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want []string // parts of the error; none = valid
	}{
		{"no agreements need nothing", func(*Config) {}, nil},
		{"a node without consent sources only refers", func(c *Config) {
			c.Partners.Agreements = []plateau.PartnerConfig{agreement("90000011", "a", 1), agreement("90000014", "d", 4)}
		}, nil},
		{"every plateau has its source", func(c *Config) {
			c.Consent = ConsentConfig{Local: true, URL: mitz, Regional: RegionalConsentConfig{URL: portal}}
			c.Partners.Agreements = []plateau.PartnerConfig{agreement("90000011", "a", 1), agreement("90000012", "b", 2),
				agreement("90000013", "c", 3), agreement("90000014", "d", 4)}
			c.Participants[0].FacilityType = "Z3"
		}, nil},
		{"plateau 1 without the local registry", func(c *Config) {
			c.Consent.URL = mitz
			c.Partners.Agreements = []plateau.PartnerConfig{agreement("90000011", "Praktijk A", 1)}
		}, []string{"partners.agreements[0] (Praktijk A): consent is agreed at plateau 1, which needs consent.local"}},
		{"plateau 2 without a regional portal", func(c *Config) {
			c.Consent = ConsentConfig{Local: true, URL: mitz}
			c.Partners.Agreements = []plateau.PartnerConfig{agreement("90000011", "a", 1), agreement("90000012", "Regio", 2)}
		}, []string{"partners.agreements[1] (Regio): consent is agreed at plateau 2, which needs consent.regional.url"}},
		{"plateau 4 without Mitz", func(c *Config) {
			c.Consent.Local = true
			c.Partners.Agreements = []plateau.PartnerConfig{agreement("90000011", "", 4)}
		}, []string{"partners.agreements[0]: consent is agreed at plateau 4, which needs consent.url"}},
		{"default without its source", func(c *Config) {
			c.Consent.Local = true
			c.Partners.Default = plateau.Uniform(3)
		}, []string{"partners.default: consent is agreed at plateau 3, which needs consent.url"}},
		{"an agreement without consent takes the default's", func(c *Config) {
			c.Consent.URL = mitz
			c.Identification.URL = "https://sbvz.example/opvragenverifieren.asmx" // identification is at 3 too
			c.Partners.Default = plateau.Uniform(3)
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000011", Plateaus: plateau.Plateaus{plateau.Network: 2}}}
			c.Audit.Central.URL = "https://logcentral.example" // logging at plateau 3 too
			c.Participants[0].FacilityType = "Z3"
		}, nil},
		{"an agreement without consent and no default is at plateau 1", func(c *Config) {
			c.Consent.URL = mitz
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000011", Plateaus: plateau.Plateaus{plateau.Network: 2}}}
		}, []string{"partners.agreements[0]: consent is agreed at plateau 1"}},
		{"regional portal over plain http", func(c *Config) { c.Consent.Regional.URL = "http://portal" }, []string{"consent.regional.url must be an https URL"}},
		{"subscribe", func(c *Config) {
			c.Consent = ConsentConfig{URL: mitz, Subscribe: true, NotifierURA: "90000998",
				GatewaySystem: "urn:oid:2.16.528.1.1007.3.3.1234", SourceSystem: "urn:oid:2.16.528.1.1007.3.3.1234.1"}
			c.Localization.URL = "https://index.example/fhir"
			c.Participants[0].FacilityType = "Z3"
		}, nil},
		{"subscribe without Mitz, index or notifier", func(c *Config) { c.Consent.Subscribe = true },
			[]string{"consent.subscribe needs consent.url", "consent.subscribe needs localization.url", "consent.notifierura"}},
		{"subscribe with malformed OIDs", func(c *Config) {
			c.Consent = ConsentConfig{URL: mitz, Subscribe: true, NotifierURA: "90000998", GatewaySystem: "2.16.528", SourceSystem: "urn:oid:x"}
			c.Localization.URL = "https://index.example/fhir"
			c.Participants[0].FacilityType = "Z3"
		}, []string{"consent.gatewaysystem must be an OID", "consent.sourcesystem must be an OID"}},
		{"subscription settings without subscribe", func(c *Config) { c.Consent.NotifierURA = "90000998" },
			[]string{"consent.notifierura is set but consent.subscribe is not"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mod(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

// TestConsentForPicksSourceByPlateau: the partner's agreed consent plateau
// chooses the source; a missing source or agreement gives none (the caller
// refuses).
func TestConsentForPicksSourceByPlateau(t *testing.T) {
	cfg := plateau.Config{Agreements: []plateau.PartnerConfig{
		{URA: "90000011", Plateaus: consentPlateaus(1)}, {URA: "90000012", Plateaus: consentPlateaus(2)},
		{URA: "90000013", Plateaus: consentPlateaus(3)}, {URA: "90000014", Plateaus: consentPlateaus(4)},
	}}
	enforcer, err := plateau.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := consent.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "consent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	client := func(base string) *consent.Client {
		c, err := consent.NewClient(consent.ClientConfig{BaseURL: base, HTTPClient: http.DefaultClient})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	regional, mitz := client("https://portal.example:8443"), client("https://mitz.example")
	full := &Node{plateaus: enforcer, consents: store, regional: regional, mitz: mitz, regionalHost: "portal.example:8443"}
	bare := &Node{plateaus: enforcer, mitz: mitz}
	for _, tc := range []struct {
		n       *Node
		partner string
		want    consent.Checker // nil: none; (*consent.LocalChecker)(nil): a local checker
		label   string
	}{
		{full, "90000011", (*consent.LocalChecker)(nil), "plateau 1 local registry"},
		{full, "90000012", regional, "plateau 2 regional portal portal.example:8443"},
		{full, "90000013", mitz, "plateau 3 Mitz closed question"},
		{full, "90000014", mitz, "plateau 4 Mitz closed question"},
		{full, "90000099", nil, "no agreement with 90000099"},
		{bare, "90000011", nil, "plateau 1 local registry (not configured)"},
		{bare, "90000012", nil, "plateau 2 regional portal (not configured)"},
		{bare, "90000014", mitz, "plateau 4 Mitz closed question"},
	} {
		got, label := tc.n.consentFor(tc.partner)
		if label != tc.label {
			t.Errorf("partner %s: label %q, want %q", tc.partner, label, tc.label)
		}
		switch want := tc.want.(type) {
		case nil:
			if got != nil {
				t.Errorf("partner %s: source %T, want none", tc.partner, got)
			}
		case *consent.LocalChecker:
			if lc, ok := got.(*consent.LocalChecker); !ok || lc.Store != store {
				t.Errorf("partner %s: source %T, want the local registry", tc.partner, got)
			}
		default:
			if got != want {
				t.Errorf("partner %s: source %v, want %v", tc.partner, got, want)
			}
		}
	}
}

// notifyEnv is a node that subscribes at a consent service whose
// certificate carries notifierURA; the service and the index are never
// reached (nothing listens at their addresses).
type notifyEnv struct {
	n                *Node
	mitzCert, other  tls.Certificate
	participant, bsn string
}

const notifierURA = "90000998"

func newNotifyEnv(t *testing.T) *notifyEnv { t.Helper(); return newNotifyEnvWith(t, nil) }

// newNotifyEnvWith is newNotifyEnv with mod applied to the node's
// configuration before the node is built.
func newNotifyEnvWith(t *testing.T, mod func(*Config)) *notifyEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, ura, uzi string) tls.Certificate {
		c, err := pki.LoadOrIssueUZIServer(filepath.Join(dir, "tls"), name, ca, pki.ServerCertRequest{ID: pki.UZIServerID{UZI: uzi, URA: ura, AGB: "00000000"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e := &notifyEnv{participant: "90000001", mitzCert: issue("mitz", notifierURA, "900009988"), other: issue("other", "90000005", "900000055")}
	issue("node", e.participant, "900000011")
	e.bsn = "999911120"
	cfg := Config{
		Name: "n", DataDir: filepath.Join(dir, "data"),
		Public:         ListenerConfig{Addr: "127.0.0.1:0"},
		Internal:       ListenerConfig{Addr: "127.0.0.1:0"},
		TLS:            TLSConfig{CertFile: filepath.Join(dir, "tls", "node.pem"), KeyFile: filepath.Join(dir, "tls", "node-key.pem"), CAFiles: []string{filepath.Join(dir, "ca", "ca.pem")}},
		SigningKeyFile: filepath.Join(dir, "as.pem"), AddressbookURL: "https://127.0.0.1:1/fhir",
		Consent:      ConsentConfig{URL: "https://127.0.0.1:1", Subscribe: true, NotifierURA: notifierURA, Timeout: 200 * time.Millisecond},
		Localization: LocalizationConfig{URL: "https://127.0.0.1:1/fhir"},
		Participants: []ParticipantConfig{{URA: e.participant, SigningKeyFile: filepath.Join(dir, "p.pem"),
			InternalToken: "0123456789abcdef0123", FacilityType: "Z1"}},
	}
	if mod != nil {
		mod(&cfg)
	}
	if e.n, err = New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.n.Close)
	return e
}

// post sends a notification as the peer with cert would (its certificate as
// the verified TLS peer), straight to the public handler.
func (e *notifyEnv) post(t *testing.T, cert *tls.Certificate, ura, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/consent/notifications/"+ura, bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	if cert != nil {
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}
	}
	w := httptest.NewRecorder()
	e.n.publicRoutes().ServeHTTP(w, r)
	return w
}

// notice is a consent notification Bundle for bsn with the given Consents.
func notice(bsn string, consents ...map[string]any) []byte {
	var entries []map[string]any
	for _, c := range consents {
		entries = append(entries, map[string]any{"resource": c})
	}
	entries = append(entries, map[string]any{"resource": map[string]any{"resourceType": "Patient",
		"identifier": []map[string]any{{"system": nl.SystemBSN, "value": bsn}}}})
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	return b
}

// TestConsentNotificationRefused: the endpoint answers only the consent
// service's certificate and only a consent notification, with an
// OperationOutcome; every refusal is audited.
func TestConsentNotificationRefused(t *testing.T) {
	e := newNotifyEnv(t)
	const fhirJSON = "application/fhir+json; fhirVersion=4.0"
	for _, tc := range []struct {
		name        string
		cert        *tls.Certificate
		participant string
		contentType string
		body        []byte
		status      int
		says        string
	}{
		{"no client certificate", nil, e.participant, fhirJSON, notice(e.bsn), http.StatusForbidden, "only the consent service"},
		{"another peer", &e.other, e.participant, fhirJSON, notice(e.bsn), http.StatusForbidden, "only the consent service"},
		{"unknown participant", &e.mitzCert, "90000077", fhirJSON, notice(e.bsn), http.StatusNotFound, "no participant"},
		{"not JSON", &e.mitzCert, e.participant, fhirJSON, []byte("<Bundle/>"), http.StatusBadRequest, "malformed JSON"},
		{"not a Bundle", &e.mitzCert, e.participant, fhirJSON, []byte(`{"resourceType":"Patient"}`), http.StatusBadRequest, "must be a Bundle"},
		{"no patient", &e.mitzCert, e.participant, fhirJSON, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[]}`), http.StatusBadRequest, "no valid patient"},
		{"invalid BSN", &e.mitzCert, e.participant, fhirJSON, notice("123456789"), http.StatusBadRequest, "no valid patient"},
		{"Consent of another patient", &e.mitzCert, e.participant, fhirJSON, notice(e.bsn, map[string]any{
			"resourceType": "Consent", "status": "active",
			"scope":    map[string]any{"coding": []map[string]any{{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
			"category": []map[string]any{{"coding": []map[string]any{{"system": "http://loinc.org", "code": "59284-0"}}}},
			"patient":  map[string]any{"identifier": map[string]any{"system": nl.SystemBSN, "value": "999911132"}},
		}), http.StatusBadRequest, ""},
		{"XML", &e.mitzCert, e.participant, "application/fhir+xml", []byte("<Bundle/>"), http.StatusUnsupportedMediaType, "FHIR JSON"},
		{"too large", &e.mitzCert, e.participant, fhirJSON, bytes.Repeat([]byte(" "), maxNotificationBytes+1), http.StatusRequestEntityTooLarge, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countRecords(t, e.n, "consent-notification")
			w := e.post(t, tc.cert, tc.participant, tc.contentType, tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tc.status)
			}
			var oo struct {
				ResourceType string
				Issue        []struct{ Diagnostics string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
				t.Fatalf("answer is no OperationOutcome: %s", w.Body)
			}
			if !strings.Contains(oo.Issue[0].Diagnostics, tc.says) {
				t.Errorf("diagnostics %q, want %q", oo.Issue[0].Diagnostics, tc.says)
			}
			if after := countRecords(t, e.n, "consent-notification"); after != before+1 {
				t.Errorf("%d audit records added, want 1", after-before)
			}
		})
	}
}

// TestConsentNotificationFailsSafe: a notification the node cannot act on
// (the referral index is unreachable) is answered 503 so that the service
// delivers it again, and audited with the patient; when the audit log is
// unavailable the answer is 503 as well.
func TestConsentNotificationFailsSafe(t *testing.T) {
	e := newNotifyEnv(t)
	w := e.post(t, &e.mitzCert, e.participant, "application/fhir+json", notice(e.bsn))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "referral index could not be updated") {
		t.Fatalf("status %d %s, want 503", w.Code, w.Body)
	}
	recs, err := e.n.Audit().List(context.Background(), audit.Filter{Patient: e.bsn})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Interaction != "consent-notification" || recs[0].Outcome != http.StatusServiceUnavailable ||
		recs[0].ActorURA != notifierURA || recs[0].ConsentProfile != "Mitz notification: no consent in force" {
		t.Fatalf("audit records %+v", recs)
	}
	e.n.Audit().Close()
	if w := e.post(t, &e.other, e.participant, "application/fhir+json", notice(e.bsn)); w.Code != http.StatusServiceUnavailable {
		t.Errorf("refusal with the audit log closed: status %d, want 503", w.Code)
	}
}

func countRecords(t *testing.T, n *Node, interaction string) int {
	t.Helper()
	recs, err := n.Audit().List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, r := range recs {
		if r.Interaction == interaction {
			c++
		}
	}
	return c
}
