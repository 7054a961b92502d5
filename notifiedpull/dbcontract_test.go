package notifiedpull

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/plateau"
)

// TestReceivedLifecycle walks a received notification through every write
// the receiver makes, on each backend, and checks what each leaves behind:
// the statements and their order must mean the same on both.
func TestReceivedLifecycle(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		db := open()
		now := time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC)
		r := Received{ID: "r1", Tenant: "90000002", Identifier: "urn:uuid:n1", SenderURA: "90000001", SenderSystem: "sys",
			PatientBSN: "999911120", WorkflowTask: "wf", AuthBase: "secret", Expires: now.Add(time.Hour),
			Status: StatusRequested, StatusReason: ReasonAwaitingUser, Created: now, Updated: now, Awaiting: true}
		if ok, err := db.insertReceived(ctx, r); err != nil || !ok {
			t.Fatalf("insert: %v %v", ok, err)
		}
		dup := r
		dup.ID = "r2"
		if ok, err := db.insertReceived(ctx, dup); err != nil || ok {
			t.Fatalf("second notification with the same identifier: stored %v, err %v; want not stored", ok, err)
		}
		got, err := db.receivedByIdentifier(ctx, r.SenderURA, r.Identifier)
		if err != nil || got.ID != "r1" || !got.Awaiting || got.AuthBase != "secret" || !got.Expires.Equal(r.Expires) || !got.Created.Equal(now) {
			t.Fatalf("by identifier: %+v %v", got, err)
		}
		if _, err := db.received(ctx, "90000003", "r1"); !errors.Is(err, errNoRow) {
			t.Errorf("another tenant's notification: err %v, want errNoRow", err)
		}

		user := plateau.Caller{ID: "900012345", Role: "01.015"}
		if ok, err := db.acceptReceived(ctx, "r1", user, now); err != nil || !ok {
			t.Fatalf("accept: %v %v", ok, err)
		}
		if ok, err := db.acceptReceived(ctx, "r1", user, now); err != nil || ok {
			t.Fatalf("second accept: %v %v; want false", ok, err)
		}
		got, _ = db.received(ctx, r.Tenant, "r1")
		if got.Awaiting || got.AcceptedBy == nil || got.AcceptedBy.ID != user.ID || got.StatusReason != "" {
			t.Fatalf("after accept: %+v", got)
		}

		if err := db.setReceivedStatus(ctx, "r1", StatusInProgress, "", now); err != nil {
			t.Fatal(err)
		}
		summary := []QueryResult{{Block: "b", Code: "c", Query: "Patient?x", Matches: 2, Included: 1, Status: 200}}
		if err := db.completeReceived(ctx, "r1", "", "bgz", "bundle1", summary, now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		got, _ = db.received(ctx, r.Tenant, "r1")
		if got.Status != StatusCompleted || !got.ReportPending || got.ResultBundle != "bundle1" || got.Application != "bgz" || len(got.Summary) != 1 ||
			got.Summary[0] != summary[0] || got.AuthBase != "secret" || got.AcceptedBy == nil {
			t.Fatalf("after complete (report pending keeps what the report needs): %+v", got)
		}
		if err := db.reportDone(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		got, _ = db.received(ctx, r.Tenant, "r1")
		if got.ReportPending || got.AuthBase != "" || got.AcceptedBy != nil || got.Status != StatusCompleted {
			t.Fatalf("after report: %+v", got)
		}

		// A final status clears the secret, the user and the flags at once.
		r3 := Received{ID: "r3", Tenant: r.Tenant, Identifier: "urn:uuid:n3", SenderURA: r.SenderURA, PatientBSN: r.PatientBSN,
			WorkflowTask: "wf3", AuthBase: "secret3", Expires: now.Add(time.Hour), Status: StatusRequested,
			Created: now, Updated: now, Awaiting: true}
		if ok, err := db.insertReceived(ctx, r3); err != nil || !ok {
			t.Fatalf("insert r3: %v %v", ok, err)
		}
		if err := db.setReceivedStatus(ctx, "r3", StatusRejected, "no", now); err != nil {
			t.Fatal(err)
		}
		got, _ = db.received(ctx, r.Tenant, "r3")
		if got.Status != StatusRejected || got.StatusReason != "no" || got.AuthBase != "" || got.Awaiting || got.ReportPending {
			t.Fatalf("after reject: %+v", got)
		}
		if ok, err := db.acceptReceived(ctx, "r3", user, now); err != nil || ok {
			t.Fatalf("accept after reject: %v %v; want false", ok, err)
		}
	})
}

