package notifiedpull

import (
	"context"
	"fmt"
)

// Depth is how many exchanges wait on this node. Push will add its own
// queues to these figures.
type Depth struct {
	// Inbox: received notifications whose pull has not reached a final
	// status (requested, awaiting a user, accepted, in progress).
	Inbox int
	// Outbox: referrals sent whose receiver has not reported a final status.
	Outbox int
}

// Depth counts the exchanges that are not final, for the node's metrics
// and dashboard.
func (d *DB) Depth(ctx context.Context) (Depth, error) {
	var out Depth
	final := []any{StatusCompleted, StatusRejected, StatusFailed, StatusCancelled}
	const notFinal = ` WHERE status NOT IN (?, ?, ?, ?)`
	if err := d.db.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM np_received`+notFinal), final...).Scan(&out.Inbox); err != nil {
		return Depth{}, fmt.Errorf("count received: %w", err)
	}
	if err := d.db.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM np_grant`+notFinal), final...).Scan(&out.Outbox); err != nil {
		return Depth{}, fmt.Errorf("count sent: %w", err)
	}
	return out, nil
}
