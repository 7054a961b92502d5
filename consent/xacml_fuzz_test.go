package consent

import (
	"errors"
	"testing"
	"time"
)

// FuzzParseQuery feeds arbitrary SOAP bodies to the closed-question parser
// of the consent service. The seed corpus is in testdata/fuzz/FuzzParseQuery;
// run with go test -fuzz=FuzzParseQuery ./consent.
func FuzzParseQuery(f *testing.F) {
	q, err := question("999911259").Normalize()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(buildQuery(q, testMessageID, "https://consent.example"+ClosedQuestionPath))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		id, got, err := parseQuery(body)
		if err != nil {
			var sf *soapFault
			var ind *indeterminate
			if !errors.As(err, &sf) && !errors.As(err, &ind) {
				t.Fatalf("refusal %v (%T) is neither a SOAP fault nor Indeterminate", err, err)
			}
			return
		}
		// A question the parser accepts is one the client could have asked,
		// and asking it again yields the same question.
		if n, err := got.Normalize(); err != nil || n != got {
			t.Fatalf("accepted question %+v does not validate: %v", got, err)
		}
		id2, again, err := parseQuery(buildQuery(got, id, "https://consent.example"+ClosedQuestionPath))
		if err != nil || id2 != id || again != got {
			t.Fatalf("round trip of %q %+v: %q %+v, %v", id, got, id2, again, err)
		}
	})
}

// FuzzParseResponse feeds arbitrary SOAP bodies to the client's parser of
// the consent service's answer. The seed corpus is in
// testdata/fuzz/FuzzParseResponse.
func FuzzParseResponse(f *testing.F) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	f.Add(buildResponse(testMessageID, "urn:oid:2.16.528.1.1007.3.3.1", DecisionPermit, statusOK, "", now))
	f.Add(buildResponse(testMessageID, "x", DecisionIndeterminate, statusSyntaxError, "attribute <x> & more", now))
	f.Add(buildFault(testMessageID, senderFault("", "not a SOAP 1.2 envelope")))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := parseResponse(body)
		if err != nil {
			return
		}
		if _, ok := parseDecision(string(a.decision)); !ok {
			t.Fatalf("accepted decision %q", a.decision)
		}
		// Nothing but a clean Permit grants access.
		if a.decision == DecisionPermit && a.status != "" && a.status != statusOK {
			t.Fatalf("accepted Permit with status %q", a.status)
		}
		switch a.status {
		case statusOK, statusMissingAttribute, statusSyntaxError, statusProcessingError:
		default:
			return // the service only ever sends these; others do not round-trip
		}
		b, err := parseResponse(buildResponse(a.relatesTo, "x", a.decision, a.status, a.message, now))
		if err != nil || b != a {
			t.Fatalf("round trip of %+v: %+v, %v", a, b, err)
		}
	})
}
