package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/kits"
)

// newValidationRegistry is the kit's composition: the generic cases and
// every care application's cases.
func newValidationRegistry() (*validation.Registry, error) {
	return kits.Registry(node.DefaultApplications(), kits.Shipped())
}

type validateFlags struct {
	target, ura, role, care, kitDir, pkiDir, patient, driver string
	internalURL, internalTokenFile, vendor, version, out     string
	plateau                                                  int
	wait, validity                                           time.Duration
	noProgress                                               bool
}

func newValidateCommand(g *globalFlags) *cobra.Command {
	f := &validateFlags{}
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Validate a GtK per role and care application, and issue a signed proof of validation",
		Long: "Acts as the counterpart of the node under test over the real wire (mTLS, OAuth2, FHIR) with\n" +
			"the identity `schakel network up` enrolled for the Twiin validation service, runs every case of\n" +
			"the role and care application, and writes report.json, report.xml (JUnit) and report.html to\n" +
			"--out. When every mandatory case passes it also writes proof.jws, signed by the development\n" +
			"validation authority. --role is the node's role: sender and receiver (Notified Pull), holder\n" +
			"and requester (Direct Pull), push-sender and push-receiver (Push: correspondentie,\n" +
			"geboortezorg). Exits 1 when the node does not conform. See docs/validation.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			return runValidate(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", "", "public https base URL of the node under test (required)")
	fl.StringVar(&f.ura, "ura", "", "URA of the participant validated (default: the URA of the node's server certificate)")
	fl.StringVar(&f.role, "role", "", "role of the node under test: sender, receiver, holder, requester, push-sender or push-receiver (required)")
	fl.StringVar(&f.care, "care", "bgz", "care application")
	fl.IntVar(&f.plateau, "plateau", 1, "plateau the node agreed with the validation service (1-4)")
	fl.StringVar(&f.kitDir, "kit", filepath.Join("schakel-data", "validator"), "the kit's enrolment directory (kit.json), written by `network up`")
	fl.StringVar(&f.pkiDir, "pki-dir", filepath.Join("schakel-data", "pki"), "development PKI directory holding the validation authority's key")
	fl.StringVar(&f.patient, "patient", "", "BSN of a patient the node holds (consented; for sender and holder); default from kit.json")
	fl.StringVar(&f.driver, "driver", "auto", "how the node is made to act: schakel (its internal API), manual (you are asked), auto")
	fl.StringVar(&f.internalURL, "internal-url", "", "the node's internal API (schakel driver); default from kit.json")
	fl.StringVar(&f.internalTokenFile, "internal-token-file", "", "file with the participant's internal API token (schakel driver); default from kit.json")
	fl.StringVar(&f.vendor, "vendor", "", "vendor of the node, stated in the proof")
	fl.StringVar(&f.version, "product-version", "", "version of the node's software, stated in the proof")
	fl.StringVar(&f.out, "out", "validation-report", "directory for the reports and the proof")
	fl.DurationVar(&f.wait, "wait", 30*time.Second, "how long to wait for the node to act")
	fl.DurationVar(&f.validity, "proof-validity", validation.DefaultProofValidity, "how long the proof holds")
	fl.BoolVar(&f.noProgress, "no-progress", false, "no progress bar")
	cmd.AddCommand(newValidateVerifyCommand())
	return cmd
}

