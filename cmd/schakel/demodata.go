package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/nl"
)

func newDemoDataCommand(_ *globalFlags) *cobra.Command {
	var opts demo.Options
	var out, storePath, tenant string
	cmd := &cobra.Command{
		Use:   "demo-data",
		Short: "Generate synthetic BgZ patients (FHIR STU3) with valid test BSNs",
		Long: "Generates N synthetic patients with data for every BgZ block. Writes one\n" +
			"transaction Bundle per patient into --out, or loads them straight into a node's\n" +
			"FHIR store (--store FILE --tenant URA). Re-running is idempotent.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if (out == "") == (storePath == "") {
				return fmt.Errorf("give exactly one of --out DIR or --store FILE")
			}
			patients, err := demo.Generate(opts)
			if err != nil {
				return err
			}
			bar := progressbar.NewOptions(len(patients), progressbar.OptionSetWriter(cmd.ErrOrStderr()),
				progressbar.OptionSetDescription("patients"), progressbar.OptionShowCount())
			resources := 0
			if out != "" {
				if err := os.MkdirAll(out, 0o755); err != nil {
					return err
				}
				for _, p := range patients {
					b := demo.TransactionBundle(p)
					var pretty json.RawMessage = b
					if err := os.WriteFile(filepath.Join(out, "bgz-"+p.BSN+".json"), pretty, 0o644); err != nil {
						return err
					}
					resources += len(p.Resources)
					_ = bar.Add(1)
				}
			} else {
				if err := nl.ValidateURA(tenant); err != nil {
					return fmt.Errorf("--tenant: %w", err)
				}
				st, err := sqlite.Open(cmd.Context(), storePath, fhir.STU3)
				if err != nil {
					return err
				}
				defer st.Close()
				for _, p := range patients {
					for _, r := range p.Resources {
						if _, _, err := st.Update(cmd.Context(), tenant, r, ""); err != nil {
							return fmt.Errorf("patient %d: %w", resources, err)
						}
						resources++
					}
					_ = bar.Add(1)
				}
			}
			_ = bar.Finish()
			fmt.Fprintf(cmd.OutOrStdout(), "\n%d patients, %d resources\n", len(patients), resources)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Count, "count", 1, "number of patients")
	f.Int64Var(&opts.Seed, "seed", 1, "seed; the same seed gives the same patients")
	f.StringVar(&opts.GPName, "gp-name", "", "name of the patients' general practice")
	f.StringVar(&out, "out", "", "write transaction Bundles (JSON) into this directory")
	f.StringVar(&storePath, "store", "", "load into this node FHIR store (SQLite file, e.g. DATA/fhir-stu3.db)")
	f.StringVar(&tenant, "tenant", "", "participant URA to load the data for (with --store)")
	return cmd
}
