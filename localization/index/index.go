// Package index holds the referral index's entries and the storage interface
// its backends (sqlite, postgres) implement. An entry says "organisation URA
// holds data of this care context for the patient with this pseudonym"; the
// index never holds a BSN.
package index

import (
	"context"
	"errors"
	"iter"
	"time"
)

// PseudonymSize is the length of a pseudonym: an OPRF output (see package
// localization/oprf).
const PseudonymSize = 32

// Errors of the stores; test with errors.Is.
var (
	// ErrNotFound: no entry with that id.
	ErrNotFound = errors.New("index: entry not found")
)

// Coding is a code in a code system (FHIR Coding without display).
type Coding struct {
	System string
	Code   string
}

// Entry is one registration.
type Entry struct {
	ID          string // assigned by the store (a UUIDv7); the List id
	Pseudonym   []byte // PseudonymSize bytes
	HolderURA   string // the organisation holding the data (the registrant)
	CareContext Coding // what kind of data, e.g. a zib or data category
	SourceType  string // the holder's provider type, e.g. a facility type code
	Device      string // the registering system (UZI system number)
	Created     time.Time
}

// Holder is one answer to a lookup: an organisation and its provider type.
type Holder struct {
	URA        string
	SourceType string
}

// Query asks which organisations hold data for a pseudonym in a care
// context, optionally only those of the given provider types.
type Query struct {
	Pseudonym   []byte
	CareContext Coding
	SourceTypes []string // empty: any
}

// Store keeps entries. Implementations are safe for concurrent use.
type Store interface {
	// Register adds e unless an entry with the same pseudonym, holder, care
	// context and source type exists; it returns the stored entry and
	// whether it is new. Registration is idempotent, so a node may repeat it.
	Register(ctx context.Context, e Entry) (Entry, bool, error)
	// Get returns the entry with id, or ErrNotFound.
	Get(ctx context.Context, id string) (Entry, error)
	// Delete removes the entry with id if holderURA registered it; it
	// reports whether one was removed.
	Delete(ctx context.Context, holderURA, id string) (bool, error)
	// DeleteMatching removes holderURA's entries for a pseudonym, in one
	// care context when cc is non-zero, and returns how many.
	DeleteMatching(ctx context.Context, holderURA string, pseudonym []byte, cc Coding) (int, error)
	// Lookup returns the distinct holders matching q, ordered by URA.
	Lookup(ctx context.Context, q Query) ([]Holder, error)
	// Close releases the store.
	Close() error
}

// BulkLoader is implemented by stores that can load many entries at once
// (PostgreSQL COPY); used to build large indexes for benchmarks and imports.
// Entries must be new and distinct; the store assigns their IDs.
type BulkLoader interface {
	BulkLoad(ctx context.Context, entries iter.Seq[Entry]) (int64, error)
}
