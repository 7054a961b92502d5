package network

import (
	"context"
	"fmt"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/store"
)

// loadDemoDataR4 loads the demo patients' records in FHIR R4 (zib2020,
// demo.R4) into st, the GP practice's R4 store, when the network runs a
// pull application on R4 (BgZ on R4): the same patients and facts the
// STU3 record holds, for the partners that agreed the R4 exchange. As
// loadDemoData, a restart on the same data directory writes nothing new.
func (nw *Network) loadDemoDataR4(ctx context.Context, st store.Store) error {
	if !nw.pullsR4() {
		return nil
	}
	im, err := importer.New(importer.Config{Store: st, Version: fhir.R4, Tenant: GP.URA})
	if err != nil {
		return fmt.Errorf("load R4 demo data: %w", err)
	}
	sum := &importer.Summary{Types: map[string]importer.Counts{}}
	for _, p := range nw.Patients {
		r4, err := demo.R4(p)
		if err != nil {
			return fmt.Errorf("load R4 demo data: %w", err)
		}
		if err := im.Import(ctx, "demo patient "+p.BSN+" (R4)", demo.TransactionBundle(r4), sum); err != nil {
			return fmt.Errorf("load R4 demo data: %w", err)
		}
	}
	return nil
}

// pullsR4 reports whether a registered pull application exchanges FHIR R4.
func (nw *Network) pullsR4() bool {
	for _, a := range nw.opts.Applications.All() {
		if _, ok := a.(careapp.QuerySet); ok && a.FHIRVersion() == fhir.R4 {
			return true
		}
	}
	return false
}