// TestListsOldestFirst: lists come oldest first, and rows of the same
// instant in the order they were stored, on both backends.
func TestListsOldestFirst(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		db := open()
		// Nine-digit fractions: the stored text (RFC 3339, trailing zeros
		// trimmed) sorts as the times do only at a fixed width, the same on
		// both backends.
		t0 := time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC)
		// ids against their order.
		rows := []struct {
			id string
			at time.Time
		}{{"z", t0}, {"y", t0.Add(500 * time.Millisecond)}, {"x", t0.Add(time.Second)}, {"w", t0.Add(time.Second)}, {"a", t0.Add(time.Second)}}
		var want []string
		for i, row := range rows {
			if err := db.insertGrant(ctx, Grant{ID: row.id, Tenant: "90000001", ReceiverURA: "90000002", WorkflowTask: "wf" + row.id,
				AuthBaseHash: "h" + row.id, Application: ApplicationBgZ, Queries: []string{"q" + row.id},
				Expires: t0.Add(time.Hour), Status: StatusRequested, Created: row.at, Updated: row.at}); err != nil {
				t.Fatal(err)
			}
			tenant := "90000002"
			if i == 1 {
				tenant = "90000009"
			}
			if _, err := db.insertReceived(ctx, Received{ID: row.id, Tenant: tenant, Identifier: row.id, SenderURA: "90000001",
				WorkflowTask: "wf", Expires: t0.Add(time.Hour), Status: StatusRequested, Created: row.at, Updated: row.at}); err != nil {
				t.Fatal(err)
			}
			want = append(want, row.id)
		}
		grants, err := db.grants(ctx, "90000001")
		if err != nil {
			t.Fatal(err)
		}
		if got := grantIDs(grants); !equal(got, want) {
			t.Errorf("grants: %v, want %v", got, want)
		}
		if g, err := db.grantByTask(ctx, "90000001", "wfx"); err != nil || g.ID != "x" || len(g.Queries) != 1 || g.Queries[0] != "qx" {
			t.Errorf("grantByTask: %+v %v", g, err)
		}
		all, err := db.receivedList(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := receivedIDs(all); !equal(got, want) {
			t.Errorf("receivedList(all): %v, want %v", got, want)
		}
		one, err := db.receivedList(ctx, "90000002")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := receivedIDs(one), []string{"z", "x", "w", "a"}; !equal(got, want) {
			t.Errorf("receivedList(tenant): %v, want %v", got, want)
		}
	})
}

// TestGrantSeenByEveryOpener: a change made through one DB is what another
// DB on the same database reads next (a second replica on PostgreSQL, a
// restart on SQLite), so a grant cancelled on one replica admits no pull
// on the other.
func TestGrantSeenByEveryOpener(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		a := open()
		now := time.Now().UTC()
		g := Grant{ID: "g1", Tenant: "90000001", ReceiverURA: "90000002", WorkflowTask: "wf", AuthBaseHash: "h1",
			Application: ApplicationBgZ, Expires: now.Add(time.Hour), Status: StatusRequested, Created: now, Updated: now}
		if err := a.insertGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		if _, err := a.grantByHash(ctx, "h1"); err != nil { // a now holds it in memory, where it may
			t.Fatal(err)
		}
		if a.postgres {
			b := open()
			if _, err := b.grantByHash(ctx, "h1"); err != nil {
				t.Fatal(err)
			}
			if err := b.setGrantStatus(ctx, g.ID, StatusCancelled, "by the sender", now); err != nil {
				t.Fatal(err)
			}
		} else {
			// SQLite's database is one process's: the next opener is the
			// process after a restart.
			if err := a.setGrantStatus(ctx, g.ID, StatusCancelled, "by the sender", now); err != nil {
				t.Fatal(err)
			}
			a.Close()
			a = open()
		}
		for _, read := range []func() (Grant, error){
			func() (Grant, error) { return a.grantByHash(ctx, "h1") },
			func() (Grant, error) { return a.grant(ctx, g.Tenant, g.ID) },
		} {
			got, err := read()
			if err != nil || got.Status != StatusCancelled || got.StatusReason != "by the sender" {
				t.Errorf("read after another's cancel: %+v %v", got, err)
			}
		}
	})
}

func TestOpenPostgresRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, dsn, schema string }{
		{"DSN", "postgres://%zz", ""},
		{"schema", "postgres://127.0.0.1:1/x", "Robert'); DROP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := OpenPostgres(ctx, tc.dsn, tc.schema)
			if err == nil {
				db.Close()
				t.Fatal("opened")
			}
		})
	}
}

func grantIDs(gs []Grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.ID)
	}
	return out
}

func receivedIDs(rs []Received) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPullLease: one worker at a time holds a notification's pull, on each
// backend; a released or run-out lease lets the next one in, and only
// unfinished, unheld pulls are listed for resuming.
func TestPullLease(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		a, b := open(), open() // two replicas
		now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
		for _, r := range []Received{
			{ID: "r1", Identifier: "urn:uuid:n1", Status: StatusAccepted},
			{ID: "r2", Identifier: "urn:uuid:n2", Status: StatusRequested, Awaiting: true, StatusReason: ReasonAwaitingUser},
			{ID: "r3", Identifier: "urn:uuid:n3", Status: StatusCompleted},
		} {
			r.Tenant, r.SenderURA, r.SenderSystem, r.PatientBSN, r.WorkflowTask, r.AuthBase = "90000002", "90000001", "sys", "999911120", "wf", "secret"
			r.Expires, r.Created, r.Updated = now.Add(time.Hour), now, now
			if ok, err := a.insertReceived(ctx, r); err != nil || !ok {
				t.Fatalf("insert %s: %v %v", r.ID, ok, err)
			}
		}
		due, err := b.unfinishedPulls(ctx, now)
		if err != nil || len(due) != 1 || due[0] != (duePull{"90000002", "r1", ""}) {
			t.Fatalf("unfinished pulls: %v %v; want r1 only", due, err)
		}
		if ok, err := a.leasePull(ctx, "r1", "pa", now, now.Add(time.Minute)); err != nil || !ok {
			t.Fatalf("first lease: %v %v", ok, err)
		}
		if ok, err := b.leasePull(ctx, "r1", "pb", now.Add(time.Second), now.Add(time.Minute)); err != nil || ok {
			t.Fatalf("lease held by the other replica: %v %v; want refused", ok, err)
		}
		if due, _ := b.unfinishedPulls(ctx, now.Add(time.Second)); len(due) != 0 {
			t.Errorf("a held pull is listed for resuming: %v", due)
		}
		// The holder stopped: its lease runs out.
		if ok, err := b.leasePull(ctx, "r1", "pb", now.Add(time.Minute), now.Add(2*time.Minute)); err != nil || !ok {
			t.Fatalf("lease after it ran out: %v %v", ok, err)
		}
		// Another's release leaves the lease with its holder.
		if err := a.releasePull(ctx, "r1", "pa", false); err != nil {
			t.Fatal(err)
		}
		if ok, err := a.leasePull(ctx, "r1", "pa2", now.Add(61*time.Second), now.Add(2*time.Minute)); err != nil || ok {
			t.Fatalf("lease released by a worker that no longer held it: %v %v; want still held", ok, err)
		}
		if err := b.releasePull(ctx, "r1", "pb", false); err != nil {
			t.Fatal(err)
		}
		if ok, err := a.leasePull(ctx, "r1", "pa2", now.Add(61*time.Second), now.Add(2*time.Minute)); err != nil || !ok {
			t.Fatalf("lease after release: %v %v", ok, err)
		}
	})
}

