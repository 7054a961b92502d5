package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validConfig(t *testing.T) Config {
	return Config{
		Name: "n", DataDir: t.TempDir(),
		Public:         ListenerConfig{Addr: "127.0.0.1:0"},
		Internal:       ListenerConfig{Addr: "127.0.0.1:0"},
		TLS:            TLSConfig{CertFile: "c.pem", KeyFile: "k.pem", CAFiles: []string{"ca.pem"}},
		SigningKeyFile: "as.pem", AddressbookURL: "https://ab/fhir",
		Participants: []ParticipantConfig{{URA: "90000001", SigningKeyFile: "p.pem", InternalToken: "0123456789abcdef0123"}},
	}
}

func TestConfigValidate(t *testing.T) {
	if c := validConfig(t); c.Validate() != nil {
		t.Fatalf("valid config refused: %v", c.Validate())
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-a-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // part of the error; empty = valid
	}{
		{"no name", func(c *Config) { c.Name = "" }, "name is required"},
		{"bad public addr", func(c *Config) { c.Public.Addr = "8443" }, "public.addr"},
		{"balancer by name", func(c *Config) { c.Public.ProxyProtocol = []string{"lb.example"} }, "public.proxyprotocol"},
		{"balancer range", func(c *Config) { c.Internal.ProxyProtocol = []string{"10.0.0.0/33"} }, "internal.proxyprotocol"},
		{"balancers", func(c *Config) { c.Public.ProxyProtocol = []string{"10.0.0.5", "10.0.1.0/24"} }, ""},
		{"plain http addressbook", func(c *Config) { c.AddressbookURL = "http://ab" }, "addressbookurl"},
		{"no participants", func(c *Config) { c.Participants = nil }, "at least one participant"},
		{"bad URA", func(c *Config) { c.Participants[0].URA = "123" }, "participants[0].ura"},
		{"short token", func(c *Config) { c.Participants[0].InternalToken = "short" }, "at least 16"},
		{"duplicate participant", func(c *Config) {
			p := c.Participants[0]
			p.InternalToken = "another-token-0123456"
			c.Participants = append(c.Participants, p)
		}, "listed twice"},
		{"shared token", func(c *Config) {
			p := c.Participants[0]
			p.URA = "90000002"
			c.Participants = append(c.Participants, p)
		}, "shared with another participant"},
		{"token from file", func(c *Config) {
			c.Participants[0].InternalToken = ""
			c.Participants[0].InternalTokenFile = tokenFile
		}, ""},
		{"missing token file", func(c *Config) {
			c.Participants[0].InternalToken = ""
			c.Participants[0].InternalTokenFile = "/nonexistent/token"
		}, "internaltokenfile"},
		{"cert without key", func(c *Config) { c.Participants[0].CertFile = "x.pem" }, "go together"},
		{"holder deadline", func(c *Config) { c.IndexedPull.HolderTimeout = 5 * time.Second }, ""},
		{"negative holder deadline", func(c *Config) { c.IndexedPull.HolderTimeout = -time.Second }, "indexedpull.holdertimeout"},
		{"endless holder deadline", func(c *Config) { c.IndexedPull.HolderTimeout = time.Hour }, "indexedpull.holdertimeout"},
		{"short lease", func(c *Config) { c.Lease = 2 * time.Second }, ""},
		{"lease below a second", func(c *Config) { c.Lease = 100 * time.Millisecond }, "lease"},
		{"negative lease", func(c *Config) { c.Lease = -time.Second }, "lease"},
		{"endless lease", func(c *Config) { c.Lease = time.Hour }, "lease"},
		{"drain behind a balancer", func(c *Config) { c.Drain = 2 * time.Second }, ""},
		{"negative drain", func(c *Config) { c.Drain = -time.Second }, "drain"},
		{"endless drain", func(c *Config) { c.Drain = time.Hour }, "drain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mod(&c)
			wantValidate(t, &c, tc.want)
		})
	}
}

// wantValidate checks that c is valid (want empty) or refused with an
// error that mentions want.
func wantValidate(t *testing.T, c *Config, want string) {
	t.Helper()
	err := c.Validate()
	if want == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err %v, want it to mention %q", err, want)
	}
}

func TestRedactedHidesTokens(t *testing.T) {
	c := validConfig(t)
	r := c.Redacted()
	if strings.Contains(r.Participants[0].InternalToken, "0123456789") || c.Participants[0].InternalToken == r.Participants[0].InternalToken {
		t.Error("token not redacted, or the original was changed")
	}
}

func TestRedactedHidesOnlyTheSecrets(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"", ""},
		{"postgres://schakel:s3cret@db.example.nl:5432/fhir?sslmode=verify-full", "postgres://schakel:xxxxx@db.example.nl:5432/fhir?sslmode=verify-full"},
		{"postgres://schakel@db/fhir", "postgres://schakel@db/fhir"},
		{"postgres://db/fhir?password=s3cret&sslmode=disable", "postgres://db/fhir?password=xxxxx&sslmode=disable"},
		{"host=db user=schakel password=s3cret dbname=fhir", "host=db user=schakel password=xxxxx dbname=fhir"},
		{"host=db password = 's3 cr\\'et' dbname=fhir", "host=db password = xxxxx dbname=fhir"},
	} {
		c := validConfig(t)
		c.Store.Postgres = tc.dsn
		if got := c.Redacted().Store.Postgres; got != tc.want {
			t.Errorf("Redacted(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}

	c := validConfig(t)
	c.Participants = append(c.Participants, ParticipantConfig{URA: "90000005", InternalToken: "read-from-the-file-0123",
		InternalTokenFile: "/etc/token", EHR: EHRConfig{URL: "https://user:pw@ehr.local/fhir"}})
	r := c.Redacted()
	if got := r.Participants[1]; got.InternalToken != "" || got.InternalTokenFile != "/etc/token" {
		t.Errorf("token from a file: printed as %q from %q, want only the file", got.InternalToken, got.InternalTokenFile)
	}
	if got := r.Participants[1].EHR.URL; got != "https://user:xxxxx@ehr.local/fhir" {
		t.Errorf("EHR URL printed as %q", got)
	}
	if c.Participants[1].InternalToken != "read-from-the-file-0123" || c.Participants[1].EHR.URL != "https://user:pw@ehr.local/fhir" {
		t.Error("Redacted changed the original")
	}
}
