package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/pki"
)

// newAddressbookCommand returns `schakel addressbook`: the IHE mCSD
// directory (the role of a ZORG-AB or the LRZa) and the node's replica of it.
func newAddressbookCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "addressbook",
		Short: "mCSD directory of organisations and endpoints, and a node's replica of it",
	}
	cmd.AddCommand(newAddressbookServeCommand(), newAddressbookLoadCommand(), newAddressbookSyncCommand())
	return cmd
}

// envAddressbookPostgres holds the PostgreSQL DSN of the directory (`serve`
// and `load`): a DSN can carry a password, which belongs in the
// environment, not on the command line.
const envAddressbookPostgres = "SCHAKEL_ADDRESSBOOK_POSTGRES_DSN"

// addressbookDB is where the directory keeps its entries: an SQLite file in
// --data-dir, or PostgreSQL with $SCHAKEL_ADDRESSBOOK_POSTGRES_DSN (in
// --postgres-schema), which several directory processes can share.
type addressbookDB struct {
	dataDir, schema string
}

func (d *addressbookDB) flags(f *pflag.FlagSet) {
	f.StringVar(&d.dataDir, "data-dir", "", "directory of the addressbook database")
	f.StringVar(&d.schema, "postgres-schema", "addressbook", "PostgreSQL schema of the directory, when $"+envAddressbookPostgres+" is set")
}

// open opens (creating) the directory's store, for `serve` and `load`.
func (d *addressbookDB) open(ctx context.Context) (store.Store, error) {
	if dsn := os.Getenv(envAddressbookPostgres); dsn != "" {
		st, err := postgres.Open(ctx, dsn, fhir.R4, postgres.WithSchema(d.schema))
		if err != nil {
			// The store's errors never carry the DSN's password.
			return nil, fmt.Errorf("$%s: addressbook store: %w", envAddressbookPostgres, err)
		}
		return st, nil
	}
	if d.dataDir == "" {
		return nil, errors.New("--data-dir is required (or set $" + envAddressbookPostgres + ")")
	}
	if err := prepareDataDir(d.dataDir); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(d.dataDir, network.AddressbookStoreFile), fhir.R4)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: addressbook store: %w", err)
	}
	return st, nil
}

func newAddressbookServeCommand() *cobra.Command {
	var db addressbookDB
	var addr, publicURL string
	var tlsf mtlsFlags
	var admissionAPI bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the directory on an mTLS listener",
		Long: "Runs the directory: an R4 FHIR API with search (ITI-90) and _history (ITI-91) for\n" +
			"every GtK with an UZI server certificate from one of the --ca CAs, and\n" +
			"self-maintenance (ITI-130): an organisation creates and updates its own\n" +
			"Organization and Endpoints, identified by the URA in its certificate.\n" +
			"The directory lives in --data-dir, or in PostgreSQL when $" + envAddressbookPostgres + "\n" +
			"is set; the operator loads entries with `schakel addressbook load`. See\n" +
			"docs/addressbook.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if !tlsf.set() {
				return errors.New("--cert, --key and --ca are required")
			}
			log, err := addressbookLogger(cmd)
			if err != nil {
				return err
			}
			cert, roots, err := tlsf.load()
			if err != nil {
				return err
			}
			st, err := db.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			ln, err := listenAddr(addr)
			if err != nil {
				return err
			}
			if publicURL == "" {
				publicURL = "https://" + ln.Addr().String() + "/fhir"
			}
			srv := addressbook.NewServer(st, publicURL, log)
			handler := srv.Handler()
			if admissionAPI {
				if db.dataDir == "" {
					return errors.New("--admission keeps the register in --data-dir: give it")
				}
				ast, err := sqlite.Open(cmd.Context(), filepath.Join(db.dataDir, network.AdmissionStoreFile), fhir.R4)
				if err != nil {
					return fmt.Errorf("--admission: admission register store: %w", err)
				}
				defer ast.Close()
				base := strings.TrimSuffix(strings.TrimSuffix(publicURL, "/"), "/fhir") + "/admission/fhir"
				mux := http.NewServeMux()
				mux.Handle("/", handler)
				mux.Handle("/admission/fhir/{path...}", network.AdmissionAPI(ast, base, log.With("component", "admission")))
				handler = mux
			}
			hs := &http.Server{
				Handler:           handler,
				TLSConfig:         pki.ServerTLSConfig(cert, roots),
				ReadHeaderTimeout: 10 * time.Second,
				ReadTimeout:       30 * time.Second,
				WriteTimeout:      2 * time.Minute, // an initial load reads large history pages
				IdleTimeout:       2 * time.Minute,
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}
			fmt.Fprintf(cmd.OutOrStdout(), "addressbook %s\n", publicURL)
			return serveUntilDone(cmd.Context(), hs, ln)
		},
	}
	f := cmd.Flags()
	db.flags(f)
	f.StringVar(&addr, "addr", "127.0.0.1:8446", "host:port of the mTLS listener")
	f.StringVar(&publicURL, "url", "", "FHIR base peers use (default https://<addr>/fhir)")
	tlsf.flags(f, "the directory", "whose GtKs may read and maintain entries")
	f.BoolVar(&admissionAPI, "admission", false, "also serve the admission register ("+network.AdmissionStoreFile+" in --data-dir) read-only at /admission/fhir")
	return cmd
}

