package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/pki"
)

// envConsentPostgres holds the PostgreSQL DSN of `consent serve`: a DSN can
// carry a password, so it is never a flag.
const envConsentPostgres = "SCHAKEL_CONSENT_POSTGRES_DSN"

// newConsentCommand returns `schakel consent`: the consent service (a
// Mitz-compatible registry) and the provider's commands to use it.
func newConsentCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consent",
		Short: "Consent service: registry, Mitz-compatible closed question, subscriptions",
		Long: "The consent (toestemming) generic function. `serve` runs a Mitz-compatible service\n" +
			"(closed question over SOAP/XACML, FHIR subscriptions, registration APIs) behind mTLS;\n" +
			"`register`, `revoke`, `list` and `check` use it with a provider's UZI server certificate.",
	}
	cmd.AddCommand(newConsentServeCommand(), newConsentRegisterCommand(), newConsentRevokeCommand(),
		newConsentListCommand(), newConsentCheckCommand())
	return cmd
}

// tlsFiles are the PEM files of an mTLS party.
type tlsFiles struct {
	cert, key string
	cas       []string
}

func (f *tlsFiles) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.cert, "cert", "", "PEM certificate (UZI server certificate) presented to the peer")
	cmd.Flags().StringVar(&f.key, "key", "", "PEM private key of --cert")
	cmd.Flags().StringSliceVar(&f.cas, "ca", nil, "PEM file(s) of the CA(s) trusted for peers (repeatable)")
}

func (f *tlsFiles) load() (tls.Certificate, *x509.CertPool, error) {
	if f.cert == "" || f.key == "" || len(f.cas) == 0 {
		return tls.Certificate{}, nil, errors.New("--cert, --key and --ca are required")
	}
	cert, err := loadCertFlags(f.cert, f.key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	var cas []*x509.Certificate
	for _, file := range f.cas {
		b, err := os.ReadFile(file)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("--ca: %w", err)
		}
		for {
			var blk *pem.Block
			if blk, b = pem.Decode(b); blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return tls.Certificate{}, nil, fmt.Errorf("--ca %s: %w", file, err)
			}
			cas = append(cas, c)
		}
	}
	if len(cas) == 0 {
		return tls.Certificate{}, nil, errors.New("--ca holds no certificates")
	}
	return cert, pki.CertPool(cas...), nil
}

func newConsentServeCommand() *cobra.Command {
	var (
		files      tlsFiles
		dataDir    string
		addr       string
		schema     string
		portalURAs []string
		attempts   int
		issuer     string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the consent service on an mTLS listener",
		Long: "Runs the consent service: POST " + consent.ClosedQuestionPath + " (closed question),\n" +
			"POST " + consent.SubscriptionPath + " (subscriptions), " + consent.RegistryPath + " (provider registry)\n" +
			"and " + consent.PortalPath + " (portals). State is kept in SQLite in --data-dir, or in\n" +
			"PostgreSQL when $" + envConsentPostgres + " is set.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if dataDir == "" {
				return errors.New("--data-dir is required")
			}
			cert, roots, err := files.load()
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if err := prepareDataDir(dataDir); err != nil {
				return err
			}
			scfg := consent.ServerConfig{
				DataDir:    dataDir,
				ClientTLS:  pki.ClientTLSConfig(cert, roots),
				PortalURAs: portalURAs,
				Delivery:   consent.DeliveryConfig{Attempts: attempts},
				Issuer:     issuer,
				Logger:     log,
			}
			if dsn := os.Getenv(envConsentPostgres); dsn != "" {
				// Opened here so that its failure names its setting; the
				// driver's errors never carry the password.
				st, err := consent.OpenPostgres(cmd.Context(), dsn, schema)
				if err != nil {
					return fmt.Errorf("$%s: %w", envConsentPostgres, err)
				}
				defer st.Close()
				scfg.Store = st
			}
			srv, err := consent.NewServer(scfg)
			if err != nil {
				return err
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
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}
			fmt.Fprintf(cmd.OutOrStdout(), "consent service listening on https://%s\n", ln.Addr())
			if err := serveUntilDone(cmd.Context(), hs, ln); err != nil {
				return err
			}
			return srv.Close()
		},
	}
	files.flags(cmd)
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "directory of the consent database and its audit log")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8443", "host:port of the mTLS listener")
	cmd.Flags().StringVar(&schema, "postgres-schema", "consent", "PostgreSQL schema, when $"+envConsentPostgres+" is set")
	cmd.Flags().StringSliceVar(&portalURAs, "portal-ura", nil, "URA of a consent portal allowed on the portal API (repeatable)")
	cmd.Flags().IntVar(&attempts, "notify-attempts", 6, "delivery attempts per notification before giving up")
	cmd.Flags().StringVar(&issuer, "issuer", "", "name of the service in its answers (default schakel-consent; a regional portal's service names itself)")
	return cmd
}

// adminClient talks to a consent service with a provider's certificate.
type adminClient struct {
	base string
	hc   *http.Client
}

func newAdminClient(files *tlsFiles, base string) (*adminClient, error) {
	if base == "" {
		return nil, errors.New("--url is required")
	}
	cert, roots, err := files.load()
	if err != nil {
		return nil, err
	}
	return &adminClient{base: strings.TrimSuffix(base, "/"), hc: &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, roots, pki.AcceptNonUZIPeer())},
	}}, nil
}

