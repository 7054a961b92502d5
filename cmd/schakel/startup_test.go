package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/pki"
)

// nodeFixture is a complete, valid node configuration in a temporary
// directory: a development CA, the node's UZI server certificate, one
// participant and an agreement with a partner whose endpoints are listed.
type nodeFixture struct {
	dir                    string
	publicAddr, internal   string
	dataDir                string
	certFile, keyFile, ca  string
	store                  string // store section, YAML, indented by two spaces
	extra                  string // appended to the file as is
	envPostgres            string // SCHAKEL_STORE_POSTGRES for the child, when set
	configFile             string
	participantURA, tokens string
	tokenInFile            bool // internaltokenfile instead of internaltoken
}

func newNodeFixture(t *testing.T) *nodeFixture {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("Test UZI CA", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	cert, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000011", URA: "90000001", AGB: "01000001"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKeyPair(tlsDir, "node", cert); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(tlsDir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &nodeFixture{
		dir: dir, publicAddr: "127.0.0.1:0", internal: "127.0.0.1:0", dataDir: filepath.Join(dir, "data"),
		certFile: filepath.Join(tlsDir, "node.pem"), keyFile: filepath.Join(tlsDir, "node-key.pem"), ca: caFile,
		participantURA: "90000001", tokens: "internal-token-of-the-practice",
	}
}

