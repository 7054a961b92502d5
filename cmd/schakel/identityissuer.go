package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/identity"
	"github.com/schakel-nl/schakel/pki"
)

// newIdentityIssuerCommand returns `schakel identity-issuer`: the
// development identity issuer (the Dezi role) as a service of its own.
func newIdentityIssuerCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity-issuer",
		Short: "Development identity issuer (a Dezi stand-in) serving signed user identities over mTLS",
	}
	cmd.AddCommand(newIdentityIssuerServeCommand(g))
	return cmd
}

func newIdentityIssuerServeCommand(g *globalFlags) *cobra.Command {
	var pkiDir, addr, issuer string
	var tlsf mtlsFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the development identity issuer on an mTLS listener",
		Long: "Signs user identity tokens (plateau-4 authentication) for the GtKs with an UZI server\n" +
			"certificate from one of the --ca CAs, at " + identity.Path + ", with the identity issuer's\n" +
			"key in --pki-dir (created with `schakel pki identity-issuer init`, or by `schakel network\n" +
			"up`), and publishes its public key at " + identity.JWKSPath + ". The tokens' iss is --issuer,\n" +
			"by default https://<addr>: the URL the verifying nodes configure with the JWKS file\n" +
			"(identity.trusted[]). For development only: production identities come from Dezi.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if !tlsf.set() {
				return errors.New("--cert, --key and --ca are required")
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			ca, err := pki.LoadCA(pkiDir)
			if err != nil {
				return fmt.Errorf("--pki-dir: %w", err)
			}
			iss, err := pki.LoadOrCreateIdentityIssuer(pkiDir, ca)
			if err != nil {
				return fmt.Errorf("--pki-dir: %w", err)
			}
			cert, roots, err := tlsf.load()
			if err != nil {
				return err
			}
			ln, err := listenAddr(addr)
			if err != nil {
				return err
			}
			if issuer == "" {
				issuer = "https://" + ln.Addr().String()
			}
			srv := &identity.Server{Signer: &identity.Signer{Issuer: issuer, Key: iss.Key}, Logger: log}
			hs := mtlsServer(srv.Handler(), cert, roots, log, 30*time.Second)
			fmt.Fprintf(cmd.OutOrStdout(), "identity issuer %s (https://%s)\n", issuer, ln.Addr())
			return serveUntilDone(cmd.Context(), hs, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&pkiDir, "pki-dir", "pki", "directory of the CA and the identity issuer's key")
	f.StringVar(&addr, "addr", "127.0.0.1:8448", "host:port of the mTLS listener")
	f.StringVar(&issuer, "issuer", "", "iss of the tokens (default https://<addr>)")
	tlsf.flags(f, "the service", "whose GtKs may ask")
	return cmd
}
