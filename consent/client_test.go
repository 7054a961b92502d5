package consent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/pki"
)

func TestClientFailsClosed(t *testing.T) {
	p := newTestPKI(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	handlers := map[string]http.HandlerFunc{
		"slow": func(w http.ResponseWriter, r *http.Request) {
			// Reading the body lets the server notice the client hanging up.
			io.Copy(io.Discard, r.Body)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		},
		"malformed answer": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/soap+xml")
			w.Write([]byte("<soap:Envelope><Decision>Permit</Decision>"))
		},
		"HTML error page": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html><body>Permit</body></html>"))
		},
		"fault": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write(buildFault("", &soapFault{code: "Receiver", reason: "down"}))
		},
		"permit for another message": func(w http.ResponseWriter, r *http.Request) {
			w.Write(buildResponse("urn:uuid:00000000-0000-4000-8000-000000000000", "x", DecisionPermit, statusOK, "", time.Now()))
		},
		"permit with HTTP 500": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write(buildResponse("", "x", DecisionPermit, statusOK, "", time.Now()))
		},
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			ts := p.serve(t, uraService, h)
			c, err := NewClient(ClientConfig{BaseURL: ts.URL, TLS: pki.ClientTLSConfig(p.cert(t, uraHolder), p.roots),
				Timeout: 200 * time.Millisecond, CacheTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			d, err := c.Decide(context.Background(), question(bsn(t, 30)))
			if !errors.Is(err, ErrUnavailable) || d == DecisionPermit {
				t.Fatalf("Decide = %q, %v; want ErrUnavailable", d, err)
			}
			if o := Outcome(err); o.Status != http.StatusServiceUnavailable {
				t.Fatalf("Outcome status %d", o.Status)
			}
		})
	}
	t.Run("service down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, _ := NewClient(ClientConfig{BaseURL: "https://" + addr, TLS: pki.ClientTLSConfig(p.cert(t, uraHolder), p.roots)})
		if _, err := c.Decide(context.Background(), question(bsn(t, 31))); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Decide = %v, want ErrUnavailable", err)
		}
	})
	t.Run("untrusted service", func(t *testing.T) {
		other := newTestPKI(t)
		ts := other.serve(t, uraService, handlers["fault"])
		c, _ := NewClient(ClientConfig{BaseURL: ts.URL, TLS: pki.ClientTLSConfig(p.cert(t, uraHolder), p.roots)})
		if _, err := c.Decide(context.Background(), question(bsn(t, 32))); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Decide = %v, want ErrUnavailable", err)
		}
	})
	t.Run("invalid question is not sent", func(t *testing.T) {
		c, _ := NewClient(ClientConfig{BaseURL: "https://127.0.0.1:1", TLS: pki.ClientTLSConfig(p.cert(t, uraHolder), p.roots)})
		q := question(bsn(t, 33))
		q.RequesterUZI = ""
		if _, err := c.Decide(context.Background(), q); !errors.Is(err, ErrInvalidQuestion) {
			t.Fatalf("Decide = %v, want ErrInvalidQuestion", err)
		}
	})
}

func TestClientCache(t *testing.T) {
	e := newEnv(t, nil)
	var asked atomic.Int32
	counting := e.pki.serve(t, uraService, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		e.srv.Handler().ServeHTTP(w, r)
	}))
	c := e.client(t, uraHolder, func(cfg *ClientConfig) { cfg.BaseURL = counting.URL; cfg.CacheTTL = time.Minute })
	ctx := context.Background()
	patient := bsn(t, 34)
	q := question(patient)
	decide := func(want Decision, wantAsked int32) {
		t.Helper()
		d, err := c.Decide(ctx, q)
		if err != nil || d != want || asked.Load() != wantAsked {
			t.Fatalf("Decide = %s, %v after %d questions; want %s after %d", d, err, asked.Load(), want, wantAsked)
		}
	}
	decide(DecisionDeny, 1)
	if resp, body := registerJSON(t, e, uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z3"}); resp.StatusCode != 201 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	decide(DecisionDeny, 1) // cached: within the TTL the old answer stands
	e.clock.Add(59 * time.Second)
	decide(DecisionDeny, 1)
	e.clock.Add(time.Second) // expired
	decide(DecisionPermit, 2)
	decide(DecisionPermit, 2)
	other := q
	other.RequesterRole = "01.016" // another key
	if _, err := c.Decide(ctx, other); err != nil || asked.Load() != 3 {
		t.Fatalf("other key: %v, asked %d", err, asked.Load())
	}
	c.Forget(patient)
	decide(DecisionPermit, 4)

	// Indeterminate is never cached.
	ind := q
	ind.Purpose = "COVERAGE"
	for i := int32(0); i < 2; i++ {
		if d, err := c.Decide(ctx, ind); err != nil || d != DecisionIndeterminate || asked.Load() != 5+i {
			t.Fatalf("indeterminate: %s %v asked %d", d, err, asked.Load())
		}
	}
	if err := Require(ctx, c, ind); !errors.Is(err, ErrNoConsent) {
		t.Fatalf("Require(indeterminate) = %v", err)
	}
}

