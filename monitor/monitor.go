// Package monitor is the Twiin Monitor: a web application for operators that
// shows who takes part in the network (the admission register and the
// addressbook), what the partners agreed per generic function (the nodes'
// configurations) and how the exchanges go (the nodes' Prometheus metrics),
// live. It shows counts only: it reads no patient data and could show none.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/plateau"
)

// Config configures a monitor.
type Config struct {
	// AddressbookURL is the mCSD addressbook's FHIR R4 base; optional.
	AddressbookURL string
	// AdmissionURL is the admission register's FHIR R4 base; optional.
	AdmissionURL string
	// Directory is the (mTLS) client for the addressbook and the register.
	Directory *http.Client
	// Authority holds the validation authority's public keys: a proof in
	// the register counts only when it verifies against them.
	Authority jwk.Set
	// Nodes are the nodes whose metrics and agreements are shown.
	Nodes []NodeSource
	// NodeHTTP reads the nodes' metrics; a client with a 5 s timeout when nil.
	NodeHTTP *http.Client
	// Interval is how often the sources are read (default 2 s).
	Interval time.Duration
	// Logins are the ways an operator logs in; at least one.
	Logins []LoginProvider
	// SessionTTL is how long a login lasts (default 8 h).
	SessionTTL time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Validate checks the configuration, naming the setting at fault.
func (c Config) Validate() error {
	var errs []error
	if len(c.Logins) == 0 {
		errs = append(errs, errors.New("monitor: no login provider: the monitor is never open without a login"))
	}
	ids := map[string]bool{}
	for _, l := range c.Logins {
		if ids[l.ID()] {
			errs = append(errs, fmt.Errorf("monitor: two login providers named %q", l.ID()))
		}
		ids[l.ID()] = true
	}
	if (c.AddressbookURL != "" || c.AdmissionURL != "") && c.Directory == nil {
		errs = append(errs, errors.New("monitor: the addressbook and the admission register need an mTLS client"))
	}
	if c.AdmissionURL != "" && c.Authority == nil {
		errs = append(errs, errors.New("monitor: the admission register needs the validation authority's keys"))
	}
	for _, u := range []struct{ name, url string }{{"addressbook", c.AddressbookURL}, {"admission register", c.AdmissionURL}} {
		if err := checkURL(u.url); err != nil && !errors.Is(err, errNoSource) {
			errs = append(errs, fmt.Errorf("monitor: %s: %w", u.name, err))
		}
	}
	names := map[string]bool{}
	for i, n := range c.Nodes {
		if n.Name == "" || strings.ContainsAny(n.Name, "/?#") {
			errs = append(errs, fmt.Errorf("monitor: node %d: a name without / ? # is required", i))
		}
		if names[n.Name] {
			errs = append(errs, fmt.Errorf("monitor: two nodes named %q", n.Name))
		}
		names[n.Name] = true
		for _, u := range n.metricsURLs() {
			if err := checkURL(u); err != nil {
				errs = append(errs, fmt.Errorf("monitor: node %s metrics: %w", n.Name, err))
			}
		}
	}
	if c.Interval < 0 || c.SessionTTL < 0 {
		errs = append(errs, errors.New("monitor: interval and session TTL cannot be negative"))
	}
	return errors.Join(errs...)
}

// Snapshot is everything the pages show, read at one moment.
type Snapshot struct {
	At       time.Time
	Version  uint64
	Parties  []*Party
	Nodes    []*NodeView
	Matrices []Matrix
	Recent   []Event
	// Problems are the sources that could not be read this time.
	Problems []string
}

// NodeView is one monitored node.
type NodeView struct {
	Name         string
	Participants []*Party
	Up           bool
	Problem      string
	ScrapedAt    time.Time
	Figures      Figures
	Agreements   []Agreement
}

// Node is the named node, nil when there is none.
func (s *Snapshot) Node(name string) *NodeView {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Event is something that went wrong, as the counters show it: how many,
// of what, where. Never which patient: the monitor does not know.
type Event struct {
	At    time.Time
	Node  string
	What  string
	Count float64
}

// maxRecent bounds the recent errors kept.
const maxRecent = 50

// Server is the monitor.
type Server struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	pages    *pages

	mu   sync.Mutex
	snap *Snapshot
	prev map[string]*Sample // the last good scrape per node (its replicas' added up)
	// last is the last good scrape of each replica of a node (by its
	// metrics URL): a replica that does not answer counts with it.
	last    map[string]map[string]*Sample
	carried map[string]*Sample // per node: what its replicas' earlier runs counted, summed
	health  map[string]health  // per node, at its last scrape
	recent  []Event
	changed chan struct{} // closed and replaced at every new snapshot
	done    chan struct{} // closed when Run ends, so event streams end with it
	runOnce sync.Once
}

// New builds a monitor; Run reads the sources, Handler serves the pages.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.NodeHTTP == nil {
		cfg.NodeHTTP = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: cfg.Logger, sessions: newSessions(cfg.SessionTTL, cfg.Now), pages: p,
		snap: &Snapshot{}, prev: map[string]*Sample{}, last: map[string]map[string]*Sample{}, carried: map[string]*Sample{}, health: map[string]health{}, changed: make(chan struct{}), done: make(chan struct{})}, nil
}

