package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"
)

// pending is one record queued for the committer, encoded by whoever
// queued it: the single committer only chains and writes.
type pending struct {
	interaction string
	body        []byte     // canonical body (encodeBody)
	cols        columns    // searchable columns (columnsOf)
	encErr      error      // the record could not be encoded
	done        chan error // the waiting Append; nil for a Deferred record
	bad         bool       // could not be encoded; already answered
}

// newPending encodes r for the committer.
func newPending(r Record) *pending {
	p := &pending{interaction: r.Interaction}
	if p.body, p.encErr = encodeBody(r); p.encErr == nil {
		p.cols = columnsOf(r)
	}
	return p
}

func (p *pending) waits() bool { return p.done != nil }

// commitLoop is the single writer. It gathers concurrent Appends into one
// transaction (one durable commit for all), extends the chain in memory,
// and answers every Append of the batch only after the commit. Deferred
// records wait for a batch some Append waits on, up to MaxDefer.
func (s *Store) commitLoop() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.CheckpointInterval / 2)
	defer tick.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	// carry holds the Deferred records of a failed batch: they go first
	// into the next one, so no record queued after them is made durable
	// without them.
	var carry []*pending
	for {
		batch, waiting := carry, 0
		carry = nil
		add := func(p *pending) {
			batch = append(batch, p)
			if p.waits() {
				waiting++
			}
		}
		if len(batch) == 0 {
			select {
			case p := <-s.queue:
				add(p)
			case <-tick.C:
				if s.seq > s.cpSeq && s.now().Sub(s.cpTime) >= s.cfg.CheckpointInterval {
					s.commit(nil, true)
				}
				continue
			case <-s.quit:
				s.final(batch)
				return
			}
		}
		if waiting == 0 {
			// No one waits for these yet: hold them for the next batch
			// someone does, so they cost no durable write of their own.
			until := time.Now().Add(s.cfg.MaxDefer)
		hold:
			for waiting == 0 && len(batch) < s.cfg.MaxBatch {
				left := time.Until(until)
				if left <= 0 {
					break
				}
				wait.Reset(left)
				select {
				case p := <-s.queue:
					add(p)
				case <-wait.C:
					break hold
				case <-s.quit:
					wait.Stop()
					s.final(batch)
					return
				}
				wait.Stop()
			}
		}
		first := time.Now()
		deadline, delayed := first.Add(s.cfg.MaxDelay), first.Add(s.cfg.CommitDelay)
	gather:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case p := <-s.queue:
				add(p)
				continue
			default:
			}
			// Every Append in progress has its record in the batch: waiting
			// longer would only add latency, unless other requests under way
			// will append soon (Config.Siblings), for a little while.
			if int64(waiting) >= s.inflight.Load() &&
				(s.cfg.Siblings == nil || waiting >= s.cfg.Siblings() || !time.Now().Before(delayed)) {
				break
			}
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			// Wait in short slices, re-checking the count: Appends answered
			// by the previous batch leave it as they return, and a batch must
			// not sit out MaxDelay for them.
			wait.Reset(min(left, pollSlice))
			select {
			case p := <-s.queue:
				add(p)
			case <-wait.C:
				continue gather
			}
			wait.Stop()
		}
		carry = s.commit(batch, false)
	}
}

