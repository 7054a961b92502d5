package notifiedpull

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/plateau"
)

// ReasonAwaitingUser is the status reason of a received notification whose
// pull waits for a user to accept it.
const ReasonAwaitingUser = "awaiting acceptance by a user: the agreement with the sender asks for user authentication and allows no system identity"

// Errors of accepting a notification.
var (
	// ErrNotAwaiting: the notification does not wait for a user (it needs
	// none, was accepted before, or has ended).
	ErrNotAwaiting = errors.New("the referral does not wait for a user to accept it")
	// ErrNoUser: the acceptance names no user.
	ErrNoUser = errors.New("the acceptance must name the user: id and role")
)

// Accept records that user accepts a received notification that waits for
// one, and starts its pull: the receiver's grant assertion then carries the
// user as the authentication plateau agreed with the sender asks. Whether
// the user meets that plateau is judged when the pull asks for its token; a
// shortfall ends the referral failed, with the reason.
func (s *Service) Accept(ctx context.Context, tenant, id string, user plateau.Caller) (Received, error) {
	row, err := s.cfg.DB.received(ctx, tenant, id)
	if errors.Is(err, errNoRow) {
		return Received{}, ErrUnknownReferral
	}
	if err != nil {
		return Received{}, err
	}
	user.System = false
	if user.ID == "" || user.Role == "" {
		return Received{}, ErrNoUser
	}
	ok, err := s.cfg.DB.acceptReceived(ctx, row.ID, user, s.cfg.Now())
	if err != nil {
		return Received{}, err
	}
	if !ok {
		return Received{}, fmt.Errorf("%w (status %s)", ErrNotAwaiting, row.Status)
	}
	s.audit(ctx, audit.Record{Action: audit.ActionUpdate, Interaction: "accept", Outcome: http.StatusOK, Tenant: tenant,
		ActorURA: tenant, ActorUser: user.ID, ActorRole: user.Role, Patient: row.PatientBSN, Task: row.Identifier,
		Resources: []string{"Task/" + row.ID}, Query: "referral from " + row.SenderURA + " accepted by a user"})
	s.event(tenant, row.ID, "accepted-by-user", fmt.Sprintf("accepted by user %s (role %s)", user.ID, user.Role), nil)
	s.enqueue(ctx, tenant, row.ID)
	return s.cfg.DB.received(ctx, tenant, id)
}

func userOf(c *plateau.Caller) string {
	if c == nil || c.System {
		return ""
	}
	return c.ID
}

func roleOf(c *plateau.Caller) string {
	if c == nil || c.System {
		return ""
	}
	return c.Role
}