// Run reads the sources every interval until ctx ends.
func (s *Server) Run(ctx context.Context) {
	defer s.runOnce.Do(func() { close(s.done) })
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.Collect(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Collect reads every source once and publishes the new snapshot.
func (s *Server) Collect(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(s.cfg.Interval*3, 10*time.Second))
	defer cancel()
	now := s.cfg.Now()
	snap := &Snapshot{At: now}
	parties := map[string]*Party{}
	if s.cfg.AdmissionURL != "" {
		p, err := readRegister(ctx, s.cfg.Directory, s.cfg.AdmissionURL, s.cfg.Authority, now)
		if err != nil {
			snap.Problems = append(snap.Problems, err.Error())
		} else {
			parties = p
		}
	}
	if s.cfg.AddressbookURL != "" {
		if err := readAddressbook(ctx, s.cfg.Directory, s.cfg.AddressbookURL, parties); err != nil {
			snap.Problems = append(snap.Problems, err.Error())
		}
	}

	// Every node's /metrics, each replica's for a node of replicas.
	type scraped struct {
		samples []*Sample // per metrics URL; nil where it failed
		errs    []error
	}
	results := make([]scraped, len(s.cfg.Nodes))
	var wg sync.WaitGroup
	for i, n := range s.cfg.Nodes {
		urls := n.metricsURLs()
		results[i] = scraped{samples: make([]*Sample, len(urls)), errs: make([]error, len(urls))}
		for j, u := range urls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i].samples[j], results[i].errs[j] = scrape(ctx, s.cfg.NodeHTTP, u)
			}()
		}
	}
	wg.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	for i, src := range s.cfg.Nodes {
		nv := &NodeView{Name: src.Name}
		if src.ConfigFile != "" {
			c, err := readNodeConfig(src.ConfigFile)
			if err != nil {
				snap.Problems = append(snap.Problems, fmt.Sprintf("%s configuration: %v", src.Name, err))
			} else {
				nv.Agreements = agreementsOf(src.Name, c)
				for _, cp := range c.Participants {
					p := parties[cp.URA]
					if p == nil {
						p = &Party{URA: cp.URA, Name: cp.Name, Endpoints: -1}
						parties[cp.URA] = p
					}
					if p.Name == "" {
						p.Name = cp.Name
					}
					p.Node = src.Name
					nv.Participants = append(nv.Participants, p)
				}
			}
		}
		sample, failed, err := s.combine(src, results[i].samples, results[i].errs)
		h := healthUp
		switch {
		case err != nil:
			h, failed = healthDown, err
		case failed != nil:
			h = healthPartial // the replicas that did not answer count with their last figures
		}
		if failed != nil {
			nv.Problem = failed.Error()
			if was := s.health[src.Name]; was == 0 || h < was {
				s.record(Event{At: now, Node: src.Name, What: "metrics could not be read: " + failed.Error(), Count: 1})
			}
		}
		s.health[src.Name] = h
		if h == healthDown {
			// The last figures stay visible, marked by the problem.
			nv.Figures = figures(s.prev[src.Name], nil)
			nv.ScrapedAt = sampleTime(s.prev[src.Name])
		} else {
			nv.Up = true
			prev := s.prev[src.Name]
			nv.Figures = figures(sample, prev)
			nv.ScrapedAt = sample.At
			if prev != nil {
				s.recordIncreases(now, src.Name, figures(prev, nil), nv.Figures)
			}
			s.prev[src.Name] = sample
		}
		snap.Nodes = append(snap.Nodes, nv)
	}
	for _, p := range parties {
		snap.Parties = append(snap.Parties, p)
	}
	sort.Slice(snap.Parties, func(i, j int) bool { return snap.Parties[i].URA < snap.Parties[j].URA })
	snap.Matrices = matrices(snap.Nodes)
	snap.Recent = slices.Clone(s.recent)
	slices.Reverse(snap.Recent) // newest first
	for _, p := range snap.Problems {
		s.log.Warn("monitor source", "problem", p)
	}
	snap.Version = s.snap.Version + 1
	s.snap = snap
	close(s.changed)
	s.changed = make(chan struct{})
}

