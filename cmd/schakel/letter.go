package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/schakel-nl/schakel/network"
)

// runLetter runs the network and sends one Correspondentie letter over Push
// from the hospital to the GP practice: in one process, at the agreement's
// plateaus (--plateau N: every function at N; mixed: the three nodes'
// agreements per pair), or with every component in a process of its own.
func runLetter(ctx context.Context, opts network.Options, once, processes bool) error {
	if processes {
		if opts.Plateau != 0 || opts.Mixed {
			return errors.New("--plateau runs in one process only: --processes starts no identity issuer or central log yet")
		}
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--processes needs this program's path: %w", err)
		}
		return runLetterProcesses(ctx, opts, once, exe)
	}
	return runScenario(ctx, opts, once, "exchange", func(ctx context.Context, nw *network.Network) error {
		if opts.Mixed {
			nw.PrintMixedAgreements()
		}
		s, err := nw.ExchangeLetter(ctx)
		if s != nil {
			nw.PrintLetter(s)
		}
		return err
	})
}

// runLetterProcesses is runLetter with every component in a process of its
// own; the children are stopped on every way out.
func runLetterProcesses(ctx context.Context, opts network.Options, once bool, exe string) error {
	nw, err := network.UpProcesses(ctx, opts, exe)
	if err != nil {
		return err
	}
	defer nw.StopProcesses()
	nw.PrintProcesses()
	s, err := nw.ExchangeLetter(ctx)
	if s != nil {
		nw.PrintLetter(s)
	}
	if err != nil {
		return fmt.Errorf("exchange failed: %w", err)
	}
	if once {
		return nil
	}
	fmt.Fprintln(opts.Out, "\nNetwork running; press Ctrl-C to stop.")
	<-ctx.Done()
	nw.StopProcesses()
	fmt.Fprintln(opts.Out, "Network stopped.")
	return nil
}
