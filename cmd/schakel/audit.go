package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
)

// auditPostgresEnv names the environment variable holding the PostgreSQL
// connection string of an audit store: connection strings may carry a
// password, which does not belong on a command line.
const auditPostgresEnv = "SCHAKEL_AUDIT_POSTGRES"

// newAuditCommand returns `schakel audit`: checks and reports on a node's
// NEN 7513 audit log, read-only.
func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and query a node's NEN 7513 audit log",
		Long: "Verify and query a node's NEN 7513 audit log (read-only). The log is a SQLite file\n" +
			"(--db) or, with " + auditPostgresEnv + " set, a PostgreSQL schema (--schema).",
	}
	cmd.AddCommand(newAuditVerifyCommand(), newAuditExportCommand(), newAuditFetchCommand())
	return cmd
}

type auditSource struct {
	db, schema string
}

func (a *auditSource) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.db, "db", "", "the audit SQLite file (e.g. <data-dir>/audit.db)")
	cmd.Flags().StringVar(&a.schema, "schema", "audit", "PostgreSQL schema of the log (with "+auditPostgresEnv+")")
}

func (a *auditSource) open(cmd *cobra.Command) (*audit.Store, error) {
	cfg := audit.Config{ReadOnly: true, Path: a.db, Schema: a.schema}
	if dsn := os.Getenv(auditPostgresEnv); dsn != "" && a.db == "" {
		cfg.Postgres = dsn
	} else if a.db == "" {
		return nil, errors.New("--db is required (or set " + auditPostgresEnv + ")")
	}
	return audit.OpenWith(cmd.Context(), cfg)
}

func newAuditVerifyCommand() *cobra.Command {
	var src auditSource
	var keyFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain and signed checkpoints; report changed, removed, inserted or reordered records",
		Long: "Check every record against its hash, every link of the chain and every checkpoint signature.\n" +
			"--key is a JWK Set with the public checkpoint key(s). Without it, the key file beside the\n" +
			"database (<db>.key, as `schakel node` creates it) is used when present; otherwise the\n" +
			"signatures are not checked, and the report says so. Exits non-zero when a problem is found.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			keys, keyNote, err := checkpointKeys(keyFile, src.db)
			if err != nil {
				return err
			}
			s, err := src.open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := audit.Verify(cmd.Context(), s, keys)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printReport(out, rep, keyNote)
			}
			if !rep.OK() {
				return fmt.Errorf("audit log does not verify: %d problem(s)", len(rep.Problems))
			}
			return nil
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&keyFile, "key", "", "JWK Set (JSON) with the public checkpoint key(s)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// checkpointKeys loads the verification keys: --key, else the node's key
// file beside the database, else none.
func checkpointKeys(keyFile, db string) (jwk.Set, string, error) {
	if keyFile != "" {
		data, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, "", fmt.Errorf("--key: %w", err)
		}
		set, err := jwk.Parse(data)
		if err != nil {
			return nil, "", fmt.Errorf("--key: not a JWK Set: %w", err)
		}
		return set, "signatures checked with " + keyFile, nil
	}
	if db != "" && fileExists(db+".key") {
		key, err := pki.LoadOrCreateSigningKey(db + ".key")
		if err != nil {
			return nil, "", err
		}
		set, err := pki.PublicJWKS(key)
		if err != nil {
			return nil, "", err
		}
		return set, "signatures checked with the key beside the database (" + db + ".key); pass --key for an independent check", nil
	}
	return nil, "signatures NOT checked: no --key given", nil
}

func printReport(w io.Writer, rep *audit.Report, keyNote string) {
	fmt.Fprintf(w, "records: %d chained", rep.Records)
	if rep.Legacy > 0 {
		fmt.Fprintf(w, ", %d from before the chain (not covered)", rep.Legacy)
	}
	fmt.Fprintf(w, "\ncheckpoints: %d, last anchored record: %d\n%s\n", rep.Checkpoints, rep.LastAnchored, keyNote)
	if rep.Unindexed > 0 {
		fmt.Fprintf(w, "journal: %d more record(s) are held only in the journal and were not checked; the node indexes them while it runs or when it starts\n", rep.Unindexed)
	}
	if rep.OK() {
		fmt.Fprintln(w, "OK: no changed, removed, inserted or reordered records found")
		return
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(w, p.String())
	}
}

func newAuditExportCommand() *cobra.Command {
	var src auditSource
	var bsn, format string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print a patient's overview of who accessed their data (and who was refused)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := nl.ValidateBSN(bsn); err != nil {
				return fmt.Errorf("--patient: %w", err)
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("--format must be text or json, not %q", format)
			}
			cmd.SilenceUsage = true
			s, err := src.open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			accesses, err := s.PatientAccesses(cmd.Context(), bsn)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"patient": bsn, "accesses": accesses})
			}
			return printAccesses(out, bsn, accesses)
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&bsn, "patient", "", "the patient's BSN")
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

func printAccesses(w io.Writer, bsn string, accesses []audit.Access) error {
	fmt.Fprintf(w, "Accesses to the data of patient %s: %d\n\n", bsn, len(accesses))
	if len(accesses) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tHOLDER (URA)\tORGANISATION (URA)\tSYSTEM / USER\tWHAT\tOUTCOME")
	for _, a := range accesses {
		who := a.System
		if a.User != "" || a.UserName != "" {
			user := joinNonEmpty(" ", a.User, a.UserName)
			if a.Role != "" {
				user += " (role " + a.Role + ")"
			}
			who = joinNonEmpty(" / ", who, user)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Time.Local().Format(time.DateTime), a.Holder,
			dash(a.Organisation), dash(who), a.What, a.Outcome)
	}
	return tw.Flush()
}

func joinNonEmpty(sep string, parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += sep
		}
		out += p
	}
	return out
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
