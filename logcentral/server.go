package logcentral

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/pki"
)

// Paths of the receiver, on its mTLS listener. The shipping node is the URA
// of its client certificate; nothing in a request body names it.
const (
	EntriesPath = "/logcentral/v1/entries" // POST a batch; GET ?after=&_count= reads back the node's own records
	HeadPath    = "/logcentral/v1/head"    // GET the node's acknowledged position
)

// MaxBatch bounds the records of one POST.
const MaxBatch = 2000

// maxBody bounds a POST body: MaxBatch records of a few KiB each.
const maxBody = 32 << 20

// Batch is what a node POSTs: consecutive records of its chain.
type Batch struct {
	Entries []audit.Entry `json:"entries"`
}

// Ack is the answer to a batch, and to GET head: the highest seq the
// central log holds durably for the node. A refusal (problem+json) carries
// it too, so that the shipper can go on from there.
type Ack struct {
	Node         string `json:"node"`
	Acknowledged int64  `json:"acknowledged"`
	Hash         string `json:"hash,omitempty"` // hex chain hash of record Acknowledged
	Duplicates   int    `json:"duplicates,omitempty"`
}

// Refusal kinds: why a batch was not stored.
const (
	RefusedGap    = "gap"    // the batch does not start where the node's chain stands
	RefusedFork   = "fork"   // a record links to another predecessor than the one held, or differs from the one held at its seq
	RefusedBroken = "broken" // a record does not hash to its chain hash, or the batch is malformed
)

// ServerConfig configures the receiver.
type ServerConfig struct {
	Store Store
	// PeerURA identifies the shipping node from its verified client
	// certificate (pki.Trust.PeerURA, or pki.ParseUZIServerID on the leaf).
	PeerURA func(*tls.ConnectionState) (string, error)
	// Registry receives the monitoring metrics; none when nil.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	Now      func() time.Time
}

// Server receives shipped audit records.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	locks sync.Map // node URA → *sync.Mutex: one batch per node at a time

	acknowledged *prometheus.GaugeVec
	received     *prometheus.GaugeVec
	records      *prometheus.CounterVec
	refused      *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
}

// NewServer returns the receiver over cfg.Store.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil || cfg.PeerURA == nil {
		return nil, errors.New("logcentral: a store and a peer identification are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.acknowledged = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "schakel_logcentral_acknowledged_seq",
		Help: "Highest audit record seq held durably, by shipping node (URA)."}, []string{"node"})
	s.received = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "schakel_logcentral_last_received_timestamp_seconds",
		Help: "When a node's last batch was stored (Unix time): alert on a node that stops shipping."}, []string{"node"})
	s.records = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_logcentral_records_total",
		Help: "Audit records stored, by shipping node."}, []string{"node"})
	s.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_logcentral_refused_batches_total",
		Help: "Batches refused because they break the node's hash chain, by node and reason (gap, fork, broken)."}, []string{"node", "reason"})
	s.duplicates = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_logcentral_duplicate_records_total",
		Help: "Records received again that were already held (a lost acknowledgement), by node."}, []string{"node"})
	if cfg.Registry != nil {
		for _, c := range []prometheus.Collector{s.acknowledged, s.received, s.records, s.refused, s.duplicates} {
			if err := cfg.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("logcentral metrics: %w", err)
			}
		}
	}
	// The monitor shows every known node from the start, not only after its next batch.
	heads, err := cfg.Store.Heads(context.Background())
	if err != nil {
		return nil, fmt.Errorf("logcentral: read heads: %w", err)
	}
	for _, h := range heads {
		s.acknowledged.WithLabelValues(h.Node).Set(float64(h.Seq))
		s.received.WithLabelValues(h.Node).Set(float64(h.Received.Unix()))
	}
	return s, nil
}

// Handler serves the receiver's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+EntriesPath, s.receive)
	mux.HandleFunc("GET "+EntriesPath, s.list)
	mux.HandleFunc("GET "+HeadPath, s.head)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not-found", "no such path", nil)
	})
	return mux
}

