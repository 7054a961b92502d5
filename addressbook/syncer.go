package addressbook

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Syncer defaults.
const (
	DefaultSyncInterval = 5 * time.Minute
	DefaultMaxBackoff   = 30 * time.Minute
	defaultJitter       = 0.1
	firstBackoff        = 5 * time.Second
)

// Syncer keeps a Replica current: it syncs at once, then every Interval
// (with jitter, so many nodes do not hit the directory in step), and after a
// failure sooner but backing off: 5s (or Interval, when shorter), 10s, 20s… up to MaxBackoff (past
// Interval, to spare a directory in trouble). The
// replica keeps serving what it has while the directory is unreachable.
type Syncer struct {
	Replica *Replica
	// Name identifies the directory in the log.
	Name string
	// Interval between syncs (default DefaultSyncInterval).
	Interval time.Duration
	// Jitter is the fraction of the wait drawn at random, 0..1 (default 0.1).
	Jitter float64
	// MaxBackoff caps the wait after failures (default DefaultMaxBackoff).
	MaxBackoff time.Duration
	Logger     *slog.Logger
	// OnSync, when set, is called after every attempt (metrics, tests).
	OnSync func(SyncStats, error)
}

// Run syncs until ctx ends; it returns ctx's error.
func (s *Syncer) Run(ctx context.Context) error {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("directory", s.Name)
	failures := 0
	for {
		st, err := s.Replica.Sync(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failures++
			log.Warn("addressbook sync failed; the replica keeps its last state", "err", err, "failures", failures)
		} else {
			failures = 0
			level := slog.LevelDebug
			if st.Upserted+st.Deleted+st.Ignored > 0 || st.Initial {
				level = slog.LevelInfo
			}
			log.Log(ctx, level, "addressbook synced", "initial", st.Initial, "pages", st.Pages, "versions", st.Versions,
				"upserted", st.Upserted, "deleted", st.Deleted, "ignored", st.Ignored, "retries", st.Retries)
		}
		if s.OnSync != nil {
			s.OnSync(st, err)
		}
		if err := sleepCtx(ctx, s.delay(failures, rand.Float64())); err != nil {
			return err
		}
	}
}

// delay is the wait before the next sync after failures consecutive
// failures; r in [0,1) draws the jitter.
func (s *Syncer) delay(failures int, r float64) time.Duration {
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultSyncInterval
	}
	maxBackoff := s.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = DefaultMaxBackoff
	}
	jitter := s.Jitter
	if jitter <= 0 || jitter > 1 {
		jitter = defaultJitter
	}
	d := interval
	if failures > 0 {
		d = min(min(firstBackoff, interval)<<min(failures-1, 20), maxBackoff)
	}
	// ±jitter/2 around d.
	return time.Duration(float64(d) * (1 + jitter*(r-0.5)))
}
