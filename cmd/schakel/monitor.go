package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/monitor"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/validation"
)

// newMonitorCommand returns `schakel monitor`: the Twiin Monitor.
func newMonitorCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "The Twiin Monitor: participants, validation, agreed plateaus and live exchange figures",
	}
	cmd.AddCommand(newMonitorServeCommand(g))
	return cmd
}

type monitorFlags struct {
	addr, addressbook, admission, authority string
	certFile, keyFile                       string
	cas                                     []string
	nodes, nodeConfigs                      []string
	user, passwordFile                      string
	httpsCert, httpsKey                     string
	interval                                time.Duration
}

func newMonitorServeCommand(g *globalFlags) *cobra.Command {
	var f monitorFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Twiin Monitor to operators",
		Long: "Reads the admission register and the addressbook (over mTLS, with --cert/--key trusted\n" +
			"by --ca), each node's /metrics on its internal listener (--node NAME=URL) and, optionally,\n" +
			"its configuration file for its participants and agreements (--node-config NAME=FILE),\n" +
			"every --interval, and serves the pages behind an operator login: the local account\n" +
			"--user with the password in --password-file (created with a random password when\n" +
			"missing; never printed). Plain HTTP only on a loopback address; elsewhere give\n" +
			"--https-cert/--https-key. See docs/monitor.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			log, err := g.logger()
			if err != nil {
				return err
			}
			return runMonitor(cmd.Context(), cmd, f, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8090", "host:port the monitor listens on")
	fl.StringVar(&f.addressbook, "addressbook", "", "FHIR R4 base of the mCSD addressbook")
	fl.StringVar(&f.admission, "admission", "", "FHIR R4 base of the admission register")
	fl.StringVar(&f.authority, "authority-jwks", "", "the validation authority's public keys (JWKS file), to verify the proofs in the register")
	fl.StringVar(&f.certFile, "cert", "", "PEM UZI server certificate the monitor reads the addressbook and register with")
	fl.StringVar(&f.keyFile, "key", "", "PEM private key of --cert")
	fl.StringSliceVar(&f.cas, "ca", nil, "PEM file(s) of the CA(s) the addressbook's and register's certificates chain to")
	fl.StringArrayVar(&f.nodes, "node", nil, "a node to watch: NAME=URL of its /metrics (repeatable; the same NAME again adds a replica, whose metrics are added up)")
	fl.StringArrayVar(&f.nodeConfigs, "node-config", nil, "NAME=FILE: a watched node's configuration, for its participants and agreements (repeatable)")
	fl.StringVar(&f.user, "user", "operator", "the local operator account's user name")
	fl.StringVar(&f.passwordFile, "password-file", "", "the local account's password (created, mode 0600, when missing)")
	fl.StringVar(&f.httpsCert, "https-cert", "", "PEM certificate to serve the monitor over HTTPS")
	fl.StringVar(&f.httpsKey, "https-key", "", "PEM private key of --https-cert")
	fl.DurationVar(&f.interval, "interval", 5*time.Second, "how often the sources are read")
	return cmd
}

// monitorConfig turns the flags into the monitor's configuration.
func monitorConfig(f monitorFlags, log *slog.Logger) (monitor.Config, error) {
	cfg := monitor.Config{AddressbookURL: f.addressbook, AdmissionURL: f.admission, Interval: f.interval, Logger: log}
	if f.passwordFile == "" {
		return cfg, errors.New("--password-file is required: the monitor is never open without a login")
	}
	if f.interval < time.Second {
		return cfg, fmt.Errorf("--interval: %s is shorter than 1s", f.interval)
	}
	configs := map[string]string{}
	for _, nc := range f.nodeConfigs {
		name, file, ok := strings.Cut(nc, "=")
		if !ok || name == "" || file == "" {
			return cfg, fmt.Errorf("--node-config %q: want NAME=FILE", nc)
		}
		configs[name] = file
	}
	seen := map[string]int{} // name → index in cfg.Nodes
	for _, n := range f.nodes {
		name, url, ok := strings.Cut(n, "=")
		if !ok || name == "" || url == "" {
			return cfg, fmt.Errorf("--node %q: want NAME=URL of its /metrics", n)
		}
		if i, again := seen[name]; again {
			// Another replica of the node: their metrics are added up.
			src := &cfg.Nodes[i]
			if len(src.Replicas) == 0 {
				src.Replicas = []string{src.MetricsURL}
			}
			src.Replicas = append(src.Replicas, url)
			continue
		}
		seen[name] = len(cfg.Nodes)
		cfg.Nodes = append(cfg.Nodes, monitor.NodeSource{Name: name, MetricsURL: url, ConfigFile: configs[name]})
		delete(configs, name)
	}
	for name := range configs {
		return cfg, fmt.Errorf("--node-config %s: no --node of that name", name)
	}
	if f.addressbook != "" || f.admission != "" {
		if f.certFile == "" || f.keyFile == "" || len(f.cas) == 0 {
			return cfg, errors.New("--addressbook and --admission need --cert, --key and --ca (they are read over mTLS)")
		}
		cert, err := loadCertFlags(f.certFile, f.keyFile)
		if err != nil {
			return cfg, err
		}
		roots, err := loadCAs(f.cas...)
		if err != nil {
			return cfg, err
		}
		cfg.Directory = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, roots)}}
	}
	if f.admission != "" {
		if f.authority == "" {
			return cfg, errors.New("--admission needs --authority-jwks: a proof counts only when it verifies")
		}
		keys, err := validation.ReadAuthorityJWKS(f.authority)
		if err != nil {
			return cfg, fmt.Errorf("--authority-jwks: %w", err)
		}
		cfg.Authority = keys
	}
	pw, err := monitor.LoadOrCreatePassword(f.passwordFile)
	if err != nil {
		return cfg, fmt.Errorf("--password-file: %w", err)
	}
	acct, err := monitor.NewLocalAccount(f.user, pw)
	if err != nil {
		return cfg, fmt.Errorf("--user: %w", err)
	}
	cfg.Logins = []monitor.LoginProvider{acct}
	return cfg, cfg.Validate()
}

func runMonitor(ctx context.Context, cmd *cobra.Command, f monitorFlags, log *slog.Logger) error {
	if (f.httpsCert == "") != (f.httpsKey == "") {
		return errors.New("--https-cert and --https-key go together")
	}
	if f.httpsCert == "" {
		// Without TLS the session cookie travels in clear: only on this machine.
		host, _, err := net.SplitHostPort(f.addr)
		if ip := net.ParseIP(host); err != nil || ((ip == nil || !ip.IsLoopback()) && host != "localhost") {
			return fmt.Errorf("--addr %s: plain HTTP only on a loopback address; give --https-cert and --https-key", f.addr)
		}
	}
	cfg, err := monitorConfig(f, log)
	if err != nil {
		return err
	}
	m, err := monitor.New(cfg)
	if err != nil {
		return err
	}
	ln, err := listenAddr(f.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	scheme := "http"
	if f.httpsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.httpsCert, f.httpsKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--https-cert: %w", err)
		}
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		scheme = "https"
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.Run(runCtx)
	fmt.Fprintf(cmd.OutOrStdout(), "Twiin Monitor %s://%s (log in as %s, password in %s)\n", scheme, ln.Addr(), f.user, f.passwordFile)
	errc := make(chan error, 1)
	go func() {
		if f.httpsCert != "" {
			errc <- hs.ServeTLS(ln, "", "")
			return
		}
		errc <- hs.Serve(ln)
	}()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	cancel() // ends the event streams, so Shutdown does not wait on them
	sctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	return hs.Shutdown(sctx)
}
