package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestNodeConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(file, []byte(`
name: from-file
datadir: /var/lib/schakel
public:
  addr: 127.0.0.1:9443
internal:
  addr: 127.0.0.1:9080
participants:
  - ura: "90000001"
    name: Praktijk
    internaltoken: secret-from-the-file-123
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCHAKEL_PUBLIC_ADDR", "127.0.0.1:7443")
	cmd := newNodeCommand(&globalFlags{})
	if err := cmd.Flags().Parse([]string{"--internal.addr", "127.0.0.1:6080"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadNodeConfig(file, cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ got, want, what string }{
		{cfg.Name, "from-file", "file over flag default"},
		{cfg.Public.Addr, "127.0.0.1:7443", "environment over file"},
		{cfg.Internal.Addr, "127.0.0.1:6080", "flag over file"},
		{cfg.Participants[0].URA, "90000001", "participants from the file"},
		{cfg.Participants[0].InternalToken, "secret-from-the-file-123", "secret from the file"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestNodeConfigNeedsParticipants(t *testing.T) {
	cmd := newNodeCommand(&globalFlags{})
	if _, err := loadNodeConfig("", cmd.Flags()); err == nil {
		t.Error("a node without participants was configured")
	}
}

// TestNodeConfigListsFromTheEnvironment: a list setting is given in the
// environment as comma-separated values.
func TestNodeConfigListsFromTheEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(file, []byte(`
name: n
datadir: /var/lib/schakel
participants:
  - ura: "90000001"
    internaltoken: secret-from-the-file-123
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCHAKEL_PUBLIC_PROXYPROTOCOL", "10.0.0.5, 10.0.1.0/24")
	t.Setenv("SCHAKEL_TLS_CAFILES", "/etc/schakel/ca-1.pem,/etc/schakel/ca-2.pem")
	cfg, err := loadNodeConfig(file, newNodeCommand(&globalFlags{}).Flags())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Public.ProxyProtocol; !slices.Equal(got, []string{"10.0.0.5", "10.0.1.0/24"}) {
		t.Errorf("public.proxyprotocol %q", got)
	}
	if got := cfg.TLS.CAFiles; !slices.Equal(got, []string{"/etc/schakel/ca-1.pem", "/etc/schakel/ca-2.pem"}) {
		t.Errorf("tls.cafiles %q", got)
	}
}
