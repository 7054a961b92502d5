package audit

import (
	"context"
	"strings"
	"time"
)

// Access is one line of a patient's "who looked at my record" overview
// (NEN 7513: the patient's right to know who accessed their data).
type Access struct {
	Time         time.Time `json:"time"`
	Holder       string    `json:"holder"`                 // URA of the participant holding the data
	Organisation string    `json:"organisation,omitempty"` // URA of the requesting organisation
	System       string    `json:"system,omitempty"`
	User         string    `json:"user,omitempty"`
	UserName     string    `json:"userName,omitempty"`
	Role         string    `json:"role,omitempty"`
	What         string    `json:"what"`
	Outcome      string    `json:"outcome"` // "allowed", "refused: <reason>" or "failed: <reason>"
	EventID      string    `json:"eventId"`
}

// PatientAccesses returns the overview of every access to bsn's data, and
// every refused attempt, oldest first.
func (s *Store) PatientAccesses(ctx context.Context, bsn string) ([]Access, error) {
	recs, err := s.List(ctx, Filter{Patient: bsn})
	if err != nil {
		return nil, err
	}
	out := make([]Access, 0, len(recs))
	for _, r := range recs {
		a := Access{Time: r.Time, Holder: r.Tenant, Organisation: r.ActorURA, System: r.ActorSystem, User: r.ActorUser,
			UserName: r.ActorName, Role: r.ActorRole, EventID: r.EventID, Outcome: "allowed"}
		what := map[string]string{ActionCreate: "created", ActionRead: "read", ActionUpdate: "updated",
			ActionDelete: "deleted", ActionExecute: "ran"}[r.Action]
		if what == "" {
			what = r.Action
		}
		objects := strings.Join(r.Types, ", ")
		if objects == "" {
			objects = r.Interaction
		}
		a.What = strings.TrimSpace(what + " " + objects)
		if r.Outcome >= 400 || r.Outcome < 100 {
			a.Outcome = "refused"
			if r.Outcome >= 500 || r.Outcome < 100 {
				a.Outcome = "failed"
			}
			if r.OutcomeText != "" {
				a.Outcome += ": " + r.OutcomeText
			}
		}
		out = append(out, a)
	}
	return out, nil
}
