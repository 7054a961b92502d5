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
// runIndexedPull, runLetter), by application name and pattern. They run at
// the default agreement, at --plateau N or at --plateau mixed
// (careDemosNotMixed).
var careDemos = map[string]map[careapp.Pattern]careDemo{
	beeld.Application: {careapp.IndexedPull: runImaging},
	geboortezorg.Name: {careapp.Push: runTransfer},
	eoverdracht.Name:  {careapp.NotifiedPull: runNursingTransfer},
}

// careDemosNotMixed are the demos of careDemos that refuse --plateau mixed,
// with the reason: the mixed network's agreements are those of the GP
// practice, the hospital and the nursing home per pair, and these demos'
// exchanges do not run between pairs whose agreements differ. Every demo
// takes --plateau N: every agreement of its nodes at plateau N.
var careDemosNotMixed = map[string]string{
	geboortezorg.Name: "the perinatal transfer is sent by the midwife practice's node, and the mixed network agrees no plateaus with a midwife practice (its agreements are the GP practice's, the hospital's and the nursing home's per pair)",
}

// runCareDemo runs the demo of care application care on pattern, when it
// has one of its own; ran is false when it has none.
func runCareDemo(ctx context.Context, opts network.Options, care, pattern string, once, processes bool) (ran bool, err error) {
	run, ok := careDemos[care][careapp.Pattern(pattern)]
	if !ok {
		return false, nil
	}
	if why := careDemosNotMixed[care]; opts.Mixed && why != "" {
		return true, fmt.Errorf("--care %s --plateau mixed: %s; give --plateau 1 to 4", care, why)
	}
	return true, run(ctx, opts, once, processes)
}
