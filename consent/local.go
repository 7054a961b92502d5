package consent

import (
	"context"
	"fmt"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// LocalChecker answers closed questions from a registry the node keeps
// itself: plateau 1, where consent is recorded in the provider's own system.
type LocalChecker struct {
	Store *Store
	// Now is the clock validity periods are judged by; time.Now when nil.
	Now func() time.Time
}

// Decide evaluates q against the registry (see Evaluate). Unlike the wire
// protocol it does not need every attribute: at plateau 1 a partner may not
// send a user identity, and a registration scoped to a role or URA the
// question lacks simply does not match. A store failure wraps ErrUnavailable,
// so the caller refuses.
func (c *LocalChecker) Decide(ctx context.Context, q Question) (Decision, error) {
	if q.Purpose == "" {
		q.Purpose = PurposeTreatment
	}
	if err := nl.ValidateBSN(q.PatientBSN); err != nil {
		return "", fmt.Errorf("%w: patient: %w", ErrInvalidQuestion, err)
	}
	if q.DataHolderURA == "" && q.DataHolderType == "" {
		return "", fmt.Errorf("%w: data holder: neither URA nor type given", ErrInvalidQuestion)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	d, err := c.Store.Decide(ctx, q, now())
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return d, nil
}