// combine makes one sample of a node's scrapes. A node of one /metrics
// is its scrape. For a node of replicas, each replica that answered counts
// with its new scrape and each that did not with its last good one, so
// that a replica missing a round neither drops its part of the totals nor
// adds it back as a burst; failed names those that did not answer. err is
// set when none answered.
func (s *Server) combine(src NodeSource, samples []*Sample, errs []error) (sample *Sample, failed, err error) {
	if len(src.Replicas) == 0 {
		return samples[0], nil, errs[0]
	}
	last := s.last[src.Name]
	if last == nil {
		last = map[string]*Sample{}
		s.last[src.Name] = last
	}
	var fails []error
	answered := false
	for j, u := range src.Replicas {
		if errs[j] != nil {
			fails = append(fails, fmt.Errorf("replica %s: %w", u, errs[j]))
			continue
		}
		answered = true
		if l := last[u]; l != nil && counted(samples[j]) < counted(l) {
			// The replica started again (a rolling upgrade): its counters
			// began at zero. What it had counted stays in the node's sum,
			// added to what earlier runs counted (one series per label
			// set, however often replicas restart).
			s.carried[src.Name] = addCounters(s.carried[src.Name], l)
		}
		last[u] = samples[j]
	}
	if !answered {
		return nil, nil, errors.Join(fails...)
	}
	var parts []*Sample
	if c := s.carried[src.Name]; c != nil {
		parts = append(parts, c)
	}
	for _, u := range src.Replicas {
		if l := last[u]; l != nil {
			parts = append(parts, l)
		}
	}
	merged := *merge(parts) // a copy: its time is set below, the parts are kept
	sample = &merged
	for _, smp := range samples {
		if smp != nil && smp.At.After(sample.At) {
			sample.At = smp.At
		}
	}
	return sample, errors.Join(fails...), nil
}

// health is how a node answered its last scrape; an event is recorded
// when it gets worse.
type health int

const (
	healthDown    health = iota + 1 // no /metrics answered
	healthPartial                   // some of its replicas did not answer
	healthUp
)

func sampleTime(s *Sample) time.Time {
	if s == nil {
		return time.Time{}
	}
	return s.At
}

func (s *Server) record(e Event) {
	s.recent = append(s.recent, e)
	if len(s.recent) > maxRecent {
		s.recent = slices.Delete(s.recent, 0, len(s.recent)-maxRecent)
	}
}

