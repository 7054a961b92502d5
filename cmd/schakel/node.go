package main

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/schakel-nl/schakel/node"
)

// envPrefix starts every environment variable Schakel reads, e.g.
// SCHAKEL_PUBLIC_ADDR for public.addr.
const envPrefix = "SCHAKEL_"

// otherCommandsEnv are SCHAKEL_ variables that other commands read and that
// look like node settings (SCHAKEL_AUDIT_POSTGRES would be audit.postgres):
// the node leaves them alone, so one environment can serve every command.
var otherCommandsEnv = map[string]bool{
	auditPostgresEnv: true, envConsentPostgres: true, envLocalizationPostgres: true, postgresEnv: true, envAddressbookPostgres: true,
	envAdminNode: true, envAdminTokenFile: true,
}

// nodeKeys are the keys a node's configuration has, from node.Config.
var nodeKeys = schemaOf(reflect.TypeFor[node.Config]())

func newNodeCommand(g *globalFlags) *cobra.Command {
	var configFile string
	var printConfig bool
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run one GtK from a configuration file",
		Long: "Runs one node. Configuration is read from --config (YAML), then from the\n" +
			"environment (SCHAKEL_ prefix, '_' for '.', e.g. SCHAKEL_PUBLIC_ADDR), then from\n" +
			"flags; later sources win. Participants and their secrets belong in the file or\n" +
			"in token files, never on the command line.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			cfg, err := loadNodeConfig(configFile, cmd.Flags())
			if err != nil {
				return err
			}
			if printConfig {
				if err := cfg.Validate(); err != nil {
					return err
				}
				b, err := marshalConfig(cfg.Redacted())
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			n, err := node.New(cmd.Context(), cfg, node.Options{Logger: log, Applications: node.DefaultApplications()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s public %s internal %s\n", cfg.Name, n.PublicURL(), n.InternalURL())
			return n.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file")
	f.BoolVar(&printConfig, "print-config", false, "print the effective configuration as YAML (secrets redacted) and exit")
	f.String("name", "", "node name (logs, audit records)")
	f.String("datadir", "", "directory for the node's stores")
	f.String("public.addr", "127.0.0.1:8443", "public listener (mTLS) host:port")
	f.String("public.url", "", "public base URL peers use, when not https://public.addr")
	f.String("internal.addr", "127.0.0.1:8080", "internal listener host:port (keep on loopback or a private network)")
	f.String("addressbookurl", "", "FHIR base URL of the addressbook")
	f.Duration("tokenttl", 0, "lifetime of issued access tokens (default 5m)")
	f.Duration("clockskew", 0, "tolerance on peers' assertion times (default 30s)")
	return cmd
}

// loadNodeConfig loads file → environment → flags (only flags the user set).
// A key in the file or a SCHAKEL_ variable that no setting reads is an
// error: a typo would otherwise leave the setting at its default.
func loadNodeConfig(path string, flags *pflag.FlagSet) (node.Config, error) {
	k := koanf.New(".")
	// Flag defaults first, so file and environment override them.
	if err := k.Load(posflag.Provider(flags, ".", k), nil); err != nil {
		return node.Config{}, err
	}
	var unknown []error
	if path != "" {
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
			return node.Config{}, fmt.Errorf("--config: %w", err)
		}
		for _, u := range nodeKeys.unknownKeys(fk.Raw()) {
			msg := fmt.Sprintf("unknown key %q in %s", u.key, path)
			if u.suggest != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", u.suggest)
			}
			unknown = append(unknown, errors.New(msg))
		}
		if err := k.Merge(fk); err != nil {
			return node.Config{}, err
		}
	}
	var envErrs []error
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix: envPrefix,
		TransformFunc: func(name, value string) (string, any) {
			key, list, err := envKey(name)
			if err != nil {
				envErrs = append(envErrs, err)
			}
			if list {
				// A list from the environment: comma-separated values.
				var vals []string
				for _, v := range strings.Split(value, ",") {
					if v = strings.TrimSpace(v); v != "" {
						vals = append(vals, v)
					}
				}
				return key, vals
			}
			return key, value
		},
	}), nil); err != nil {
		return node.Config{}, err
	}
	sort.Slice(envErrs, func(i, j int) bool { return envErrs[i].Error() < envErrs[j].Error() })
	if err := errors.Join(append(unknown, envErrs...)...); err != nil {
		return node.Config{}, err
	}
	changed := koanf.New(".")
	if err := changed.Load(posflag.ProviderWithFlag(flags, ".", k, func(f *pflag.Flag) (string, any) {
		if !f.Changed {
			return "", nil
		}
		return f.Name, posflag.FlagVal(flags, f)
	}), nil); err != nil {
		return node.Config{}, err
	}
	if err := k.Merge(changed); err != nil {
		return node.Config{}, err
	}
	var cfg node.Config
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return node.Config{}, fmt.Errorf("configuration: %w", err)
	}
	if path == "" && len(cfg.Participants) == 0 {
		return cfg, errors.New("no participants: pass --config with a participants list (see docs/operations.md)")
	}
	return cfg, nil
}

// envKey is the configuration key environment variable name sets, "" for
// a variable that is not the node's. A variable is the node's when the
// first word after SCHAKEL_ is a top-level key (SCHAKEL_PUBLIC_…,
// SCHAKEL_STORE_…) or a likely typo of one (SCHAKEL_PUBLC_…), unless
// another command reads it or it starts SCHAKEL_TEST_ or SCHAKEL_BENCH_;
// it must then name a setting. Other variables are left alone.
func envKey(name string) (key string, list bool, err error) {
	if otherCommandsEnv[name] || strings.HasPrefix(name, envPrefix+"TEST_") || strings.HasPrefix(name, envPrefix+"BENCH_") {
		return "", false, nil
	}
	key = strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, envPrefix)), "_", ".")
	top, _, _ := strings.Cut(key, ".")
	if _, ours := nodeKeys.fields[top]; !ours && nodeKeys.closest(top) == "" {
		return "", false, nil
	}
	s, known, err := nodeKeys.lookup(key)
	switch {
	case err == errList:
		return "", false, fmt.Errorf("environment variable %s: %s is a list; set it in the configuration file", name, known)
	case err != nil:
		msg := fmt.Sprintf("unknown environment variable %s (key %q)", name, key)
		if near := nearKey(known, key); near != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", envPrefix+strings.ToUpper(strings.ReplaceAll(near, ".", "_")))
		}
		return "", false, errors.New(msg)
	case s.fields != nil || s.elem != nil:
		return "", false, fmt.Errorf("environment variable %s names the section %q, not a setting", name, key)
	}
	return key, s.list, nil
}

// nearKey suggests a known key for key, whose part up to known is known and
// whose next word is not.
func nearKey(known, key string) string {
	s, _, _ := nodeKeys.lookup(known)
	if known == "" {
		s = nodeKeys
	}
	if s == nil || s.fields == nil {
		return ""
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(key, known), ".")
	word, tail, _ := strings.Cut(rest, ".")
	near := s.closest(word)
	if near == "" {
		return ""
	}
	out := near
	if known != "" {
		out = known + "." + near
	}
	if tail != "" {
		out += "." + tail
	}
	return out
}
