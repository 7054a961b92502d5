package geboortezorg_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit/audittest"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/push"
)

// A midwife practice and a GP practice, each on a Push service of its own
// behind one test server; the client certificate's organisation travels
// in a header set by the sending transport, the access token names the
// sender.
const (
	midwife = "90000020"
	gp      = "90000001"
)

const peerHeader = "X-Test-Peer"

type peerTransport struct{ ura string }

func (p peerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(peerHeader, p.ura)
	return http.DefaultTransport.RoundTrip(r)
}

type world struct {
	srv   *httptest.Server
	svc   map[string]*push.Service
	audit map[string]*audittest.Log
}

func (w *world) Endpoint(_ context.Context, ura, payloadType, _ string) (string, error) {
	if payloadType != push.PayloadType {
		return "", addressbook.ErrNotFound
	}
	return w.srv.URL + "/" + ura + "/$process-message", nil
}

func newWorld(t *testing.T) *world {
	w := &world{svc: map[string]*push.Service{}, audit: map[string]*audittest.Log{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/{ura}/$process-message", func(rw http.ResponseWriter, r *http.Request) {
		w.svc[r.PathValue("ura")].HandleMessage(rw, r, r.PathValue("ura"))
	})
	w.srv = httptest.NewServer(mux)
	t.Cleanup(w.srv.Close)
	keys := map[string]jwk.Key{}
	for _, ura := range []string{midwife, gp} {
		ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k, _ := jwk.Import(ec)
		_ = k.Set(jwk.KeyIDKey, "k-"+ura)
		keys[ura] = k
	}
	for _, ura := range []string{midwife, gp} {
		db, err := push.OpenDB(t.Context(), filepath.Join(t.TempDir(), ura+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		w.audit[ura] = &audittest.Log{}
		party := &push.Party{URA: ura, Name: "org " + ura, SystemUZI: "9000" + ura[3:], Signing: keys[ura],
			HTTP: &http.Client{Transport: peerTransport{ura}}}
		svc, err := push.New(push.Config{Node: "node-" + ura, Store: db, Directory: w,
			Parties: func(u string) (*push.Party, bool) { return party, u == ura },
			Token: func(_ context.Context, p *push.Party, _ string, _ bool) (string, error) {
				return "token-of-" + p.URA, nil
			},
			PartnerKeys: func(_ context.Context, partner string) (jwk.Set, error) {
				set := jwk.NewSet()
				pub, _ := keys[partner].PublicKey()
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
			Endpoint:     func(u string) string { return w.srv.URL + "/" + u + "/$process-message" },
			Audit:        w.audit[ura],
			Applications: []push.Application{correspondentie.New(), geboortezorg.New()},
		})
		if err != nil {
			t.Fatal(err)
		}
		w.svc[ura] = svc
	}
	return w
}

func transfer(t *testing.T) []byte {
	t.Helper()
	raw, err := geboortezorg.Document(geboortezorg.Demo("3b0c8a4e-5d6f-4a7b-9c8d-0e1f2a3b4c5d", midwife,
		"Verloskundigenpraktijk De Waterlelie", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestTransferDelivered: the midwife practice's transfer reaches the GP
// practice's inbox under the mother's BSN, with a verified receipt, and
// the receiving system reads mother, child and birth weight from it.
func TestTransferDelivered(t *testing.T) {
	w := newWorld(t)
	m, _, err := w.svc[midwife].Send(t.Context(), midwife, push.SendRequest{ReceiverURA: gp, Application: geboortezorg.Name,
		Payload: transfer(t)})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.svc[midwife].DeliverDue(t.Context()); n != 1 || err != nil {
		t.Fatalf("delivered %d: %v", n, err)
	}
	if out, _ := w.svc[midwife].SentOne(t.Context(), midwife, m.ID); out.Status != push.StatusDelivered || out.Receipt == "" {
		t.Fatalf("sender's view: %s %q", out.Status, out.StatusReason)
	}
	inbox, err := w.svc[gp].Received(t.Context(), gp)
	if err != nil || len(inbox) != 1 || inbox[0].Application != geboortezorg.Name || inbox[0].PatientBSN != geboortezorg.DemoMotherBSN {
		t.Fatalf("GP's inbox: %+v, %v", inbox, err)
	}
	payload, err := push.PayloadOf(inbox[0])
	if err != nil {
		t.Fatal(err)
	}
	tr, err := geboortezorg.Read(payload)
	if err != nil || tr.Child.BSN != geboortezorg.DemoChildBSN || len(tr.Observations) < 5 {
		t.Fatalf("read %+v, %v", tr, err)
	}
	recs := w.audit[gp].Find("push-receive")
	if len(recs) != 1 || recs[0].Outcome != 200 || recs[0].Patient != geboortezorg.DemoMotherBSN || recs[0].ConsentProfile != "presumed-directed-send" {
		t.Fatalf("receiver's audit: %+v", recs)
	}
}

// TestReceiverRefuses: what a sending node should not have sent — a letter
// under the geboortezorg event, the wrong profile, FHIR R4, no BSN for the
// mother — is refused by the receiving node with a 4xx OperationOutcome
// naming the fault, audited (with the mother when she is validly named),
// and never stored.
func TestReceiverRefuses(t *testing.T) {
	w := newWorld(t)
	// A well-formed message from the midwife practice, as its node built
	// it; each case swaps its payload (the focus entry) for another.
	m, _, err := w.svc[midwife].Send(t.Context(), midwife, push.SendRequest{ReceiverURA: gp, Application: geboortezorg.Name,
		Payload: transfer(t)})
	if err != nil {
		t.Fatal(err)
	}
	withPayload := func(payload []byte) []byte {
		var msg map[string]any
		if err := json.Unmarshal(m.Body, &msg); err != nil {
			t.Fatal(err)
		}
		msg["entry"].([]any)[1].(map[string]any)["resource"] = json.RawMessage(payload)
		out, _ := json.Marshal(msg)
		return out
	}
	editTransfer := func(f func(doc map[string]any)) []byte {
		var doc map[string]any
		_ = json.Unmarshal(transfer(t), &doc)
		f(doc)
		out, _ := json.Marshal(doc)
		return withPayload(out)
	}
	entry := func(doc map[string]any, typ, marker string) map[string]any {
		for _, e := range doc["entry"].([]any) {
			r := e.(map[string]any)["resource"].(map[string]any)
			b, _ := json.Marshal(r)
			if r["resourceType"] == typ && bytes.Contains(b, []byte(marker)) {
				return r
			}
		}
		t.Fatalf("no %s with %s", typ, marker)
		return nil
	}
	letter, err := correspondentie.Letter(correspondentie.LetterSpec{ID: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
		Type: correspondentie.DischargeLetter, PatientBSN: geboortezorg.DemoMotherBSN, PatientName: "S. de Wit",
		BirthDate: "1993-05-14", AuthorUZI: "900012345", AuthorName: "dr. A. Gynaecoloog", CustodianURA: "90000002",
		Custodian: "Ziekenhuis", Date: time.Now(), Text: "Ontslagen."})
	if err != nil {
		t.Fatal(err)
	}
	const stu3, r4 = "application/fhir+json; fhirVersion=3.0", "application/fhir+json; fhirVersion=4.0"
	cases := []struct {
		name, contentType string
		body              []byte
		status            int
		want, patient     string
	}{
		{"a letter sent as geboortezorg", stu3, withPayload(letter), 422, "correspondentie", geboortezorg.DemoMotherBSN},
		{"mother of another profile", stu3, editTransfer(func(d map[string]any) {
			entry(d, "Patient", geboortezorg.ProfileWoman)["meta"] = map[string]any{"profile": []any{geboortezorg.ProfileNLCorePatient}}
		}), 422, geboortezorg.ProfileWoman, geboortezorg.DemoMotherBSN},
		{"child not linked to the mother", stu3, editTransfer(func(d map[string]any) {
			delete(entry(d, "Patient", geboortezorg.ProfileWoman), "link")
		}), 422, "not linked", geboortezorg.DemoMotherBSN},
		{"mother without BSN", stu3, editTransfer(func(d map[string]any) {
			delete(entry(d, "Patient", geboortezorg.ProfileWoman), "identifier")
		}), 422, "identified by BSN", ""},
		{"FHIR R4 declared", r4, m.Body, 415, "STU3", ""},
		{"FHIR R4 element", stu3, editTransfer(func(d map[string]any) {
			o := entry(d, "Observation", geboortezorg.CodeApgar5)
			o["valueInteger"] = 10
			delete(o, "valueQuantity")
		}), 400, "valueInteger", ""},
		{"zib2020 (R4) profile", stu3, editTransfer(func(d map[string]any) {
			entry(d, "Patient", geboortezorg.ProfileChild)["meta"] = map[string]any{"profile": []any{"http://nictiz.nl/fhir/StructureDefinition/nl-core-Patient"}}
		}), 422, "FHIR R4", geboortezorg.DemoMotherBSN},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(w.audit[gp].Find("push-receive"))
			req, _ := http.NewRequest(http.MethodPost, w.srv.URL+"/"+gp+"/$process-message", bytes.NewReader(c.body))
			req.Header.Set("Content-Type", c.contentType)
			req.Header.Set("Authorization", "Bearer token-of-"+midwife)
			resp, err := (&http.Client{Transport: peerTransport{midwife}}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var oo struct {
				ResourceType string
				Issue        []struct{ Diagnostics string }
			}
			_ = json.NewDecoder(resp.Body).Decode(&oo)
			if resp.StatusCode != c.status || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 ||
				!strings.Contains(oo.Issue[0].Diagnostics, c.want) {
				t.Fatalf("got %d %s %+v, want %d naming %q", resp.StatusCode, oo.ResourceType, oo.Issue, c.status, c.want)
			}
			recs := w.audit[gp].Find("push-receive")
			if len(recs) != before+1 || recs[len(recs)-1].Outcome != c.status || recs[len(recs)-1].Patient != c.patient ||
				recs[len(recs)-1].ActorURA != midwife {
				t.Fatalf("refusal not audited as %d for patient %q: %+v", c.status, c.patient, recs[len(recs)-1])
			}
		})
	}
	if inbox, _ := w.svc[gp].Received(t.Context(), gp); len(inbox) != 0 {
		t.Fatalf("refused messages stored: %d", len(inbox))
	}
}

// TestSenderRefuses: the sending node checks the transfer as its receiver
// will, before anything is queued.
func TestSenderRefuses(t *testing.T) {
	w := newWorld(t)
	var doc map[string]any
	_ = json.Unmarshal(transfer(t), &doc)
	for _, e := range doc["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		if r["resourceType"] == "Condition" {
			r["clinicalStatus"] = map[string]any{"coding": []any{map[string]any{"code": "inactive"}}}
		}
	}
	bad, _ := json.Marshal(doc)
	_, _, err := w.svc[midwife].Send(t.Context(), midwife, push.SendRequest{ReceiverURA: gp, Application: geboortezorg.Name, Payload: bad})
	if err == nil || !strings.Contains(err.Error(), "FHIR R4") {
		t.Fatalf("got %v, want a refusal naming FHIR R4", err)
	}
	if out, _ := w.svc[midwife].Sent(t.Context(), midwife); len(out) != 0 {
		t.Fatalf("queued %d", len(out))
	}
}
