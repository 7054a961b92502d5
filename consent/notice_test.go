package consent

import (
	"testing"
	"time"
)

func TestNoticePermitsHolder(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	patient := bsn(t, 50)
	const holder, other, requester = "00000001", "00000002", "00000003"
	reg := func(e Effect, mod func(*Registration)) Registration {
		r := Registration{PatientBSN: patient, Effect: e, HolderType: "Z3", Purpose: PurposeTreatment}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		regs []Registration
		want bool
	}{
		{"nothing left", nil, false},
		{"permit for the holder's category", []Registration{reg(Permit, nil)}, true},
		{"permit for one requester only", []Registration{reg(Permit, func(r *Registration) { r.RequesterURA = requester })}, true},
		{"permit for another holder", []Registration{reg(Permit, func(r *Registration) { r.HolderType, r.HolderURA = "", other })}, false},
		{"permit for another category", []Registration{reg(Permit, func(r *Registration) { r.HolderType = "Z1" })}, false},
		{"permit revoked", []Registration{reg(Permit, func(r *Registration) { r.Revoked = now.Add(-time.Hour) })}, false},
		{"permit expired", []Registration{reg(Permit, func(r *Registration) { r.ValidUntil = now.Add(-time.Minute) })}, false},
		{"permit not yet valid", []Registration{reg(Permit, func(r *Registration) { r.ValidFrom = now.Add(time.Hour) })}, false},
		{"only a deny", []Registration{reg(Deny, nil)}, false},
		{"deny overrides an equal permit", []Registration{reg(Permit, nil), reg(Deny, nil)}, false},
		{"deny of the holder's URA beats a category permit", []Registration{reg(Permit, nil),
			reg(Deny, func(r *Registration) { r.HolderType, r.HolderURA = "", holder })}, false},
		{"permit of the holder's URA beats a category deny", []Registration{reg(Deny, nil),
			reg(Permit, func(r *Registration) { r.HolderType, r.HolderURA = "", holder })}, true},
		{"a deny for one requester leaves the others", []Registration{reg(Permit, nil),
			reg(Deny, func(r *Registration) { r.RequesterURA = requester })}, true},
		{"a deny for every requester covers a permit for one", []Registration{
			reg(Permit, func(r *Registration) { r.RequesterRole = "01.015" }),
			reg(Deny, func(r *Registration) { r.HolderType, r.HolderURA = "", holder })}, false},
		{"another purpose", []Registration{reg(Permit, func(r *Registration) { r.Purpose = "ETREAT" })}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := Notice{PatientBSN: patient, Registrations: tc.regs}
			if got := n.PermitsHolder(holder, "Z3", now); got != tc.want {
				t.Errorf("PermitsHolder = %v, want %v", got, tc.want)
			}
		})
	}
}
