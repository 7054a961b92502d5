package main

import (
	"context"

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
// the default agreement, at --plateau N or at --plateau mixed (where the
// network refuses a plateau it cannot run at, it says why).
var careDemos = map[string]map[careapp.Pattern]careDemo{
	beeld.Application: {careapp.IndexedPull: runImaging},
	geboortezorg.Name: {careapp.Push: runTransfer},
	eoverdracht.Name:  {careapp.NotifiedPull: runNursingTransfer},
}

// runCareDemo runs the demo of care application care on pattern, when it
// has one of its own; ran is false when it has none.
func runCareDemo(ctx context.Context, opts network.Options, care, pattern string, once, processes bool) (ran bool, err error) {
	run, ok := careDemos[care][careapp.Pattern(pattern)]
	if !ok {
		return false, nil
	}
	return true, run(ctx, opts, once, processes)
}