func newAddressbookLoadCommand() *cobra.Command {
	var db addressbookDB
	cmd := &cobra.Command{
		Use:   "load FILE.json",
		Short: "Load directory entries (operator), all or none",
		Long: "Loads entries into the directory in --data-dir (or PostgreSQL, as `serve`), replacing earlier versions of\n" +
			"the same ids. FILE.json is either a JSON array of entries\n" +
			"  [{\"id\":\"org-1\",\"ura\":\"90000001\",\"name\":\"…\",\"endpoints\":[{\"id\":\"ep-1\",\n" +
			"    \"payloadType\":\"Twiin-TA-notification\",\"address\":\"https://…/Task\",\"fhirVersion\":\"3.0\"}]}]\n" +
			"or a FHIR Bundle of mCSD resources (Organization, Endpoint, HealthcareService,\n" +
			"Location, PractitionerRole, Practitioner, OrganizationAffiliation), each with its id.\n" +
			"The directory may be running: the change reaches replicas with their next sync.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			res, err := addressbook.DecodeLoadFile(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			st, err := db.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			if err := addressbook.NewServer(st, "", nil).LoadResources(cmd.Context(), res...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "loaded %d resources\n", len(res))
			return nil
		},
	}
	db.flags(cmd.Flags())
	return cmd
}

func newAddressbookSyncCommand() *cobra.Command {
	var base, replica string
	var tlsf mtlsFlags
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Bring a replica of a directory up to date once, and print what changed",
		Long: "Runs one mCSD sync (ITI-91) of the directory at --url into the replica database\n" +
			"--replica (created when absent): the whole history the first time, then\n" +
			"_history?_since increments. A failed sync changes nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if base == "" || replica == "" || !tlsf.set() {
				return errors.New("--url, --replica, --cert, --key and --ca are required")
			}
			log, err := addressbookLogger(cmd)
			if err != nil {
				return err
			}
			cert, roots, err := tlsf.load()
			if err != nil {
				return err
			}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, roots), ForceAttemptHTTP2: true},
				Timeout: 2 * time.Minute}
			r, err := addressbook.OpenReplica(cmd.Context(), addressbook.ReplicaConfig{Path: replica,
				Source: &addressbook.Client{Base: base, HTTP: client}, Logger: log})
			if err != nil {
				return err
			}
			defer r.Close()
			start := time.Now()
			st, err := r.Sync(cmd.Context())
			if err != nil {
				return err
			}
			counts, err := r.Counts(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "synced in %s: initial=%v pages=%d versions=%d upserted=%d deleted=%d ignored=%d retries=%d\n",
				time.Since(start).Round(time.Millisecond), st.Initial, st.Pages, st.Versions, st.Upserted, st.Deleted, st.Ignored, st.Retries)
			for _, t := range slices.Sorted(maps.Keys(counts)) {
				fmt.Fprintf(out, "  %-24s %d\n", t, counts[t])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&base, "url", "", "FHIR base of the directory")
	f.StringVar(&replica, "replica", "", "path of the replica database")
	tlsf.flags(f, "the node", "the directory's certificate chains to")
	return cmd
}

// addressbookLogger honours the root command's --log-level.
func addressbookLogger(cmd *cobra.Command) (*slog.Logger, error) {
	logLevel := "info"
	if fl := cmd.Flags().Lookup("log-level"); fl != nil {
		logLevel = fl.Value.String()
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}
