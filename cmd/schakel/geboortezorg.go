package main

import (
	"context"

	"github.com/schakel-nl/schakel/network"
)

// runTransfer runs the Geboortezorg network (a midwife practice's node
// beside the GP practice's and the hospital's) and sends the perinatal
// transfer over Push to both.
func runTransfer(ctx context.Context, opts network.Options, once, processes bool) error {
	opts.Geboortezorg = true
	return runScenario(ctx, opts, once, processes, "exchange", func(ctx context.Context, nw *network.Network) error {
		if opts.Mixed {
			nw.PrintMixedAgreements()
		}
		run, err := nw.ExchangeTransfer(ctx)
		if run != nil && err == nil {
			nw.PrintTransfer(run)
		}
		return err
	})
}
