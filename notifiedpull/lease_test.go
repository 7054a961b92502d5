package notifiedpull

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// leaseFixture is a service on db with a short lease, and notification r1
// leased by owner "pa" at the real clock.
func leaseFixture(t *testing.T, db *DB, lease time.Duration) *Service {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	r := Received{ID: "r1", Identifier: "urn:uuid:n1", Status: StatusAccepted, Tenant: "90000002", SenderURA: "90000001",
		SenderSystem: "sys", PatientBSN: "999911120", WorkflowTask: "wf", AuthBase: "secret", Expires: now.Add(time.Hour), Created: now, Updated: now}
	if ok, err := db.insertReceived(ctx, r); err != nil || !ok {
		t.Fatalf("insert: %v %v", ok, err)
	}
	if ok, err := db.leasePull(ctx, "r1", "pa", now, now.Add(lease)); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	return New(Config{DB: db, Lease: lease, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// TestHoldLeaseRenews: a pull that works for several leases keeps its
// lease all along, on each backend: no other worker can take it, and its
// context stays alive; once it stops, the lease runs out as usual.
func TestHoldLeaseRenews(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		a, b := open(), open()
		lease := 450 * time.Millisecond // renewed every 150 ms: room for a late renewal on a busy machine
		s := leaseFixture(t, a, lease)
		lctx, stop := s.holdLease(context.Background(), "r1", "pa", time.Now().Add(lease))
		for end := time.Now().Add(3 * lease); time.Now().Before(end); time.Sleep(lease / 5) {
			now := time.Now()
			if ok, err := b.leasePull(context.Background(), "r1", "pb", now, now.Add(lease)); err != nil || ok {
				t.Fatalf("another worker took the lease of a pull that renews it: %v %v", ok, err)
			}
			if lctx.Err() != nil {
				t.Fatalf("the pull's context ended while it held the lease: %v", context.Cause(lctx))
			}
		}
		stop()
		if !errors.Is(lctx.Err(), context.Canceled) || errors.Is(context.Cause(lctx), errLeaseLost) {
			t.Errorf("after stop: %v (cause %v); want cancelled, not lost", lctx.Err(), context.Cause(lctx))
		}
		time.Sleep(lease + lease/5)
		now := time.Now()
		if ok, err := b.leasePull(context.Background(), "r1", "pb", now, now.Add(lease)); err != nil || !ok {
			t.Fatalf("lease after the holder stopped renewing: %v %v", ok, err)
		}
	})
}

// TestHoldLeaseLost: when another worker holds the notification (the
// lease ran out and was taken over), the pull's context ends with
// errLeaseLost at the next renewal, on each backend.
func TestHoldLeaseLost(t *testing.T) {
	onEach(t, func(t *testing.T, open func() *DB) {
		a, b := open(), open()
		lease := 150 * time.Millisecond
		s := leaseFixture(t, a, lease)
		lctx, stop := s.holdLease(context.Background(), "r1", "pa", time.Now().Add(lease))
		defer stop()
		// As a take-over after a lease ran out: "pb" holds it now.
		if err := b.releasePull(context.Background(), "r1", "pa", false); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if ok, err := b.leasePull(context.Background(), "r1", "pb", now, now.Add(time.Hour)); err != nil || !ok {
			t.Fatalf("take-over: %v %v", ok, err)
		}
		select {
		case <-lctx.Done():
		case <-time.After(20 * lease):
			t.Fatal("the pull's context did not end after its lease was taken over")
		}
		if !errors.Is(context.Cause(lctx), errLeaseLost) {
			t.Errorf("cause %v; want errLeaseLost", context.Cause(lctx))
		}
	})
}

// TestHoldLeaseUnrenewable: when no renewal succeeds before the lease runs
// out (the database is gone), the pull stops: another worker may hold the
// notification by then.
func TestHoldLeaseUnrenewable(t *testing.T) {
	a := backends(t)["sqlite"](t)()
	lease := 150 * time.Millisecond
	s := leaseFixture(t, a, lease)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lctx, stop := s.holdLease(context.Background(), "r1", "pa", time.Now().Add(lease))
	defer stop()
	select {
	case <-lctx.Done():
	case <-time.After(20 * lease):
		t.Fatal("the pull's context did not end when its lease could not be renewed")
	}
	if !errors.Is(context.Cause(lctx), errLeaseLost) {
		t.Errorf("cause %v; want errLeaseLost", context.Cause(lctx))
	}
}
