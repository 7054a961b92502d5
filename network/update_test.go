package network

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// TestReferralUpdate: after a completed referral, the GP practice's data
// set changed and it updates the referral (TA Notified Pull): a new
// notification with the same groupIdentifier reaches the hospital, whose
// node pulls again; the earlier grant ends as superseded, the hospital
// keeps what it pulled before, and a withdrawn referral cannot be updated.
func TestReferralUpdate(t *testing.T) {
	nw := startNetwork(t, 1)
	ctx := context.Background()
	first, err := nw.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xis{base: nw.internalURLs[GP.URA], token: nw.Token(GP.URA), http: hc}
	hosp := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: hc}

	var update node.Referral
	if err := gp.do(ctx, http.MethodPost, "/internal/referrals/"+first.Referral+"/update", map[string]string{"description": "new lab results"}, &update); err != nil {
		t.Fatal(err)
	}
	if update.ID == first.Referral || update.Group != first.Referral {
		t.Fatalf("update %+v, want a new referral in group %s", update, first.Referral)
	}

	var got node.Referral
	for deadline := time.Now().Add(60 * time.Second); got.ID == "" || !notifiedpull.Final(got.Status); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the update was not pulled within 60s: %+v", got)
		}
		var list []node.Referral
		if err := hosp.do(ctx, http.MethodGet, "/internal/referrals?direction=received", nil, &list); err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			if r.Identifier == update.ID {
				got = r
			}
		}
	}
	if got.Status != notifiedpull.StatusCompleted || got.Group != first.Referral || got.ID == first.Received || got.Application != "bgz" {
		t.Fatalf("the hospital's update: %+v, want a new notification of group %s, completed, for bgz", got, first.Referral)
	}

	var before node.Referral
	if err := gp.do(ctx, http.MethodGet, "/internal/referrals/"+first.Referral, nil, &before); err != nil {
		t.Fatal(err)
	}
	if before.Status != notifiedpull.StatusCancelled || !strings.Contains(before.StatusReason, "superseded by "+update.ID) {
		t.Errorf("the superseded referral at the GP: %s (%q), want cancelled, superseded by %s", before.Status, before.StatusReason, update.ID)
	}
	var kept node.Referral
	if err := hosp.do(ctx, http.MethodGet, "/internal/referrals/"+first.Received, nil, &kept); err != nil {
		t.Fatal(err)
	}
	if kept.Status != notifiedpull.StatusCompleted || kept.Data == "" {
		t.Errorf("the earlier pull at the hospital: %s, data %q; want it kept", kept.Status, kept.Data)
	}

	// Withdrawn, the referral is over: an update is refused 409.
	if err := gp.do(ctx, http.MethodPost, "/internal/referrals/"+update.ID+"/cancel", nil, nil); err != nil {
		t.Fatal(err)
	}
	err = gp.do(ctx, http.MethodPost, "/internal/referrals/"+update.ID+"/update", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("update of a withdrawn referral: %v, want 409", err)
	}
	err = gp.do(ctx, http.MethodPost, "/internal/referrals/urn:uuid:00000000-0000-4000-8000-000000000000/update", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("update of an unknown referral: %v, want 404", err)
	}
}
