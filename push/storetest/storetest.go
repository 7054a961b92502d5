// Package storetest is the contract of push.Store: every backend (SQLite,
// PostgreSQL) runs these tests, so the outbox and inbox mean the same on
// both.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/push"
)

// Open returns a fresh, empty store; a second call within the same test
// opens the same database again (another replica, or a restart).
type Open func(t *testing.T) func() push.Store

// Run runs the contract against the backend open gives.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, open func() push.Store)
	}{
		{"Outbox", testOutbox},
		{"Claim", testClaim},
		{"ClaimConcurrent", testClaimConcurrent},
		{"Lease", testLease},
		{"Inbox", testInbox},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open(t)) })
	}
}

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func out(id string, at time.Time) push.OutMessage {
	return push.OutMessage{ID: id, Tenant: "90000001", ReceiverURA: "90000002", Application: "correspondentie",
		Kind: push.KindMessage, PatientBSN: "999911120", Body: []byte(`{"resourceType":"Bundle","id":"` + id + `"}` + "\x00\xff"),
		BodySHA256: "sha-" + id, Status: push.StatusQueued, NextAttempt: at, Expires: at.Add(24 * time.Hour),
		Created: at, Updated: at}
}

func testOutbox(t *testing.T, open func() push.Store) {
	ctx := context.Background()
	s := open()
	// ids against their order; two of the same instant keep the order stored.
	msgs := []push.OutMessage{out("m3", t0), out("m2", t0.Add(time.Second)), out("m1", t0.Add(time.Second))}
	for _, m := range msgs {
		got, created, err := s.Enqueue(ctx, m)
		if err != nil || !created || got.ID != m.ID {
			t.Fatalf("enqueue %s: %+v %v %v", m.ID, got, created, err)
		}
	}
	again := out("m3", t0.Add(time.Hour))
	again.BodySHA256 = "other"
	got, created, err := s.Enqueue(ctx, again)
	if err != nil || created || got.BodySHA256 != "sha-m3" || !bytes.Equal(got.Body, msgs[0].Body) || !got.Created.Equal(t0) {
		t.Fatalf("enqueue of a queued id: %+v %v %v; want the stored one", got, created, err)
	}
	other := out("m3", t0)
	other.Tenant = "90000003"
	if _, created, err := s.Enqueue(ctx, other); err != nil || !created {
		t.Fatalf("another tenant's same id: %v %v; want stored", created, err)
	}
	list, err := s.OutList(ctx, "90000001")
	if err != nil {
		t.Fatal(err)
	}
	if got := outIDs(list); !slices.Equal(got, []string{"m3", "m2", "m1"}) {
		t.Errorf("OutList: %v, want oldest first, as stored", got)
	}
	if _, err := s.Out(ctx, "90000001", "nope"); !errors.Is(err, push.ErrNotFound) {
		t.Errorf("Out of an unknown id: %v, want ErrNotFound", err)
	}

	m := msgs[1]
	m.Status, m.StatusReason, m.Attempts = push.StatusDelivered, "", 2
	m.Receipt, m.Delivered, m.Updated = "jws", t0.Add(time.Minute), t0.Add(time.Minute)
	if err := s.UpdateOut(ctx, m); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Acknowledge(ctx, m.Tenant, m.ID, "accepted", "fine", t0.Add(2*time.Minute)); err != nil || !ok {
		t.Fatalf("acknowledge: %v %v", ok, err)
	}
	if ok, err := s.Acknowledge(ctx, m.Tenant, "nope", "accepted", "", t0); err != nil || ok {
		t.Errorf("acknowledge of an unknown id: %v %v; want false", ok, err)
	}
	got, err = s.Out(ctx, m.Tenant, m.ID)
	if err != nil || got.Status != push.StatusDelivered || got.Attempts != 2 || got.Receipt != "jws" ||
		!got.Delivered.Equal(m.Delivered) || got.Ack != "accepted" || got.AckNote != "fine" || !got.AckAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after delivery and acknowledgement: %+v %v", got, err)
	}
}

