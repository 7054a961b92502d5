package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// devIdentityIssuer is the iss of user identity tokens the development
// identity issuer signs; verifiers configure it with the JWKS or the CA.
const devIdentityIssuer = "urn:schakel:dev-identity-issuer"

// newPKIIdentityIssuerCommand returns `schakel pki identity-issuer`.
func newPKIIdentityIssuerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity-issuer",
		Short: "Development identity issuer (a Dezi stand-in) for plateau-4 user identity tokens",
	}
	var dir string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the identity issuer's key, its certificate under the CA and its JWKS in --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			ca, err := pki.LoadOrCreateCA(dir)
			if err != nil {
				return err
			}
			iss, err := pki.LoadOrCreateIdentityIssuer(dir, ca)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			kid, _ := iss.Key.KeyID()
			fmt.Fprintf(out, "identity issuer %s\n  certificate: %s\n  JWKS:        %s\n  kid:         %s\n",
				devIdentityIssuer, filepath.Join(dir, pki.IdentityIssuerCertFile), filepath.Join(dir, pki.IdentityIssuerJWKSFile), kid)
			printCert(out, iss.Cert)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "pki", "directory of the CA and the identity issuer")
	cmd.AddCommand(initCmd)
	return cmd
}

// newPKIIdentityCommand returns `schakel pki identity`.
func newPKIIdentityCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "User identity tokens signed by the development identity issuer",
	}
	var (
		dir, issuer, aud, loa, initials, surname string
		c                                        oauth.UserIdentityClaims
		validFor                                 time.Duration
		useKid                                   bool
	)
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Print a signed user identity JWT (put it in a grant assertion as user_identity)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if err := nl.ValidateURA(c.URA); err != nil {
				return fmt.Errorf("--ura: %w", err)
			}
			if aud == "" {
				return errors.New("--aud (the token endpoint of the authorization server) is required")
			}
			a, err := oauth.ParseAssurance(loa)
			if err != nil {
				return fmt.Errorf("--loa: %w", err)
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			iss, err := pki.LoadOrCreateIdentityIssuer(dir, ca)
			if err != nil {
				return err
			}
			c.Issuer, c.Audience, c.Assurance, c.TTL = issuer, aud, a, validFor
			c.Initials, c.Surname = initials, surname
			var chain []*x509.Certificate
			if !useKid {
				chain = []*x509.Certificate{iss.Cert}
			}
			tok, err := oauth.SignUserIdentity(iss.Key, chain, c)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := issue.Flags()
	f.StringVar(&dir, "dir", "pki", "directory of the CA and the identity issuer")
	f.StringVar(&c.UZI, "uzi", "", "UZI/Dezi number of the user (required)")
	f.StringVar(&c.RoleCode, "role", "", "UZI role code, e.g. 01.015 (GP) (required)")
	f.StringVar(&loa, "loa", "high", "eIDAS level of assurance: low, substantial, high")
	f.StringVar(&c.URA, "ura", "", "URA of the organisation the user acts for (required)")
	f.StringVar(&aud, "aud", "", "audience: token endpoint URL of the authorization server (required)")
	f.StringVar(&issuer, "issuer", devIdentityIssuer, "iss of the token")
	f.StringVar(&initials, "initials", "", "initials of the user")
	f.StringVar(&surname, "surname", "", "surname of the user")
	f.DurationVar(&validFor, "valid-for", 15*time.Minute, "lifetime of the token")
	f.BoolVar(&useKid, "kid", false, "identify the key by kid (JWKS) instead of an x5c chain")
	for _, r := range []string{"uzi", "role", "ura", "aud"} {
		_ = issue.MarkFlagRequired(r)
	}
	cmd.AddCommand(issue)
	return cmd
}