func (s *Server) peer(w http.ResponseWriter, r *http.Request) (string, bool) {
	ura, err := s.cfg.PeerURA(r.TLS)
	if err != nil || ura == "" {
		writeProblem(w, http.StatusForbidden, "forbidden", "a client certificate with an URA is required", nil)
		return "", false
	}
	return ura, true
}

func (s *Server) lock(node string) func() {
	m, _ := s.locks.LoadOrStore(node, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func (s *Server) head(w http.ResponseWriter, r *http.Request) {
	node, ok := s.peer(w, r)
	if !ok {
		return
	}
	h, err := s.cfg.Store.Head(r.Context(), node)
	if err != nil {
		s.unavailable(w, node, err)
		return
	}
	writeJSON(w, http.StatusOK, ackOf(h, 0))
}

// list returns the calling node's own records, for a node (or its operator)
// that checks what the central log holds of it.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	node, ok := s.peer(w, r)
	if !ok {
		return
	}
	var after int64
	count := 100
	if v := r.URL.Query().Get("after"); v != "" {
		if _, err := fmt.Sscan(v, &after); err != nil || after < 0 {
			writeProblem(w, http.StatusBadRequest, "bad-request", "after must be a non-negative integer", nil)
			return
		}
	}
	if v := r.URL.Query().Get("_count"); v != "" {
		if _, err := fmt.Sscan(v, &count); err != nil || count < 1 || count > MaxBatch {
			writeProblem(w, http.StatusBadRequest, "bad-request", fmt.Sprintf("_count must be 1..%d", MaxBatch), nil)
			return
		}
	}
	entries, err := s.cfg.Store.Entries(r.Context(), node, after, count)
	if err != nil {
		s.unavailable(w, node, err)
		return
	}
	if entries == nil {
		entries = []audit.Entry{}
	}
	writeJSON(w, http.StatusOK, Batch{Entries: entries})
}

func (s *Server) receive(w http.ResponseWriter, r *http.Request) {
	node, ok := s.peer(w, r)
	if !ok {
		return
	}
	var b Batch
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		s.refuse(w, node, http.StatusBadRequest, RefusedBroken, "the body is not a batch of audit entries: "+err.Error(), nil)
		return
	}
	if len(b.Entries) == 0 || len(b.Entries) > MaxBatch {
		s.refuse(w, node, http.StatusBadRequest, RefusedBroken, fmt.Sprintf("a batch holds 1..%d entries, not %d", MaxBatch, len(b.Entries)), nil)
		return
	}
	unlock := s.lock(node)
	defer unlock()
	ctx := r.Context()
	h, err := s.cfg.Store.Head(ctx, node)
	if err != nil {
		s.unavailable(w, node, err)
		return
	}
	fresh, dups, kind, why := s.check(ctx, node, h, b.Entries)
	if kind != "" {
		s.refuse(w, node, http.StatusConflict, kind, why, &h)
		return
	}
	if dups > 0 {
		s.duplicates.WithLabelValues(node).Add(float64(dups))
	}
	if len(fresh) > 0 {
		now := s.cfg.Now()
		if err := s.cfg.Store.Append(ctx, node, fresh, now); err != nil {
			if errors.Is(err, ErrConflict) {
				s.refuse(w, node, http.StatusConflict, RefusedFork, "a record is already held at its position", &h)
				return
			}
			s.unavailable(w, node, err)
			return
		}
		last := fresh[len(fresh)-1]
		h.Seq, h.Received = last.Seq, now
		_, h.Hash, _ = last.Links() // checked above
		s.records.WithLabelValues(node).Add(float64(len(fresh)))
		s.acknowledged.WithLabelValues(node).Set(float64(h.Seq))
		s.received.WithLabelValues(node).Set(float64(now.Unix()))
	}
	writeJSON(w, http.StatusOK, ackOf(h, dups))
}

