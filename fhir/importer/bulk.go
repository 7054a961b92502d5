package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

// DefaultBatchResources is how many resources a bulk import writes per
// store transaction when BulkOptions.BatchResources is 0: large enough that
// the per-transaction costs vanish, small enough that a batch holds the
// store's writer for well under a second.
const DefaultBatchResources = 2000

// BulkOptions steer a Bulk.
type BulkOptions struct {
	// BatchResources is the number of resources written per transaction;
	// 0 means DefaultBatchResources. Documents are never split: a batch
	// holds whole Bundles.
	BatchResources int
	// Strict makes a failing batch stop at the first document with a
	// problem when its documents are written again one by one.
	Strict bool
	// OnWrite, when set, is called after each commit with the number of
	// resources (entries) it covered: the hook for a progress rate. It is
	// called from the goroutine that writes the batches.
	OnWrite func(resources int)
}

// Bulk is an import into a store.Loader in batches of many documents: the
// plain entries of every document (PUT or no method, no conditions) are
// queued and written by one Load per batch, whole documents at a time, so
// a transaction Bundle is still all or nothing. A document with conditional
// or DELETE entries is written on its own after the queue, as Import writes
// it. When a batch fails, its documents are written again one at a time the
// way Import writes them, which finds and reports the ones at fault.
//
// A Bulk is not safe for concurrent use. Finish writes what is queued and
// makes it durable; an import has succeeded only when Finish has. A Bulk
// left unfinished must be ended with Abort.
type Bulk struct {
	im     *Importer
	l      store.Loader
	opts   BulkOptions
	groups []*group
	bodies []json.RawMessage
	at     map[string]int // "Type/id" → index in bodies

	// A batch is written by a goroutine of its own while the next one is
	// read and prepared: on two cores the decoding of the documents and
	// the store's work overlap. work hands it one batch at a time.
	work    chan *batch
	writing sync.WaitGroup
	closed  bool

	mu     sync.Mutex // guards what both goroutines record:
	sum    *Summary
	failed map[string]bool // files counted in sum.Failed
	werr   error           // the first problem the writer met, not yet returned
	stop   bool            // Strict, and a batch had a problem: write no more
}

// batch is the work of the writer: documents to write, or with ack set a
// barrier, closed when every batch before it is written.
type batch struct {
	ctx    context.Context
	groups []*group
	bodies []json.RawMessage
	ack    chan struct{}
}

// group is one queued document.
type group struct {
	file, loc string
	entries   []entry
	atomic    bool
	// slot is per entry the index of its body in the batch, or -1 for an
	// entry whose content an earlier queued entry already holds.
	slot []int
}

// NewBulk starts a bulk import that adds what it does to sum. The store must
// be a store.Loader.
func (im *Importer) NewBulk(sum *Summary, opts BulkOptions) (*Bulk, error) {
	l, ok := im.st.(store.Loader)
	if !ok {
		return nil, errors.New("importer: the store has no bulk load")
	}
	if opts.BatchResources < 0 {
		return nil, errors.New("importer: BulkOptions.BatchResources must not be negative")
	}
	if opts.BatchResources == 0 {
		opts.BatchResources = DefaultBatchResources
	}
	if sum.Types == nil {
		sum.Types = make(map[string]Counts)
	}
	b := &Bulk{im: im, l: l, sum: sum, opts: opts, failed: map[string]bool{}, at: map[string]int{}, work: make(chan *batch)}
	b.writing.Add(1)
	go b.writer()
	return b, nil
}

func (b *Bulk) writer() {
	defer b.writing.Done()
	for bt := range b.work {
		if bt.ack != nil {
			close(bt.ack)
			continue
		}
		b.mu.Lock()
		stop := b.stop
		b.mu.Unlock()
		if stop {
			continue
		}
		if err := b.write(bt); err != nil {
			b.mu.Lock()
			if b.werr == nil {
				b.werr = err
			}
			if b.opts.Strict {
				b.stop = true
			}
			b.mu.Unlock()
		}
	}
}

