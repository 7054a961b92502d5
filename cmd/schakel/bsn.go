package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/identification"
	"github.com/schakel-nl/schakel/network"
)

// newBSNCommand returns `schakel bsn`: the development stand-in of the
// BSN verification service (the SBV-Z role).
func newBSNCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bsn",
		Short: "BSN verification: a development stand-in of the SBV-Z OpvragenVerifieren service",
	}
	cmd.AddCommand(newBSNServeCommand(g))
	return cmd
}

func newBSNServeCommand(g *globalFlags) *cobra.Command {
	var dataDir, register, addr string
	var tlsf mtlsFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the BSN verification stand-in on an mTLS listener",
		Long: "Answers the SBV-Z web service OpvragenVerifieren (SOAP 1.1, namespace\n" +
			identification.Namespace + ") at " + identification.Path + "\n" +
			"from a register: a JSON array of persons (bsn, geslachtsnaam, geboortedatum JJJJMMDD,\n" +
			"voornamen, voorvoegselGeslachtsnaam, geslachtsaanduiding), --register or\n" +
			"<--data-dir>/" + network.RegisterFile + ". A BSN the register does not hold is answered as\n" +
			"the service answers one the BRP does not know. For development only: the real\n" +
			"service is CIBG's. See docs/identification.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if register == "" && dataDir != "" {
				register = filepath.Join(dataDir, network.RegisterFile)
			}
			if register == "" || !tlsf.set() {
				return errors.New("--register (or --data-dir), --cert, --key and --ca are required")
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			cert, roots, err := tlsf.load()
			if err != nil {
				return err
			}
			srv := identification.NewServer(log)
			if err := srv.LoadRegister(register); err != nil {
				return fmt.Errorf("--register: %w", err)
			}
			ln, err := listenAddr(addr)
			if err != nil {
				return err
			}
			hs := mtlsServer(srv.Handler(), cert, roots, log, 30*time.Second)
			fmt.Fprintf(cmd.OutOrStdout(), "bsn verification https://%s%s (register %s)\n", ln.Addr(), identification.Path, register)
			return serveUntilDone(cmd.Context(), hs, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "directory holding "+network.RegisterFile+" (the register)")
	f.StringVar(&register, "register", "", "JSON file of the persons the stand-in knows (default <--data-dir>/"+network.RegisterFile+")")
	f.StringVar(&addr, "addr", "127.0.0.1:8447", "host:port of the mTLS listener")
	tlsf.flags(f, "the service", "whose GtKs may ask")
	return cmd
}
