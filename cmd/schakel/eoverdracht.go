package main

import (
	"context"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/network"
)

// isTransfer reports whether care names a nursing transfer application
// (careapp.Transfer, e.g. eoverdracht): its demo is the hospital's
// transfer of a patient to the nursing home.
func isTransfer(apps *careapp.Registry, care string) bool {
	a, ok := apps.Get(care)
	if !ok {
		return false
	}
	_, ok = a.(careapp.Transfer)
	return ok
}

// runTransfer runs the transfer network (GP practice, hospital, nursing
// home) and one transfer from the hospital to the nursing home, printing
// what arrived.
func runTransfer(ctx context.Context, opts network.Options, once bool) error {
	return runScenario(ctx, opts, once, "transfer", func(ctx context.Context, nw *network.Network) error {
		s, err := nw.ExchangeTransfer(ctx)
		if s != nil {
			nw.PrintTransfer(s)
		}
		return err
	})
}