// recordIncreases notes, as recent errors, every error, refusal or failed
// exchange counter that rose since the last scrape.
func (s *Server) recordIncreases(now time.Time, node string, before, after Figures) {
	if d := after.Errors - before.Errors; d > 0 {
		s.record(Event{At: now, Node: node, What: "server errors (HTTP 5xx, panics)", Count: d})
	}
	old := map[string]float64{}
	for _, c := range append(slices.Clone(before.Refusals), before.RefusedAnswers...) {
		old[c.Key[0]] = c.Total
	}
	for _, c := range append(slices.Clone(after.Refusals), after.RefusedAnswers...) {
		if d := c.Total - old[c.Key[0]]; d > 0 {
			s.record(Event{At: now, Node: node, What: "refused: " + c.Key[0], Count: d})
		}
	}
	oldEx := map[string]float64{}
	for _, c := range before.Exchanges {
		oldEx[strings.Join(c.Key, "|")] = c.Total
	}
	for _, c := range after.Exchanges {
		if !failedOutcome(c.Key[2]) {
			continue
		}
		if d := c.Total - oldEx[strings.Join(c.Key, "|")]; d > 0 {
			what := "exchange " + c.Key[2] + ": " + c.Key[1]
			if c.Key[0] != "" {
				what += " " + c.Key[0]
			}
			s.record(Event{At: now, Node: node, What: what, Count: d})
		}
	}
}

// failedOutcome tells an exchange outcome that went wrong.
func failedOutcome(o string) bool {
	o = strings.ToLower(o)
	return strings.Contains(o, "fail") || strings.Contains(o, "error") || strings.Contains(o, "refus") || strings.Contains(o, "reject")
}

// Snapshot is the latest snapshot and a channel closed when a newer one
// is published.
func (s *Server) Snapshot() (*Snapshot, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap, s.changed
}

// Matrix is the plateaus agreed for one generic function: a row per
// participant of a monitored node, a column per partner it has an
// agreement with.
type Matrix struct {
	Function plateau.Function
	Columns  []string
	Rows     []MatrixRow
}

// MatrixRow is one participant's agreements for the function.
type MatrixRow struct {
	URA, Name, Node string
	Cells           []Cell
}

// Cell is one agreed plateau; 0 when there is no agreement. Mismatch marks
// a pair whose two sides agreed different plateaus: the one asking is
// then held to the other side's.
type Cell struct {
	Plateau  int
	Mismatch bool
	Other    int
}

func matrices(nodes []*NodeView) []Matrix {
	type row struct {
		ura, name, node string
		ags             []Agreement
	}
	var rows []row
	cols := map[string]bool{}
	for _, n := range nodes {
		for _, p := range n.Participants {
			rows = append(rows, row{ura: p.URA, name: p.Name, node: n.Name, ags: n.Agreements})
		}
		for _, a := range n.Agreements {
			cols[a.Partner] = true
		}
	}
	if len(rows) == 0 {
		return nil
	}
	columns := make([]string, 0, len(cols))
	for c := range cols {
		columns = append(columns, c)
	}
	sort.Strings(columns)
	find := func(ags []Agreement, partner string) *Agreement {
		for i := range ags {
			if ags[i].Partner == partner || (!ags[i].Default && slices.Contains(strings.Split(ags[i].Partner, ", "), partner)) {
				return &ags[i]
			}
		}
		return nil
	}
	byURA := map[string]row{}
	for _, r := range rows {
		byURA[r.ura] = r
	}
	var out []Matrix
	for _, f := range plateau.Functions {
		m := Matrix{Function: f, Columns: columns}
		for _, r := range rows {
			mr := MatrixRow{URA: r.ura, Name: r.name, Node: r.node}
			for _, c := range columns {
				var cell Cell
				if a := find(r.ags, c); a != nil && a.Partner == c {
					cell.Plateau = a.Plateaus[f]
					if other, ok := byURA[c]; ok {
						if b := find(other.ags, r.ura); b != nil && b.Plateaus[f] != cell.Plateau {
							cell.Mismatch, cell.Other = true, b.Plateaus[f]
						}
					}
				}
				mr.Cells = append(mr.Cells, cell)
			}
			m.Rows = append(m.Rows, mr)
		}
		out = append(out, m)
	}
	return out
}
