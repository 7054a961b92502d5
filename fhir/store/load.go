package store

import (
	"context"
	"encoding/json"
)

// Loader is a store that writes many resources in one transaction: the bulk
// path of an import. It keeps every invariant a Tx.Update keeps (versions,
// meta.versionId and meta.lastUpdated, the search index rows, history) and
// saves the round trips and statements of writing them one by one.
type Loader interface {
	// Load writes every body as the next version of the resource with the
	// id in it (update-as-create), for tenant, in one transaction: all are
	// written or, on an error, none. A body whose content equals the current
	// version (fhir.SameContent) is left alone and reported Unchanged, so
	// loading the same content twice writes nothing. Each body needs an id,
	// and no Type/id may appear twice in one call (ErrInvalid). The results
	// are in the order of bodies.
	Load(ctx context.Context, tenant string, bodies []json.RawMessage) ([]LoadResult, error)
	// Sync makes every load that has returned durable, for stores whose
	// commits alone are not (a SQLite WAL with synchronous=NORMAL); a bulk
	// import calls it once before it reports success.
	Sync(ctx context.Context) error
}

// LoadOutcome is what Load did to one resource.
type LoadOutcome int

const (
	// Created is a new resource, or a deleted one brought back.
	Created LoadOutcome = iota + 1
	// Updated is a new version with changed content.
	Updated
	// Unchanged is content equal to the current version: nothing written.
	Unchanged
)

// LoadResult is the outcome of one body of a Load, with the version that is
// current after it (the stored one when Unchanged).
type LoadResult struct {
	Outcome           LoadOutcome
	Type, ID, Version string
}
