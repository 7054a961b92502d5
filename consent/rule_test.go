package consent

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEvaluate(t *testing.T) {
	p := bsn(t, 1)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	q := question(p)
	q.Purpose = PurposeTreatment
	reg := func(e Effect, mod func(*Registration)) Registration {
		r := Registration{PatientBSN: p, Effect: e, HolderType: "Z3", Purpose: PurposeTreatment}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	tests := []struct {
		name string
		regs []Registration
		q    func(Question) Question
		want Decision
	}{
		{"nothing registered is no consent", nil, nil, DecisionDeny},
		{"permit for the holder's category", []Registration{reg(Permit, nil)}, nil, DecisionPermit},
		{"deny for the holder's category", []Registration{reg(Deny, nil)}, nil, DecisionDeny},
		{"permit for another category does not apply",
			[]Registration{reg(Permit, func(r *Registration) { r.HolderType = "Z1" })}, nil, DecisionDeny},
		{"permit for another patient does not apply",
			[]Registration{reg(Permit, func(r *Registration) { r.PatientBSN = bsn(t, 2) })}, nil, DecisionDeny},
		{"deny overrides permit at equal specificity",
			[]Registration{reg(Permit, nil), reg(Deny, func(r *Registration) { r.RequesterType = "Z1" }),
				reg(Permit, func(r *Registration) { r.RequesterRole = "01.015" })}, nil, DecisionDeny},
		{"a specific holder URA permit beats a category deny",
			[]Registration{reg(Deny, nil), reg(Permit, func(r *Registration) { r.HolderType, r.HolderURA = "", uraHolder })}, nil, DecisionPermit},
		{"the URA exception does not reach another holder of the category",
			[]Registration{reg(Deny, nil), reg(Permit, func(r *Registration) { r.HolderType, r.HolderURA = "", uraHolder2 })}, nil, DecisionDeny},
		{"a requester-specific deny beats a category permit",
			[]Registration{reg(Permit, nil), reg(Deny, func(r *Registration) { r.RequesterURA = uraAsker })}, nil, DecisionDeny},
		{"requester scope not met",
			[]Registration{reg(Permit, func(r *Registration) { r.RequesterRole = "01.016" })}, nil, DecisionDeny},
		{"expired consent", []Registration{reg(Permit, func(r *Registration) { r.ValidUntil = now })}, nil, DecisionDeny},
		{"consent until later", []Registration{reg(Permit, func(r *Registration) { r.ValidUntil = now.Add(time.Second) })}, nil, DecisionPermit},
		{"consent not yet valid", []Registration{reg(Permit, func(r *Registration) { r.ValidFrom = now.Add(time.Hour) })}, nil, DecisionDeny},
		{"revoked consent", []Registration{reg(Permit, func(r *Registration) { r.Revoked = now.Add(-time.Hour) })}, nil, DecisionDeny},
		{"an expired specific deny no longer overrides",
			[]Registration{reg(Permit, nil), reg(Deny, func(r *Registration) { r.RequesterURA, r.ValidUntil = uraAsker, now.Add(-time.Minute) })},
			nil, DecisionPermit},
		{"other purpose", []Registration{reg(Permit, nil)}, func(q Question) Question { q.Purpose = "HRESCH"; return q }, DecisionDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qq := q
			if tt.q != nil {
				qq = tt.q(qq)
			}
			if got := Evaluate(tt.regs, qq, now); got != tt.want {
				t.Errorf("Evaluate = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRegistrationValidate(t *testing.T) {
	p := bsn(t, 3)
	tests := []struct {
		name string
		r    Registration
		ok   bool
	}{
		{"category", Registration{PatientBSN: p, Effect: Permit, HolderType: "Z3"}, true},
		{"holder URA", Registration{PatientBSN: p, Effect: Deny, HolderURA: uraHolder}, true},
		{"no holder", Registration{PatientBSN: p, Effect: Permit, RequesterURA: uraAsker}, false},
		{"bad BSN", Registration{PatientBSN: "123456789", Effect: Permit, HolderType: "Z3"}, false},
		{"bad effect", Registration{PatientBSN: p, Effect: "maybe", HolderType: "Z3"}, false},
		{"bad URA", Registration{PatientBSN: p, Effect: Permit, HolderURA: "123"}, false},
		{"bad code", Registration{PatientBSN: p, Effect: Permit, HolderType: "Z3<x>"}, false},
		{"empty period", Registration{PatientBSN: p, Effect: Permit, HolderType: "Z3",
			ValidFrom: time.Unix(100, 0), ValidUntil: time.Unix(100, 0)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidRegistration) {
				t.Errorf("error %v does not wrap ErrInvalidRegistration", err)
			}
			if err == nil && tt.r.Purpose != PurposeTreatment {
				t.Errorf("purpose default = %q", tt.r.Purpose)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"deny", &DeniedError{Decision: DecisionDeny}, 403, "forbidden"},
		{"not applicable", &DeniedError{Decision: DecisionNotApplicable}, 403, "forbidden"},
		{"unavailable", errors.Join(ErrUnavailable, errors.New("dial tcp 10.0.0.1: refused")), 503, "transient"},
		{"invalid question", func() error { _, err := Question{PatientBSN: "1"}.Normalize(); return err }(), 400, "invalid"},
		{"unknown error fails closed", errors.New("boom"), 503, "transient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Outcome(tt.err)
			if e.Status != tt.status || e.Issues[0].Code != tt.code {
				t.Fatalf("Outcome = %d %s, want %d %s", e.Status, e.Issues[0].Code, tt.status, tt.code)
			}
			for _, leak := range []string{"10.0.0.1", "boom", "digits"} {
				if strings.Contains(e.Issues[0].Diagnostics, leak) {
					t.Errorf("diagnostics %q leak %q", e.Issues[0].Diagnostics, leak)
				}
			}
		})
	}
	if Outcome(nil) != nil {
		t.Error("Outcome(nil) != nil")
	}
}
