package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"
)

// pending is one Append waiting for its batch to commit.
type pending struct {
	rec  Record
	done chan error
}

// commitLoop is the single writer. It gathers concurrent Appends into one
// transaction (one durable commit for all), extends the chain in memory,
// and answers every Append of the batch only after the commit.
func (s *Store) commitLoop() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.CheckpointInterval / 2)
	defer tick.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	for {
		var batch []*pending
		select {
		case p := <-s.queue:
			batch = append(batch, p)
		case <-tick.C:
			if s.seq > s.cpSeq && s.now().Sub(s.cpTime) >= s.cfg.CheckpointInterval {
				s.commit(nil, true)
			}
			continue
		case <-s.quit:
			// Close holds intake shut; whatever is queued is the last batch.
			for {
				select {
				case p := <-s.queue:
					batch = append(batch, p)
					continue
				default:
				}
				break
			}
			s.commit(batch, s.seq+int64(len(batch)) > s.cpSeq)
			return
		}
		deadline := time.Now().Add(s.cfg.MaxDelay)
	gather:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case p := <-s.queue:
				batch = append(batch, p)
				continue
			default:
			}
			// Every Append in progress has its record in the batch: waiting
			// longer would only add latency.
			if int64(len(batch)) >= s.inflight.Load() {
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
				batch = append(batch, p)
			case <-wait.C:
				continue gather
			}
			wait.Stop()
		}
		s.commit(batch, false)
	}
}

// commit writes batch (possibly empty) in one transaction, with a checkpoint
// when one is due or forced, and answers each pending Append.
func (s *Store) commit(batch []*pending, forceCheckpoint bool) {
	rows := make([]row, 0, len(batch))
	seq, head := s.seq, s.head
	var failed error
	for _, p := range batch {
		body, err := encodeBody(p.rec)
		if err != nil {
			p.done <- fmt.Errorf("%w: encode record: %w", ErrUnavailable, err)
			p.done = nil
			continue
		}
		seq++
		prev := head
		head = chainHash(prev, body)
		rows = append(rows, row{seq: seq, prev: prev[:], hash: bytes32(head), body: body, cols: columnsOf(p.rec)})
	}
	now := s.now()
	var cp *Checkpoint
	if seq > s.cpSeq && (forceCheckpoint || seq-s.cpSeq >= int64(s.cfg.CheckpointEvery) || now.Sub(s.cpTime) >= s.cfg.CheckpointInterval) {
		jws, err := s.sign(checkpointClaims{Node: s.cfg.Node, Seq: seq, Head: hex.EncodeToString(head[:]), IAT: now.Unix()})
		if err != nil {
			// The records still go in; the next checkpoint anchors them.
			s.log.Error("audit checkpoint not signed", "seq", seq, "err", err)
		} else {
			cp = &Checkpoint{Seq: seq, Head: bytes32(head), Time: now, JWS: jws}
		}
	}
	if len(rows) > 0 || cp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		failed = s.be.write(ctx, rows, cp)
		if s.cfg.Observe != nil {
			s.cfg.Observe(len(rows), time.Since(start), failed)
		}
		if failed != nil {
			// Re-read the head: the transaction rolled back, or another
			// writer moved it; either way the next batch chains from disk.
			if q, h, err := s.be.head(ctx); err == nil {
				s.seq, s.head = q, h
			}
			s.log.Error("audit store write failed", "records", len(rows), "err", failed)
			failed = fmt.Errorf("%w: %w", ErrUnavailable, failed)
		} else {
			s.seq, s.head = seq, head
			s.lastSeq.Store(seq)
			s.batches.Add(1)
			s.committed.Add(int64(len(rows)))
			if cp != nil {
				s.cpSeq, s.cpTime = cp.Seq, now
				// Logged so a copy lives outside the store: an external witness
				// against rewriting the chain and dropping its checkpoints.
				s.log.Info("audit checkpoint", "seq", cp.Seq, "head", hex.EncodeToString(cp.Head), "jws", cp.JWS)
			}
		}
		cancel()
	}
	for _, p := range batch {
		if p.done != nil {
			p.done <- failed
		}
	}
}

// pollSlice is how often a gathering batch re-checks whether every Append
// in progress has joined it.
const pollSlice = 50 * time.Microsecond

func bytes32(h [32]byte) []byte { return append([]byte(nil), h[:]...) }
