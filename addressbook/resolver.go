package addressbook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// AnyURA in DirectoryConfig.URAs makes a directory authoritative for every
// URA that no other directory lists.
const AnyURA = "*"

// Config is the set of directories a node follows.
type Config struct {
	Directories []DirectoryConfig `koanf:"directories"`
}

// DirectoryConfig is one directory (a ZORG-AB, or the LRZa) and the URAs it
// is authoritative for. An organisation's endpoints are taken only from the
// directory that holds its URA: another directory's entry for that URA is
// ignored, whatever it says.
type DirectoryConfig struct {
	// Name identifies the directory in logs and errors.
	Name string `koanf:"name"`
	// URL is the directory's FHIR R4 base (https).
	URL string `koanf:"url"`
	// URAs this directory holds; AnyURA ("*") for all not listed elsewhere.
	URAs []string `koanf:"uras"`
	// Replica is the path of the local copy's SQLite database. A node on
	// PostgreSQL (store.postgres) keeps the copy there instead, in a schema
	// of its own per directory, and does not use this file.
	Replica string `koanf:"replica"`
	// Interval between syncs (default DefaultSyncInterval).
	Interval time.Duration `koanf:"interval"`
}

// Validate checks that every URA has at most one authoritative directory.
func (c Config) Validate() error {
	if len(c.Directories) == 0 {
		return errors.New("addressbook: no directories configured")
	}
	names := map[string]bool{}
	replicas := map[string]bool{}
	owner := map[string]string{}
	wildcard := ""
	for i, d := range c.Directories {
		if d.Name == "" {
			return fmt.Errorf("addressbook: directories[%d] needs a name", i)
		}
		if names[d.Name] {
			return fmt.Errorf("addressbook: directory name %q is used twice", d.Name)
		}
		names[d.Name] = true
		u, err := url.Parse(d.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("addressbook: directory %s: url must be an https FHIR base", d.Name)
		}
		if d.Replica == "" {
			return fmt.Errorf("addressbook: directory %s: replica (a database path) is required", d.Name)
		}
		if replicas[d.Replica] {
			return fmt.Errorf("addressbook: directory %s: replica %s is used by another directory", d.Name, d.Replica)
		}
		replicas[d.Replica] = true
		if d.Interval < 0 {
			return fmt.Errorf("addressbook: directory %s: interval must not be negative", d.Name)
		}
		if len(d.URAs) == 0 {
			return fmt.Errorf("addressbook: directory %s: uras must list the URAs it holds, or %q", d.Name, AnyURA)
		}
		for _, ura := range d.URAs {
			if ura == AnyURA {
				if len(d.URAs) > 1 {
					return fmt.Errorf("addressbook: directory %s: %q stands alone in uras", d.Name, AnyURA)
				}
				if wildcard != "" {
					return fmt.Errorf("addressbook: directories %s and %s both hold %q; only one may", wildcard, d.Name, AnyURA)
				}
				wildcard = d.Name
				continue
			}
			if err := nl.ValidateURA(ura); err != nil {
				return fmt.Errorf("addressbook: directory %s: %w", d.Name, err)
			}
			if o, ok := owner[ura]; ok {
				return fmt.Errorf("addressbook: URA %s is held by both %s and %s", ura, o, d.Name)
			}
			owner[ura] = d.Name
		}
	}
	return nil
}

// authority is which directory holds each URA.
type authority struct {
	explicit map[string]string // URA → directory
	wildcard string
}

func (c Config) authority() authority {
	a := authority{explicit: map[string]string{}}
	for _, d := range c.Directories {
		for _, u := range d.URAs {
			if u == AnyURA {
				a.wildcard = d.Name
			} else {
				a.explicit[u] = d.Name
			}
		}
	}
	return a
}

func (a authority) of(ura string) (string, bool) {
	if d, ok := a.explicit[ura]; ok {
		return d, true
	}
	return a.wildcard, a.wildcard != ""
}

