package main

import (
	"context"

	"github.com/schakel-nl/schakel/network"
)

// runLetter runs the network and sends one Correspondentie letter over Push
// from the hospital to the GP practice: in one process, at the agreement's
// plateaus (--plateau N: every function at N; mixed: the three nodes'
// agreements per pair), or with every component in a process of its own.
func runLetter(ctx context.Context, opts network.Options, once, processes bool) error {
	return runScenario(ctx, opts, once, processes, "exchange", func(ctx context.Context, nw *network.Network) error {
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
