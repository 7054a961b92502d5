// Package audittest is an audit log in memory for the tests of packages
// that write audit records (audit.Log), so that they can read back what
// was recorded.
package audittest

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/schakel-nl/schakel/audit"
)

// Log keeps every record appended, in order. Fail makes every Append fail,
// as a full disk would; set it before the log is used.
type Log struct {
	Fail bool

	mu   sync.Mutex
	recs []audit.Record
}

// Append keeps r, or fails when Fail is set.
func (l *Log) Append(_ context.Context, r audit.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Fail {
		return errors.New("disk full")
	}
	l.recs = append(l.recs, r)
	return nil
}

// Records are the records kept so far.
func (l *Log) Records() []audit.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// Find are the records of interaction.
func (l *Log) Find(interaction string) []audit.Record {
	var out []audit.Record
	for _, r := range l.Records() {
		if r.Interaction == interaction {
			out = append(out, r)
		}
	}
	return out
}

// Last is the newest record, or the zero record when there is none.
func (l *Log) Last() audit.Record {
	recs := l.Records()
	if len(recs) == 0 {
		return audit.Record{}
	}
	return recs[len(recs)-1]
}