// check decides a batch against the node's head: records at or below it
// must be the very ones held (a resend after a lost acknowledgement), the
// first new one must link to the head (or start the chain), every record
// must hash to its chain hash and link to the one before it. It returns the
// new records, the number of resent ones, and a refusal kind and reason.
func (s *Server) check(ctx context.Context, node string, h Head, entries []audit.Entry) (fresh []audit.Entry, dups int, kind, why string) {
	var zero [32]byte
	for i, e := range entries {
		if _, err := e.Check(); err != nil {
			return nil, 0, RefusedBroken, err.Error()
		}
		prev, _, _ := e.Links() // checked by Check
		if i > 0 {
			p := entries[i-1]
			_, ph, _ := p.Links()
			if e.Seq != p.Seq+1 || prev != ph {
				return nil, 0, RefusedBroken, fmt.Sprintf("seq %d does not follow seq %d in the batch", e.Seq, p.Seq)
			}
		}
		if e.Seq <= h.Seq {
			held, err := s.cfg.Store.Entries(ctx, node, e.Seq-1, 1)
			if err != nil || len(held) != 1 || held[0].Seq != e.Seq {
				return nil, 0, RefusedFork, fmt.Sprintf("seq %d is at or below the acknowledged %d but not held", e.Seq, h.Seq)
			}
			if held[0].Hash != e.Hash {
				return nil, 0, RefusedFork, fmt.Sprintf("seq %d differs from the record held at that position", e.Seq)
			}
			dups++
			continue
		}
		if len(fresh) == 0 {
			switch {
			case h.Seq == 0 && prev == zero:
				// The start of the node's chain (its seq may be past legacy records).
			case h.Seq == 0:
				return nil, 0, RefusedGap, fmt.Sprintf("the first record must start the chain; seq %d links to an earlier record", e.Seq)
			case e.Seq != h.Seq+1:
				return nil, 0, RefusedGap, fmt.Sprintf("expected seq %d next, got %d: records %d..%d are missing", h.Seq+1, e.Seq, h.Seq+1, e.Seq-1)
			case prev != h.Hash:
				return nil, 0, RefusedFork, fmt.Sprintf("seq %d links to another predecessor than the record %d held", e.Seq, h.Seq)
			}
		}
		fresh = append(fresh, e)
	}
	return fresh, dups, "", ""
}

func (s *Server) refuse(w http.ResponseWriter, node string, status int, kind, why string, h *Head) {
	s.refused.WithLabelValues(node, kind).Inc()
	// Reported: a refused batch means a node's log was changed, lost or
	// forked, or its shipper is broken; the operator must look.
	s.log.Error("logcentral: batch refused", "node", node, "reason", kind, "detail", why)
	var ext map[string]any
	if h != nil {
		a := ackOf(*h, 0)
		ext = map[string]any{"acknowledged": a.Acknowledged, "reason": kind}
	}
	writeProblem(w, status, kind, why, ext)
}

func (s *Server) unavailable(w http.ResponseWriter, node string, err error) {
	s.log.Error("logcentral: store failed", "node", node, "err", err)
	writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the central log cannot store or read records now; retry later", nil)
}

func ackOf(h Head, dups int) Ack {
	a := Ack{Node: h.Node, Acknowledged: h.Seq, Duplicates: dups}
	if h.Seq > 0 {
		a.Hash = hex.EncodeToString(h.Hash[:])
	}
	return a
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeProblem answers with RFC 9457 problem details.
func writeProblem(w http.ResponseWriter, status int, kind, detail string, ext map[string]any) {
	doc := map[string]any{"type": "urn:schakel:logcentral:" + kind, "title": http.StatusText(status), "status": status, "detail": detail}
	for k, v := range ext {
		doc[k] = v
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(doc)
}

// PeerURAFromUZI identifies a peer by the UZI server identity of its
// verified client certificate: the listener's tls.Config (pki) has already
// checked the chain and the policy.
func PeerURAFromUZI(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", errors.New("no verified client certificate")
	}
	id, err := pki.ParseUZIServerID(cs.VerifiedChains[0][0])
	if err != nil {
		return "", err
	}
	return id.URA, nil
}
