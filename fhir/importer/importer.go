// Package importer loads FHIR resources from files into one participant's
// store: single resources and Bundles (transaction, batch, collection,
// searchset, and document/message Bundles kept whole), in FHIR JSON, NDJSON
// or FHIR XML, STU3 or R4.
//
// Importing is idempotent. Every resource is written with an id (PUT,
// update-as-create), so running an import twice stores nothing new: a
// resource whose content equals the stored version is left alone
// (Unchanged), rather than getting a new version. Entries that carry no id
// of their own but a fullUrl (urn:uuid:, urn:oid: or absolute) get an id
// derived from that fullUrl (a name-based UUID), and references to the
// fullUrl inside the Bundle are rewritten to Type/id, so a re-run assigns the
// same ids. Only a resource with neither an id nor a fullUrl gets a fresh id
// on every run.
//
// A transaction, collection or searchset Bundle is written atomically when
// the store is a store.Transactional: a failing entry writes nothing of its
// Bundle. Batch entries succeed or fail one by one, as FHIR defines.
package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	fhirxml "github.com/schakel-nl/schakel/fhir/xml"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
)

// DefaultMaxFileBytes is the largest file ImportFiles reads when
// Config.MaxFileBytes is 0.
const DefaultMaxFileBytes = 256 << 20

// Errors the importer reports, wrapped with detail (store errors are passed
// on wrapped as they are).
var (
	// ErrInput is content that is no FHIR resource, Bundle or NDJSON, or a
	// Bundle entry that cannot be imported as written.
	ErrInput = errors.New("invalid import input")
	// ErrVersion is content of another FHIR version than the store's.
	ErrVersion = errors.New("wrong FHIR version")
	// ErrUnsupported is valid FHIR the importer does not load (a history
	// Bundle, a conditional delete, ...).
	ErrUnsupported = errors.New("not supported by import")
)

// Config configures an Importer.
type Config struct {
	// Store receives the resources; required.
	Store store.Store
	// Version is the FHIR version of Store; required. Content recognisably of
	// the other version is refused with ErrVersion.
	Version fhir.Version
	// Tenant is the participant (URA) the resources are stored for; required.
	Tenant string
	// DecodeXML converts a FHIR XML document to FHIR JSON; nil means
	// fhir/xml.DecodeLenient, whose repairs are reported as warnings.
	DecodeXML func(v fhir.Version, data []byte) (json.RawMessage, error)
	// MaxFileBytes limits the size of one file; 0 means DefaultMaxFileBytes.
	MaxFileBytes int64
}

// Importer loads files into one tenant of one store. It is safe for
// concurrent use.
type Importer struct {
	st        store.Store
	version   fhir.Version
	defs      *spec.Definitions
	tenant    string
	decodeXML func(fhir.Version, []byte) (json.RawMessage, error)
	maxFile   int64
}

// New returns an Importer for cfg.
func New(cfg Config) (*Importer, error) {
	if cfg.Store == nil {
		return nil, errors.New("importer: Config.Store is required")
	}
	defs := spec.For(cfg.Version)
	if defs == nil {
		return nil, fmt.Errorf("importer: unknown FHIR version %q", cfg.Version)
	}
	if cfg.Tenant == "" {
		return nil, errors.New("importer: Config.Tenant is required")
	}
	if cfg.MaxFileBytes < 0 {
		return nil, errors.New("importer: Config.MaxFileBytes must not be negative")
	}
	im := &Importer{st: cfg.Store, version: cfg.Version, defs: defs, tenant: cfg.Tenant,
		decodeXML: cfg.DecodeXML, maxFile: cfg.MaxFileBytes}
	if im.maxFile == 0 {
		im.maxFile = DefaultMaxFileBytes
	}
	return im, nil
}

// Counts are what an import did to resources.
type Counts struct {
	Created   int // new resources (or deleted ones brought back)
	Updated   int // a new version with changed content
	Unchanged int // content equal to the stored version: nothing written
	Deleted   int // DELETE entries that removed a resource
}

// Sum is the number of resources counted.
func (c Counts) Sum() int { return c.Created + c.Updated + c.Unchanged + c.Deleted }

func (c *Counts) add(o Counts) {
	c.Created += o.Created
	c.Updated += o.Updated
	c.Unchanged += o.Unchanged
	c.Deleted += o.Deleted
}

// Problem is one failure: the file, where in it, and what went wrong.
type Problem struct {
	File string
	// Location is a FHIRPath-like position such as "Bundle.entry[3]", or
	// "line 7" in NDJSON; empty when the whole file failed.
	Location string
	Err      error
}

