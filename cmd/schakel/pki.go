package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/pki"
)

// newPKICommand returns `schakel pki`: the development PKI, so that a whole
// network can be tried without real UZI certificates.
func newPKICommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Development PKI: CA, UZI-style server certificates, JWT signing keys",
		Long: "Development PKI. Issues UZI-style server certificates (otherName 2.5.5.5 with\n" +
			"UZI number, URA and AGB) under a local CA, and JWT signing keys. Not for production:\n" +
			"real nodes use certificates issued by the UZI register.",
	}
	cmd.AddCommand(newPKIInitCommand(), newPKIIssueCommand(), newPKIRevokeCommand(), newPKISigningKeyCommand(), newPKIShowCommand(),
		newPKIIdentityIssuerCommand(), newPKIIdentityCommand())
	return cmd
}

func newPKIInitCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the development CA in --dir (kept if it exists)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true // flags parsed; what fails now is not a usage error
			existed := fileExists(filepath.Join(dir, "ca.pem"))
			ca, err := pki.LoadOrCreateCA(dir)
			if err != nil {
				return err
			}
			verb := "created"
			if existed {
				verb = "kept existing"
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s CA %s\n", verb, filepath.Join(dir, "ca.pem"))
			printCert(out, ca.Cert)
			// A CRL from the start, so trust lists can name it before the
			// first revocation.
			if !fileExists(filepath.Join(dir, pki.CRLFile)) {
				if _, err := pki.RevokeInDir(dir, ca, nil, 0); err != nil {
					return err
				}
				fmt.Fprintf(out, "created CRL %s\n", filepath.Join(dir, pki.CRLFile))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "pki", "directory of the CA (ca.pem, ca-key.pem)")
	return cmd
}

func newPKIIssueCommand() *cobra.Command {
	var (
		dir, name, cn string
		id            pki.UZIServerID
		dnsNames, ips []string
		validFor      time.Duration
		variant       issueVariant
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue an UZI server certificate (server and client auth) under the CA in --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true // flags parsed; what fails now is not a usage error
			if name == "" {
				return errors.New("--name is required")
			}
			if validFor <= 0 {
				return errors.New("--valid-for must be positive")
			}
			req := pki.ServerCertRequest{ID: id, CommonName: cn, DNSNames: dnsNames}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--ip %q is not an IP address", s)
				}
				req.IPs = append(req.IPs, ip)
			}
			now := time.Now()
			req.NotBefore, req.NotAfter = now.Add(-time.Minute), now.Add(validFor)

			kind, err := variant.kind()
			if err != nil {
				return err
			}
			ca, err := pki.LoadOrCreateCA(dir)
			if err != nil {
				return err
			}
			issue := map[string]func(pki.ServerCertRequest) (tls.Certificate, error){
				"": ca.IssueUZIServer, "revoked": ca.IssueUZIServer, "expired": ca.IssueExpired,
				"not-yet-valid": ca.IssueNotYetValid, "wrong-ura": ca.IssueWrongURA,
			}[kind]
			cert, err := issue(req)
			if err != nil {
				return err
			}
			if err := pki.WriteKeyPair(dir, name, cert); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "issued %s (key %s)\n", filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
			printCert(out, cert.Leaf)
			switch kind {
			case "revoked":
				if _, err := pki.RevokeInDir(dir, ca, []*big.Int{cert.Leaf.SerialNumber}, 0); err != nil {
					return err
				}
				fmt.Fprintf(out, "revoked in %s\n", filepath.Join(dir, pki.CRLFile))
			case "wrong-ura":
				fmt.Fprintf(out, "test certificate: claims URA %s but carries URA %s\n", id.URA, pki.WrongURA(id.URA))
			case "expired", "not-yet-valid":
				fmt.Fprintf(out, "test certificate: %s\n", kind)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "pki", "directory of the CA; the certificate is written there as NAME.pem and NAME-key.pem")
	f.StringVar(&name, "name", "", "file name of the certificate, without .pem (required)")
	f.StringVar(&id.URA, "ura", "", "URA of the care provider, 8 digits (required)")
	f.StringVar(&id.UZI, "uzi", "", "UZI number of the system (required)")
	f.StringVar(&id.AGB, "agb", "", "AGB code, 8 digits (required)")
	f.StringVar(&cn, "cn", "", "subject common name and organisation (default \"UZI server <UZI>\")")
	f.StringSliceVar(&dnsNames, "dns", nil, "DNS names (default localhost)")
	f.StringSliceVar(&ips, "ip", nil, "IP addresses (default 127.0.0.1 and ::1)")
	f.DurationVar(&validFor, "valid-for", 8760*time.Hour, "validity period")
	f.BoolVar(&variant.expired, "expired", false, "test variant: a certificate that expired yesterday")
	f.BoolVar(&variant.notYetValid, "not-yet-valid", false, "test variant: a certificate valid only from tomorrow")
	f.BoolVar(&variant.revoked, "revoked", false, "test variant: a valid certificate, revoked at once in the CA's CRL")
	f.BoolVar(&variant.wrongURA, "wrong-ura", false, "test variant: subject names --ura, UZI identity carries another URA")
	for _, required := range []string{"name", "ura", "uzi", "agb"} {
		_ = cmd.MarkFlagRequired(required)
	}
	return cmd
}

// issueVariant holds the test-variant flags of `pki issue`; at most one.
type issueVariant struct{ expired, notYetValid, revoked, wrongURA bool }

func (v issueVariant) kind() (string, error) {
	var kinds []string
	for name, set := range map[string]bool{"expired": v.expired, "not-yet-valid": v.notYetValid, "revoked": v.revoked, "wrong-ura": v.wrongURA} {
		if set {
			kinds = append(kinds, name)
		}
	}
	switch len(kinds) {
	case 0:
		return "", nil
	case 1:
		return kinds[0], nil
	}
	return "", errors.New("--expired, --not-yet-valid, --revoked and --wrong-ura exclude each other")
}