// final commits what is left when the store closes: batch and whatever is
// queued (Close holds intake shut), with a checkpoint.
func (s *Store) final(batch []*pending) {
	for {
		select {
		case p := <-s.queue:
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	if lost := s.commit(batch, s.seq+int64(len(batch)) > s.cpSeq); len(lost) > 0 {
		s.log.Error("audit store closed with deferred records it could not write", "records", len(lost))
	}
}

// commit writes batch (possibly empty) in one transaction, with a checkpoint
// when one is due or forced, and answers each waiting Append. It returns
// the Deferred records of a batch that failed, to be tried again.
func (s *Store) commit(batch []*pending, forceCheckpoint bool) (retry []*pending) {
	type encoded struct {
		body []byte
		cols columns
	}
	recs := make([]encoded, 0, len(batch))
	awaited := false
	for _, p := range batch {
		if p.encErr != nil {
			err := fmt.Errorf("%w: encode record: %w", ErrUnavailable, p.encErr)
			if p.waits() {
				p.done <- err
			} else {
				s.log.Error("deferred audit record dropped", "interaction", p.interaction, "err", err)
			}
			p.bad = true
			continue
		}
		awaited = awaited || p.waits()
		recs = append(recs, encoded{p.body, p.cols})
	}
	now := s.now()
	// build chains the records onto the log's tip t and adds a checkpoint
	// when one is due. A shared backend calls it inside its write lock with
	// the tip it read there; the others with the committer's own.
	var end tip
	var cp *Checkpoint
	build := func(t tip) []row {
		rows := make([]row, 0, len(recs))
		seq, head := t.seq, t.head
		for _, r := range recs {
			seq++
			prev := head
			head = chainHash(prev, r.body)
			rows = append(rows, row{seq: seq, prev: prev[:], hash: bytes32(head), body: r.body, cols: r.cols})
		}
		end, cp = tip{seq: seq, head: head, cpSeq: t.cpSeq, cpTime: t.cpTime}, nil
		if seq > t.cpSeq && (forceCheckpoint || seq-t.cpSeq >= int64(s.cfg.CheckpointEvery) || now.Sub(t.cpTime) >= s.cfg.CheckpointInterval) {
			jws, err := s.sign(checkpointClaims{Node: s.cfg.Node, Seq: seq, Head: hex.EncodeToString(head[:]), IAT: now.Unix()})
			if err != nil {
				// The records still go in; the next checkpoint anchors them.
				s.log.Error("audit checkpoint not signed", "seq", seq, "err", err)
			} else {
				cp = &Checkpoint{Seq: seq, Head: bytes32(head), Time: now, JWS: jws}
				end.cpSeq, end.cpTime = seq, now
			}
		}
		return rows
	}
	var failed error
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	wrote := false
	if shared, ok := s.be.(sharedWriter); ok {
		// Other replicas append to the same log: the tip is only known
		// inside the backend's write lock.
		if len(recs) > 0 || forceCheckpoint {
			var n int
			n, failed = shared.writeShared(ctx, func(t tip) ([]row, *Checkpoint) {
				if t.cpTime.IsZero() {
					t.cpTime = s.cpTime // no checkpoint yet: count from this Store's start
				}
				return build(t), cp
			})
			wrote = n > 0 || failed != nil
			if !wrote {
				// Nothing to add: another replica anchored the chain already.
				s.seq, s.head, s.cpSeq, s.cpTime = end.seq, end.head, end.cpSeq, end.cpTime
			}
		}
	} else {
		rows := build(tip{seq: s.seq, head: s.head, cpSeq: s.cpSeq, cpTime: s.cpTime})
		if len(rows) > 0 || cp != nil {
			failed = s.be.write(ctx, rows, cp)
			wrote = true
		}
	}
	if wrote {
		if s.cfg.Observe != nil {
			s.cfg.Observe(len(recs), time.Since(start), failed)
		}
		if failed != nil {
			// Re-read the head: the transaction rolled back, or another
			// writer moved it; either way the next batch chains from disk.
			if q, h, err := s.be.head(ctx); err == nil {
				s.seq, s.head = q, h
			}
			s.log.Error("audit store write failed", "records", len(recs), "err", failed)
			failed = fmt.Errorf("%w: %w", ErrUnavailable, failed)
		} else {
			s.seq, s.head = end.seq, end.head
			s.lastSeq.Store(end.seq)
			s.batches.Add(1)
			if awaited {
				s.awaited.Add(1)
			}
			s.committed.Add(int64(len(recs)))
			if cp != nil {
				// Logged so a copy lives outside the store: an external witness
				// against rewriting the chain and dropping its checkpoints.
				s.log.Info("audit checkpoint", "seq", cp.Seq, "head", hex.EncodeToString(cp.Head), "jws", cp.JWS)
			}
			s.cpSeq, s.cpTime = end.cpSeq, end.cpTime
		}
	}
	for _, p := range batch {
		switch {
		case p.bad:
		case p.waits():
			p.done <- failed
		case failed != nil:
			retry = append(retry, p)
		}
	}
	return retry
}

// tip is the end of the log a batch chains onto: the last record's seq and
// hash, and the last checkpoint's seq and time.
type tip struct {
	seq    int64
	head   [32]byte
	cpSeq  int64
	cpTime time.Time
}

// sharedWriter is a backend other Stores (a node's replicas) append to as
// well. writeShared takes the log's write lock, reads the tip inside its
// transaction, stores what build makes of it, and returns how many rows and
// checkpoints it wrote.
type sharedWriter interface {
	writeShared(ctx context.Context, build func(t tip) ([]row, *Checkpoint)) (int, error)
}

// pollSlice is how often a gathering batch re-checks whether every Append
// in progress has joined it.
const pollSlice = 50 * time.Microsecond

func bytes32(h [32]byte) []byte { return append([]byte(nil), h[:]...) }
