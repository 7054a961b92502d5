package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// loadFile loads a node configuration file the way `schakel node` does.
func loadFile(t *testing.T, yaml string) (node.Config, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return loadNodeConfig(file, newNodeCommand(&globalFlags{}).Flags())
}

const participantYAML = `
participants:
  - ura: "90000001"
    internaltoken: a-token-of-sixteen-or-more
`

func TestUnknownKeysInFileAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // each in the error; none means no error
		absent     string
	}{
		{"known keys", participantYAML + "public:\n  addr: 127.0.0.1:1\npartners:\n  default: {consent: 2}\n", nil, ""},
		{"typo in a section", participantYAML + "publc:\n  addr: 127.0.0.1:1\n",
			[]string{`unknown key "publc.addr" in `, `(did you mean "public.addr"?)`}, ""},
		{"typo in a setting", participantYAML + "tls:\n  certfle: x.pem\n",
			[]string{`unknown key "tls.certfle"`, `did you mean "tls.certfile"?`}, ""},
		{"typo in a list element", participantYAML + "    nmae: Praktijk\n",
			[]string{`unknown key "participants[0].nmae"`, `did you mean "participants[0].name"?`}, ""},
		{"typo deep in a list", participantYAML + "partners:\n  agreements:\n    - ura: \"90000002\"\n      endpoint: {bgz: https://x}\n",
			[]string{`unknown key "partners.agreements[0].endpoint.bgz"`, `did you mean "partners.agreements[0].endpoints.bgz"?`}, ""},
		{"typo in a nested list", participantYAML + "trust:\n  pinned:\n    - name: p\n      sha265: abc\n",
			[]string{`unknown key "trust.pinned[0].sha265"`, `did you mean "trust.pinned[0].sha256"?`}, ""},
		{"nothing like it", participantYAML + "frobnicate: 1\n", []string{`unknown key "frobnicate"`}, "did you mean"},
		{"every unknown key", participantYAML + "publc: {addr: x}\nnmae: y\n",
			[]string{`"nmae"`, `"publc.addr"`}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFile(t, tc.yaml)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.absent != "" && strings.Contains(err.Error(), tc.absent) {
				t.Errorf("error %q contains %q", err, tc.absent)
			}
		})
	}
}

func TestUnknownEnvironmentVariablesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        string // in the error; "" for no error
	}{
		{"SCHAKEL_PUBLIC_ADDR", "127.0.0.1:1", ""},
		{"SCHAKEL_STORE_POSTGRES", "postgres://db/x", ""},
		{"SCHAKEL_PUBLIC_ADRR", "127.0.0.1:1", "unknown environment variable SCHAKEL_PUBLIC_ADRR (key \"public.adrr\") (did you mean SCHAKEL_PUBLIC_ADDR?)"},
		{"SCHAKEL_PUBLC_ADDR", "127.0.0.1:1", "did you mean SCHAKEL_PUBLIC_ADDR?"},
		{"SCHAKEL_TOKENTL", "5m", "did you mean SCHAKEL_TOKENTTL?"},
		{"SCHAKEL_PARTICIPANTS_0_URA", "90000001", "participants is a list; set it in the configuration file"},
		{"SCHAKEL_PUBLIC", "x", `names the section "public"`},
		// Other commands' and the tests' variables are not the node's.
		{"SCHAKEL_TEST_POSTGRES", "postgres://db/test", ""},
		{"SCHAKEL_BENCH_PATIENTS", "10", ""},
		{"SCHAKEL_AUDIT_POSTGRES", "postgres://db/audit", ""},
		{"SCHAKEL_CONSENT_POSTGRES_DSN", "postgres://db/consent", ""},
		{"SCHAKEL_LOCALIZATION_POSTGRES_DSN", "postgres://db/index", ""},
		{"SCHAKEL_ADDRESSBOOK_POSTGRES_DSN", "postgres://db/addressbook", ""},
		{"SCHAKEL_IMPORT_POSTGRES", "postgres://db/import", ""},
		{"SCHAKEL_SCAN_SCREENSHOT", "/tmp/x.png", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, err := loadFile(t, participantYAML)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("accepted")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestEveryKeyCanBeSetFromTheEnvironment: '_' separates the words of a
// variable, so no key may contain one.
func TestEveryKeyCanBeSetFromTheEnvironment(t *testing.T) {
	var walk func(s *keySchema, prefix string)
	walk = func(s *keySchema, prefix string) {
		for k, sub := range s.fields {
			if strings.Contains(k, "_") {
				t.Errorf("key %s%s cannot be set from the environment", prefix, k)
			}
			walk(sub, prefix+k+".")
		}
		if s.elem != nil {
			walk(s.elem, prefix+"[].")
		}
	}
	walk(nodeKeys, "")
	if len(nodeKeys.fields) < 10 {
		t.Fatalf("schema of node.Config has %d top-level keys", len(nodeKeys.fields))
	}
}

// TestRepositoryVariablesDoNotStopANode finds every SCHAKEL_ variable the
// repository's code names and checks that none stops a node starting.
func TestRepositoryVariablesDoNotStopANode(t *testing.T) {
	name := regexp.MustCompile(`"(SCHAKEL_[A-Z0-9_]*[A-Z0-9])"`)
	found := map[string]bool{}
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		// This file names wrong variables on purpose.
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || d.Name() == "configkeys_test.go" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllStringSubmatch(string(b), -1) {
			found[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found[envConsentPostgres] || !found["SCHAKEL_TEST_POSTGRES"] {
		t.Fatalf("the scan missed known variables: %v", found)
	}
	for v := range found {
		if _, _, err := envKey(v); err != nil {
			t.Errorf("%s would stop a node: %v", v, err)
		}
	}
}

// richConfig sets a value in every kind of setting the printer has to render.
func richConfig() node.Config {
	return node.Config{
		Name: "hospital-node", DataDir: "/var/lib/schakel",
		Public:   node.ListenerConfig{Addr: "0.0.0.0:8443", URL: "https://gtk.example.nl:8443"},
		Internal: node.ListenerConfig{Addr: "127.0.0.1:8080"},
		TLS:      node.TLSConfig{CertFile: "/etc/tls/node.pem", KeyFile: "/etc/tls/node-key.pem", CAFiles: []string{"/etc/tls/ca.pem", "/etc/tls/ca2.pem"}},
		Trust: pki.TrustConfig{Pinned: []pki.PinConfig{{Name: "De Linde", URA: "90000001", SHA256: "abc"}},
			CRLFiles: []string{"/etc/tls/ca.crl"}, CRLPollInterval: 90 * time.Second, RequireCRL: true, DenySerials: []string{"0x01"}},
		Partners: plateau.Config{
			Default: plateau.Plateaus{plateau.Consent: 3, plateau.Addressing: 4},
			Agreements: []plateau.PartnerConfig{{URA: "90000002", Name: "Zuid", Plateaus: plateau.Uniform(2), Applications: []string{"bgz"},
				Endpoints: plateau.Endpoints{BgZ: "https://zuid/fhir", JWKS: "https://zuid/jwks"}}, {URA: "90000003"}},
			PolicyDir: "/etc/schakel/policy",
		},
		Store:        node.StoreConfig{Postgres: "postgres://schakel:s3cret@db.example.nl:5432/fhir?sslmode=verify-full", Schema: "fhir"},
		Audit:        node.AuditConfig{CheckpointKeyFile: "/etc/keys/audit.pem"},
		Consent:      node.ConsentConfig{Local: true, URL: "https://mitz", Timeout: 5 * time.Second, CacheTTL: 30 * time.Second, Subscribe: true, NotifierURA: "00000998"},
		Localization: node.LocalizationConfig{URL: "https://nvi/fhir"},
		Addressbook: addressbook.Config{Directories: []addressbook.DirectoryConfig{{Name: "national", URL: "https://lrza/fhir",
			URAs: []string{"*"}, Replica: "/var/lib/schakel/lrza.db", Interval: 5 * time.Minute}}},
		SigningKeyFile:          "/etc/keys/as.pem",
		PreviousSigningKeyFiles: []string{"/etc/keys/as-2025.pem"},
		Participants: []node.ParticipantConfig{
			{URA: "00001234", Name: "Ziekenhuis", SystemUZI: "900000022", InternalToken: "inline-secret-token-0123",
				EHR: node.EHRConfig{URL: "https://ehr.local/fhir", CAFiles: []string{"/etc/ehr-ca.pem"}, Timeout: 10 * time.Second}, FacilityType: "Z3"},
			{URA: "90000005", InternalToken: "token-from-the-file-0123", InternalTokenFile: "/etc/schakel/token-90000005"},
		},
		TokenTTL: 5 * time.Minute, ClockSkew: 30 * time.Second, ReferralValidity: 168 * time.Hour, MaxBodyBytes: 4 << 20,
	}
}

// TestPrintedConfigReadsBack prints a configuration, reads the printout as
// a configuration file, and compares: equal apart from the redacted secrets.
func TestPrintedConfigReadsBack(t *testing.T) {
	cfg := richConfig()
	b, err := marshalConfig(cfg.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadFile(t, string(b))
	if err != nil {
		t.Fatalf("printed configuration not read back: %v\n%s", err, b)
	}
	if diff := cmp.Diff(cfg.Redacted(), got, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(pki.TrustConfig{}, "Now", "Logger")); diff != "" {
		t.Errorf("read back differs (-printed +read):\n%s\n%s", diff, b)
	}
	for _, secret := range []string{"s3cret", "inline-secret-token", "token-from-the-file"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("printed configuration shows %q:\n%s", secret, b)
		}
	}
	for _, kept := range []string{"db.example.nl:5432/fhir", "internaltokenfile: /etc/schakel/token-90000005", "tokenttl: 5m0s",
		`ura: "00001234"`} {
		if !strings.Contains(string(b), kept) {
			t.Errorf("printed configuration lacks %q:\n%s", kept, b)
		}
	}
}

// TestPrintConfigCommand runs `schakel node --print-config` and feeds its
// output back to the command: the second printout equals the first.
func TestPrintConfigCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the schakel binary")
	}
	f := newNodeFixture(t)
	f.tokenInFile = true
	env := []string{"SCHAKEL_STORE_POSTGRES=postgres://schakel:pw-in-env-77@db.example.nl/fhir"}
	first, err := runSchakel(t, env, "node", "--config", f.write(t), "--print-config")
	if err != nil {
		t.Fatalf("print-config: %v\n%s", err, first)
	}
	if strings.Contains(first, "pw-in-env-77") || strings.Contains(first, f.tokens) {
		t.Errorf("a secret is printed:\n%s", first)
	}
	printed := filepath.Join(t.TempDir(), "printed.yaml")
	if err := os.WriteFile(printed, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	second, err := runSchakel(t, nil, "node", "--config", printed, "--print-config")
	if err != nil || second != first {
		t.Fatalf("second printout differs (%v):\n%s\n---\n%s", err, first, second)
	}
}