func runValidate(cmd *cobra.Command, g *globalFlags, f *validateFlags) error {
	if f.target == "" || f.role == "" {
		return errors.New("--target and --role are required")
	}
	role, err := validation.ParseRole(f.role)
	if err != nil {
		return fmt.Errorf("--role: %w", err)
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	kit, id, err := validation.LoadIdentity(f.kitDir)
	if err != nil {
		return fmt.Errorf("--kit: %w", err)
	}
	reg, err := newValidationRegistry()
	if err != nil {
		return err
	}
	known, isKnown := kit.TargetFor(f.ura, f.target)
	if f.patient == "" {
		f.patient = known.Patient
	}
	if f.internalURL == "" && isKnown {
		f.internalURL, f.internalTokenFile = known.InternalURL, known.TokenFile
	}
	driver, err := pickDriver(f, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	cfg := validation.Config{Target: f.target, TargetURA: f.ura, Role: role, Care: f.care, Plateau: f.plateau, Kit: id,
		Addressbook: kit.Addressbook, Listen: kit.Listen, Driver: driver, Patient: f.patient, Vendor: f.vendor,
		Version: f.version, Wait: f.wait, Logger: log}
	var bar *progressbar.ProgressBar
	if !f.noProgress {
		cfg.Progress = func(done, total int, c *validation.Case) {
			if bar == nil {
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionShowCount(),
					progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish())
			}
			if c != nil {
				bar.Describe(c.ID)
			}
			_ = bar.Set(done)
		}
	}
	rep, err := validation.Run(cmd.Context(), cfg, reg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	js, err := rep.JSON()
	if err != nil {
		return err
	}
	paths := map[string]string{"json": filepath.Join(f.out, "report.json"), "junit": filepath.Join(f.out, "report.xml"),
		"html": filepath.Join(f.out, "report.html"), "proof": filepath.Join(f.out, "proof.jws")}
	if err := os.WriteFile(paths["json"], js, 0o644); err != nil {
		return err
	}
	if err := writeWith(paths["junit"], rep.WriteJUnit); err != nil {
		return err
	}
	if err := writeWith(paths["html"], rep.WriteHTML); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	for _, r := range rep.Results {
		mark := map[validation.Status]string{validation.Passed: "PASS", validation.Failed: "FAIL", validation.Skipped: "SKIP"}[r.Status]
		if mark == "" {
			mark = "ERR "
		}
		fmt.Fprintf(out, "%s  %-45s %s\n", mark, r.ID, firstLine(r.Detail))
	}
	s := rep.Summary
	fmt.Fprintf(out, "\n%s as %s, %s, plateau %d: %d cases, %d passed, %d failed, %d skipped, %d errors\n",
		rep.Target.URL, rep.Role, rep.Care, rep.Plateau, s.Total, s.Passed, s.Failed, s.Skipped, s.Errors)
	fmt.Fprintf(out, "reports: %s, %s, %s\n", paths["json"], paths["junit"], paths["html"])
	_ = os.Remove(paths["proof"]) // a proof of an earlier run does not belong to this report
	if !s.Conformant {
		return fmt.Errorf("the node does not conform: %d mandatory case(s) did not pass; no proof issued", s.MandatoryNotPass)
	}
	key, err := validation.LoadOrCreateAuthority(f.pkiDir)
	if err != nil {
		return fmt.Errorf("--pki-dir: validation authority: %w", err)
	}
	proof, err := validation.IssueProof(js, key, f.validity, time.Now())
	if err != nil {
		return err
	}
	if err := os.WriteFile(paths["proof"], []byte(proof+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "every mandatory case passed: proof of validation %s (check with `schakel validate verify %s --report %s`)\n",
		paths["proof"], paths["proof"], paths["json"])
	return nil
}

func pickDriver(f *validateFlags, stderr io.Writer) (validation.Driver, error) {
	switch f.driver {
	case "manual":
		return validation.Manual{Out: stderr}, nil
	case "auto", "schakel":
		if f.internalURL == "" || f.internalTokenFile == "" {
			if f.driver == "schakel" {
				return nil, errors.New("--driver schakel needs --internal-url and --internal-token-file")
			}
			return validation.Manual{Out: stderr}, nil
		}
		tok, err := os.ReadFile(f.internalTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--internal-token-file: %w", err)
		}
		return validation.SchakelDriver{InternalURL: f.internalURL, Token: strings.TrimSpace(string(tok))}, nil
	}
	return nil, fmt.Errorf("--driver must be auto, schakel or manual, not %q", f.driver)
}

func writeWith(path string, write func(io.Writer) error) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(fh); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 110 {
		s = s[:110] + "…"
	}
	return s
}

func newValidateVerifyCommand() *cobra.Command {
	var reportFile, jwksFile string
	cmd := &cobra.Command{
		Use:   "verify PROOF",
		Short: "Check a proof of validation: signature, expiry and, with --report, the report's hash",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			proof, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			keys, err := validation.ReadAuthorityJWKS(jwksFile)
			if err != nil {
				return fmt.Errorf("--authority-jwks: %w", err)
			}
			var report []byte
			if reportFile != "" {
				if report, err = os.ReadFile(reportFile); err != nil {
					return fmt.Errorf("--report: %w", err)
				}
			}
			c, err := validation.VerifyProof(string(proof), keys, report, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "valid proof of validation by %s\n", c.Issuer)
			fmt.Fprintf(out, "  node %s (URA %s), certificate SHA-256 %s\n", c.NodeURL, c.NodeURA, c.CertificateSHA256)
			if c.Vendor != "" || c.Version != "" {
				fmt.Fprintf(out, "  vendor %s, version %s\n", c.Vendor, c.Version)
			}
			fmt.Fprintf(out, "  %s as %s at plateau %d, %d cases, validated %s, valid until %s\n", c.Care, c.Role, c.Plateau, c.Cases, c.Date,
				time.Unix(c.Expiry, 0).UTC().Format(time.DateOnly))
			if report != nil {
				fmt.Fprintf(out, "  report %s matches (SHA-256 %s)\n", reportFile, c.ReportSHA256)
			} else {
				fmt.Fprintf(out, "  report not checked (give --report)\n")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reportFile, "report", "", "the JSON report the proof was issued for")
	cmd.Flags().StringVar(&jwksFile, "authority-jwks", filepath.Join("schakel-data", "pki", validation.AuthorityJWKSFile), "the validation authority's public keys")
	return cmd
}