func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Location != "" {
		b.WriteString(": ")
		b.WriteString(p.Location)
	}
	b.WriteString(": ")
	b.WriteString(p.Err.Error())
	return b.String()
}

func (p Problem) Unwrap() error { return p.Err }

// Summary is the result of an import.
type Summary struct {
	Files  int // files (documents) read
	Failed int // files with at least one problem
	// Types counts the resources per resource type.
	Types    map[string]Counts
	Problems []Problem
	// Warnings are repairs made to data that broke the specification in a
	// way the importer can mend (e.g. a non-repeating XML element given
	// twice: the first is kept); the data was imported.
	Warnings []Problem
}

// Total adds up the counts of all resource types.
func (s *Summary) Total() Counts {
	var t Counts
	for _, c := range s.Types {
		t.add(c)
	}
	return t
}

// TypeNames returns the resource types counted, sorted.
func (s *Summary) TypeNames() []string {
	names := make([]string, 0, len(s.Types))
	for t := range s.Types {
		names = append(names, t)
	}
	sort.Strings(names)
	return names
}

func (s *Summary) merge(types map[string]Counts) {
	if s.Types == nil {
		s.Types = make(map[string]Counts)
	}
	for t, c := range types {
		sc := s.Types[t]
		sc.add(c)
		s.Types[t] = sc
	}
}