// write writes the configuration file and returns its path.
func (f *nodeFixture) write(t *testing.T) string {
	t.Helper()
	yaml := fmt.Sprintf(`name: test-node
datadir: %q
public:
  addr: %q
internal:
  addr: %q
tls:
  certfile: %q
  keyfile: %q
  cafiles: [%q]
signingkeyfile: %q
partners:
  agreements:
    - ura: "90000002"
      name: Ziekenhuis Rijnstroom
      plateaus: {addressing: 1}
      endpoints:
        notification: https://127.0.0.1:9/fhir/stu3/90000002/Task
        bgz: https://127.0.0.1:9/fhir/stu3/90000002
        authserver: https://127.0.0.1:9
        jwks: https://127.0.0.1:9/jwks/90000002
participants:
  - ura: %q
    name: Huisartsenpraktijk De Linde
    signingkeyfile: %q
`, f.dataDir, f.publicAddr, f.internal, f.certFile, f.keyFile, f.ca, filepath.Join(f.dir, "keys", "as.pem"),
		f.participantURA, filepath.Join(f.dir, "keys", "client.pem"))
	if f.tokenInFile {
		tokenFile := filepath.Join(f.dir, "internal-token")
		if err := os.WriteFile(tokenFile, []byte(f.tokens+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		yaml += fmt.Sprintf("    internaltokenfile: %q\n", tokenFile)
	} else {
		yaml += fmt.Sprintf("    internaltoken: %q\n", f.tokens)
	}
	if f.store != "" {
		yaml += "store:\n" + f.store
	}
	yaml += f.extra
	f.configFile = filepath.Join(f.dir, "node.yaml")
	if err := os.WriteFile(f.configFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return f.configFile
}

// runSchakel runs the real schakel command (this test binary re-executing
// main) and returns its combined output and exit error. The bound only
// keeps a node that wrongly starts from hanging the test.
func runSchakel(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(cleanEnv(), runMainEnv+"=1"), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("schakel %s did not exit:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

// cleanEnv is the environment without the node's configuration variables,
// so that a developer's own SCHAKEL_STORE_POSTGRES does not leak in.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SCHAKEL_") && !strings.HasPrefix(kv, "SCHAKEL_TEST_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// TestNodeStartupFailureIsOneClearLine starts `schakel node` with one thing
// wrong at a time: it must exit non-zero, name the setting and the cause, and
// never panic.
func TestNodeStartupFailureIsOneClearLine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the schakel binary")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	type tc struct {
		name   string
		setup  func(t *testing.T, f *nodeFixture)
		want   []string // all in the output
		absent []string // none in the output
	}
	cases := []tc{
		{name: "missing configuration file",
			setup: func(t *testing.T, f *nodeFixture) { f.configFile = filepath.Join(f.dir, "no-such-node.yaml") },
			want:  []string{"--config: ", "no-such-node.yaml", "no such file or directory"}},
		{name: "missing certificate file",
			setup: func(t *testing.T, f *nodeFixture) { f.certFile = filepath.Join(f.dir, "no-such-cert.pem") },
			want:  []string{"tls.certfile", "no-such-cert.pem", "no such file or directory"}},
		{name: "missing key file",
			setup: func(t *testing.T, f *nodeFixture) { f.keyFile = filepath.Join(f.dir, "no-such-key.pem") },
			want:  []string{"tls.keyfile", "no-such-key.pem", "no such file or directory"}},
		{name: "public port in use",
			setup: func(t *testing.T, f *nodeFixture) { f.publicAddr = busy.Addr().String() },
			want:  []string{"public.addr", busy.Addr().String(), "address already in use"}},
		{name: "internal port in use",
			setup: func(t *testing.T, f *nodeFixture) { f.internal = busy.Addr().String() },
			want:  []string{"internal.addr", busy.Addr().String(), "address already in use"}},
		{name: "unreachable PostgreSQL",
			setup: func(t *testing.T, f *nodeFixture) {
				f.envPostgres = "postgres://nobody:secret-pw-42@127.0.0.1:1/none?sslmode=disable"
			},
			want:   []string{"store.postgres", "127.0.0.1"},
			absent: []string{"secret-pw-42"}},
		{name: "data directory is a file",
			setup: func(t *testing.T, f *nodeFixture) {
				if err := os.WriteFile(f.dataDir, []byte("not a directory"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"datadir", "not a directory"}},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), "secret-pw-43")
		u.Path = "/schakel_no_such_database"
		cases = append(cases, tc{name: "PostgreSQL database does not exist",
			setup:  func(t *testing.T, f *nodeFixture) { f.envPostgres = u.String() },
			want:   []string{"store.postgres", "schakel_no_such_database", "does not exist"},
			absent: []string{"secret-pw-43"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newNodeFixture(t)
			c.setup(t, f)
			var env []string
			if f.envPostgres != "" {
				env = append(env, "SCHAKEL_STORE_POSTGRES="+f.envPostgres)
			}
			config := f.configFile // set only by a case that names its own file
			if written := f.write(t); config == "" {
				config = written
			}
			out, err := runSchakel(t, env, "node", "--config", config, "--log-level", "error")
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit: %v, want a non-zero exit\n%s", err, out)
			}
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Fatalf("the node panicked:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			for _, a := range c.absent {
				if strings.Contains(out, a) {
					t.Errorf("output shows %q:\n%s", a, out)
				}
			}
		})
	}
}

// TestServeStartupFailureNamesTheFlag does for the other services what
// TestNodeStartupFailureIsOneClearLine does for the node.
func TestServeStartupFailureNamesTheFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the schakel binary")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	type flags struct{ dataDir, cert, key, addr string }
	for _, service := range []struct{ command, postgresEnv string }{
		{"addressbook", ""},
		{"consent", envConsentPostgres},
		{"localization", envLocalizationPostgres},
	} {
		cases := []struct {
			name   string
			setup  func(t *testing.T, f *nodeFixture, fl *flags) []string
			want   []string
			absent []string
		}{
			{"missing certificate file", func(t *testing.T, f *nodeFixture, fl *flags) []string {
				fl.cert = filepath.Join(f.dir, "no-such-cert.pem")
				return nil
			}, []string{"--cert: ", "no-such-cert.pem", "no such file or directory"}, nil},
			{"missing key file", func(t *testing.T, f *nodeFixture, fl *flags) []string {
				fl.key = filepath.Join(f.dir, "no-such-key.pem")
				return nil
			}, []string{"--key: ", "no-such-key.pem", "no such file or directory"}, nil},
			{"port in use", func(t *testing.T, f *nodeFixture, fl *flags) []string {
				fl.addr = busy.Addr().String()
				return nil
			}, []string{"--addr: ", busy.Addr().String(), "address already in use"}, nil},
			{"data directory is a file", func(t *testing.T, f *nodeFixture, fl *flags) []string {
				if err := os.WriteFile(fl.dataDir, []byte("not a directory"), 0o600); err != nil {
					t.Fatal(err)
				}
				return nil
			}, []string{"--data-dir: ", "not a directory"}, nil},
		}
		if service.postgresEnv != "" {
			cases = append(cases, struct {
				name   string
				setup  func(t *testing.T, f *nodeFixture, fl *flags) []string
				want   []string
				absent []string
			}{"unreachable PostgreSQL", func(t *testing.T, f *nodeFixture, fl *flags) []string {
				return []string{service.postgresEnv + "=postgres://nobody:secret-pw-44@127.0.0.1:1/none?sslmode=disable"}
			}, []string{"$" + service.postgresEnv + ": ", "127.0.0.1:1"}, []string{"secret-pw-44"}})
		}
		for _, c := range cases {
			t.Run(service.command+"/"+c.name, func(t *testing.T) {
				f := newNodeFixture(t)
				fl := flags{dataDir: f.dataDir, cert: f.certFile, key: f.keyFile, addr: "127.0.0.1:0"}
				env := c.setup(t, f, &fl)
				out, err := runSchakel(t, env, service.command, "serve", "--data-dir", fl.dataDir, "--cert", fl.cert,
					"--key", fl.key, "--ca", f.ca, "--addr", fl.addr, "--log-level", "error")
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() == 0 {
					t.Fatalf("exit: %v, want a non-zero exit\n%s", err, out)
				}
				if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
					t.Fatalf("the service panicked:\n%s", out)
				}
				for _, w := range c.want {
					if !strings.Contains(out, w) {
						t.Errorf("output does not name %q:\n%s", w, out)
					}
				}
				for _, a := range c.absent {
					if strings.Contains(out, a) {
						t.Errorf("output shows %q:\n%s", a, out)
					}
				}
			})
		}
	}
}
