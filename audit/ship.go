package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Paths of the central log's receiver (package logcentral), on its mTLS
// listener.
const (
	CentralEntriesPath = "/logcentral/v1/entries"
	CentralHeadPath    = "/logcentral/v1/head"
)

// ShipperConfig configures shipping the log to the central log service
// (logging plateau 3–4).
type ShipperConfig struct {
	Store *Store
	// URL is the central log's base URL.
	URL string
	// HTTP presents the node's certificate: its URA is the node's identity
	// at the central log.
	HTTP *http.Client
	// CursorFile keeps the last acknowledged seq across restarts.
	CursorFile string
	// Batch is the most records in one POST (default 500).
	Batch int
	// Poll is how often a caught-up shipper looks for new records (default 250ms).
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed POST
	// (defaults 100ms and 30s); it doubles per failure.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Shipper ships the audit log to the central log service in chain order,
// from the position the central log last acknowledged. It only reads the
// log: Append never waits for it, and since the log never removes a record,
// nothing is lost while the central log is away: the shipper falls behind
// (Lag) and catches up when it is back.
type Shipper struct {
	cfg      ShipperConfig
	log      *slog.Logger
	acked    atomic.Int64
	failures atomic.Int64
	shipped  atomic.Int64
}

// ErrCentralRefused is wrapped by a shipment the central log refused: a gap
// or a fork in the chain it holds for this node, or a broken batch.
var ErrCentralRefused = errors.New("central log refused the batch")

// NewShipper reads the cursor and returns the shipper; Run starts it.
func NewShipper(cfg ShipperConfig) (*Shipper, error) {
	if cfg.Store == nil || cfg.URL == "" || cfg.HTTP == nil || cfg.CursorFile == "" {
		return nil, errors.New("audit shipper: store, URL, HTTP client and cursor file are required")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	s := &Shipper{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	seq, err := readCursor(cfg.CursorFile)
	if err != nil {
		return nil, fmt.Errorf("audit shipper cursor %s: %w", cfg.CursorFile, err)
	}
	s.acked.Store(seq)
	return s, nil
}

// Acknowledged is the highest seq the central log has acknowledged.
func (s *Shipper) Acknowledged() int64 { return s.acked.Load() }

// Lag is how many records the central log does not hold yet.
func (s *Shipper) Lag() int64 { return max(0, s.cfg.Store.LastSeq()-s.acked.Load()) }

// Failures counts failed shipments since the start.
func (s *Shipper) Failures() int64 { return s.failures.Load() }

// Shipped counts records acknowledged since the start.
func (s *Shipper) Shipped() int64 { return s.shipped.Load() }

// Run ships until ctx ends. A failed shipment is retried with back-off;
// Run returns only when ctx is done.
func (s *Shipper) Run(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		n, err := s.ShipOnce(ctx)
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() == nil:
			s.failures.Add(1)
			backoff = min(max(2*backoff, s.cfg.MinBackoff), s.cfg.MaxBackoff)
			wait = backoff
			s.log.Warn("audit shipping failed; retrying", "acknowledged", s.acked.Load(), "lag", s.Lag(), "retry_in", wait, "err", err)
		case n == 0:
			backoff, wait = 0, s.cfg.Poll
		default:
			backoff = 0
			continue // more may be waiting: no pause while behind
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// ShipOnce sends the next batch after the acknowledged position and
// returns how many records the central log newly acknowledged.
func (s *Shipper) ShipOnce(ctx context.Context) (int, error) {
	from := s.acked.Load()
	if s.cfg.Store.LastSeq() <= from {
		// Nothing new: no query, which would also hurry the journal's
		// indexer along on every poll.
		return 0, nil
	}
	entries, err := s.cfg.Store.Entries(ctx, Filter{AfterSeq: from, Limit: s.cfg.Batch})
	if err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return 0, nil
	}
	body, err := json.Marshal(map[string]any{"entries": entries})
	if err != nil {
		return 0, err
	}
	ack, err := s.post(ctx, body)
	if ack != nil && ack.Acknowledged != from {
		// The central log's position is the truth: behind ours (it lost
		// records, or ours was never acknowledged) we resend from there;
		// ahead (a cursor not yet saved when we stopped) we go on from
		// there, and a fork is refused again from any position.
		if werr := writeCursor(s.cfg.CursorFile, ack.Acknowledged); werr != nil {
			return 0, fmt.Errorf("save shipping cursor: %w", werr)
		}
		if ack.Acknowledged > from {
			s.shipped.Add(ack.Acknowledged - from)
		}
		s.acked.Store(ack.Acknowledged)
	}
	if err != nil {
		return 0, err
	}
	return int(max(0, ack.Acknowledged-from)), nil
}

type centralAck struct {
	Acknowledged int64  `json:"acknowledged"`
	Detail       string `json:"detail"`
	Reason       string `json:"reason"`
}

// post sends a batch; on a refusal it still returns the position the
// central log reported, when it did.
func (s *Shipper) post(ctx context.Context, body []byte) (*centralAck, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL+CentralEntriesPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.cfg.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var ack centralAck
	jsonErr := json.Unmarshal(raw, &ack)
	switch {
	case resp.StatusCode == http.StatusOK && jsonErr == nil:
		return &ack, nil
	case resp.StatusCode == http.StatusConflict && jsonErr == nil:
		return &ack, fmt.Errorf("%w (%s): %s", ErrCentralRefused, ack.Reason, ack.Detail)
	case jsonErr == nil && ack.Detail != "":
		return nil, fmt.Errorf("central log: HTTP %d: %s", resp.StatusCode, ack.Detail)
	}
	return nil, fmt.Errorf("central log: HTTP %d", resp.StatusCode)
}

// readCursor returns the seq in the cursor file, 0 when there is none.
func readCursor(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	seq, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || seq < 0 {
		return 0, fmt.Errorf("not a sequence number: %q", strings.TrimSpace(string(b)))
	}
	return seq, nil
}

// writeCursor replaces the cursor file durably: a crash leaves the old or
// the new position, never a torn one. An old one only means a resend,
// which the central log recognises.
func writeCursor(path string, seq int64) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".cursor-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(strconv.FormatInt(seq, 10) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := datasync(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
