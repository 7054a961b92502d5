package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Journal tuning: segment size, how far the index may fall behind before
// Appends wait for it, and the largest index transaction.
const (
	journalSegmentBytes = 16 << 20
	maxIndexLag         = 64 << 10 // rows
	maxIndexTx          = 8192     // rows
	// The indexer gathers this many rows, or waits this long after the
	// first, before it writes: larger transactions cost far less per row,
	// and leave the CPU to the Appends. A reader waiting for the index
	// cuts the wait short.
	indexGather = 4096
	indexDelay  = 50 * time.Millisecond
)

// journaled is the SQLite backend with the journal in front: write makes a
// batch durable in the journal and returns; an indexer goroutine writes it
// into SQLite behind. Reads wait until the index holds everything written
// before they started, so the store reads its own writes.
type journaled struct {
	index *sqliteBackend
	conn  *sql.Conn // the indexer's own connection
	j     *journal
	log   *slog.Logger

	mu       sync.Mutex
	queue    []indexBatch
	queued   int           // rows in queue
	failing  error         // the last index write failed; cleared by the next success
	written  int64         // last seq in the journal
	indexed  int64         // last seq in the index
	progress chan struct{} // closed (and replaced) whenever the index moves or fails
	work     chan struct{} // wakes the indexer
	closing  bool
	urgent   bool // a reader waits for the index
	done     chan struct{}

	// Owned by the indexer.
	oldest uint64 // oldest segment still on disk that may hold unindexed frames
}

type indexBatch struct {
	rows    []row
	cp      *Checkpoint
	segment uint64
}

// openJournaled opens the SQLite index at path and the journal beside it
// (path + ".journal"), replays into the index whatever the journal holds
// beyond it (a crash, or a failed index), and starts the indexer.
func openJournaled(ctx context.Context, path string, log *slog.Logger) (*journaled, error) {
	idx, err := openSQLite(ctx, path, false, "NORMAL")
	if err != nil {
		return nil, err
	}
	b := &journaled{index: idx, log: log, progress: make(chan struct{}), work: make(chan struct{}, 1), done: make(chan struct{})}
	if err := b.recover(ctx, path+".journal"); err != nil {
		if b.j != nil {
			b.j.close()
		}
		if b.conn != nil {
			b.conn.Close()
		}
		idx.close()
		return nil, err
	}
	go b.indexLoop()
	return b, nil
}

// recover brings the index up to the journal and starts a fresh segment.
func (b *journaled) recover(ctx context.Context, dir string) error {
	var err error
	if b.j, err = openJournal(dir, journalSegmentBytes); err != nil {
		return err
	}
	if b.conn, err = b.index.db.Conn(ctx); err != nil {
		return err
	}
	frames, err := b.j.load(b.log)
	if err != nil {
		return err
	}
	seq, head, err := b.index.head(ctx)
	if err != nil {
		return err
	}
	cpSeq, err := b.index.lastCheckpoint(ctx)
	if err != nil {
		return err
	}
	var rows []row
	var cps []Checkpoint
	for _, f := range frames {
		switch {
		case f.row != nil:
			r := *f.row
			if r.seq <= seq {
				continue // already in the index
			}
			if r.seq != seq+1 || !bytes.Equal(r.prev, head[:]) {
				return fmt.Errorf("journal %s does not continue the audit store: its record %d does not link to record %d; keep both and run `schakel audit verify`",
					dir, r.seq, seq)
			}
			rows = append(rows, r)
			seq = r.seq
			copy(head[:], r.hash)
		case f.cp.Seq > cpSeq:
			cps = append(cps, *f.cp)
			cpSeq = f.cp.Seq
		}
	}
	if len(rows) > 0 || len(cps) > 0 {
		if err := b.indexTx(ctx, rows, cps, true); err != nil {
			return fmt.Errorf("journal: replay into the index: %w", err)
		}
		b.log.Info("audit journal replayed into the index", "records", len(rows), "checkpoints", len(cps), "last_seq", seq)
	}
	if err := b.j.removeLoaded(); err != nil {
		return fmt.Errorf("journal: remove replayed segments: %w", err)
	}
	b.written, b.indexed, b.oldest = seq, seq, b.j.num+1
	return nil
}