// Holds is the anti-spoofing rule of the named directory, for
// ReplicaConfig.Holds: whether that directory is the one holding ura.
func (c Config) Holds(name string) func(ura string) bool {
	a := c.authority()
	return func(ura string) bool {
		d, ok := a.of(ura)
		return ok && d == name
	}
}

// Resolver resolves endpoints over several directories, asking only the
// one that holds the URA.
type Resolver struct {
	auth    authority
	sources map[string]EndpointResolver
}

// NewResolver builds a Resolver for cfg; sources has an EndpointResolver
// (usually a Replica opened with cfg.Holds(name)) per directory name.
func NewResolver(cfg Config, sources map[string]EndpointResolver) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, d := range cfg.Directories {
		if sources[d.Name] == nil {
			return nil, fmt.Errorf("addressbook: no source for directory %s", d.Name)
		}
	}
	return &Resolver{auth: cfg.authority(), sources: sources}, nil
}

// Authority names the directory that holds ura.
func (r *Resolver) Authority(ura string) (string, bool) { return r.auth.of(ura) }

// Endpoint resolves from the directory that holds ura only.
func (r *Resolver) Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error) {
	d, ok := r.auth.of(ura)
	if !ok {
		return "", fmt.Errorf("%w: no directory holds organisation %s", ErrNotFound, ura)
	}
	return r.sources[d].Endpoint(ctx, ura, payloadType, fhirVersion)
}

// Directories is a node's set of directory replicas, their syncers and the
// Resolver over them.
type Directories struct {
	*Resolver
	Replicas map[string]*Replica
	syncers  []*Syncer
}

// OpenDirectories opens a replica per configured directory (each keeping
// only the URAs that directory holds); client is the node's mTLS client.
// Run keeps them current.
func OpenDirectories(ctx context.Context, cfg Config, client *http.Client, log *slog.Logger) (*Directories, error) {
	return OpenDirectoriesIn(ctx, cfg, client, log, Storage{})
}

// Storage is where a node keeps its directory replicas: SQLite files (each
// directory's replica path; the zero Storage) or PostgreSQL, one schema per
// directory, named after the node's schema and the directory
// (SchemaFor), which the node's replicas share.
type Storage struct {
	Postgres string
	Schema   string
}

// SchemaFor is the PostgreSQL schema of directory's replica.
func (s Storage) SchemaFor(directory string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, directory)
	if s.Schema == "" {
		return "addressbook_" + name
	}
	return s.Schema + "_addressbook_" + name
}

// OpenDirectoriesIn is OpenDirectories with the replicas kept in storage.
func OpenDirectoriesIn(ctx context.Context, cfg Config, client *http.Client, log *slog.Logger, storage Storage) (*Directories, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	ds := &Directories{Replicas: map[string]*Replica{}}
	sources := map[string]EndpointResolver{}
	for _, d := range cfg.Directories {
		rc := ReplicaConfig{Path: d.Replica, Source: &Client{Base: d.URL, HTTP: client},
			Holds: cfg.Holds(d.Name), Logger: log.With("directory", d.Name)}
		if storage.Postgres != "" {
			rc.Path, rc.Postgres, rc.Schema = "", storage.Postgres, storage.SchemaFor(d.Name)
		}
		rep, err := OpenReplica(ctx, rc)
		if err != nil {
			ds.Close()
			return nil, fmt.Errorf("directory %s: %w", d.Name, err)
		}
		ds.Replicas[d.Name] = rep
		sources[d.Name] = rep
		ds.syncers = append(ds.syncers, &Syncer{Replica: rep, Name: d.Name, Interval: d.Interval, Logger: log})
	}
	r, err := NewResolver(cfg, sources)
	if err != nil {
		ds.Close()
		return nil, err
	}
	ds.Resolver = r
	return ds, nil
}

// Run syncs every directory until ctx ends.
func (ds *Directories) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range ds.syncers {
		wg.Go(func() { _ = s.Run(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

// Close closes the replicas.
func (ds *Directories) Close() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(ds.Replicas)) {
		errs = append(errs, ds.Replicas[name].Close())
	}
	return errors.Join(errs...)
}
