package main

import (
	"context"
	"fmt"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/network"
)

// careDemo runs the demo network and one exchange of a care application.
type careDemo func(ctx context.Context, opts network.Options, once, processes bool) error

// careDemos are the demo exchanges of care applications whose exchange on
// a pattern is not the network's generic one for that pattern (runNetwork,
// runIndexedPull, runLetter), by application name and pattern. They run in
// one process at the default agreement.
var careDemos = map[string]map[careapp.Pattern]careDemo{
	beeld.Application: {careapp.IndexedPull: runImaging},
	geboortezorg.Name: {careapp.Push: runTransfer},
	eoverdracht.Name:  {careapp.NotifiedPull: runNursingTransfer},
}

// careDemosAtPlateau are the demos of careDemos whose network takes
// --plateau N: every agreement of its nodes at plateau N (the transfer's
// mother and child are in the BSN verification stand-in's register).
var careDemosAtPlateau = map[string]bool{geboortezorg.Name: true}

// runCareDemo runs the demo of care application care on pattern, when it
// has one of its own; ran is false when it has none.
func runCareDemo(ctx context.Context, opts network.Options, care, pattern string, once, processes bool) (ran bool, err error) {
	run, ok := careDemos[care][careapp.Pattern(pattern)]
	if !ok {
		return false, nil
	}
	if opts.Mixed || (opts.Plateau != 0 && !careDemosAtPlateau[care]) {
		if careDemosAtPlateau[care] {
			return true, fmt.Errorf("--care %s runs its agreements at one plateau (no --plateau mixed)", care)
		}
		return true, fmt.Errorf("--care %s runs at the default agreement for now (no --plateau)", care)
	}
	return true, run(ctx, opts, once, processes)
}
