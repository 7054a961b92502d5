package push

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed: the store was closed before the message was queued.
var ErrClosed = errors.New("push store closed")

// maxBatch bounds one group commit of the outbox.
const maxBatch = 256

// enqueued is one Enqueue waiting for the group commit.
type enqueued struct {
	m    OutMessage
	done chan enqueueResult
}

type enqueueResult struct {
	m       OutMessage
	created bool
	err     error
}

// outboxWriter group-commits the outbox: a single goroutine takes every
// Enqueue waiting at the time into one durable transaction (one fsync on
// SQLite, one commit on PostgreSQL) and answers each only after it. While
// a batch commits, the next one gathers, so under load a commit carries
// every message that arrived during the last one, and a lone message
// waits for nothing but its own commit.
type outboxWriter struct {
	d     *DB
	queue chan *enqueued
	mu    sync.RWMutex // held for writing by close: no Enqueue after it
	shut  bool
	quit  chan struct{}
	done  chan struct{}
	// batches and messages count the commits and what they carried.
	stats struct {
		sync.Mutex
		batches, messages int64
	}
}

func newOutboxWriter(d *DB) *outboxWriter {
	w := &outboxWriter{d: d, queue: make(chan *enqueued, maxBatch), quit: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// enqueue hands m to the writer and waits until its batch is durable (or
// ctx ends; the message may then still be queued, and sending its id again
// finds it).
func (w *outboxWriter) enqueue(ctx context.Context, m OutMessage) (OutMessage, bool, error) {
	p := &enqueued{m: m, done: make(chan enqueueResult, 1)}
	w.mu.RLock()
	if w.shut {
		w.mu.RUnlock()
		return OutMessage{}, false, ErrClosed
	}
	select {
	case w.queue <- p:
	case <-ctx.Done():
		w.mu.RUnlock()
		return OutMessage{}, false, ctx.Err()
	}
	w.mu.RUnlock()
	select {
	case r := <-p.done:
		return r.m, r.created, r.err
	case <-ctx.Done():
		return OutMessage{}, false, ctx.Err()
	}
}

func (w *outboxWriter) loop() {
	defer close(w.done)
	for {
		var batch []*enqueued
		select {
		case p := <-w.queue:
			batch = append(batch, p)
		case <-w.quit:
			// close holds intake shut: what is queued now is all there is.
			for {
				select {
				case p := <-w.queue:
					batch = append(batch, p)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				w.commit(batch)
			}
			return
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case p := <-w.queue:
				batch = append(batch, p)
			default:
				break gather
			}
		}
		w.commit(batch)
	}
}

// commit writes batch in one durable transaction. When that fails, each
// message is tried in a transaction of its own, so that one bad message
// does not fail the others.
func (w *outboxWriter) commit(batch []*enqueued) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created := make([]bool, len(batch))
	st, err := w.d.prepared(ctx, insertOutSQL)
	if err == nil {
		err = w.d.durable(ctx, func(tx *sql.Tx) error {
			ins := tx.StmtContext(ctx, st)
			for i, p := range batch {
				var err error
				if created[i], err = insertOutWith(ctx, ins, p.m); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil && len(batch) > 1 {
		for _, p := range batch {
			w.commit([]*enqueued{p})
		}
		return
	}
	w.stats.Lock()
	w.stats.batches++
	w.stats.messages += int64(len(batch))
	w.stats.Unlock()
	for i, p := range batch {
		r := enqueueResult{m: p.m, created: created[i], err: err}
		if err == nil && !created[i] {
			// The tenant sent this id before: answer with what is queued.
			r.m, r.err = w.d.Out(ctx, p.m.Tenant, p.m.ID)
		}
		if r.err != nil {
			r.err = fmt.Errorf("outbox: %w", r.err)
		}
		p.done <- r
	}
}

// close stops intake, commits what is queued and waits for the writer.
func (w *outboxWriter) close() {
	w.mu.Lock()
	if w.shut {
		w.mu.Unlock()
		return
	}
	w.shut = true
	w.mu.Unlock()
	close(w.quit)
	<-w.done
}

// OutboxStats are the outbox's group commits so far.
type OutboxStats struct {
	Batches  int64 // durable commits of the outbox
	Messages int64 // messages they carried
}

// OutboxStats reports the outbox's group commits.
func (d *DB) OutboxStats() OutboxStats {
	d.w.stats.Lock()
	defer d.w.stats.Unlock()
	return OutboxStats{Batches: d.w.stats.batches, Messages: d.w.stats.messages}
}

// durable runs fn in a transaction whose commit is on disk when durable
// returns. PostgreSQL's commit is (synchronous_commit, the default). On
// SQLite the connection runs synchronous=NORMAL, which in WAL mode makes a
// commit survive the process but not a power loss; the transactions that
// answer for a message (an accepted message, a stored one, an
// acknowledgement) switch it to FULL, so their commit fsyncs the WAL and
// with it every commit before. What stays NORMAL only moves delivery
// along (leases, attempts, statuses): after a power loss the message is
// delivered again and its receiver answers from its inbox.
func (d *DB) durable(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if d.postgres {
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Commit()
	}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		return err
	}
	// Back to NORMAL for the statements that need no fsync; should that
	// fail, the connection stays FULL, which is only slower.
	defer conn.ExecContext(context.Background(), `PRAGMA synchronous = NORMAL`)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
