package push_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// post sends body to gp's endpoint as peer would.
func (w *world) post(t *testing.T, peer, contentType string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.srv.URL+"/"+gp+"/$process-message", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer token-of-"+peer)
	resp, err := (&http.Client{Transport: peerTransport{peer}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var oo struct {
		ResourceType string
		Issue        []struct{ Diagnostics string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&oo)
	if resp.StatusCode != 200 && (oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0) {
		t.Fatalf("refusal %d is no OperationOutcome", resp.StatusCode)
	}
	if len(oo.Issue) == 0 {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, oo.Issue[0].Diagnostics
}

func TestReceiverRefuses(t *testing.T) {
	w := newWorld(t)
	good := func() []byte { return w.send("").Body }
	const stu3 = "application/fhir+json; fhirVersion=3.0"
	cases := []struct {
		name, peer, contentType string
		body                    func() []byte
		status                  int
		want, patient           string
	}{
		{"FHIR R4", hospital, "application/fhir+json; fhirVersion=4.0", good, 415, "STU3", ""},
		{"not a message", hospital, stu3, func() []byte { return []byte(`{"resourceType":"Bundle","type":"document","entry":[]}`) }, 400, "type message", ""},
		{"letter of another type", hospital, stu3, func() []byte {
			return bytes.Replace(good(), []byte(`"18842-5"`), []byte(`"11488-4"`), 1)
		}, 422, "LOINC", "999911120"},
		{"BSN fails the 11-proef", hospital, stu3, func() []byte {
			return bytes.Replace(good(), []byte(`"999911120"`), []byte(`"999911121"`), 1)
		}, 422, "11", ""},
		{"sender is not the certificate's organisation", "00000003", stu3, good, 403, "client certificate", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(w.audit[gp].Find("push-receive"))
			status, diag := w.post(t, c.peer, c.contentType, c.body())
			if status != c.status || !strings.Contains(diag, c.want) {
				t.Fatalf("got %d %q, want %d naming %q", status, diag, c.status, c.want)
			}
			recs := w.audit[gp].Find("push-receive")
			if len(recs) != before+1 || recs[len(recs)-1].Outcome != c.status || recs[len(recs)-1].Patient != c.patient {
				t.Fatalf("refusal not audited as %d for patient %q: %+v", c.status, c.patient, recs[len(recs)-1])
			}
		})
	}
	if inbox, _ := w.svc[gp].Received(t.Context(), gp); len(inbox) != 0 {
		t.Fatalf("refused messages stored: %d", len(inbox))
	}
}
