package node

import (
	"context"
	"crypto/tls"
	"sync"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/internal/faults"
)

// nodeFaults is what a test broke in this node (Options.Faults): the set,
// and the audit records held back under faults.AuditedAfterAnswer.
// Nil on every node started from configuration.
type nodeFaults struct {
	set  *faults.Set
	mu   sync.Mutex
	held []audit.Record
}

func newNodeFaults(s *faults.Set) *nodeFaults {
	if s == nil {
		return nil
	}
	return &nodeFaults{set: s}
}

func (f *nodeFaults) Set() *faults.Set {
	if f == nil {
		return nil
	}
	return f.set
}

// publicTLS breaks the public listener's handshake as the faults on at the
// time of each connection say: TLS 1.2 allowed, a client certificate
// optional (checked only when one is given).
func (f *nodeFaults) publicTLS(base *tls.Config) *tls.Config {
	if f == nil {
		return base
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.NextProtos = []string{"h2", "http/1.1"}
		if f.set.Has(faults.TLS12) {
			c.MinVersion = tls.VersionTLS12
		}
		if f.set.Has(faults.NoClientCertificate) {
			c.ClientAuth = tls.RequestClientCert
			verify := base.VerifyConnection
			c.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return nil
				}
				return verify(cs)
			}
		}
		return c, nil
	}
	return cfg
}

// auditLog is the log the exchanges (Notified Pull, Direct Pull) write to:
// the node's own, or, with faults, one that holds records back while
// faults.AuditedAfterAnswer is on.
func (f *nodeFaults) auditLog(log *audit.Store) audit.Log {
	if f == nil {
		return log
	}
	return heldLog{f: f, log: log}
}

type heldLog struct {
	f   *nodeFaults
	log audit.Log
}

func (h heldLog) Append(ctx context.Context, rec audit.Record) error {
	if h.f.hold(rec) {
		return nil
	}
	return h.log.Append(ctx, rec)
}

// hold keeps an audit record back, so the exchange is answered before it
// is written; false when the fault is off.
func (f *nodeFaults) hold(rec audit.Record) bool {
	if f == nil || !f.set.Has(faults.AuditedAfterAnswer) {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = append(f.held, rec)
	return true
}

// flush writes the held records, late, as the node stops.
func (f *nodeFaults) flush(log *audit.Store) {
	if f == nil || log == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rec := range f.held {
		_ = log.Append(context.Background(), rec)
	}
	f.held = nil
}
