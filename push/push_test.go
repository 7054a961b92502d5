package push_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit/audittest"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/push"
)

const (
	hospital = "00000002"
	gp       = "00000001"
)

// peerHeader stands in for the client certificate: the test transport
// names the sending participant in it, as mTLS would.
const peerHeader = "X-Test-Peer"

type peerTransport struct{ ura string }

func (p peerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(peerHeader, p.ura)
	return http.DefaultTransport.RoundTrip(r)
}

// world is two nodes' push services, each serving one participant.
type world struct {
	t        *testing.T
	svc      map[string]*push.Service
	db       map[string]*push.DB
	audit    map[string]*audittest.Log
	keys     map[string]jwk.Key
	srv      *httptest.Server
	down     atomic.Bool // the receiver answers 503
	now      atomic.Pointer[time.Time]
	dirs     map[string]string
	badKeys  atomic.Bool // receipts are checked against a wrong key
	lifetime time.Duration
	dataDir  string
	// lease is the services' outbox lease (0: the default), and slow how
	// long the receiver waits before it handles a message.
	lease time.Duration
	slow  atomic.Int64
	// shared: the services' store is shared with other replicas.
	shared bool
}

func newWorld(t *testing.T) *world { return newWorldWith(t, nil) }

// newWorldWith is newWorld with set changing the world before the
// services open.
func newWorldWith(t *testing.T, set func(*world)) *world {
	w := &world{t: t, svc: map[string]*push.Service{}, db: map[string]*push.DB{}, audit: map[string]*audittest.Log{},
		keys: map[string]jwk.Key{}, dirs: map[string]string{}, lifetime: time.Hour, dataDir: t.TempDir()}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	w.now.Store(&now)
	if set != nil {
		set(w)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/{ura}/$process-message", func(rw http.ResponseWriter, r *http.Request) {
		if w.down.Load() {
			http.Error(rw, "down", http.StatusServiceUnavailable)
			return
		}
		time.Sleep(time.Duration(w.slow.Load()))
		ura := r.PathValue("ura")
		w.svc[ura].HandleMessage(rw, r, ura)
	})
	w.srv = httptest.NewServer(mux)
	t.Cleanup(w.srv.Close)
	for _, ura := range []string{hospital, gp} {
		ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k, _ := jwk.Import(ec)
		_ = k.Set(jwk.KeyIDKey, "k-"+ura)
		w.keys[ura] = k
		w.open(ura)
	}
	return w
}

func (w *world) open(ura string) {
	db, err := push.OpenDB(context.Background(), filepath.Join(w.dataDir, ura+".db"))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { db.Close() })
	w.db[ura] = db
	w.audit[ura] = &audittest.Log{}
	w.svc[ura] = w.service(ura, db)
}

