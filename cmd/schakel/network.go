package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation/kits"
)

func newNetworkCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "A complete local Twiin network (the test environment)",
	}
	var opts network.Options
	var once, processes, validate bool
	var plateauFlag, care, pattern string
	up := &cobra.Command{
		Use:   "up",
		Short: "Start an addressbook and two nodes on 127.0.0.1 and run a BgZ Notified Pull",
		Long: "Starts, in one process, an addressbook, a consent service playing Mitz, a regional\n" +
			"consent portal's service, a referral index and two GtKs — a GP practice (sender) and a\n" +
			"hospital (receiver) — with a development PKI and demo data, then runs a complete BgZ\n" +
			"Notified Pull between them over mTLS and prints every step, including the nodes'\n" +
			"registrations at the index and subscriptions at the consent service. Keeps running\n" +
			"until Ctrl-C, or with --once exits after the exchange: 0 when it succeeded.\n" +
			"With --processes every component runs as its own process of this binary (its serve\n" +
			"command), so that one can be killed and restarted: the PIDs, ports, logs and restart\n" +
			"command lines are printed. It combines with --care, --pattern and --plateau.\n" +
			"With --plateau N (1-4) every generic function of the GP practice's and the hospital's\n" +
			"agreement is at plateau N: the Notified Pull and a Direct Pull run as that plateau\n" +
			"demands, and per function the run prints what was sent and what was checked.\n" +
			"With --plateau mixed a third node, a nursing home's, joins, and every pair agrees\n" +
			"its own plateau per function: the GP practice refers to the hospital and to the\n" +
			"nursing home, then the nursing home consults the hospital and is refused for\n" +
			"delivering user authentication at plateau 2 where the hospital asks 3. The run\n" +
			"prints the agreements per partner and each exchange's outcome; it exits 0 only when\n" +
			"the pulls complete and the refusal comes with that reason.\n" +
			"With --care geboortezorg a third node, a midwife practice's, sends the perinatal\n" +
			"transfer of a mother and her child to the GP practice and the hospital over Push; the\n" +
			"run prints what each receiving system read, the receipts and the acknowledgements; with\n" +
			"--plateau N every agreement of the three nodes is at plateau N.\n" +
			"Every care application's demo takes --plateau the same way: --care eoverdracht and\n" +
			"geboortezorg at 1-4 and mixed, --care beeld and --pattern indexed-pull at 2 and mixed; the\n" +
			"other combinations are refused with the reason (docs/plateaus.md).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			log, err := g.logger()
			if err != nil {
				return err
			}
			if g.logLevel == "info" {
				// The step lines are the story; node logs only warnings unless asked.
				log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			}
			// Components without a logger of their own log through the default.
			slog.SetDefault(log)
			opts.Logger = log
			opts.Out = cmd.OutOrStdout()
			if err := plateauOption(plateauFlag, &opts); err != nil {
				return err
			}
			if opts.Applications == nil {
				opts.Applications = node.DefaultApplications()
			}
			if pattern, err = careOption(opts.Applications, care, pattern); err != nil {
				return err
			}
			opts.Care = care
			if err := replicasOption(&opts, &processes); err != nil {
				return err
			}
			if err := plateauCare(opts.Applications, kits.Shipped(), care, opts); err != nil {
				return err
			}
			if ran, err := runCareDemo(cmd.Context(), opts, care, pattern, once, processes); ran {
				return err
			}
			if pattern == "push" {
				return runLetter(cmd.Context(), opts, once, processes)
			}
			if pattern == "indexed-pull" {
				return runIndexedPull(cmd.Context(), opts, once, processes)
			}
			return runNetwork(cmd.Context(), opts, once, validate, processes)
		},
	}
	up.Flags().StringVar(&opts.DataDir, "data-dir", "schakel-data", "where keys, certificates and stores live (reused across runs)")
	up.Flags().IntVar(&opts.Patients, "patients", 1, "demo patients the GP practice holds")
	up.Flags().StringVar(&opts.Host, "host", "127.0.0.1", "address to bind the listeners to")
	up.Flags().BoolVar(&once, "once", false, "run the exchange and exit (0 only if it succeeded)")
	up.Flags().BoolVar(&opts.RecordInEHR, "record-in-ehr", false, "keep the GP practice's record in its own EHR and run its node in proxy mode")
	up.Flags().BoolVar(&validate, "validate", true, "validate each demo node in its roles for every care application with a validation kit and record the proofs in the admission register (about 30 s)")
	up.Flags().BoolVar(&processes, "processes", false, "run every component (addressbook and admission register, consent services, referral index, BSN verification, identity issuer, central log, PACS stand-in, each node, monitor) as its own OS process")
	replicaFlags(up, &opts)
	up.Flags().StringVar(&plateauFlag, "plateau", "", "agree every function between the demo's nodes at plateau 1, 2, 3 or 4; or mixed: three nodes, plateaus per pair and function")
	up.Flags().StringVar(&care, "care", "bgz", "care application: "+careUsage(node.DefaultApplications()))
	up.Flags().StringVar(&pattern, "pattern", "", "exchange pattern; default the care application's own (bgz: notified-pull, correspondentie and geboortezorg: push); bgz also indexed-pull: the GP practice refers to the hospital and the nursing home, then a clinic's node pulls from all three holders at once")
	cmd.AddCommand(up)
	return cmd
}