// indexTx writes rows and checkpoints into the index in one transaction on
// the indexer's connection; durable makes the index files durable after the
// commit (synchronous=NORMAL does not).
func (b *journaled) indexTx(ctx context.Context, rows []row, cps []Checkpoint, durable bool) error {
	tx, err := b.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := b.index.insertTx(ctx, tx, rows, cps); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if durable {
		return b.index.syncFiles()
	}
	return nil
}

// changed wakes everyone waiting on the index. Called with mu held.
func (b *journaled) changed() {
	close(b.progress)
	b.progress = make(chan struct{})
}

// head and lastCheckpoint read the index once it holds everything written.
func (b *journaled) head(ctx context.Context) (int64, [32]byte, error) {
	if err := b.caughtUp(ctx); err != nil {
		return 0, [32]byte{}, err
	}
	return b.index.head(ctx)
}

func (b *journaled) lastCheckpoint(ctx context.Context) (int64, error) {
	if err := b.caughtUp(ctx); err != nil {
		return 0, err
	}
	return b.index.lastCheckpoint(ctx)
}

// write makes the batch durable in the journal and queues it for the index.
// It refuses while the index is failing (the node must not go on with an
// audit log it cannot search) and waits while the index is far behind.
func (b *journaled) write(ctx context.Context, rows []row, cp *Checkpoint) error {
	for {
		b.mu.Lock()
		if b.failing != nil {
			err := b.failing
			b.mu.Unlock()
			return fmt.Errorf("audit index: %w", err)
		}
		if b.queued < maxIndexLag {
			b.mu.Unlock()
			break
		}
		ch := b.progress
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	seg, err := b.j.append(rows, cp)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.queue = append(b.queue, indexBatch{rows: rows, cp: cp, segment: seg})
	b.queued += len(rows)
	if len(rows) > 0 {
		b.written = rows[len(rows)-1].seq
	}
	wake := b.queued >= indexGather || len(b.queue) == 1
	b.mu.Unlock()
	if wake {
		b.wake()
	}
	return nil
}

// indexLoop writes queued batches into the index, several per transaction,
// and removes journal segments once the index holds them durably. A failed
// write is retried with backoff; meanwhile write refuses new batches.
func (b *journaled) indexLoop() {
	defer close(b.done)
	backoff := 50 * time.Millisecond
	for {
		take, seg, rows, cps := b.take()
		if take == 0 {
			return // closing, and nothing is left
		}
		// A segment may go once the index holds its frames durably: the
		// first batch of a later segment makes this transaction durable.
		// (Close makes the last transactions durable itself.)
		durable := seg > b.oldest
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := b.indexTx(ctx, rows, cps, durable)
		cancel()

		b.mu.Lock()
		if err != nil {
			if b.failing == nil {
				b.log.Error("audit index write failed; refusing new records until it recovers (they stay in the journal)", "records", len(rows), "err", err)
			}
			b.failing = err
			b.changed()
			stop := b.closing
			b.mu.Unlock()
			if stop {
				return // the journal keeps them; the next open replays them
			}
			select {
			case <-time.After(backoff):
			case <-b.work: // woken by Close: retry now
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		if b.failing != nil {
			b.log.Info("audit index recovered; accepting records again")
			b.failing = nil
		}
		backoff = 50 * time.Millisecond
		b.queue = b.queue[take:]
		b.queued -= len(rows)
		if len(rows) > 0 {
			b.indexed = rows[len(rows)-1].seq
		}
		b.changed()
		b.mu.Unlock()
		if durable {
			if err := b.j.remove(b.oldest, seg-1); err != nil {
				b.log.Warn("audit journal: removing indexed segments failed", "err", err)
			} else {
				b.oldest = seg
			}
		}
	}
}

// take waits for work (gathering a while when there is little), then
// returns how many queued batches the next transaction takes, the segment
// of the last, and their rows and checkpoints; 0 when the store closes
// with nothing left. The batches stay queued until they are indexed.
func (b *journaled) take() (int, uint64, []row, []Checkpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) == 0 && !b.closing {
		b.mu.Unlock()
		<-b.work
		b.mu.Lock()
	}
	if len(b.queue) == 0 {
		return 0, 0, nil, nil
	}
	if b.queued < indexGather && !b.closing && !b.urgent {
		b.mu.Unlock()
		b.gather()
		b.mu.Lock()
	}
	b.urgent = false
	var rows []row
	var cps []Checkpoint
	take := 0
	for _, q := range b.queue {
		if take > 0 && len(rows)+len(q.rows) > maxIndexTx {
			break
		}
		rows = append(rows, q.rows...)
		if q.cp != nil {
			cps = append(cps, *q.cp)
		}
		take++
	}
	return take, b.queue[take-1].segment, rows, cps
}

// gather waits, up to indexDelay, for the queue to fill or for a reason not
// to wait.
func (b *journaled) gather() {
	t := time.NewTimer(indexDelay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-b.work:
		}
		b.mu.Lock()
		enough := b.queued >= indexGather || b.closing || b.urgent
		b.mu.Unlock()
		if enough {
			return
		}
	}
}

// caughtUp waits until the index holds every record written before it was
// called.
func (b *journaled) caughtUp(ctx context.Context) error {
	b.mu.Lock()
	target := b.written
	b.mu.Unlock()
	for {
		b.mu.Lock()
		if b.indexed >= target {
			b.mu.Unlock()
			return nil
		}
		if b.failing != nil {
			err := b.failing
			b.mu.Unlock()
			return fmt.Errorf("%w: the index is behind the journal: %w", ErrUnavailable, err)
		}
		ch := b.progress
		b.urgent = true
		b.mu.Unlock()
		b.wake()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wake tells the indexer to look at the queue.
func (b *journaled) wake() {
	select {
	case b.work <- struct{}{}:
	default:
	}
}

func (b *journaled) query(ctx context.Context, f Filter) ([]row, error) {
	if err := b.caughtUp(ctx); err != nil {
		return nil, err
	}
	return b.index.query(ctx, f)
}

func (b *journaled) count(ctx context.Context, f Filter) (int, error) {
	if err := b.caughtUp(ctx); err != nil {
		return 0, err
	}
	return b.index.count(ctx, f)
}

func (b *journaled) scan(ctx context.Context, fn func(row) error) error {
	if err := b.caughtUp(ctx); err != nil {
		return err
	}
	return b.index.scan(ctx, fn)
}

func (b *journaled) checkpoints(ctx context.Context, last bool) ([]Checkpoint, error) {
	if err := b.caughtUp(ctx); err != nil {
		return nil, err
	}
	return b.index.checkpoints(ctx, last)
}

// close drains the index (durably) and removes the journal, or, when the
// index cannot take the rest, leaves the journal for the next open.
func (b *journaled) close() error {
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	b.wake()
	<-b.done
	b.mu.Lock()
	drained := len(b.queue) == 0
	b.mu.Unlock()
	var errs []error
	err := b.j.closeFile()
	switch {
	case !drained:
		errs = append(errs, errors.New("audit index did not take every record; they stay in the journal and are indexed at the next open"))
	case err == nil:
		// The last index transactions may not be on disk yet; once they
		// are, the journal has nothing the index lacks.
		if err = b.index.syncFiles(); err == nil {
			err = b.j.remove(b.oldest, b.j.num)
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	b.j.close()
	if err := b.conn.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := b.index.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