func testClaim(t *testing.T, open func() push.Store) {
	ctx := context.Background()
	s := open()
	if _, ok, err := s.NextDue(ctx); err != nil || ok {
		t.Fatalf("NextDue of an empty outbox: %v %v", ok, err)
	}
	for i, id := range []string{"a", "b", "c", "later"} {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		if id == "later" {
			at = t0.Add(time.Hour)
		}
		if _, _, err := s.Enqueue(ctx, out(id, at)); err != nil {
			t.Fatal(err)
		}
	}
	done := out("done", t0)
	done.Status = push.StatusDelivered
	if _, _, err := s.Enqueue(ctx, done); err != nil {
		t.Fatal(err)
	}
	if due, ok, err := s.NextDue(ctx); err != nil || !ok || !due.Equal(t0) {
		t.Fatalf("NextDue: %v %v %v", due, ok, err)
	}
	now, lease := t0.Add(time.Minute), t0.Add(2*time.Minute)
	first, err := s.Claim(ctx, now, lease, 2)
	if err != nil || !slices.Equal(outIDs(first), []string{"a", "b"}) {
		t.Fatalf("first claim: %v %v; want a, b (due, earliest first, up to the limit)", outIDs(first), err)
	}
	second, err := s.Claim(ctx, now, lease, 10)
	if err != nil || !slices.Equal(outIDs(second), []string{"c"}) {
		t.Fatalf("second claim: %v %v; want c (a and b leased, later not due, done not queued)", outIDs(second), err)
	}
	if third, err := s.Claim(ctx, now, lease, 10); err != nil || len(third) != 0 {
		t.Fatalf("third claim: %v %v; want none", outIDs(third), err)
	}
	if due, _, _ := s.NextDue(ctx); !due.Equal(lease) {
		t.Errorf("NextDue after the claims: %v, want the lease %v", due, lease)
	}
	if err := s.Release(ctx, now); err != nil {
		t.Fatal(err)
	}
	// Release voids every lease (a message's next attempt past now may be
	// one), so every queued message is due.
	again, err := s.Claim(ctx, now, lease, 10)
	if err != nil || !slices.Equal(outIDs(again), []string{"a", "b", "c", "later"}) {
		t.Fatalf("claim after release: %v %v; want a, b, c, later", outIDs(again), err)
	}
	if d, _ := s.Out(ctx, "90000001", "done"); !d.NextAttempt.Equal(t0) {
		t.Errorf("release moved a delivered message: next attempt %v", d.NextAttempt)
	}
}

