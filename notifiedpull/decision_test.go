package notifiedpull

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTransferDecisionCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		d    TransferDecision
		ok   bool
	}{
		{"accepted", TransferDecision{Status: StatusAccepted}, true},
		{"rejected with a reason", TransferDecision{Status: StatusRejected, Reason: "geen plaats"}, true},
		{"accepted with a reason", TransferDecision{Status: StatusAccepted, Reason: "plaats vrij"}, false},
		{"rejected without a reason", TransferDecision{Status: StatusRejected, Reason: "  "}, false},
		{"another status", TransferDecision{Status: StatusCompleted}, false},
		{"no status", TransferDecision{}, false},
		{"a reason too long", TransferDecision{Status: StatusRejected, Reason: strings.Repeat("x", maxDecisionReason+1)}, false},
		{"a reason not UTF-8", TransferDecision{Status: StatusRejected, Reason: "\xff"}, false},
	} {
		err := c.d.Check()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrInvalidDecision)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestNotPending(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Received
		says string // "" when it waits
	}{
		{"pending", Received{Decision: DecisionPending, Status: StatusInProgress}, ""},
		{"accepted before", Received{Decision: DecisionAccepted, Status: StatusCompleted}, "it was accepted before"},
		{"rejected before", Received{Decision: DecisionRejected, Status: StatusInProgress}, "it was rejected before"},
		{"withdrawn while pending", Received{Decision: DecisionPending, Status: StatusCancelled}, "it has ended cancelled"},
		{"still reading", Received{Status: StatusAccepted}, "not read yet"},
	} {
		err := notPending(c.r)
		if c.says == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrNotPending) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want ErrNotPending naming %q", c.name, err, c.says)
		}
	}
}

func TestStatusReason(t *testing.T) {
	task := []byte(`{"resourceType":"Task","id":"t","status":"requested","intent":"order"}`)
	rej, err := SetStatusReason(task, StatusRejected, "geen plaats")
	if err != nil {
		t.Fatal(err)
	}
	if got := StatusReasonOf(rej); got != "geen plaats" {
		t.Errorf("reason %q", got)
	}
	status, changed, ok := StatusChanged(task, rej)
	if status != StatusRejected || !changed || !ok {
		t.Errorf("StatusChanged: %s %v %v", status, changed, ok)
	}
	if _, ok := OnlyStatusChanged(task, rej); ok {
		t.Error("OnlyStatusChanged took a statusReason")
	}
	// SetStatusReason without a reason drops an earlier one.
	back, _ := SetStatusReason(rej, StatusAccepted, "")
	if _, ok := OnlyStatusChanged(task, back); !ok || StatusReasonOf(back) != "" {
		t.Errorf("reason kept: %s", back)
	}
	// A change beside status and reason is no status change.
	other := []byte(`{"resourceType":"Task","id":"t","status":"rejected","intent":"plan","statusReason":{"text":"x"}}`)
	if _, _, ok := StatusChanged(task, other); ok {
		t.Error("StatusChanged took a change of intent")
	}
	if got := StatusReasonOf([]byte(`{"statusReason":{"coding":[{"code":"no-bed","display":"Geen bed"}]}}`)); got != "Geen bed" {
		t.Errorf("coded reason %q", got)
	}
}

// TestDecisionState walks a Transfer request through the decision's
// writes on each backend: read and waiting, not due for a pull while it
// waits, decided once, due again after the decision.
func TestDecisionState(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		db := open()
		now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
		r := Received{ID: "r1", Tenant: "90000002", Identifier: "urn:uuid:n1", SenderURA: "90000001", PatientBSN: "999911120",
			WorkflowTask: "wf", AuthBase: "secret", Expires: now.Add(time.Hour), Status: StatusInProgress, Created: now, Updated: now}
		if ok, err := db.insertReceived(ctx, r); err != nil || !ok {
			t.Fatalf("insert: %v %v", ok, err)
		}
		if ok, err := db.decide(ctx, "r1", DecisionAccepted, "", now); err != nil || ok {
			t.Fatalf("decided before the documents were read: %v %v", ok, err)
		}
		if err := db.awaitDecision(ctx, "r1", "eoverdracht", "b1", ReasonAwaitingDecision, now); err != nil {
			t.Fatal(err)
		}
		got, _ := db.received(ctx, r.Tenant, "r1")
		if got.Decision != DecisionPending || got.RequestBundle != "b1" || got.Application != "eoverdracht" || got.StatusReason != ReasonAwaitingDecision {
			t.Fatalf("waiting: %+v", got)
		}
		due, err := db.unfinishedPulls(ctx, now.Add(time.Minute))
		if err != nil || len(due) != 0 {
			t.Fatalf("a request waiting for its decision is due for a pull: %v %v", due, err)
		}
		if ok, err := db.decide(ctx, "r1", DecisionRejected, "geen plaats", now); err != nil || !ok {
			t.Fatalf("decide: %v %v", ok, err)
		}
		if ok, err := db.decide(ctx, "r1", DecisionAccepted, "", now); err != nil || ok {
			t.Fatalf("decided twice: %v %v", ok, err)
		}
		got, _ = db.received(ctx, r.Tenant, "r1")
		if got.Decision != DecisionRejected || got.DecisionReason != "geen plaats" || got.StatusReason != "" {
			t.Fatalf("decided: %+v", got)
		}
		if due, err := db.unfinishedPulls(ctx, now.Add(time.Minute)); err != nil || len(due) != 1 {
			t.Fatalf("a decided request is not due for its pull: %v %v", due, err)
		}
		if err := db.dropRequest(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		if got, _ = db.received(ctx, r.Tenant, "r1"); got.RequestBundle != "" || got.Decision != DecisionRejected {
			t.Fatalf("after dropping the request's documents: %+v", got)
		}
	})
}