func newPKIRevokeCommand() *cobra.Command {
	var (
		dir      string
		serials  []string
		validity time.Duration
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Add serial numbers to the CRL of the CA in --dir and re-sign it (no --serial: refresh only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			var nums []*big.Int
			for _, s := range serials {
				n, err := pki.ParseSerial(s)
				if err != nil {
					return fmt.Errorf("--serial: %w", err)
				}
				nums = append(nums, n)
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			crl, err := pki.RevokeInDir(dir, ca, nums, validity)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "CRL %s\n  number:      %s\n  next update: %s\n  revoked:     %d\n", filepath.Join(dir, pki.CRLFile),
				crl.Number, crl.NextUpdate.UTC().Format(time.RFC3339), len(crl.RevokedCertificateEntries))
			for _, e := range crl.RevokedCertificateEntries {
				fmt.Fprintf(out, "    %s (since %s)\n", e.SerialNumber, e.RevocationTime.UTC().Format(time.RFC3339))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "pki", "directory of the CA; the CRL is DIR/"+pki.CRLFile)
	cmd.Flags().StringSliceVar(&serials, "serial", nil, "serial number to revoke: decimal, 0x-hex or colon hex (repeatable)")
	cmd.Flags().DurationVar(&validity, "next-update", pki.DefaultCRLValidity, "time until the CRL's nextUpdate")
	return cmd
}

func newPKISigningKeyCommand() *cobra.Command {
	var dir, name string
	cmd := &cobra.Command{
		Use:   "signing-key",
		Short: "Create (or show) the JWT signing key --dir/NAME-signing-key.pem and print its public JWK",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true // flags parsed; what fails now is not a usage error
			if name == "" || strings.ContainsAny(name, `/\`) {
				return fmt.Errorf("--name %q is not a plain file name", name)
			}
			path := filepath.Join(dir, name+"-signing-key.pem")
			key, err := pki.LoadOrCreateSigningKey(path)
			if err != nil {
				return err
			}
			set, err := pki.PublicJWKS(key)
			if err != nil {
				return err
			}
			pub, _ := set.Key(0)
			js, err := json.MarshalIndent(pub, "", "  ")
			if err != nil {
				return err
			}
			kid, _ := key.KeyID()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "signing key %s\nkid: %s\npublic JWK:\n%s\n", path, kid, js)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "pki", "directory of the key")
	cmd.Flags().StringVar(&name, "name", "", "key name; the file is NAME-signing-key.pem (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newPKIShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show FILE.pem",
		Short: "Print the certificates (subject, validity, UZI identity, x5t#S256) or key in a PEM file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			found := false
			for {
				var block *pem.Block
				block, data = pem.Decode(data)
				if block == nil {
					break
				}
				found = true
				switch block.Type {
				case "CERTIFICATE":
					cert, err := x509.ParseCertificate(block.Bytes)
					if err != nil {
						return fmt.Errorf("%s: %w", args[0], err)
					}
					printCert(out, cert)
				case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
					// Describe the key by its public half only; never print it.
					printKey(out, block)
				default:
					fmt.Fprintf(out, "%s block (not shown)\n", block.Type)
				}
			}
			if !found {
				return fmt.Errorf("%s: no PEM data", args[0])
			}
			return nil
		},
	}
}

func printCert(w io.Writer, cert *x509.Certificate) {
	fmt.Fprintf(w, "certificate\n  subject:   %s\n  issuer:    %s\n  serial:    %s\n", cert.Subject, cert.Issuer, cert.SerialNumber)
	fmt.Fprintf(w, "  valid:     %s to %s", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	if now := time.Now(); now.After(cert.NotAfter) {
		fmt.Fprint(w, " (EXPIRED)")
	} else if now.Before(cert.NotBefore) {
		fmt.Fprint(w, " (NOT YET VALID)")
	}
	fmt.Fprintln(w)
	if cert.IsCA {
		fmt.Fprintln(w, "  CA:        yes")
	} else if id, err := pki.ParseUZIServerID(cert); err == nil {
		fmt.Fprintf(w, "  UZI:       %s (UZI %s, URA %s, AGB %s)\n", id, id.UZI, id.URA, id.AGB)
	} else {
		fmt.Fprintf(w, "  UZI:       none (%v)\n", err)
	}
	if len(cert.DNSNames) > 0 || len(cert.IPAddresses) > 0 {
		fmt.Fprintf(w, "  names:     %s\n", strings.Join(append(cert.DNSNames, ipList(cert.IPAddresses)...), ", "))
	}
	fmt.Fprintf(w, "  x5t#S256:  %s\n", pki.CertThumbprintS256(cert))
}

func printKey(w io.Writer, block *pem.Block) {
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	if err != nil {
		fmt.Fprintf(w, "private key (unreadable: %v)\n", err)
		return
	}
	desc := fmt.Sprintf("%T", key)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		desc = "ECDSA " + k.Curve.Params().Name
	case *rsa.PrivateKey:
		desc = fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	fmt.Fprintf(w, "private key\n  type:      %s\n", desc)
	if signer, ok := key.(crypto.Signer); ok {
		jk, err := pki.SigningJWK(signer)
		if err != nil {
			fmt.Fprintf(w, "  alg:       none (%v)\n", err)
			return
		}
		kid, _ := jk.KeyID()
		alg, _ := jk.Algorithm()
		fmt.Fprintf(w, "  kid:       %s (RFC 7638 thumbprint)\n  alg:       %s\n", kid, alg)
	}
}

func ipList(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
