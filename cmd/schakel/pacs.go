package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/nl"
)

// runImaging runs the network with the hospital's PACS stand-in and one
// Beeldbeschikbaarheid exchange: the GP practice looks up the patient's
// images at the hospital and retrieves a study through the hospital's node.
func runImaging(ctx context.Context, opts network.Options, once, processes bool) error {
	opts.Imaging = true
	return runScenario(ctx, opts, once, processes, "imaging exchange", func(ctx context.Context, nw *network.Network) error {
		nw.PrintPACS()
		if opts.Mixed {
			// The lookup runs under the GP practice's and the hospital's
			// copies of their agreement.
			nw.PrintMixedAgreements()
		}
		run, err := nw.RunImaging(ctx)
		if run != nil {
			nw.PrintImaging(run)
		}
		return err
	})
}

// newPACSCommand is `schakel pacs serve`: the PACS stand-in on its own, for
// pointing a node's participants[].pacs.url at while trying the node.
func newPACSCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "pacs", Short: "A PACS stand-in serving generated DICOM studies over DICOMweb"}
	var addr, prefix, certFile, keyFile string
	var patients int
	var bsns []string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve QIDO-RS and WADO-RS over generated studies of the demo patients",
		Long: "Generates small valid DICOM studies (two per patient: a chest X-ray and an abdominal\n" +
			"ultrasound; PatientID the BSN, IssuerOfPatientID its OID) for the demo patients of\n" +
			"`schakel network up` and for every --bsn, and serves them over DICOMweb (DICOM PS3.18):\n" +
			"QIDO-RS {prefix}/studies?PatientID=…, WADO-RS {prefix}/studies/{uid}, series, instances,\n" +
			"metadata and bulk data. Point a node's participants[].pacs.url at {base}{prefix}.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			log, err := g.logger()
			if err != nil {
				return err
			}
			var ps []beeld.Patient
			if patients > 0 {
				demos, err := demo.Generate(demo.Options{Count: patients, Seed: 1, GPName: network.GP.Name})
				if err != nil {
					return err
				}
				for _, p := range demos {
					ps = append(ps, network.ImagingPatient(p))
				}
			}
			for _, b := range bsns {
				if err := nl.ValidateBSN(b); err != nil {
					return fmt.Errorf("--bsn %s: %w", b, err)
				}
				ps = append(ps, beeld.Patient{BSN: b, Family: "Patiënt", Given: b})
			}
			if len(ps) == 0 {
				return errors.New("no patients: give --patients or --bsn")
			}
			archive := beeld.NewArchive()
			for _, p := range ps {
				studies, err := beeld.DemoStudies(p)
				if err != nil {
					return err
				}
				archive.Add(studies...)
			}
			if (certFile == "") != (keyFile == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--addr: %w", err)
			}
			mux := http.NewServeMux()
			h := (&beeld.PACS{Archive: archive, Prefix: prefix}).Handler()
			if prefix != "" {
				mux.Handle(prefix+"/", http.StripPrefix(prefix, h))
			} else {
				mux.Handle("/", h)
			}
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			scheme := "http"
			if certFile != "" {
				scheme = "https"
			}
			for _, st := range archive.Studies() {
				fmt.Fprintf(cmd.OutOrStdout(), "study %s  patient %s  %s  %d instances\n", st.UID, st.Patient.BSN, st.Description, st.InstanceCount())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "DICOMweb base: %s://%s%s\n", scheme, ln.Addr(), prefix)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			errc := make(chan error, 1)
			go func() {
				if certFile != "" {
					errc <- srv.ServeTLS(ln, certFile, keyFile)
				} else {
					errc <- srv.Serve(ln)
				}
			}()
			select {
			case <-ctx.Done():
			case err := <-errc:
				return err
			}
			log.Info("PACS stand-in stopping")
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(shutdown)
		},
	}
	serve.Flags().StringVar(&addr, "addr", "127.0.0.1:8042", "address to listen on")
	serve.Flags().StringVar(&prefix, "prefix", "/dicomweb", "path the DICOMweb service is mounted under")
	serve.Flags().IntVar(&patients, "patients", 1, "demo patients (as `schakel network up --patients`) to generate studies for")
	serve.Flags().StringSliceVar(&bsns, "bsn", nil, "further patients' BSNs to generate studies for")
	serve.Flags().StringVar(&certFile, "tls-cert", "", "serve https with this certificate (PEM)")
	serve.Flags().StringVar(&keyFile, "tls-key", "", "the certificate's key (PEM)")
	cmd.AddCommand(serve)
	return cmd
}
