// Package store defines how FHIR resources are kept: one logical store per
// FHIR version, partitioned by tenant (a participant, one URA each). Backends
// live in sub-packages (sqlite, postgres) and import this package, never the
// reverse.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"time"
)

// Resource is one stored version of a resource. Body is the complete resource
// JSON with id, meta.versionId and meta.lastUpdated set by the store.
type Resource struct {
	Type        string
	ID          string
	VersionID   string
	LastUpdated time.Time
	Deleted     bool
	Body        json.RawMessage
}

// Query is a FHIR search on one resource type. Params are the search
// parameters exactly as received (including _include, _revinclude, _count,
// _sort, _offset); the store parses and validates them against the search
// parameter definitions of its FHIR version.
type Query struct {
	Type   string
	Params url.Values
	// Strict makes unknown search parameters an error (Prefer: handling=strict);
	// otherwise they are ignored and reported in Page.Ignored.
	Strict bool
	// LastN > 0 turns the search into Observation/$lastn: the LastN most
	// recent matches per code (max parameter), newest first.
	LastN int
}

// Page is one page of search results.
type Page struct {
	Matches  []Resource // search mode "match"
	Included []Resource // search mode "include" (_include, _revinclude), no duplicates
	Total    int        // number of matches over all pages
	// NextOffset is the _offset of the next page, or -1 when this is the last.
	NextOffset int
	// Ignored lists the parameters that were not understood (lenient mode).
	Ignored []string
}

// Store keeps the resources of many tenants for one FHIR version.
type Store interface {
	// Create stores a new resource under a fresh id (any id in body is replaced).
	Create(ctx context.Context, tenant string, body json.RawMessage) (Resource, error)
	// Update stores a new version of the resource with the id in body, creating
	// it when absent (update-as-create). ifMatch, when not empty, is the
	// versionId the caller expects as current (ErrVersionConflict otherwise).
	Update(ctx context.Context, tenant string, body json.RawMessage, ifMatch string) (res Resource, created bool, err error)
	// Delete marks the resource deleted (a new version with Deleted set).
	Delete(ctx context.Context, tenant, typ, id string) error
	// Read returns the current version; ErrNotFound or ErrDeleted.
	Read(ctx context.Context, tenant, typ, id string) (Resource, error)
	// VRead returns one version.
	VRead(ctx context.Context, tenant, typ, id, versionID string) (Resource, error)
	// Search runs a search.
	Search(ctx context.Context, tenant string, q Query) (Page, error)
	Close() error
}

// Errors a Store returns, wrapped with detail. The FHIR HTTP layer maps them
// to status codes once, at the edge.
var (
	ErrNotFound        = errors.New("resource not found")
	ErrDeleted         = errors.New("resource deleted")
	ErrVersionConflict = errors.New("version conflict")
	ErrInvalid         = errors.New("invalid resource")
	ErrInvalidSearch   = errors.New("invalid search")
)
