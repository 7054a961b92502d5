package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/node"
)

// postgresEnv holds the PostgreSQL DSN when --postgres is not given: a DSN
// may carry a password, which does not belong on a command line.
const postgresEnv = "SCHAKEL_IMPORT_POSTGRES"

func newImportCommand() *cobra.Command {
	var (
		storePath, dsn, schema, tenant, version string
		strict, progress                        bool
	)
	cmd := &cobra.Command{
		Use:   "import FILE|DIR...",
		Short: "Load FHIR resources and Bundles (JSON, NDJSON or XML) into a participant's store",
		Long: "Imports single resources and transaction, batch, collection and searchset\n" +
			"Bundles, in FHIR JSON, NDJSON or FHIR XML (detected by content), into the FHIR\n" +
			"store of one participant (--tenant URA). Directories are read recursively\n" +
			"(*.json, *.xml, *.ndjson). Re-running is idempotent: resources are written under\n" +
			"their own id or one derived from their Bundle fullUrl, and unchanged ones get no\n" +
			"new version. A failing Bundle writes nothing; a failing file does not stop the\n" +
			"others unless --strict. The PostgreSQL DSN may also come from $" + postgresEnv + ".",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			v, err := fhir.ParseVersion(version)
			if err != nil {
				return fmt.Errorf("--fhir-version: %w", err)
			}
			if err := nl.ValidateURA(tenant); err != nil {
				return fmt.Errorf("--tenant: %w", err)
			}
			if dsn == "" {
				dsn = os.Getenv(postgresEnv)
			}
			st, err := openImportStore(cmd, storePath, dsn, node.StoreSchema(v, schema), v)
			if err != nil {
				return err
			}
			defer st.Close()
			im, err := importer.New(importer.Config{Store: st, Version: v, Tenant: tenant})
			if err != nil {
				return err
			}
			files, err := importer.Files(args...)
			if err != nil {
				return err
			}
			var written atomic.Int64
			opts := importer.RunOptions{Strict: strict, OnWrite: func(n int) { written.Add(int64(n)) }}
			var bar *importBar
			if progress || isTerminal(cmd.ErrOrStderr()) {
				bar = newImportBar(cmd.ErrOrStderr(), files, &written)
				opts.OnFile = func(path string, _ error) { bar.file(path) }
			}
			start := time.Now()
			sum, runErr := im.ImportFiles(cmd.Context(), files, opts)
			took := time.Since(start)
			if bar != nil {
				bar.finish()
			}
			n := sum.Total().Sum()
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d resources in %.1f s (%.0f resources/s)\n", n, took.Seconds(), float64(n)/max(took.Seconds(), 1e-9))
			printSummary(cmd.OutOrStdout(), sum)
			if runErr != nil {
				return runErr
			}
			if sum.Failed > 0 {
				return fmt.Errorf("%d of %d files had problems", sum.Failed, sum.Files)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&storePath, "store", "", "SQLite FHIR store file of the node (DATA/fhir-stu3.db, or DATA/fhir-r4.db with --fhir-version r4)")
	f.StringVar(&dsn, "postgres", "", "PostgreSQL DSN of the node's FHIR store (instead of --store; or $"+postgresEnv+")")
	f.StringVar(&schema, "schema", "", "the node's store.schema with --postgres; R4 data goes to the node's R4 schema beside it (<schema>_r4, or fhir_r4)")
	f.StringVar(&tenant, "tenant", "", "participant URA to import the data for (required)")
	f.StringVar(&version, "fhir-version", "stu3", "FHIR version of the data and the store: stu3 or r4")
	f.BoolVar(&strict, "strict", false, "stop at the first file with a problem")
	f.BoolVar(&progress, "progress", false, "show a progress bar on stderr even when it is no terminal")
	return cmd
}

// isTerminal tells whether w is a terminal: the progress bar is drawn
// only there unless --progress asks for it.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// importBar is the progress of an import: over the bytes of the files read,
// which gives the ETA, described with the resources committed and their
// rate.
type importBar struct {
	bar     *progressbar.ProgressBar
	sizes   map[string]int64
	written *atomic.Int64
	start   time.Time
}

func newImportBar(w io.Writer, files []string, written *atomic.Int64) *importBar {
	b := &importBar{sizes: make(map[string]int64, len(files)), written: written, start: time.Now()}
	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			b.sizes[f] = fi.Size()
			total += fi.Size()
		}
	}
	b.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true), progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetDescription("importing"), progressbar.OptionClearOnFinish())
	return b
}

func (b *importBar) file(path string) {
	n := b.written.Load()
	b.bar.Describe(fmt.Sprintf("%d resources, %.0f/s", n, float64(n)/max(time.Since(b.start).Seconds(), 1e-9)))
	_ = b.bar.Add64(b.sizes[path])
}

func (b *importBar) finish() { _ = b.bar.Finish() }

func openImportStore(cmd *cobra.Command, storePath, dsn, schema string, v fhir.Version) (store.Store, error) {
	switch {
	case storePath != "" && dsn != "":
		return nil, errors.New("give one of --store FILE or --postgres DSN, not both")
	case storePath != "":
		return sqlite.Open(cmd.Context(), storePath, v)
	case dsn != "" && schema != "":
		return postgres.Open(cmd.Context(), dsn, v, postgres.WithSchema(schema))
	case dsn != "":
		return postgres.Open(cmd.Context(), dsn, v)
	}
	return nil, errors.New("give --store FILE or --postgres DSN")
}

func printSummary(w io.Writer, sum *importer.Summary) {
	total := sum.Total()
	fmt.Fprintf(w, "%d files, %d resources: %d created, %d updated, %d unchanged, %d deleted\n",
		sum.Files, total.Sum(), total.Created, total.Updated, total.Unchanged, total.Deleted)
	for _, t := range sum.TypeNames() {
		c := sum.Types[t]
		fmt.Fprintf(w, "  %-28s %6d  (created %d, updated %d, unchanged %d, deleted %d)\n",
			t, c.Sum(), c.Created, c.Updated, c.Unchanged, c.Deleted)
	}
	if len(sum.Warnings) > 0 {
		fmt.Fprintf(w, "%d repairs (the data was imported):\n", len(sum.Warnings))
		for _, p := range sum.Warnings {
			fmt.Fprintf(w, "  %s\n", p.Error())
		}
	}
	if len(sum.Problems) > 0 {
		fmt.Fprintf(w, "%d problems in %d files:\n", len(sum.Problems), sum.Failed)
		for _, p := range sum.Problems {
			fmt.Fprintf(w, "  %s\n", p.Error())
		}
	}
}
