package main

import (
	"errors"
	"fmt"
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
				fmt.Fprintf(cmd.OutOrStdout(), "%+v\n", cfg.Redacted())
				return nil
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			n, err := node.New(cmd.Context(), cfg, node.Options{Logger: log})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s public %s internal %s\n", cfg.Name, n.PublicURL(), n.InternalURL())
			return n.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file")
	f.BoolVar(&printConfig, "print-config", false, "print the effective configuration (secrets redacted) and exit")
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
func loadNodeConfig(path string, flags *pflag.FlagSet) (node.Config, error) {
	k := koanf.New(".")
	// Flag defaults first, so file and environment override them.
	if err := k.Load(posflag.Provider(flags, ".", k), nil); err != nil {
		return node.Config{}, err
	}
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return node.Config{}, fmt.Errorf("config file: %w", err)
		}
	}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix: envPrefix,
		TransformFunc: func(key, value string) (string, any) {
			return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(key, envPrefix)), "_", "."), value
		},
	}), nil); err != nil {
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