// takeErr returns the writer's first problem not yet returned.
func (b *Bulk) takeErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.werr
	b.werr = nil
	return err
}

// drain waits until every batch handed to the writer is written.
func (b *Bulk) drain() {
	ack := make(chan struct{})
	b.work <- &batch{ack: ack}
	<-ack
}

// Abort ends the writer without writing what is queued; a Bulk that was
// not finished must be aborted. It does nothing after Finish.
func (b *Bulk) Abort() {
	if b.closed {
		return
	}
	b.closed = true
	close(b.work)
	b.writing.Wait()
}

// Add reads one document — a resource, a Bundle or NDJSON, in JSON or XML —
// named name in problems, and queues it. It returns the first problem found
// during the call: of this document, or of queued ones a batch written now
// failed on (a Problem), or an error that ends the import (ctx).
func (b *Bulk) Add(ctx context.Context, name string, data []byte) error {
	if b.closed {
		return errors.New("importer: Add after Finish")
	}
	b.mu.Lock()
	b.sum.Files++
	b.mu.Unlock()
	var first error
	note := func(err error) {
		if first == nil && err != nil {
			first = err
		}
	}
	docs, err := b.im.documents(data)
	if err != nil {
		note(b.problem(name, "", err))
	}
	for _, d := range docs {
		if err := ctx.Err(); err != nil {
			note(b.problem(name, d.loc, err))
			return first
		}
		b.mu.Lock()
		for _, w := range d.warnings {
			b.sum.Warnings = append(b.sum.Warnings, Problem{File: name, Location: d.loc, Err: errors.New(w)})
		}
		b.mu.Unlock()
		entries, atomic, errs := b.im.prepareDocument(d)
		for _, e := range errs {
			note(b.problem(name, joinLoc(d.loc, e.loc), e.err))
		}
		if entries != nil {
			note(b.queue(ctx, &group{file: name, loc: d.loc, entries: entries, atomic: atomic}))
		}
	}
	return first
}

// Finish writes what is queued and makes every write durable (store.Loader
// Sync). It returns the first problem of the last batch, or the error that
// kept the import from being made durable.
func (b *Bulk) Finish(ctx context.Context) error {
	if b.closed {
		return errors.New("importer: Finish after Finish or Abort")
	}
	perr := b.flush(ctx)
	b.Abort() // everything is handed over: the writer ends when it is written
	perr = errors.Join(perr, b.takeErr())
	if err := b.l.Sync(ctx); err != nil {
		return fmt.Errorf("importer: %w", err)
	}
	return perr
}

func joinLoc(docLoc, loc string) string {
	if docLoc == "" {
		return loc
	}
	return strings.TrimSuffix(docLoc+" "+loc, " ")
}

// unreadable counts a file that could not be read, with its problem.
func (b *Bulk) unreadable(file string, err error) error {
	b.mu.Lock()
	b.sum.Files++
	b.mu.Unlock()
	return b.problem(file, "", err)
}

// problem records a problem of file and returns it.
func (b *Bulk) problem(file, loc string, err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := Problem{File: file, Location: loc, Err: err}
	b.sum.Problems = append(b.sum.Problems, p)
	if !b.failed[file] {
		b.failed[file] = true
		b.sum.Failed++
	}
	return p
}