func TestLocalChecker(t *testing.T) {
	ctx := context.Background()
	st, err := OpenSQLite(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := &LocalChecker{Store: st}
	patient := bsn(t, 35)
	q := Question{PatientBSN: patient, DataHolderURA: uraHolder, DataHolderType: "Z3", RequesterURA: uraAsker}
	if d, err := c.Decide(ctx, q); err != nil || d != DecisionDeny {
		t.Fatalf("empty registry: %s %v", d, err)
	}
	if _, err := st.Register(ctx, Registration{PatientBSN: patient, Effect: Permit, HolderURA: uraHolder, Source: SourceProvider, RegisteredBy: uraHolder}); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Decide(ctx, q); err != nil || d != DecisionPermit {
		t.Fatalf("after permit: %s %v", d, err)
	}
	if _, err := c.Decide(ctx, Question{PatientBSN: "123"}); !errors.Is(err, ErrInvalidQuestion) {
		t.Fatalf("invalid: %v", err)
	}
	st.Close()
	if _, err := c.Decide(ctx, q); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("closed store: %v", err)
	}
}

// TestClientCacheFailsClosedWhenServiceGone: a cached Permit is not served
// once the consent service is gone: the first question after it stopped is
// refused (ErrUnavailable), without waiting for the cache lifetime.
func TestClientCacheFailsClosedWhenServiceGone(t *testing.T) {
	e := newEnv(t, nil)
	svc := e.pki.serve(t, uraService, e.srv.Handler())
	c := e.client(t, uraHolder, func(cfg *ClientConfig) { cfg.BaseURL = svc.URL; cfg.CacheTTL = time.Minute })
	ctx := context.Background()
	patient := bsn(t, 36)
	if resp, body := registerJSON(t, e, uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z3"}); resp.StatusCode != 201 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	q := question(patient)
	for i := 0; i < 2; i++ { // asked, then from the cache
		if d, err := c.Decide(ctx, q); err != nil || d != DecisionPermit {
			t.Fatalf("Decide #%d = %s, %v; want Permit", i, d, err)
		}
	}
	svc.Close()
	if d, err := c.Decide(ctx, q); !errors.Is(err, ErrUnavailable) || d == DecisionPermit {
		t.Fatalf("Decide after the service stopped = %q, %v; want ErrUnavailable", d, err)
	}
}

// TestClientCachePurgedByTransportError: when a question to the service
// fails in transport, no answer cached from that service is served again;
// every question goes to the service until it answers anew.
func TestClientCachePurgedByTransportError(t *testing.T) {
	e := newEnv(t, nil)
	var hang atomic.Bool
	var asked atomic.Int32
	svc := e.pki.serve(t, uraService, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if hang.Load() {
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		e.srv.Handler().ServeHTTP(w, r)
	}))
	c := e.client(t, uraHolder, func(cfg *ClientConfig) {
		cfg.BaseURL, cfg.CacheTTL, cfg.Timeout = svc.URL, time.Minute, 200*time.Millisecond
	})
	ctx := context.Background()
	a, b := question(bsn(t, 40)), question(bsn(t, 50))
	if _, err := c.Decide(ctx, a); err != nil || asked.Load() != 1 {
		t.Fatalf("Decide(a) = %v after %d questions", err, asked.Load())
	}
	hang.Store(true)
	if _, err := c.Decide(ctx, b); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Decide(b) on a hanging service = %v; want ErrUnavailable", err)
	}
	hang.Store(false)
	if _, err := c.Decide(ctx, a); err != nil || asked.Load() != 3 {
		t.Fatalf("Decide(a) after the failure = %v after %d questions; want it asked again (3)", err, asked.Load())
	}
}