// service is ura's push service on db (a second one on the same database
// is another replica of the node).
func (w *world) service(ura string, db *push.DB) *push.Service {
	party := &push.Party{URA: ura, Name: "org " + ura, SystemUZI: "90000" + ura[4:], Signing: w.keys[ura],
		HTTP: &http.Client{Transport: peerTransport{ura}}}
	svc, err := push.New(push.Config{Node: "node-" + ura, Store: db, Directory: w,
		Parties: func(u string) (*push.Party, bool) { return party, u == ura },
		Token: func(_ context.Context, p *push.Party, _ string, _ bool) (string, error) {
			return "token-of-" + p.URA, nil
		},
		PartnerKeys: func(_ context.Context, partner string) (jwk.Set, error) {
			set := jwk.NewSet()
			k := w.keys[partner]
			if w.badKeys.Load() {
				k = w.keys[ura]
			}
			pub, _ := k.PublicKey()
			_ = set.AddKey(pub)
			return set, nil
		},
		Verify: func(r *http.Request) (string, string, []string, error) {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer token-of-")
			if !ok {
				return "", "", nil, errors.New("no token")
			}
			return tok, tok, []string{push.Scope}, nil
		},
		PeerURA:      func(r *http.Request) (string, error) { return r.Header.Get(peerHeader), nil },
		Endpoint:     func(t string) string { return w.srv.URL + "/" + t + "/$process-message" },
		Audit:        w.audit[ura],
		Now:          func() time.Time { return *w.now.Load() },
		Lifetime:     w.lifetime,
		RetryBase:    time.Second,
		RetryMax:     time.Minute,
		Lease:        w.lease,
		Shared:       w.shared,
		Applications: []push.Application{correspondentie.New()},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return svc
}

func (w *world) Endpoint(_ context.Context, ura, payloadType, _ string) (string, error) {
	if payloadType != push.PayloadType {
		return "", addressbook.ErrNotFound
	}
	return w.srv.URL + "/" + ura + "/$process-message", nil
}

func (w *world) advance(d time.Duration) {
	n := w.now.Load().Add(d)
	w.now.Store(&n)
}

// round delivers what ura's outbox has due now, as one round of the loop.
func (w *world) round(ura string) int {
	w.t.Helper()
	n, err := w.svc[ura].DeliverDue(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func letter(t *testing.T, bsn string) json.RawMessage {
	t.Helper()
	raw, err := correspondentie.Letter(correspondentie.LetterSpec{ID: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
		Type: correspondentie.DischargeLetter, PatientBSN: bsn, PatientName: "J. Jansen", BirthDate: "1950-01-01",
		AuthorUZI: "900012345", AuthorName: "dr. A. Internist", CustodianURA: hospital, Custodian: "Ziekenhuis",
		Date: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), Text: "Ontslagen in goede conditie."})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (w *world) send(id string) push.OutMessage {
	w.t.Helper()
	m, _, err := w.svc[hospital].Send(context.Background(), hospital, push.SendRequest{ID: id, ReceiverURA: gp,
		Application: "correspondentie", Payload: letter(w.t, "999911120")})
	if err != nil {
		w.t.Fatal(err)
	}
	return m
}

func (w *world) out(id string) push.OutMessage {
	w.t.Helper()
	m, err := w.svc[hospital].SentOne(context.Background(), hospital, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return m
}

func TestSendDeliverAcknowledge(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	m := w.send("")
	if m.Status != push.StatusQueued || len(w.audit[hospital].Find("push-send")) != 1 {
		t.Fatalf("after Send: %s, audit %v", m.Status, w.audit[hospital].Records())
	}
	if n := w.round(hospital); n != 1 {
		t.Fatalf("delivered %d", n)
	}
	got := w.out(m.ID)
	if got.Status != push.StatusDelivered || got.Receipt == "" {
		t.Fatalf("status %s (%s)", got.Status, got.StatusReason)
	}
	inbox, _ := w.svc[gp].Received(ctx, gp)
	if len(inbox) != 1 || inbox[0].MessageID != m.ID || inbox[0].PatientBSN != "999911120" || inbox[0].Receipt != got.Receipt {
		t.Fatalf("inbox %+v", inbox)
	}
	if recs := w.audit[gp].Find("push-receive"); len(recs) != 1 || recs[0].Patient != "999911120" || recs[0].Outcome != 200 ||
		recs[0].ActorURA != hospital || recs[0].ConsentProfile != "presumed-directed-send" {
		t.Fatalf("receiver audit %+v", recs)
	}
	payload, err := push.PayloadOf(inbox[0])
	if err != nil || !strings.Contains(string(payload), `"Composition"`) {
		t.Fatalf("payload %v", err)
	}
	if _, err := w.svc[gp].Processed(ctx, gp, inbox[0].ID, push.AckAccepted, "opgenomen in het dossier"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc[gp].Processed(ctx, gp, inbox[0].ID, push.AckAccepted, ""); !errors.Is(err, push.ErrNotReceived) {
		t.Fatalf("second Processed: %v", err)
	}
	if n := w.round(gp); n != 1 {
		t.Fatalf("acknowledgements delivered: %d", n)
	}
	got = w.out(m.ID)
	if got.Ack != push.AckAccepted || got.AckNote != "opgenomen in het dossier" {
		t.Fatalf("ack %q %q", got.Ack, got.AckNote)
	}
}

// TestSlowDeliveryKeepsItsLease: a delivery attempt that runs for several
// leases renews its lease all along: another replica's rounds claim
// nothing meanwhile, and the message is delivered once, in one attempt.
func TestSlowDeliveryKeepsItsLease(t *testing.T) {
	lease := 300 * time.Millisecond
	w := newWorldWith(t, func(w *world) { w.lease = lease })
	// The leases are real time here: the world's clock follows it.
	start := time.Now()
	base := *w.now.Load()
	tick := func() time.Time { return base.Add(time.Since(start)) }
	stopClock := make(chan struct{})
	defer close(stopClock)
	go func() {
		for {
			select {
			case <-stopClock:
				return
			case <-time.After(5 * time.Millisecond):
				n := tick()
				w.now.Store(&n)
			}
		}
	}()
	other, err := push.OpenDB(context.Background(), filepath.Join(w.dataDir, hospital+".db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	replica := w.service(hospital, other)

	w.send("slow")
	w.slow.Store(int64(4 * lease))
	done := make(chan int)
	go func() {
		n, err := w.svc[hospital].DeliverDue(context.Background())
		if err != nil {
			t.Error(err)
		}
		done <- n
	}()
	for running := true; running; {
		select {
		case n := <-done:
			if n != 1 {
				t.Fatalf("the first round delivered %d messages, want 1", n)
			}
			running = false
		case <-time.After(lease / 6):
			if n, err := replica.DeliverDue(context.Background()); err != nil || n != 0 {
				t.Fatalf("the other replica claimed %d messages (err %v) while a live round held the lease", n, err)
			}
		}
	}
	m := w.out("slow")
	if m.Status != push.StatusDelivered || m.Attempts != 1 {
		t.Fatalf("after the slow attempt: %s, %d attempts; want delivered in 1", m.Status, m.Attempts)
	}
	in, err := w.svc[gp].Received(context.Background(), gp)
	if err != nil || len(in) != 1 {
		t.Fatalf("the receiver's inbox: %d messages, err %v; want 1", len(in), err)
	}
}

func TestRejectedAcknowledgement(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	m := w.send("")
	w.round(hospital)
	inbox, _ := w.svc[gp].Received(ctx, gp)
	if _, err := w.svc[gp].Processed(ctx, gp, inbox[0].ID, "maybe", ""); err == nil {
		t.Fatal("an acknowledgement other than accepted/rejected was taken")
	}
	if _, err := w.svc[gp].Processed(ctx, gp, inbox[0].ID, push.AckRejected, "patiënt niet bij ons ingeschreven"); err != nil {
		t.Fatal(err)
	}
	w.round(gp)
	if got := w.out(m.ID); got.Ack != push.AckRejected || got.AckNote != "patiënt niet bij ons ingeschreven" {
		t.Fatalf("ack %q %q", got.Ack, got.AckNote)
	}
}

func TestReceiverDownThenBack(t *testing.T) {
	w := newWorld(t)
	m := w.send("")
	w.down.Store(true)
	var prev time.Time
	for i := 1; i <= 4; i++ {
		w.round(hospital)
		got := w.out(m.ID)
		if got.Status != push.StatusQueued || got.Attempts != i {
			t.Fatalf("attempt %d: %s, %d attempts", i, got.Status, got.Attempts)
		}
		wait := got.NextAttempt.Sub(*w.now.Load())
		// Back-off: 1s·2^(i-1), of which at least half.
		if lo, hi := time.Second<<(i-1)/2, time.Second<<(i-1); wait < lo || wait > hi {
			t.Fatalf("attempt %d: next in %s, want [%s, %s]", i, wait, lo, hi)
		}
		if n := w.round(hospital); n != 0 {
			t.Fatalf("retried before its time")
		}
		prev = got.NextAttempt
		w.now.Store(&prev)
	}
	// The sending node restarts: its outbox is in the database.
	w.db[hospital].Close()
	w.open(hospital)
	if err := w.svc[hospital].Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.down.Store(false)
	if n := w.round(hospital); n != 1 {
		t.Fatalf("after the receiver came back: %d delivered", n)
	}
	if got := w.out(m.ID); got.Status != push.StatusDelivered || got.Attempts != 5 {
		t.Fatalf("%s after %d attempts", got.Status, got.Attempts)
	}
}

// TestStartLeavesSharedLeases: a replica starting on a shared store leaves
// the lease another replica's round holds; on a store of its own a start
// makes every queued message due at once.
func TestStartLeavesSharedLeases(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			w := newWorldWith(t, func(w *world) { w.shared = shared })
			m := w.send("")
			now := *w.now.Load()
			lease := now.Add(30 * time.Second)
			// A live replica's round holds the message.
			if claimed, err := w.db[hospital].Claim(context.Background(), now, lease, 10); err != nil || len(claimed) != 1 {
				t.Fatalf("claim: %d, %v", len(claimed), err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			other := w.service(hospital, w.db[hospital])
			if err := other.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); other.Wait() }()
			if shared {
				// Its rounds find the message held; the lease stands.
				if n, err := other.DeliverDue(context.Background()); err != nil || n != 0 {
					t.Fatalf("a round of the started replica took %d messages (%v)", n, err)
				}
				if got := w.out(m.ID); got.Status != push.StatusQueued || !got.NextAttempt.Equal(lease) {
					t.Fatalf("after another replica started: %s, next attempt %s, want the lease %s", got.Status, got.NextAttempt, lease)
				}
				return
			}
			// The lease was released: the started replica delivers it.
			for deadline := time.Now().Add(10 * time.Second); w.out(m.ID).Status != push.StatusDelivered; {
				if time.Now().After(deadline) {
					t.Fatalf("the released message was not delivered: %s", w.out(m.ID).Status)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestStopGivesLeasesBack: a replica that stops while it holds messages
// (some in flight, some claimed and waiting for a worker) gives their
// leases back, so that another replica on the shared store tries them at
// once rather than a lease later.
func TestStopGivesLeasesBack(t *testing.T) {
	w := newWorldWith(t, func(w *world) { w.shared = true })
	w.slow.Store(int64(2 * time.Second)) // the receiver holds each attempt
	now := *w.now.Load()
	var ids []string
	for range 6 { // more than the 4 workers
		ids = append(ids, w.send("").ID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc := w.service(hospital, w.db[hospital])
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		claimed := 0
		for _, id := range ids {
			if w.out(id).NextAttempt.After(now) {
				claimed++
			}
		}
		if claimed == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages claimed", claimed, len(ids))
		}
	}
	cancel()
	svc.Wait()
	for _, id := range ids {
		if m := w.out(id); m.Status != push.StatusQueued || !m.NextAttempt.Equal(now) || m.Attempts != 0 {
			t.Errorf("%s after the stop: %s, next attempt %s, %d attempts; want queued, due now (%s), 0",
				id, m.Status, m.NextAttempt, m.Attempts, now)
		}
	}
	// Another replica's round takes them at once.
	if got, err := w.db[hospital].Claim(context.Background(), now, now.Add(time.Minute), 10); err != nil || len(got) != len(ids) {
		t.Fatalf("another replica claimed %d of %d (%v)", len(got), len(ids), err)
	}
	w.srv.Close() // the receiver's held attempts end while its store is open
}

func TestBackoffBounds(t *testing.T) {
	for n := 1; n <= 12; n++ {
		for range 50 {
			d := push.Backoff(n, time.Second, time.Minute)
			want := min(time.Second<<(n-1), time.Minute)
			if d < want/2 || d > want {
				t.Fatalf("Backoff(%d) = %s, want [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

func TestIdempotent(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	id := "0b7c0b0e-1111-4222-8333-444455556666"
	first := w.send(id)
	again, created, err := w.svc[hospital].Send(ctx, hospital, push.SendRequest{ID: id, ReceiverURA: gp,
		Application: "correspondentie", Payload: letter(t, "999911120")})
	if err != nil || created || again.BodySHA256 != first.BodySHA256 {
		t.Fatalf("second Send of the same id: created %v, err %v", created, err)
	}
	if sent, _ := w.svc[hospital].Sent(ctx, hospital); len(sent) != 1 {
		t.Fatalf("outbox has %d messages", len(sent))
	}
	// The sender dies after the receiver stored the message and before it
	// recorded the receipt: the lease ends, the message goes again.
	w.round(hospital)
	rec := w.out(id)
	w.db[hospital].Close()
	w.open(hospital)
	if err := w.db[hospital].UpdateOut(ctx, push.OutMessage{ID: id, Tenant: hospital, Status: push.StatusQueued,
		NextAttempt: *w.now.Load(), Updated: *w.now.Load()}); err != nil {
		t.Fatal(err)
	}
	w.round(hospital)
	got := w.out(id)
	if got.Status != push.StatusDelivered || got.Receipt != rec.Receipt {
		t.Fatalf("redelivery: %s, same receipt %v", got.Status, got.Receipt == rec.Receipt)
	}
	if inbox, _ := w.svc[gp].Received(ctx, gp); len(inbox) != 1 {
		t.Fatalf("the receiver stored %d messages", len(inbox))
	}
}

func TestLifetimeExpiry(t *testing.T) {
	w := newWorld(t)
	m := w.send("")
	w.down.Store(true)
	for range 256 { // bounded: the lifetime is an hour, the back-off at least half a minute once grown
		if w.out(m.ID).Status != push.StatusQueued {
			break
		}
		w.round(hospital)
		next := w.out(m.ID).NextAttempt
		w.now.Store(&next)
	}
	got := w.out(m.ID)
	if got.Status != push.StatusFailed || !strings.Contains(got.StatusReason, "lifetime") {
		t.Fatalf("%s: %s", got.Status, got.StatusReason)
	}
	if recs := w.audit[hospital].Find("push-deliver"); len(recs) != 1 || recs[0].Outcome != http.StatusBadGateway {
		t.Fatalf("failure not audited: %+v", recs)
	}
}

func TestReceiptVerified(t *testing.T) {
	w := newWorld(t)
	m := w.send("")
	w.badKeys.Store(true)
	w.round(hospital)
	if got := w.out(m.ID); got.Status != push.StatusQueued || !strings.Contains(got.StatusReason, "receipt signature") {
		t.Fatalf("a receipt under the wrong key: %s %q", got.Status, got.StatusReason)
	}
	w.badKeys.Store(false)
	w.now.Store(&[]time.Time{w.out(m.ID).NextAttempt}[0])
	w.round(hospital)
	if got := w.out(m.ID); got.Status != push.StatusDelivered {
		t.Fatalf("%s %q", got.Status, got.StatusReason)
	}
}

// A refused send is audited before the refusal is returned, with the
// receiver and, once the payload was read, the patient; nothing is queued.
func TestRefusedSendAudited(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		req     push.SendRequest
		patient string
	}{
		{"unknown application", push.SendRequest{ReceiverURA: gp, Application: "lab", Payload: letter(t, "999911120")}, ""},
		{"bad receiver", push.SendRequest{ReceiverURA: "12", Application: "correspondentie", Payload: letter(t, "999911120")}, ""},
		{"not a letter", push.SendRequest{ReceiverURA: gp, Application: "correspondentie", Payload: json.RawMessage(`{"resourceType":"Patient"}`)}, ""},
	} {
		before := len(w.audit[hospital].Find("push-send"))
		_, _, err := w.svc[hospital].Send(ctx, hospital, tc.req)
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Status < 400 || fe.Status >= 500 {
			t.Fatalf("%s: %v, want a 4xx FHIR error", tc.name, err)
		}
		recs := w.audit[hospital].Find("push-send")
		if len(recs) != before+1 {
			t.Fatalf("%s: %d push-send records, want %d", tc.name, len(recs), before+1)
		}
		r := recs[len(recs)-1]
		if r.Outcome != fe.Status || r.Tenant != hospital || !strings.Contains(r.Query, tc.req.ReceiverURA) || r.OutcomeText == "" || r.Patient != tc.patient {
			t.Errorf("%s: record %+v", tc.name, r)
		}
	}
	if sent, _ := w.svc[hospital].Sent(ctx, hospital); len(sent) != 0 {
		t.Fatalf("refused sends queued %d messages", len(sent))
	}
}
