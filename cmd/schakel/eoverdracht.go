package main

import (
	"context"

	"github.com/schakel-nl/schakel/network"
)

// runNursingTransfer runs the transfer network (GP practice, hospital, nursing
// home) and one transfer from the hospital to the nursing home, printing
// what arrived.
func runNursingTransfer(ctx context.Context, opts network.Options, once, processes bool) error {
	return runScenario(ctx, opts, once, processes, "transfer", func(ctx context.Context, nw *network.Network) error {
		s, err := nw.ExchangeNursingTransfer(ctx)
		if s != nil {
			nw.PrintNursingTransfer(s)
		}
		return err
	})
}
