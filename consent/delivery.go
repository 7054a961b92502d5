package consent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// wake makes the delivery loop look at the queue now.
func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// deliverLoop sends queued notifications until ctx ends. The queue lives in
// the database, so a restart resumes where it stopped.
func (s *Server) deliverLoop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.delivery.PollInterval)
	defer t.Stop()
	for {
		s.deliverDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

func (s *Server) deliverDue(ctx context.Context) {
	for ctx.Err() == nil {
		// The queue runs on the wall clock: its timings are operational, not
		// the validity of a consent (s.now).
		due, err := s.store.due(ctx, time.Now(), 16)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("consent: read notification queue", "err", err)
			}
			return
		}
		if len(due) == 0 {
			return
		}
		for _, n := range due {
			s.deliver(ctx, n)
		}
	}
}

// deliver makes one attempt and logs it: a 2xx answer delivers; anything
// else is retried with exponential backoff until Attempts is reached.
func (s *Server) deliver(ctx context.Context, n Notification) {
	attempt := n.Attempts + 1
	status, err := s.post(ctx, n)
	if ctx.Err() != nil {
		return // shutting down: the attempt does not count
	}
	d := Delivery{NotificationID: n.ID, SubscriptionID: n.SubscriptionID, Attempt: attempt, At: time.Now(), HTTPStatus: status}
	state, next := "delivered", d.At
	if err != nil {
		d.Error = err.Error()
		state = "pending"
		if attempt >= s.delivery.Attempts {
			state = "failed"
			s.log.Warn("consent: notification not delivered, giving up", "subscription", n.SubscriptionID, "attempts", attempt, "err", err)
		} else {
			next = d.At.Add(s.backoff(attempt))
		}
	}
	if err := s.store.recordAttempt(ctx, d, state, next); err != nil && ctx.Err() == nil {
		s.log.Error("consent: record delivery", "err", err)
	}
}

// backoff is the delay after the given failed attempt: Backoff doubled per
// earlier attempt, capped at MaxBackoff.
func (s *Server) backoff(attempt int) time.Duration {
	d := s.delivery.Backoff
	for i := 1; i < attempt && d < s.delivery.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.delivery.MaxBackoff)
}

func (s *Server) post(ctx context.Context, n Notification) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.delivery.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.Endpoint, bytes.NewReader(n.Body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", mimeFHIRJSON+"; fhirVersion=4.0")
	req.Header.Set("Accept", mimeFHIRJSON)
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post notification: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // drained for connection reuse only
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("endpoint answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}
