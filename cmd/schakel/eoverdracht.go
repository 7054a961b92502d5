package main

import (
	"context"

	"github.com/schakel-nl/schakel/network"
)

// runNursingTransfer runs the transfer network (GP practice, hospital, nursing
// home) and two transfers from the hospital to the nursing home: one the
// nursing home's system accepts, printing what arrived, and one it
// rejects, printing the reason the hospital got. At --plateau N every
// agreement is at N, at --plateau mixed the pairs' own (network/mixed.go).
func runNursingTransfer(ctx context.Context, opts network.Options, once, processes bool) error {
	return runScenario(ctx, opts, once, processes, "transfer", func(ctx context.Context, nw *network.Network) error {
		if opts.Mixed {
			// The transfer runs under the hospital's and the nursing
			// home's copies of their agreement.
			nw.PrintMixedAgreements()
		}
		s, err := nw.ExchangeNursingTransfer(ctx)
		if s != nil {
			nw.PrintNursingTransfer(s)
		}
		if err != nil {
			return err
		}
		r, err := nw.RejectNursingTransfer(ctx, "Geen plaats beschikbaar op de afdeling")
		if r != nil {
			nw.PrintNursingTransferRejection(r)
		}
		return err
	})
}
