package audit

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Kinds of Problem.
const (
	ProblemChanged    = "changed"    // a record's content or columns differ from what was chained
	ProblemRemoved    = "removed"    // a record the chain needs is missing
	ProblemInserted   = "inserted"   // a record that is not part of the chain
	ProblemReordered  = "reordered"  // a record stored out of its chain order
	ProblemTruncated  = "truncated"  // records a checkpoint anchors are gone from the end
	ProblemCheckpoint = "checkpoint" // a checkpoint that does not verify
)

// Problem is one finding of Verify. Seq and EventID name the record (EventID
// is empty for a record that is gone).
type Problem struct {
	Kind    string `json:"kind"`
	Seq     int64  `json:"seq"`
	EventID string `json:"eventId,omitempty"`
	Detail  string `json:"detail"`
}

func (p Problem) String() string {
	s := fmt.Sprintf("%s: seq %d", p.Kind, p.Seq)
	if p.EventID != "" {
		s += " (event " + p.EventID + ")"
	}
	return s + ": " + p.Detail
}

// Report is the outcome of Verify.
type Report struct {
	Records      int64 `json:"records"`      // chained records checked
	Legacy       int64 `json:"legacy"`       // records from before the chain, not covered by it
	Checkpoints  int   `json:"checkpoints"`  // checkpoints checked
	Signed       bool  `json:"signed"`       // checkpoint signatures were checked against keys
	LastAnchored int64 `json:"lastAnchored"` // seq of the last record a valid checkpoint covers
	// Unindexed counts records that only the journal holds yet (a running
	// node, or one stopped before it indexed them; the next start does).
	// They follow the last record checked and are not part of this report.
	Unindexed int64     `json:"unindexed,omitempty"`
	Problems  []Problem `json:"problems"`
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

type entry struct {
	seq     int64
	eventID string
	prev    [32]byte
	hash    [32]byte
	flagged bool
}

// Verify checks the whole log: every record against its hash, every link of
// the chain, the searchable columns against the hashed content, and every
// checkpoint against the chain. With keys, checkpoint signatures are checked
// too; without, only their content (say so to whoever reads the report).
func Verify(ctx context.Context, s *Store, keys jwk.Set) (*Report, error) {
	rep := &Report{Signed: keys != nil, Unindexed: s.unindexed}
	var entries []entry
	var lastLegacy int64
	problem := func(kind string, e *entry, detail string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{Kind: kind, Seq: e.seq, EventID: e.eventID, Detail: fmt.Sprintf(detail, args...)})
		e.flagged = true
	}
	err := s.be.scan(ctx, func(rw row) error {
		e := entry{seq: rw.seq, eventID: rw.cols.EventID}
		if rw.hash == nil && rw.body == nil && len(entries) == 0 {
			rep.Legacy++
			lastLegacy = rw.seq
			return nil
		}
		rep.Records++
		copy(e.prev[:], rw.prev)
		copy(e.hash[:], rw.hash)
		rec, err := decodeBody(rw.body)
		if err == nil {
			e.eventID = rec.EventID
		}
		switch {
		case len(rw.prev) != 32 || len(rw.hash) != 32:
			problem(ProblemChanged, &e, "the record has no valid chain hashes")
		case chainHash(e.prev, rw.body) != e.hash:
			problem(ProblemChanged, &e, "the content does not match its hash")
		case err != nil:
			problem(ProblemChanged, &e, "the content is not a valid record")
		case columnsOf(rec) != rw.cols:
			problem(ProblemChanged, &e, "the searchable columns differ from the hashed content")
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify audit log: %w", err)
	}
	checkLinks(entries, lastLegacy, problem)

	cps, err := s.be.checkpoints(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("verify audit log: %w", err)
	}
	bySeq := make(map[int64]int, len(entries))
	for i, e := range entries {
		bySeq[e.seq] = i
	}
	var last int64
	if len(entries) > 0 {
		last = entries[len(entries)-1].seq
	}
	for _, cp := range cps {
		rep.Checkpoints++
		at := &entry{seq: cp.Seq}
		claims, err := parseCheckpoint(cp.JWS, keys)
		if err != nil {
			problem(ProblemCheckpoint, at, "%v", err)
			continue
		}
		if claims.Seq != cp.Seq || claims.Head != hex.EncodeToString(cp.Head) {
			problem(ProblemCheckpoint, at, "the stored checkpoint differs from its signed content")
			continue
		}
		i, ok := bySeq[claims.Seq]
		switch {
		case !ok && claims.Seq > last:
			problem(ProblemTruncated, at, "records %d to %d, anchored by a checkpoint, are gone", last+1, claims.Seq)
		case !ok:
			problem(ProblemRemoved, at, "the record a checkpoint anchors is gone")
		case hex.EncodeToString(entries[i].hash[:]) != claims.Head:
			problem(ProblemChanged, &entries[i], "the chain up to here does not match its signed checkpoint: records up to here were changed, inserted or removed and the chain recomputed")
		default:
			rep.LastAnchored = max(rep.LastAnchored, claims.Seq)
		}
	}
	return rep, nil
}

// checkLinks finds the broken links of the chain and says, where it can,
// what broke them: a record removed, inserted or moved.
func checkLinks(entries []entry, lastLegacy int64, problem func(string, *entry, string, ...any)) {
	idx := make(map[[32]byte]int, len(entries))
	refs := make(map[[32]byte][]int, len(entries))
	for i, e := range entries {
		idx[e.hash] = i
		refs[e.prev] = append(refs[e.prev], i)
	}
	var genesis [32]byte
	for i := range entries {
		e := &entries[i]
		want, prevSeq := genesis, lastLegacy
		if i > 0 {
			want, prevSeq = entries[i-1].hash, entries[i-1].seq
		}
		if e.prev == want {
			continue
		}
		j, found := idx[e.prev]
		if e.prev == genesis {
			j, found = -1, true
		}
		switch {
		case found && j > i:
			problem(ProblemReordered, e, "stored before seq %d, which precedes it in the chain", entries[j].seq)
		case found:
			// The records between the true predecessor j and i are out of place:
			// moved here from elsewhere in the chain, or never part of it.
			for k := j + 1; k < i; k++ {
				m := &entries[k]
				if m.flagged {
					continue
				}
				moved := false
				for _, r := range refs[m.hash] {
					moved = moved || r <= j || r >= i
				}
				if moved {
					problem(ProblemReordered, m, "stored out of its chain order (moved from elsewhere in the chain)")
				} else {
					problem(ProblemInserted, m, "not part of the chain between seq %d and seq %d", prevSeqOf(entries, j, lastLegacy), e.seq)
				}
			}
		case e.seq-prevSeq > 1:
			gone := &entry{seq: prevSeq + 1}
			problem(ProblemRemoved, gone, "records %d to %d are gone (the chain continues at event %s)", prevSeq+1, e.seq-1, e.eventID)
		default:
			problem(ProblemRemoved, e, "the record this one follows in the chain is gone or was replaced")
		}
	}
}

func prevSeqOf(entries []entry, j int, lastLegacy int64) int64 {
	if j < 0 {
		return lastLegacy
	}
	return entries[j].seq
}