func (a *adminClient) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		var p struct {
			Detail string `json:"detail"`
		}
		if json.Unmarshal(b, &p) == nil && p.Detail != "" {
			return fmt.Errorf("%s: %s", http.StatusText(resp.StatusCode), p.Detail)
		}
		return fmt.Errorf("consent service answered %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func newConsentRegisterCommand() *cobra.Command {
	var (
		files             tlsFiles
		base              string
		reg               consent.Registration
		permit, deny      bool
		validFrom, untilS string
	)
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register a patient's consent (permit or deny) with the consent service",
		Long: "Registers a consent as the provider whose certificate is given (plateau 1): the data\n" +
			"holder is that provider; --holder-type narrows or names its category. The requester side\n" +
			"(--requester-ura/--requester-type/--requester-role) defaults to every requester.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if permit == deny {
				return errors.New("give exactly one of --permit and --deny")
			}
			reg.Effect = consent.Deny
			if permit {
				reg.Effect = consent.Permit
			}
			var err error
			if validFrom != "" {
				if reg.ValidFrom, err = time.Parse(time.RFC3339, validFrom); err != nil {
					return fmt.Errorf("--valid-from: %w", err)
				}
			}
			if untilS != "" {
				if reg.ValidUntil, err = time.Parse(time.RFC3339, untilS); err != nil {
					return fmt.Errorf("--valid-until: %w", err)
				}
			}
			c, err := newAdminClient(&files, base)
			if err != nil {
				return err
			}
			var out consent.Registration
			if err := c.do(cmd.Context(), http.MethodPost, consent.RegistryPath, reg, http.StatusCreated, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s (%s)\n", out.ID, out.Effect)
			return nil
		},
	}
	files.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&base, "url", "", "base URL of the consent service (https://host:port)")
	f.StringVar(&reg.PatientBSN, "bsn", "", "the patient's BSN")
	f.BoolVar(&permit, "permit", false, "the patient permits")
	f.BoolVar(&deny, "deny", false, "the patient refuses")
	f.StringVar(&reg.HolderURA, "holder-ura", "", "data holder URA (must be the certificate's; default)")
	f.StringVar(&reg.HolderType, "holder-type", "", "data holder category (facility type code, e.g. Z3)")
	f.StringVar(&reg.RequesterURA, "requester-ura", "", "only this requesting organisation")
	f.StringVar(&reg.RequesterType, "requester-type", "", "only requesters of this facility type")
	f.StringVar(&reg.RequesterRole, "requester-role", "", "only requesting users with this UZI role code")
	f.StringVar(&reg.Purpose, "purpose", consent.PurposeTreatment, "purpose of use")
	f.StringVar(&validFrom, "valid-from", "", "start of validity (RFC 3339); now when empty")
	f.StringVar(&untilS, "valid-until", "", "end of validity (RFC 3339, exclusive); open when empty")
	return cmd
}

func newConsentRevokeCommand() *cobra.Command {
	var (
		files tlsFiles
		base  string
		id    string
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Withdraw a registration made with this provider's certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if id == "" {
				return errors.New("--id is required")
			}
			c, err := newAdminClient(&files, base)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, consent.RegistryPath+"/"+id, nil, http.StatusNoContent, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", id)
			return nil
		},
	}
	files.flags(cmd)
	cmd.Flags().StringVar(&base, "url", "", "base URL of the consent service")
	cmd.Flags().StringVar(&id, "id", "", "id of the registration")
	return cmd
}

func newConsentListCommand() *cobra.Command {
	var (
		files   tlsFiles
		base    string
		bsn     string
		history bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a patient's registrations visible to this provider",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			c, err := newAdminClient(&files, base)
			if err != nil {
				return err
			}
			path := consent.RegistryPath + "?patient=" + bsn
			if history {
				path += "&history=true"
			}
			var regs []consent.Registration
			if err := c.do(cmd.Context(), http.MethodGet, path, nil, http.StatusOK, &regs); err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(regs)
		},
	}
	files.flags(cmd)
	cmd.Flags().StringVar(&base, "url", "", "base URL of the consent service")
	cmd.Flags().StringVar(&bsn, "bsn", "", "the patient's BSN")
	cmd.Flags().BoolVar(&history, "history", false, "include withdrawn and superseded registrations")
	return cmd
}

func newConsentCheckCommand() *cobra.Command {
	var (
		files tlsFiles
		base  string
		q     consent.Question
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Ask the closed question (as Mitz is asked) and print the decision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			cert, roots, err := files.load()
			if err != nil {
				return err
			}
			c, err := consent.NewClient(consent.ClientConfig{BaseURL: base, TLS: pki.ClientTLSConfig(cert, roots, pki.AcceptNonUZIPeer())})
			if err != nil {
				return err
			}
			d, err := c.Decide(cmd.Context(), q)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), d)
			return nil
		},
	}
	files.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&base, "url", "", "base URL of the consent service (or Mitz)")
	f.StringVar(&q.PatientBSN, "bsn", "", "the patient's BSN")
	f.StringVar(&q.DataHolderURA, "holder-ura", "", "data holder URA")
	f.StringVar(&q.DataHolderType, "holder-type", "", "data holder facility type")
	f.StringVar(&q.RequesterURA, "requester-ura", "", "requesting organisation URA")
	f.StringVar(&q.RequesterType, "requester-type", "", "requesting organisation facility type")
	f.StringVar(&q.RequesterRole, "requester-role", "", "requesting user's UZI role code")
	f.StringVar(&q.RequesterUZI, "requester-uzi", "", "requesting user's UZI number")
	f.StringVar(&q.Purpose, "purpose", consent.PurposeTreatment, "purpose of use")
	return cmd
}