// testLease: a round that renews its lease keeps the message from other
// rounds past the lease's first end; once the lease ran out and another
// round claimed the message, the first one's renewal and delivery state
// change nothing (ErrLeaseLost), and the new holder's apply. A replica on
// the same database sees the same.
func testLease(t *testing.T, open func() push.Store) {
	ctx := context.Background()
	a, b := open(), open()
	if _, _, err := a.Enqueue(ctx, out("m", t0)); err != nil {
		t.Fatal(err)
	}
	lease := 30 * time.Second
	now := t0.Add(time.Minute)
	got, err := a.Claim(ctx, now, now.Add(lease), 10)
	if err != nil || len(got) != 1 || !got[0].Lease.Equal(now.Add(lease)) {
		t.Fatalf("claim: %v %v; want m under the lease", got, err)
	}
	held := got[0].Lease
	for at := now.Add(10 * time.Second); at.Before(now.Add(3 * lease)); at = at.Add(10 * time.Second) {
		if ok, err := a.Renew(ctx, "90000001", "m", held, at.Add(lease)); err != nil || !ok {
			t.Fatalf("renewal at %s: %v %v", at.Sub(now), ok, err)
		}
		held = at.Add(lease)
		if other, err := b.Claim(ctx, at.Add(time.Second), at.Add(time.Second+lease), 10); err != nil || len(other) != 0 {
			t.Fatalf("another round claimed a renewed message at %s: %v %v", at.Sub(now), outIDs(other), err)
		}
	}
	// The holder stops renewing: once its lease ran out another round
	// claims the message.
	taken := held
	other, err := b.Claim(ctx, taken, taken.Add(lease), 10)
	if err != nil || len(other) != 1 {
		t.Fatalf("claim after the lease ran out: %v %v", outIDs(other), err)
	}
	if ok, err := a.Renew(ctx, "90000001", "m", held, taken.Add(2*lease)); err != nil || ok {
		t.Fatalf("renewal of a lost lease: %v %v; want false", ok, err)
	}
	stale := got[0]
	stale.Lease, stale.Status, stale.Attempts, stale.Updated = held, push.StatusDelivered, 1, taken
	if err := a.UpdateOut(ctx, stale); !errors.Is(err, push.ErrLeaseLost) {
		t.Fatalf("delivery state of a round that lost the lease: %v; want ErrLeaseLost", err)
	}
	if m, _ := a.Out(ctx, "90000001", "m"); m.Status != push.StatusQueued || m.Attempts != 0 {
		t.Fatalf("after the stale write: %s, %d attempts; want queued, 0", m.Status, m.Attempts)
	}
	fresh := other[0]
	fresh.Status, fresh.Attempts, fresh.Updated = push.StatusDelivered, 1, taken
	if err := b.UpdateOut(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if m, _ := a.Out(ctx, "90000001", "m"); m.Status != push.StatusDelivered {
		t.Fatalf("after the holder's write: %s; want delivered", m.Status)
	}
	// A delivered message holds no lease: a late renewal does nothing.
	if ok, err := b.Renew(ctx, "90000001", "m", fresh.Lease, taken.Add(2*lease)); err != nil || ok {
		t.Fatalf("renewal of a delivered message: %v %v; want false", ok, err)
	}
}

// testClaimConcurrent: rounds claiming at once never take the same
// message. On PostgreSQL they run on different connections, as two
// replicas' senders do; a SQLite database is one process's.
func testClaimConcurrent(t *testing.T, open func() push.Store) {
	ctx := context.Background()
	s := open()
	const n = 40
	for i := range n {
		if _, _, err := s.Enqueue(ctx, out(fmt.Sprintf("m%02d", i), t0)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n { // bounded: each round takes at least one until none are left
				got, err := s.Claim(ctx, t0.Add(time.Minute), t0.Add(time.Hour), 3)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("%d messages claimed, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s claimed %d times", id, c)
		}
	}
}

func in(id, msgID string, at time.Time) push.InMessage {
	return push.InMessage{ID: id, Tenant: "90000002", MessageID: msgID, SenderURA: "90000001", SenderSystem: "sys",
		Application: "correspondentie", Kind: push.KindMessage, PatientBSN: "999911120", Body: []byte("body-" + id),
		BodySHA256: "sha", Receipt: "jws-" + id, Status: push.StatusReceived, Created: at, Updated: at}
}

func testInbox(t *testing.T, open func() push.Store) {
	ctx := context.Background()
	s := open()
	for _, m := range []push.InMessage{in("i2", "m1", t0), in("i1", "m2", t0)} {
		if got, created, err := s.Receive(ctx, m); err != nil || !created || got.ID != m.ID {
			t.Fatalf("receive %s: %+v %v %v", m.ID, got, created, err)
		}
	}
	got, created, err := s.Receive(ctx, in("i9", "m1", t0.Add(time.Hour)))
	if err != nil || created || got.ID != "i2" || got.Receipt != "jws-i2" || string(got.Body) != "body-i2" {
		t.Fatalf("receive of a stored message id: %+v %v %v; want the stored one", got, created, err)
	}
	ackIn := in("i3", "m3", t0.Add(time.Second))
	ackIn.Kind = push.KindAcknowledgement
	if _, _, err := s.Receive(ctx, ackIn); err != nil {
		t.Fatal(err)
	}
	list, err := s.InList(ctx, "90000002")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"i2", "i1"}) {
		t.Errorf("InList: %v, want the messages (not acknowledgements), as stored", ids)
	}
	if _, err := s.In(ctx, "90000009", "i2"); !errors.Is(err, push.ErrNotFound) {
		t.Errorf("another tenant's message: %v, want ErrNotFound", err)
	}

	m := got
	m.Ack, m.AckNote, m.Updated = "accepted", "ok", t0.Add(time.Minute)
	ack := out("ack-1", t0.Add(time.Minute))
	ack.Tenant, ack.ReceiverURA, ack.Kind, ack.ResponseTo = "90000002", "90000001", push.KindAcknowledgement, "m1"
	if ok, err := s.Process(ctx, m, ack); err != nil || !ok {
		t.Fatalf("process: %v %v", ok, err)
	}
	ack2 := ack
	ack2.ID = "ack-2"
	if ok, err := s.Process(ctx, m, ack2); err != nil || ok {
		t.Fatalf("second process: %v %v; want false", ok, err)
	}
	got, err = s.In(ctx, "90000002", "i2")
	if err != nil || got.Status != push.StatusProcessed || got.Ack != "accepted" || got.AckNote != "ok" {
		t.Errorf("after process: %+v %v", got, err)
	}
	queued, err := s.OutList(ctx, "90000002")
	if err != nil || !slices.Equal(outIDs(queued), []string{"ack-1"}) || queued[0].ResponseTo != "m1" {
		t.Errorf("acknowledgements queued: %v %v; want ack-1 only", outIDs(queued), err)
	}
}

func outIDs(ms []push.OutMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}