// queue adds g to the batch, or writes it on its own when it is not plain.
func (b *Bulk) queue(ctx context.Context, g *group) error {
	bodies, keys, ok := b.im.plain(g.entries)
	if !ok {
		// Conditional entries search the store, DELETEs read it: both
		// must see every document before them written.
		ferr := b.flush(ctx)
		b.drain()
		ferr = errors.Join(ferr, b.takeErr())
		if ferr != nil && b.opts.Strict {
			return ferr
		}
		return errors.Join(ferr, b.writeOne(ctx, g))
	}
	// A resource queued with other content makes this document wait for
	// the next batch: one Load writes one version of each resource.
	var ferr error
	for i, k := range keys {
		if j, queued := b.at[k]; queued && !sameBody(b.bodies[j], bodies[i]) {
			if ferr = b.flush(ctx); ferr != nil && b.opts.Strict {
				return ferr
			}
			break
		}
	}
	g.slot = make([]int, len(keys))
	for i, k := range keys {
		if _, queued := b.at[k]; queued {
			g.slot[i] = -1
			continue
		}
		b.at[k] = len(b.bodies)
		g.slot[i] = len(b.bodies)
		b.bodies = append(b.bodies, bodies[i])
	}
	b.groups = append(b.groups, g)
	if len(b.bodies) >= b.opts.BatchResources {
		return errors.Join(ferr, b.flush(ctx))
	}
	return ferr
}

func sameBody(a, c []byte) bool {
	return bytes.Equal(a, c) || fhir.SameContent(a, c)
}

// plain returns the bodies and "Type/id" keys entries are written with,
// when every entry is a plain write (no condition, no DELETE) and no
// resource comes twice; ok is false otherwise.
func (im *Importer) plain(entries []entry) (bodies []json.RawMessage, keys []string, ok bool) {
	ids := make([]string, len(entries))
	refs := make(map[string]string)
	for i, e := range entries {
		if e.cond != nil || e.method == "DELETE" {
			return nil, nil, false
		}
		// Without a condition the id is decided without the store.
		id, _, err := im.resolveID(context.Background(), nil, e)
		if err != nil {
			return nil, nil, false
		}
		ids[i] = id
		if e.fullURL != "" {
			refs[e.fullURL] = e.typ + "/" + id
		}
	}
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		body, err := finalBody(e, ids[i], refs)
		if err != nil {
			return nil, nil, false // written on its own, which reports it
		}
		k := e.typ + "/" + ids[i]
		if seen[k] {
			return nil, nil, false
		}
		seen[k] = true
		bodies = append(bodies, body)
		keys = append(keys, k)
	}
	return bodies, keys, true
}

// writeOne writes one document the way Import does.
func (b *Bulk) writeOne(ctx context.Context, g *group) error {
	types, errs := b.im.writeAll(ctx, g.entries, g.atomic)
	b.mu.Lock()
	b.sum.merge(types)
	b.mu.Unlock()
	var first error
	for _, e := range errs {
		if p := b.problem(g.file, joinLoc(g.loc, e.loc), e.err); first == nil {
			first = p
		}
	}
	if b.opts.OnWrite != nil {
		b.opts.OnWrite(len(g.entries))
	}
	return first
}

// flush hands the queued documents to the writer, once it has written the
// batch before, and returns the problems the writer met so far.
func (b *Bulk) flush(ctx context.Context) error {
	if len(b.groups) > 0 {
		b.work <- &batch{ctx: ctx, groups: b.groups, bodies: b.bodies}
		b.groups, b.bodies, b.at = nil, nil, map[string]int{}
	}
	return b.takeErr()
}

// write writes one batch: one Load, or when it fails, one document at a
// time.
func (b *Bulk) write(bt *batch) error {
	ctx, groups, bodies := bt.ctx, bt.groups, bt.bodies
	res, err := b.l.Load(ctx, b.im.tenant, bodies)
	if err == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		entries := 0
		for _, g := range groups {
			types := make(map[string]Counts)
			for i, e := range g.entries {
				c := types[e.typ]
				switch s := g.slot[i]; {
				case s < 0 || res[s].Outcome == store.Unchanged:
					c.Unchanged++
				case res[s].Outcome == store.Created:
					c.Created++
				default:
					c.Updated++
				}
				types[e.typ] = c
			}
			b.sum.merge(types)
			entries += len(g.entries)
		}
		if b.opts.OnWrite != nil {
			b.opts.OnWrite(entries)
		}
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var first error
	for _, g := range groups {
		if err := b.writeOne(ctx, g); err != nil && first == nil {
			first = err
			if b.opts.Strict {
				break
			}
		}
	}
	return first
}
