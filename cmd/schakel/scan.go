package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau/scan"
)

// newScanCommand returns `schakel scan`: the Twiin maturity scan of a node.
func newScanCommand() *cobra.Command {
	var (
		configFile, probeURL, certFile, keyFile, caFile, format, output, signingKey string
		timeout                                                                     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Maturity scan: the plateau a node reaches per generic function, and the steps to the next",
		Long: "Reads a node configuration (--config, the YAML file `schakel node` uses) and reports,\n" +
			"per generic function of the Twiin growth model, the plateau reached, the evidence and\n" +
			"the steps to the next plateau. With --probe it also tries the running node over the\n" +
			"network: TLS version, client-certificate requirement and, given --cert/--key/--ca,\n" +
			"the OAuth metadata, JWKS and the token endpoint's refusal of unsigned assertions;\n" +
			"given --signing-key too, whether a signed token request without user data is refused.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				return errors.New("--config is required")
			}
			if (certFile == "") != (keyFile == "") {
				return errors.New("--cert and --key go together")
			}
			if certFile != "" && caFile == "" {
				return errors.New("--cert needs --ca: the probe only presents its certificate to a verified node")
			}
			if format != "text" && format != "json" && format != "html" {
				return fmt.Errorf("--format must be text, json or html, not %q", format)
			}
			cmd.SilenceUsage = true
			cfg, err := scan.LoadConfig(configFile)
			if err != nil {
				return err
			}
			var probe *scan.Probe
			if probeURL != "" {
				opts := scan.ProbeOptions{URL: probeURL, Timeout: timeout}
				if caFile != "" {
					if opts.Roots, err = loadCAs(caFile); err != nil {
						return err
					}
				}
				if certFile != "" {
					c, err := tls.LoadX509KeyPair(certFile, keyFile)
					if err != nil {
						return fmt.Errorf("--cert/--key: %w", err)
					}
					opts.Certificate = &c
				}
				if signingKey != "" {
					if certFile == "" {
						return errors.New("--signing-key needs --cert/--key: the probe signs as the certificate's organisation")
					}
					// Never create a key here: a new key is in no addressbook.
					if _, err := os.Stat(signingKey); err != nil {
						return fmt.Errorf("--signing-key: %w", err)
					}
					if opts.SigningKey, err = pki.LoadOrCreateSigningKey(signingKey); err != nil {
						return fmt.Errorf("--signing-key: %w", err)
					}
				}
				if probe, err = scan.RunProbe(cmd.Context(), opts); err != nil {
					return err
				}
			}
			report := scan.Run(cfg, configFile, probe)
			out := cmd.OutOrStdout()
			if output != "" {
				f, err := os.Create(output)
				if err != nil {
					return err
				}
				defer f.Close()
				out = f
			}
			switch format {
			case "json":
				return report.WriteJSON(out)
			case "html":
				return report.WriteHTML(out)
			}
			return report.WriteText(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "node configuration file (YAML)")
	f.StringVar(&probeURL, "probe", "", "public base URL of the running node to probe, e.g. https://gtk.example:8443")
	f.StringVar(&certFile, "cert", "", "client certificate (PEM) for the probe's mTLS handshake")
	f.StringVar(&keyFile, "key", "", "key of --cert (PEM)")
	f.StringVar(&signingKey, "signing-key", "", "assertion signing key (PEM) the addressbook lists for --cert's URA; the probe then checks that a token request without user data is refused")
	f.StringVar(&caFile, "ca", "", "CA certificates (PEM) that verify the probed node")
	f.StringVar(&format, "format", "text", "report format: text, json or html")
	f.StringVarP(&output, "output", "o", "", "write the report to this file instead of standard output")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "timeout of each probe connection")
	return cmd
}