// TestPullLeaseRenewal: a worker that renews its lease keeps the
// notification past the lease's first end, on each backend; once the lease
// ran out unrenewed and another worker took it, the first one's renewal
// and its writes of the pull's outcome fail with errLeaseLost and change
// nothing, and the new holder's apply.
func TestPullLeaseRenewal(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		a, b := open(), open() // two replicas
		now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
		lease := 30 * time.Second
		r := Received{ID: "r1", Identifier: "urn:uuid:n1", Status: StatusAccepted, Tenant: "90000002", SenderURA: "90000001",
			SenderSystem: "sys", PatientBSN: "999911120", WorkflowTask: "wf", AuthBase: "secret", Expires: now.Add(time.Hour), Created: now, Updated: now}
		if ok, err := a.insertReceived(ctx, r); err != nil || !ok {
			t.Fatalf("insert: %v %v", ok, err)
		}
		if ok, err := a.leasePull(ctx, "r1", "pa", now, now.Add(lease)); err != nil || !ok {
			t.Fatalf("lease: %v %v", ok, err)
		}
		// Renewed every 10 s, for three leases: never free for another.
		for at := now.Add(10 * time.Second); at.Before(now.Add(3 * lease)); at = at.Add(10 * time.Second) {
			if ok, err := a.renewPull(ctx, "r1", "pa", at.Add(lease)); err != nil || !ok {
				t.Fatalf("renewal at %s: %v %v", at.Sub(now), ok, err)
			}
			if ok, err := b.leasePull(ctx, "r1", "pb", at.Add(time.Second), at.Add(lease)); err != nil || ok {
				t.Fatalf("another worker took a renewed lease at %s: %v %v", at.Sub(now), ok, err)
			}
			if due, _ := b.unfinishedPulls(ctx, at.Add(time.Second)); len(due) != 0 {
				t.Fatalf("a renewed pull is listed for resuming at %s: %v", at.Sub(now), due)
			}
		}
		// The holder stops renewing (its replica died): one lease after
		// its last renewal the pull is listed and another worker takes it.
		last := now.Add(80 * time.Second)
		if due, _ := b.unfinishedPulls(ctx, last.Add(lease-time.Millisecond)); len(due) != 0 {
			t.Errorf("listed before the lease ran out: %v", due)
		}
		taken := last.Add(lease)
		if due, _ := b.unfinishedPulls(ctx, taken); len(due) != 1 || due[0].heldBy != "pa" {
			t.Fatalf("not listed, held by pa, once the lease ran out: %v", due)
		}
		if ok, err := b.leasePull(ctx, "r1", "pb", taken, taken.Add(lease)); err != nil || !ok {
			t.Fatalf("take-over: %v %v", ok, err)
		}
		// The first worker learns it lost the lease, and writes nothing.
		if ok, err := a.renewPull(ctx, "r1", "pa", taken.Add(lease)); err != nil || ok {
			t.Fatalf("renewal of a lost lease: %v %v; want false", ok, err)
		}
		if err := a.setReceivedStatusLeased(ctx, "r1", "pa", StatusFailed, "late", taken); !errors.Is(err, errLeaseLost) {
			t.Fatalf("status by a worker that lost the lease: %v; want errLeaseLost", err)
		}
		if err := a.completeReceived(ctx, "r1", "pa", "bgz", "stale", nil, taken); !errors.Is(err, errLeaseLost) {
			t.Fatalf("completion by a worker that lost the lease: %v; want errLeaseLost", err)
		}
		if got, _ := a.received(ctx, r.Tenant, "r1"); got.Status != StatusAccepted || got.ResultBundle != "" {
			t.Fatalf("after the stale writes: %s %q; want accepted, no result", got.Status, got.ResultBundle)
		}
		// The new holder's writes apply, once.
		if err := b.setReceivedStatusLeased(ctx, "r1", "pb", StatusInProgress, "", taken); err != nil {
			t.Fatal(err)
		}
		if err := b.completeReceived(ctx, "r1", "pb", "bgz", "fresh", nil, taken); err != nil {
			t.Fatal(err)
		}
		if got, _ := a.received(ctx, r.Tenant, "r1"); got.Status != StatusCompleted || got.ResultBundle != "fresh" {
			t.Fatalf("after the holder's completion: %s %q; want completed, Bundle fresh", got.Status, got.ResultBundle)
		}
		if due, _ := b.unfinishedPulls(ctx, taken); len(due) != 0 {
			t.Errorf("a completed pull is listed: %v", due)
		}
		// The completion's report to the sender is pending: the pull's
		// release leaves the lease to the report.
		if err := b.releasePull(ctx, "r1", "pb", true); err != nil {
			t.Fatal(err)
		}
		if ok, err := a.leasePull(ctx, "r1", "pr", taken, taken.Add(lease)); err != nil || ok {
			t.Fatalf("lease of a completion whose report holds it: %v %v; want refused", ok, err)
		}
		if got, err := a.orphanedReports(ctx, taken.Add(lease-time.Millisecond)); err != nil || len(got) != 0 {
			t.Fatalf("a report under a live lease is listed as orphaned: %d %v", len(got), err)
		}
		// The reporting worker died: once its lease ran out, the report is
		// listed, and another worker takes it.
		if got, err := a.orphanedReports(ctx, taken.Add(lease)); err != nil || len(got) != 1 || got[0].ID != "r1" {
			t.Fatalf("orphaned reports after the lease ran out: %d %v; want r1", len(got), err)
		}
		if ok, err := a.leasePull(ctx, "r1", "pr", taken.Add(lease), taken.Add(2*lease)); err != nil || !ok {
			t.Fatalf("lease of an orphaned report: %v %v", ok, err)
		}
		// A report that ended with the report still pending (the sender
		// could not take it) releases: not orphaned, tried at the next start.
		if err := a.releasePull(ctx, "r1", "pr", false); err != nil {
			t.Fatal(err)
		}
		if got, err := a.orphanedReports(ctx, taken.Add(3*lease)); err != nil || len(got) != 0 {
			t.Fatalf("a released pending report is listed as orphaned: %d %v", len(got), err)
		}
		if err := a.reportDone(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGroups: both sides keep a referral's group, and the receiver lists
// the notifications of one group from one sender to one participant,
// oldest first, a row without a group being a group of its own, on both
// backends; get-workflow-task is kept as received.
func TestGroups(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		ctx := context.Background()
		db := open()
		now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
		g := Grant{ID: "urn:uuid:g2", Group: "urn:uuid:g1", Tenant: "90000001", ReceiverURA: "90000002", PatientBSN: "999911120",
			WorkflowTask: "wf", AuthBaseHash: "h2", Application: "bgz", Expires: now.Add(time.Hour), Status: StatusRequested, Created: now, Updated: now}
		if err := db.insertGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		if got, err := db.grant(ctx, g.Tenant, g.ID); err != nil || got.Group != "urn:uuid:g1" {
			t.Fatalf("grant: %+v %v", got, err)
		}
		row := func(id, identifier, sender, tenant, group string, get bool, at time.Time) Received {
			return Received{ID: id, Tenant: tenant, Identifier: identifier, SenderURA: sender, PatientBSN: "999911120", WorkflowTask: "wf",
				AuthBase: "s", Expires: now.Add(time.Hour), Status: StatusRequested, Created: at, Updated: at, Group: group, GetWorkflowTask: get}
		}
		for _, r := range []Received{
			row("a", "urn:uuid:g1", "90000001", "90000002", "", true, now), // from before groups: its own group
			row("b", "urn:uuid:g2", "90000001", "90000002", "urn:uuid:g1", false, now.Add(time.Second)),
			row("c", "urn:uuid:g3", "90000001", "90000002", "urn:uuid:other", true, now),
			row("d", "urn:uuid:g4", "90000003", "90000002", "urn:uuid:g1", true, now), // another sender
			row("e", "urn:uuid:g5", "90000001", "90000004", "urn:uuid:g1", true, now), // another participant
		} {
			if ok, err := db.insertReceived(ctx, r); err != nil || !ok {
				t.Fatalf("insert %s: %v %v", r.ID, ok, err)
			}
		}
		group, err := db.receivedInGroup(ctx, "90000002", "90000001", "urn:uuid:g1")
		if err != nil {
			t.Fatal(err)
		}
		if ids := receivedIDs(group); !equal(ids, []string{"a", "b"}) {
			t.Fatalf("group: %v, want a, b", ids)
		}
		if group[0].Group != "urn:uuid:g1" || !group[0].GetWorkflowTask || group[1].GetWorkflowTask {
			t.Errorf("rows: %+v", group)
		}
	})
}
