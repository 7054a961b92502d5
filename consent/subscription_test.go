package consent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// receiver is a subscriber's rest-hook endpoint: it fails the first `fail`
// notifications with 500 and keeps the rest.
type receiver struct {
	fail   int32
	calls  atomic.Int32
	mu     sync.Mutex
	bodies [][]byte
	peers  []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := rc.calls.Add(1)
	b, _ := io.ReadAll(r.Body)
	if n <= rc.fail {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	ura, _ := peer(r)
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, b)
	rc.peers = append(rc.peers, ura)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (rc *receiver) received() [][]byte {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([][]byte(nil), rc.bodies...)
}

func TestSubscriptionNotifies(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	rc := &receiver{fail: 2}
	hook := e.pki.serve(t, uraReceiver, rc)
	patient := bsn(t, 40)
	c := e.client(t, uraHolder, func(cfg *ClientConfig) { cfg.GatewaySystem = "urn:oid:2.16.840.1.113883.2.4.6.6.1" })
	loc, err := c.Subscribe(ctx, SubscriptionRequest{PatientBSN: patient, BirthDate: "2012-03-07", ProviderURA: uraHolder,
		ProviderType: "Z3", Endpoint: hook.URL + "/consent/notify"})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(loc, SubscriptionPath+"/Subscription/")
	sub, err := e.srv.Store().GetSubscription(ctx, id)
	if err != nil || sub.GatewaySystem != "urn:oid:2.16.840.1.113883.2.4.6.6.1" || sub.BirthDate != "2012-03-07" || sub.Owner != uraHolder {
		t.Fatalf("stored subscription %+v, %v", sub, err)
	}
	// Subscribing again gives the same subscription.
	if loc2, err := c.Subscribe(ctx, SubscriptionRequest{PatientBSN: patient, BirthDate: "2012-03-07", ProviderURA: uraHolder,
		ProviderType: "Z3", Endpoint: hook.URL + "/consent/notify"}); err != nil || loc2 != loc {
		t.Fatalf("again: %q %v", loc2, err)
	}

	// A registration about another category does not concern the subscriber.
	if resp, body := registerJSON(t, e, uraPortal, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z1"}); resp.StatusCode != 201 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	// The portal's registration via the provider API is scoped to its own URA: register one for the subscriber's data.
	if resp, body := registerJSON(t, e, uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z3"}); resp.StatusCode != 201 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	// The service records an attempt once its answer is back: after the
	// receiver has the notice.
	var deliveries []Delivery
	waitFor(t, "delivery", func() bool {
		var err error
		deliveries, err = e.srv.Store().Deliveries(ctx, id)
		return err == nil && len(rc.received()) == 1 && len(deliveries) == 3
	})
	if len(deliveries) != 3 || deliveries[0].HTTPStatus != 500 || deliveries[1].HTTPStatus != 500 || deliveries[2].HTTPStatus != 200 ||
		deliveries[2].Error != "" || deliveries[2].Attempt != 3 {
		t.Fatalf("delivery log %+v", deliveries)
	}
	ns, _ := e.srv.Store().Notifications(ctx, id)
	if len(ns) != 1 || ns[0].State != "delivered" {
		t.Fatalf("notifications %+v", ns)
	}
	n, err := ParseNotice(rc.received()[0])
	if err != nil {
		t.Fatal(err)
	}
	if n.PatientBSN != patient || len(n.Registrations) != 1 || n.Registrations[0].Effect != Permit ||
		n.Registrations[0].HolderURA != uraHolder || n.Registrations[0].HolderType != "Z3" {
		t.Fatalf("notice %+v", n)
	}
	if rc.peers[0] != uraService {
		t.Errorf("notification came from %q, want the service's certificate", rc.peers[0])
	}

	// Withdrawal notifies too: no Consent left for the subscriber.
	var regs []Registration
	_, body := do(t, e.pki.httpClient(t, uraHolder), http.MethodGet, e.ts.URL+RegistryPath+"?patient="+patient, "", nil)
	json.Unmarshal(body, &regs)
	do(t, e.pki.httpClient(t, uraHolder), http.MethodDelete, e.ts.URL+RegistryPath+"/"+regs[0].ID, "", nil)
	waitFor(t, "withdrawal notice", func() bool { return len(rc.received()) == 2 })
	n, err = ParseNotice(rc.received()[1])
	if err != nil || len(n.Registrations) != 0 {
		t.Fatalf("withdrawal notice %+v %v", n, err)
	}

	// Only the owner reads or removes it.
	if resp, _ := do(t, e.pki.httpClient(t, uraAsker), http.MethodDelete, e.ts.URL+loc, "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("delete by another peer: %d", resp.StatusCode)
	}
	if resp, _ := do(t, e.pki.httpClient(t, uraHolder), http.MethodDelete, e.ts.URL+loc, "", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete by owner: %d", resp.StatusCode)
	}
}

func TestNotificationGivesUp(t *testing.T) {
	e := newEnv(t, func(c *ServerConfig) { c.Delivery.Attempts = 2 })
	ctx := context.Background()
	rc := &receiver{fail: 1 << 30}
	hook := e.pki.serve(t, uraReceiver, rc)
	patient := bsn(t, 41)
	loc, err := e.client(t, uraHolder, nil).Subscribe(ctx, SubscriptionRequest{PatientBSN: patient, ProviderURA: uraHolder, ProviderType: "Z3", Endpoint: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(loc, SubscriptionPath+"/Subscription/")
	registerJSON(t, e, uraHolder, map[string]any{"patient": patient, "effect": "deny", "holderType": "Z3"})
	waitFor(t, "failure", func() bool {
		ns, _ := e.srv.Store().Notifications(ctx, id)
		return len(ns) == 1 && ns[0].State == "failed"
	})
	ds, _ := e.srv.Store().Deliveries(ctx, id)
	if len(ds) != 2 || ds[1].Error == "" {
		t.Fatalf("delivery log %+v", ds)
	}
}

func TestSubscriptionRefusals(t *testing.T) {
	e := newEnv(t, nil)
	patient := bsn(t, 42)
	good := func() map[string]any {
		return map[string]any{
			"resourceType": "Subscription", "status": "requested", "reason": "OTV",
			"criteria": "Consent?_query=otv&patientid=" + patient + "&providerid=" + uraHolder + "&providertype=Z3",
			"channel":  map[string]any{"type": "rest-hook", "endpoint": "https://node.example/notify", "payload": "application/fhir+json"},
			"extension": []any{
				map[string]any{"url": extBirthDate, "valueDate": "2012-03-07"},
				map[string]any{"url": extSourceSystem, "valueOid": "urn:oid:2.16.840.1.113883.2.4.6.6.90000017"},
			},
		}
	}
	tests := []struct {
		name   string
		mod    func(map[string]any)
		raw    string
		status int
	}{
		{"valid", func(map[string]any) {}, "", 201},
		{"status active", func(m map[string]any) { m["status"] = "active" }, "", 400},
		{"reason", func(m map[string]any) { m["reason"] = "because" }, "", 400},
		{"criteria on another resource", func(m map[string]any) { m["criteria"] = "Patient?_query=otv" }, "", 400},
		{"no _query", func(m map[string]any) {
			m["criteria"] = "Consent?patientid=" + patient + "&providerid=" + uraHolder + "&providertype=Z3"
		}, "", 400},
		{"bad patient", func(m map[string]any) {
			m["criteria"] = "Consent?_query=otv&patientid=123456789&providerid=" + uraHolder + "&providertype=Z3"
		}, "", 400},
		{"missing providertype", func(m map[string]any) {
			m["criteria"] = "Consent?_query=otv&patientid=" + patient + "&providerid=" + uraHolder
		}, "", 400},
		{"extra parameter", func(m map[string]any) { m["criteria"] = m["criteria"].(string) + "&all=true" }, "", 400},
		{"websocket", func(m map[string]any) { m["channel"].(map[string]any)["type"] = "websocket" }, "", 400},
		{"plain http endpoint", func(m map[string]any) { m["channel"].(map[string]any)["endpoint"] = "http://node.example/notify" }, "", 400},
		{"XML payload", func(m map[string]any) { m["channel"].(map[string]any)["payload"] = "application/fhir+xml" }, "", 422},
		{"unknown extension", func(m map[string]any) {
			m["extension"] = []any{map[string]any{"url": "http://example.org/x", "valueOid": "urn:oid:1.2"}}
		}, "", 400},
		{"bad birth date", func(m map[string]any) {
			m["extension"] = []any{map[string]any{"url": extBirthDate, "valueDate": "2012-13-45"}}
		}, "", 400},
		{"malformed JSON", nil, `{"resourceType":"Subscription",`, 400},
		{"unknown element", func(m map[string]any) { m["topic"] = "x" }, "", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.raw)
			if tt.mod != nil {
				m := good()
				tt.mod(m)
				body, _ = json.Marshal(m)
			}
			resp, out := do(t, e.pki.httpClient(t, uraHolder), http.MethodPost, e.ts.URL+SubscriptionPath, "application/fhir+json", body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, out)
			}
			var res struct {
				ResourceType string `json:"resourceType"`
				Status       string `json:"status"`
			}
			json.Unmarshal(out, &res)
			if tt.status == 201 && (res.ResourceType != "Subscription" || res.Status != "active" || resp.Header.Get("Location") == "") {
				t.Fatalf("created %s", out)
			}
			if tt.status >= 400 && res.ResourceType != "OperationOutcome" {
				t.Fatalf("error body %s", out)
			}
		})
	}
}

func TestStoreBackends(t *testing.T) {
	backends := map[string]func(t *testing.T) *Store{
		"sqlite": func(t *testing.T) *Store {
			s, err := OpenSQLite(context.Background(), t.TempDir()+"/consent.db")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) *Store { return openPostgres(t) },
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			c := newClock()
			s.now = c.Now
			patient := bsn(t, 50)
			base := Registration{PatientBSN: patient, Effect: Permit, HolderType: "Z3", Source: SourcePortal, RegisteredBy: uraPortal,
				ValidUntil: c.Now().Add(24 * time.Hour)}
			first, err := s.Register(ctx, base)
			if err != nil {
				t.Fatal(err)
			}
			c.Add(time.Minute)
			base.Effect = Deny // same scope: supersedes
			second, err := s.Register(ctx, base)
			if err != nil {
				t.Fatal(err)
			}
			current, _ := s.List(ctx, patient, false)
			history, _ := s.List(ctx, patient, true)
			if len(current) != 1 || current[0].ID != second.ID || len(history) != 2 || history[0].Revoked.IsZero() {
				t.Fatalf("current %+v history %+v", current, history)
			}
			if !current[0].ValidUntil.Equal(base.ValidUntil) || current[0].HolderType != "Z3" {
				t.Fatalf("round trip %+v", current[0])
			}
			if d, _ := s.Decide(ctx, question(patient), c.Now()); d != DecisionDeny {
				t.Fatalf("after superseding permit with deny: %s", d)
			}
			if _, err := s.Revoke(ctx, first.ID); err != nil { // already superseded: no-op
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, "nope"); err != ErrNotFound {
				t.Fatalf("Get missing = %v", err)
			}
			sub, created, err := s.Subscribe(ctx, Subscription{PatientBSN: patient, ProviderURA: uraHolder, ProviderType: "Z3",
				Endpoint: "https://x.example/n", Payload: mimeFHIRJSON, Owner: uraHolder})
			if err != nil || !created {
				t.Fatal(err)
			}
			if _, err := s.Revoke(ctx, second.ID); err != nil {
				t.Fatal(err)
			}
			ns, _ := s.Notifications(ctx, sub.ID)
			if len(ns) != 1 || ns[0].State != "pending" {
				t.Fatalf("notifications %+v", ns)
			}
			if err := s.Unsubscribe(ctx, sub.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.Unsubscribe(ctx, sub.ID); err != ErrNotFound {
				t.Fatalf("second unsubscribe = %v", err)
			}
		})
	}
}
