package notifiedpull

import (
	"context"
	"testing"
	"time"
)

// TestDepth counts only what is not final, on either side.
func TestDepth(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		db := open()
		now := time.Now().UTC()
		for i, status := range []string{StatusRequested, StatusInProgress, StatusCompleted, StatusCancelled} {
			id := string(rune('a' + i))
			if err := db.insertGrant(ctx, Grant{ID: "g" + id, Tenant: "90000001", ReceiverURA: "90000002", WorkflowTask: "wf" + id,
				AuthBaseHash: "h" + id, Application: ApplicationBgZ, Expires: now.Add(time.Hour), Status: status, Created: now, Updated: now}); err != nil {
				t.Fatal(err)
			}
		}
		for i, status := range []string{StatusRequested, StatusFailed, StatusRejected} {
			id := string(rune('a' + i))
			if _, err := db.insertReceived(ctx, Received{ID: "r" + id, Tenant: "90000002", Identifier: "n" + id, SenderURA: "90000001",
				PatientBSN: "999911120", WorkflowTask: "wf", AuthBase: "ab", Expires: now.Add(time.Hour), Status: status,
				Created: now, Updated: now}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.Depth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Depth{Inbox: 1, Outbox: 2}); got != want {
			t.Errorf("Depth = %+v, want %+v", got, want)
		}
	})
}
