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

// Historian is a store that keeps history (every backend does; it is a
// separate interface while backends grow into it).
type Historian interface {
	// History lists versions, newest first: of one resource (Type and ID
	// set), of a type (Type set) or of the whole tenant.
	History(ctx context.Context, tenant string, q HistoryQuery) (HistoryPage, error)
}

// Transactional is a store that can run several writes atomically.
type Transactional interface {
	// InTx runs fn in one transaction: every write fn makes through tx is
	// committed together, or none is when fn (or the commit) fails.
	InTx(ctx context.Context, tenant string, fn func(tx Tx) error) error
}

// Tx is the view of a store inside InTx, for one tenant. Reads see the
// transaction's own writes.
type Tx interface {
	Create(ctx context.Context, body json.RawMessage) (Resource, error)
	Update(ctx context.Context, body json.RawMessage, ifMatch string) (res Resource, created bool, err error)
	Delete(ctx context.Context, typ, id string) error
	Read(ctx context.Context, typ, id string) (Resource, error)
	Search(ctx context.Context, q Query) (Page, error)
}

// HistoryQuery selects versions for History.
type HistoryQuery struct {
	Type, ID string
	Since    time.Time // only versions updated at or after Since (_since)
	Count    int       // page size; 0 = default
	Offset   int
}

// HistoryPage is one page of versions, newest first; deleted versions have
// Deleted set and an empty Body.
type HistoryPage struct {
	Versions   []Resource
	Total      int
	NextOffset int // -1 when this is the last page
	// AsOf is the instant the page reflects: every version last updated at
	// or before it was committed before the page was read, so a client may
	// take it as its next _since and miss nothing. Zero when the store
	// cannot tell.
	AsOf time.Time
}

// Errors a Store returns, wrapped with detail. The FHIR HTTP layer maps them
// to status codes once, at the edge.
var (
	ErrNotFound        = errors.New("resource not found")
	ErrDeleted         = errors.New("resource deleted")
	ErrVersionConflict = errors.New("version conflict")
	ErrInvalid         = errors.New("invalid resource")
	ErrInvalidSearch   = errors.New("invalid search")
	// ErrUnavailable: the store could not be reached (a database restart, a
	// dropped connection); the request may succeed when tried again.
	ErrUnavailable = errors.New("store unavailable")
)
