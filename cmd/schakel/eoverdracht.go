package main

import (
	"context"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/network"
)

// isNursingTransfer reports whether care names a nursing transfer application
// (careapp.Transfer, e.g. eoverdracht): its demo is the hospital's
// transfer of a patient to the nursing home.
func isNursingTransfer(apps *careapp.Registry, care string) bool {
	a, ok := apps.Get(care)
	if !ok {
		return false
	}
	_, ok = a.(careapp.Transfer)
	return ok
}

// runNursingTransfer runs the transfer network (GP practice, hospital, nursing
// home) and one transfer from the hospital to the nursing home, printing
// what arrived.
func runNursingTransfer(ctx context.Context, opts network.Options, once bool) error {
	return runScenario(ctx, opts, once, "transfer", func(ctx context.Context, nw *network.Network) error {
		s, err := nw.ExchangeNursingTransfer(ctx)
		if s != nil {
			nw.PrintNursingTransfer(s)
		}
		return err
	})
}
