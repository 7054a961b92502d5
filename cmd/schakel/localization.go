package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/localization/index/postgres"
	"github.com/schakel-nl/schakel/pki"
)

// envLocalizationPostgres holds the PostgreSQL DSN of `localization serve`
// when it carries a secret: flags show up in process listings.
const envLocalizationPostgres = "SCHAKEL_LOCALIZATION_POSTGRES_DSN"

// newLocalizationCommand returns `schakel localization`: the referral index
// (the role of the national NVI) that a Twiin network can run itself.
func newLocalizationCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "localization",
		Short: "Referral index: which organisations hold data for a patient (by pseudonym)",
	}
	cmd.AddCommand(newLocalizationServeCommand())
	return cmd
}

func newLocalizationServeCommand() *cobra.Command {
	var dataDir, addr, dsn string
	var tlsf mtlsFlags
	var regional bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the referral index on an mTLS listener",
		Long: "Runs the referral index: FHIR List registrations, Organization/$localize and\n" +
			"the pseudonym evaluation ($oprf-evaluate), for GtKs with an UZI server\n" +
			"certificate from one of the --ca CAs. The index keeps its SQLite database, its\n" +
			"OPRF key and its audit log in --data-dir; with --postgres (or $" + envLocalizationPostgres + ")\n" +
			"the index itself lives in PostgreSQL. Keep passwords out of the DSN flag: use\n" +
			"$" + envLocalizationPostgres + ", PGPASSWORD or ~/.pgpass. See docs/localization.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if dataDir == "" || !tlsf.set() {
				return errors.New("--data-dir, --cert, --key and --ca are required")
			}
			if dsn == "" {
				dsn = os.Getenv(envLocalizationPostgres)
			}
			// --log-level is the root command's persistent flag.
			logLevel := "info"
			if fl := cmd.Flags().Lookup("log-level"); fl != nil {
				logLevel = fl.Value.String()
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cert, roots, err := tlsf.load()
			if err != nil {
				return err
			}
			if err := prepareDataDir(dataDir); err != nil {
				return err
			}
			scfg := localization.ServerConfig{DataDir: dataDir, Logger: log, Regional: regional}
			if dsn != "" {
				// Opened here so that its failure names its setting; the
				// driver's errors never carry the password.
				st, err := postgres.Open(cmd.Context(), dsn)
				if err != nil {
					return fmt.Errorf("--postgres or $%s: %w", envLocalizationPostgres, err)
				}
				defer st.Close()
				scfg.Store = st
			}
			srv, err := localization.NewServer(scfg)
			if err != nil {
				return fmt.Errorf("--data-dir: %w", err)
			}
			defer srv.Close()
			ln, err := listenAddr(addr)
			if err != nil {
				return err
			}
			hs := &http.Server{
				Handler:           srv.Handler(),
				TLSConfig:         pki.ServerTLSConfig(cert, roots),
				ReadHeaderTimeout: 10 * time.Second,
				ReadTimeout:       30 * time.Second,
				WriteTimeout:      30 * time.Second,
				IdleTimeout:       2 * time.Minute,
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}
			backend := "sqlite"
			if dsn != "" {
				backend = "postgres"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "localization https://%s/fhir (index %s, key %s)\n", ln.Addr(), backend, srv.KeyID())
			return serveUntilDone(cmd.Context(), hs, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "directory of the index database, its OPRF key and its audit log")
	f.StringVar(&addr, "addr", "127.0.0.1:8445", "host:port of the mTLS listener")
	tlsf.flags(f, "the index", "whose GtKs may register and ask")
	f.BoolVar(&regional, "regional", false, "sign localization hits as a collaboration's own service (plateau 2–3), not the national one (plateau 4)")
	f.StringVar(&dsn, "postgres", "", "PostgreSQL DSN of the index (default: SQLite in --data-dir; or $"+envLocalizationPostgres+")")
	return cmd
}