// Files expands paths into the files to import: a file is taken as it is; a
// directory is walked recursively for *.json, *.xml and *.ndjson files
// (hidden files and directories skipped), in lexical order.
func Files(paths ...string) ([]string, error) {
	var out []string
	seen := make(map[string]bool)
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			add(p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			hidden := strings.HasPrefix(d.Name(), ".") && path != p
			if d.IsDir() {
				if hidden {
					return filepath.SkipDir
				}
				return nil
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".json", ".xml", ".ndjson":
				if !hidden && d.Type().IsRegular() {
					add(path)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RunOptions steer ImportFiles.
type RunOptions struct {
	// Strict stops at the first file with a problem and returns its error;
	// otherwise every file is tried and problems are only reported in the
	// Summary.
	Strict bool
	// OnFile, when set, is called after each file with its first problem
	// (nil when it was imported completely): the hook for a progress bar.
	// In a bulk import a file is reported when it is read and queued; a
	// problem its batch meets later is in the Summary.
	OnFile func(path string, err error)
	// OnWrite, when set, is called after each commit with the number of
	// resources it covered (bulk imports only).
	OnWrite func(resources int)
	// BatchResources is the bulk import's batch size; see BulkOptions.
	BatchResources int
}

// ImportFiles imports files. Into a store.Loader the files are loaded in
// batches (see Bulk), and made durable before it returns; into another
// store one by one. It returns an error only when ctx ends, the writes
// cannot be made durable or, with Strict, when a file has a problem; the
// Summary is complete up to that point either way.
func (im *Importer) ImportFiles(ctx context.Context, files []string, opts RunOptions) (*Summary, error) {
	if _, ok := im.st.(store.Loader); ok {
		return im.importBulk(ctx, files, opts)
	}
	sum := &Summary{Types: make(map[string]Counts)}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		err := im.importFile(ctx, f, sum)
		if opts.OnFile != nil {
			opts.OnFile(f, err)
		}
		if err != nil && opts.Strict {
			return sum, err
		}
	}
	return sum, ctx.Err()
}

func (im *Importer) importBulk(ctx context.Context, files []string, opts RunOptions) (*Summary, error) {
	sum := &Summary{Types: make(map[string]Counts)}
	bk, err := im.NewBulk(sum, BulkOptions{BatchResources: opts.BatchResources, Strict: opts.Strict, OnWrite: opts.OnWrite})
	if err != nil {
		return sum, err
	}
	defer bk.Abort()
	// Problems are in the Summary; only the others end the import, and
	// with Strict a problem too.
	fatal := func(err error) bool {
		var p Problem
		return err != nil && (opts.Strict || !errors.As(err, &p))
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		data, err := readLimited(f, im.maxFile)
		if err != nil {
			err = bk.unreadable(f, err)
		} else {
			err = bk.Add(ctx, f, data)
		}
		if opts.OnFile != nil {
			opts.OnFile(f, err)
		}
		if fatal(err) {
			if ctx.Err() == nil && opts.Strict {
				// The files before this one are imported, as without bulk.
				if ferr := bk.Finish(ctx); fatal(ferr) {
					var p Problem
					if !errors.As(ferr, &p) {
						return sum, errors.Join(err, ferr)
					}
				}
			}
			return sum, err
		}
	}
	if err := bk.Finish(ctx); fatal(err) {
		return sum, err
	}
	return sum, ctx.Err()
}

func (im *Importer) importFile(ctx context.Context, path string, sum *Summary) error {
	data, err := readLimited(path, im.maxFile)
	if err != nil {
		sum.Files++
		sum.Failed++
		p := Problem{File: path, Err: err}
		sum.Problems = append(sum.Problems, p)
		return p
	}
	return im.Import(ctx, path, data, sum)
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: file larger than %d bytes", ErrInput, limit)
	}
	return data, nil
}

// Import imports one document — a resource, a Bundle or NDJSON, in JSON or
// XML — named name in problems, and adds what it did to sum. It returns the
// first problem, or nil.
func (im *Importer) Import(ctx context.Context, name string, data []byte, sum *Summary) error {
	sum.Files++
	docs, err := im.documents(data)
	var problems []Problem
	if err != nil {
		problems = append(problems, Problem{File: name, Err: err})
	}
	for _, d := range docs {
		if err := ctx.Err(); err != nil {
			problems = append(problems, Problem{File: name, Location: d.loc, Err: err})
			break
		}
		for _, w := range d.warnings {
			sum.Warnings = append(sum.Warnings, Problem{File: name, Location: d.loc, Err: errors.New(w)})
		}
		types, errs := im.importDocument(ctx, d)
		sum.merge(types)
		for _, e := range errs {
			loc := e.loc
			if d.loc != "" {
				loc = strings.TrimSuffix(d.loc+" "+loc, " ")
			}
			problems = append(problems, Problem{File: name, Location: loc, Err: e.err})
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sum.Failed++
	sum.Problems = append(sum.Problems, problems...)
	return problems[0]
}

// document is one JSON resource or Bundle from a file; loc is where it is
// in an NDJSON file.
type document struct {
	loc      string
	body     []byte
	warnings []string // what the decoder repaired
	valid    bool     // body is known to be JSON
}

var bom = []byte("\xef\xbb\xbf")

// documents detects the format by content and returns the FHIR JSON
// documents in data.
func (im *Importer) documents(data []byte) ([]document, error) {
	data = bytes.TrimSpace(bytes.TrimPrefix(data, bom))
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrInput)
	}
	switch data[0] {
	case '<':
		if err := im.checkXMLRoot(data); err != nil {
			return nil, err
		}
		if im.decodeXML == nil {
			body, warnings, err := fhirxml.DecodeLenient(im.version, data)
			if err != nil {
				return nil, fmt.Errorf("%w: FHIR XML: %w", ErrInput, err)
			}
			doc := document{body: body, valid: true}
			for _, w := range warnings {
				doc.warnings = append(doc.warnings, w.String())
			}
			return []document{doc}, nil
		}
		body, err := im.decodeXML(im.version, data)
		if err != nil {
			return nil, fmt.Errorf("%w: FHIR XML: %w", ErrInput, err)
		}
		return []document{{body: body}}, nil
	case '{':
		if json.Valid(data) {
			return []document{{body: data, valid: true}}, nil
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		var first json.RawMessage
		if err := dec.Decode(&first); err != nil {
			return nil, fmt.Errorf("%w: JSON: %v", ErrInput, err)
		}
		return ndjson(data), nil
	}
	return nil, fmt.Errorf("%w: neither FHIR JSON nor FHIR XML", ErrInput)
}

// ndjson splits newline-delimited JSON into one document per non-empty line.
func ndjson(data []byte) []document {
	var out []document
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		out = append(out, document{loc: fmt.Sprintf("line %d", i+1), body: line})
	}
	return out
}

// checkXMLRoot refuses an XML document whose root element is a resource
// type of the other FHIR version only, with a clearer error than the XML
// decoder could give.
func (im *Importer) checkXMLRoot(data []byte) error {
	// The root is the first start tag that is no declaration, comment or
	// processing instruction.
	rest := data
	for {
		i := bytes.IndexByte(rest, '<')
		if i < 0 || i+1 >= len(rest) {
			return nil
		}
		rest = rest[i+1:]
		if rest[0] == '?' || rest[0] == '!' {
			continue
		}
		end := bytes.IndexAny(rest, " \t\r\n/>")
		if end < 0 {
			return nil
		}
		name := string(rest[:end])
		if _, local, ok := strings.Cut(name, ":"); ok {
			name = local
		}
		if !im.defs.IsResourceType(name) && spec.For(other(im.version)).IsResourceType(name) {
			return fmt.Errorf("%w: %s is a FHIR %s resource type, the store is FHIR %s", ErrVersion, name, other(im.version), im.version)
		}
		return nil
	}
}
