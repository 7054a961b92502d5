package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/logcentral"
)

// envLogcentralPostgres holds the PostgreSQL DSN of `logcentral serve`:
// flags show up in process listings.
const envLogcentralPostgres = "SCHAKEL_LOGCENTRAL_POSTGRES"

// newLogcentralCommand returns `schakel logcentral`: the central log and
// monitoring service of logging plateaus 3–4.
func newLogcentralCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logcentral",
		Short: "Central log and monitoring service: receives the nodes' shipped NEN 7513 audit logs",
	}
	cmd.AddCommand(newLogcentralServeCommand(g))
	return cmd
}

func newLogcentralServeCommand(g *globalFlags) *cobra.Command {
	var dataDir, addr, metricsAddr, schema string
	var tlsf mtlsFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the central log on an mTLS listener",
		Long: "Receives the audit records nodes ship (audit.central.url), identified by the URA of their\n" +
			"UZI server certificate from one of the --ca CAs; checks that every batch continues the\n" +
			"node's hash chain (a gap or fork is refused with 409 and reported), stores it durably in\n" +
			"order (SQLite in --data-dir, or PostgreSQL with $" + envLogcentralPostgres + ") and\n" +
			"acknowledges the highest record held. --metrics-addr serves Prometheus metrics per node\n" +
			"(acknowledged seq, last batch time, refused batches) over plain HTTP: keep it internal.\n" +
			"See docs/audit.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if dataDir == "" || !tlsf.set() {
				return errors.New("--data-dir, --cert, --key and --ca are required")
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			cert, roots, err := tlsf.load()
			if err != nil {
				return err
			}
			if err := prepareDataDir(dataDir); err != nil {
				return err
			}
			dsn := os.Getenv(envLogcentralPostgres)
			st, err := logcentral.Open(cmd.Context(), filepath.Join(dataDir, "logcentral.db"), dsn, schema)
			if err != nil {
				if dsn != "" {
					return fmt.Errorf("$%s: %w", envLogcentralPostgres, err)
				}
				return fmt.Errorf("--data-dir: %w", err)
			}
			defer st.Close()
			reg := prometheus.NewRegistry()
			srv, err := logcentral.NewServer(logcentral.ServerConfig{Store: st, PeerURA: logcentral.PeerURAFromUZI, Registry: reg, Logger: log})
			if err != nil {
				return err
			}
			if metricsAddr != "" {
				mln, err := listenAddr(metricsAddr)
				if err != nil {
					return fmt.Errorf("--metrics-addr: %w", err)
				}
				mux := http.NewServeMux()
				mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = ms.Serve(mln) }()
				defer ms.Close()
				fmt.Fprintf(cmd.OutOrStdout(), "logcentral metrics http://%s/metrics\n", mln.Addr())
			}
			ln, err := listenAddr(addr)
			if err != nil {
				return err
			}
			hs := mtlsServer(srv.Handler(), cert, roots, log, 2*time.Minute)
			backend := "sqlite"
			if dsn != "" {
				backend = "postgres"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logcentral https://%s (store %s)\n", ln.Addr(), backend)
			return serveUntilDone(cmd.Context(), hs, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "directory of the SQLite store")
	f.StringVar(&addr, "addr", "127.0.0.1:8447", "host:port of the mTLS listener")
	f.StringVar(&metricsAddr, "metrics-addr", "", "host:port of the plain-HTTP /metrics listener (none when empty)")
	tlsf.flags(f, "the central log", "whose nodes may ship")
	f.StringVar(&schema, "schema", "logcentral", "PostgreSQL schema (with $"+envLogcentralPostgres+")")
	return cmd
}
