package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
)

// Entry is a record as the chain holds it: its position, its links and its
// canonical body, exactly the bytes that were hashed. It is what leaves the
// node (a partner's export, shipping to the central log), because whoever
// receives it can recompute the hash without trusting a re-encoding.
type Entry struct {
	Seq  int64  `json:"seq"`
	Prev string `json:"prev"` // hex SHA-256 chain hash of record Seq-1 (zeros at the start of the chain)
	Hash string `json:"hash"` // hex SHA-256 chain hash of this record
	// Body is the canonical body as a JSON string: a string round-trips
	// byte for byte, where an embedded JSON value could be re-escaped.
	Body string `json:"body"`
}

// ErrBrokenEntry is wrapped by Entry.Check when an entry's hash does not
// follow from its link and body.
var ErrBrokenEntry = errors.New("audit entry does not hash to its chain hash")

// Links returns the entry's prev and hash, checking that they are SHA-256 hashes.
func (e Entry) Links() (prev, hash [32]byte, err error) {
	for _, x := range []struct {
		name, hex string
		out       *[32]byte
	}{{"prev", e.Prev, &prev}, {"hash", e.Hash, &hash}} {
		b, err := hex.DecodeString(x.hex)
		if err != nil || len(b) != 32 {
			return prev, hash, fmt.Errorf("%w: seq %d: %s is not a hex SHA-256 hash", ErrBrokenEntry, e.Seq, x.name)
		}
		copy(x.out[:], b)
	}
	return prev, hash, nil
}

// Check verifies hash(n) = SHA-256(domain || prev || body) and returns the
// decoded record.
func (e Entry) Check() (Record, error) {
	prev, hash, err := e.Links()
	if err != nil {
		return Record{}, err
	}
	if chainHash(prev, []byte(e.Body)) != hash {
		return Record{}, fmt.Errorf("%w: seq %d", ErrBrokenEntry, e.Seq)
	}
	r, err := decodeBody([]byte(e.Body))
	if err != nil {
		return Record{}, fmt.Errorf("%w: seq %d: %w", ErrBrokenEntry, e.Seq, err)
	}
	r.Seq = e.Seq
	return r, nil
}

// Entries returns the chained records f selects, in chain order (Newest is
// ignored), with their links. Legacy records (written before the chain)
// have no links and are left out.
func (s *Store) Entries(ctx context.Context, f Filter) ([]Entry, error) {
	f.Newest = false
	rows, err := s.be.query(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("read audit entries: %w", err)
	}
	out := make([]Entry, 0, len(rows))
	for _, rw := range rows {
		if rw.body == nil || len(rw.hash) != 32 || len(rw.prev) != 32 {
			continue
		}
		out = append(out, Entry{Seq: rw.seq, Prev: hex.EncodeToString(rw.prev), Hash: hex.EncodeToString(rw.hash), Body: string(rw.body)})
	}
	return out, nil
}

// LastSeq is the chain position of the last durable record: how far a
// reader of the log could get.
func (s *Store) LastSeq() int64 { return s.lastSeq.Load() }

// Unindexed is, for a store opened read-only, the number of records at
// open that only the journal held, not yet the index its reads see (the
// writing node indexes them within moments).
func (s *Store) Unindexed() int64 { return s.unindexed }

// Writable tells whether the log can take a commit now, writing nothing:
// on PostgreSQL it reaches the server on the connection commits use (so a
// broken connection is replaced), elsewhere it reads the log's tip. A node
// whose last commit failed asks this before it calls itself ready again,
// rather than wait for a request its readiness keeps away.
func (s *Store) Writable(ctx context.Context) error {
	if p, ok := s.be.(pinger); ok {
		if err := p.ping(ctx); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil
	}
	if _, _, err := s.be.head(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// LastCheckpoint returns the newest stored checkpoint; ok is false when
// there is none yet.
func (s *Store) LastCheckpoint(ctx context.Context) (cp Checkpoint, ok bool, err error) {
	cps, err := s.be.checkpoints(ctx, true)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read audit checkpoint: %w", err)
	}
	if len(cps) == 0 {
		return Checkpoint{}, false, nil
	}
	return cps[0], true, nil
}