// plateauOption reads --plateau into opts.
func plateauOption(v string, opts *network.Options) error {
	if v == "" {
		return nil
	}
	if v == "mixed" {
		opts.Mixed = true
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || !plateau.ValidPlateau(n) {
		return fmt.Errorf("--plateau %q: give a plateau of the growth model, 1 to 4, or mixed", v)
	}
	opts.Plateau = n
	return nil
}

// runNetwork runs the network and its BgZ exchange: the Notified Pull,
// at --plateau N also the Direct Pull and the per-function report, at
// --plateau mixed the three nodes' exchanges.
func runNetwork(ctx context.Context, opts network.Options, once, validate, processes bool) error {
	return runScenario(ctx, opts, once, processes, "exchange", func(ctx context.Context, nw *network.Network) error {
		var summary *network.Summary
		var err error
		switch {
		case opts.Mixed:
			nw.PrintMixedAgreements()
			var run *network.MixedRun
			run, err = nw.RunMixed(ctx)
			if run != nil {
				nw.PrintMixedRun(run)
			}
		case opts.Plateau != 0:
			var run *network.PlateauRun
			run, err = nw.RunAtPlateau(ctx)
			if run != nil {
				if run.Summary != nil {
					nw.PrintSummary(run.Summary)
				}
				nw.PrintPlateauRun(run)
			}
		default:
			if summary, err = nw.Exchange(ctx); summary != nil {
				nw.PrintSummary(summary)
			}
		}
		if err != nil {
			return err
		}
		if opts.Replicas > 0 {
			if err := runAcrossReplicas(ctx, nw); err != nil {
				return err
			}
		}
		if validate && !once {
			// The kit in-process against each demo node in its roles, for
			// every care application with a kit; the proofs go into the
			// admission register (docs/validation.md).
			if _, err := nw.Validate(ctx, network.DemoValidations...); err != nil {
				fmt.Fprintf(opts.Out, "validation: %v\n", err)
			}
			fmt.Fprintf(opts.Out, "Admission register: %s (proofs also in %s)\n", nw.AdmissionURL(), filepath.Join(opts.DataDir, "validator", "proofs"))
		}
		return nil
	})
}

// demoPatterns are the exchange patterns `schakel network up` has an
// exchange for (Direct Pull runs within --plateau and --plateau mixed).
var demoPatterns = []careapp.Pattern{careapp.NotifiedPull, careapp.IndexedPull, careapp.Push}

// plateauCare refuses --plateau for a care application that runs a Direct
// Pull but has no validation kit, at plateau 3 or 4 (or mixed): there a
// holder grants a consult only to a node with a valid proof of validation
// for the application, which only its kit can give. An application without
// a Direct Pull (a Push) is not consulted.
func plateauCare(apps *careapp.Registry, shipped []kits.Kit, care string, opts network.Options) error {
	if opts.Plateau < 3 && !opts.Mixed {
		return nil
	}
	if app, ok := apps.Get(care); ok && !slices.Contains(app.Patterns(), careapp.DirectPull) {
		return nil
	}
	for _, k := range shipped {
		if k.Application == care {
			return nil
		}
	}
	return fmt.Errorf("--plateau with --care %s: the growth-model run consults under a proof of validation, and %s has no validation kit yet; run it without --plateau", care, care)
}

// careOption checks --care and --pattern against the registered care
// applications and returns the pattern to run: the application's own
// (its first) when none is given.
func careOption(apps *careapp.Registry, care, pattern string) (string, error) {
	app, ok := apps.Get(care)
	if !ok {
		return "", fmt.Errorf("--care %q: the network runs %s", care, strings.Join(apps.Names(), ", "))
	}
	var own []string
	for _, p := range app.Patterns() {
		if slices.Contains(demoPatterns, p) {
			own = append(own, string(p))
		}
	}
	if len(own) == 0 {
		return "", fmt.Errorf("--care %s: the network has no exchange for its patterns yet", care)
	}
	if pattern == "" {
		pattern = own[0]
	}
	if !slices.Contains(own, pattern) {
		return "", fmt.Errorf("--pattern %q with --care %s: supported are %s", pattern, care, strings.Join(own, ", "))
	}
	return pattern, nil
}

// runIndexedPull runs the Indexed Pull network and one Indexed Pull across
// its three holders.
func runIndexedPull(ctx context.Context, opts network.Options, once, processes bool) error {
	opts.IndexedPull = true
	return runScenario(ctx, opts, once, processes, "indexed pull", func(ctx context.Context, nw *network.Network) error {
		if opts.Mixed {
			nw.PrintMixedAgreements()
		}
		run, err := nw.RunIndexedPull(ctx)
		if run != nil {
			nw.PrintIndexedPull(run)
		}
		return err
	})
}

// runScenario starts the network — in this process, or with processes
// every component in a process of its own — runs one scenario on it and,
// without once, keeps the network running until ctx ends. The scenario
// sees the same Network either way.
func runScenario(ctx context.Context, opts network.Options, once, processes bool, what string, scenario func(context.Context, *network.Network) error) error {
	nw, stop, err := startNetwork(ctx, opts, processes)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := scenario(runCtx, nw); err != nil {
		cancel()
		_ = stop()
		return fmt.Errorf("%s failed: %w", what, err)
	}
	if !once {
		fmt.Fprintln(opts.Out, "\nNetwork running; press Ctrl-C to stop.")
		<-ctx.Done()
	}
	cancel()
	err = stop()
	if !once {
		fmt.Fprintln(opts.Out, "Network stopped.")
	}
	return err
}

// startNetwork starts the network and prints where its parts listen: in
// this process (network.Up, Start), or with processes every component as
// its own process of this program (network.UpProcesses). stop ends it and
// returns what made it fail.
func startNetwork(ctx context.Context, opts network.Options, processes bool) (_ *network.Network, stop func() error, _ error) {
	if processes {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, fmt.Errorf("--processes needs this program's path: %w", err)
		}
		nw, err := network.UpProcesses(ctx, opts, exe)
		if err != nil {
			return nil, nil, err
		}
		nw.PrintProcesses()
		return nw, func() error { nw.StopProcesses(); return nil }, nil
	}
	nw, err := network.Up(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	nw.Start(runCtx)
	nw.PrintListeners()
	return nw, func() error { cancel(); return nw.Wait() }, nil
}

// careUsage names the registered care applications and the pattern the
// demo runs each on by default.
func careUsage(apps *careapp.Registry) string {
	var parts []string
	for _, a := range apps.All() {
		if p, err := careOption(apps, a.Name(), ""); err == nil {
			parts = append(parts, fmt.Sprintf("%s (%s)", a.Name(), p))
		}
	}
	return strings.Join(parts, ", ")
}
