package identification

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/pki"
)

// Test BSNs: valid by the 11-proef.
const (
	bsnKnown   = "999993653"
	bsnUnknown = "999990032"
)

// env is a stand-in behind an mTLS listener on 127.0.0.1 and a client for it.
type env struct {
	url    string
	asked  atomic.Int64 // questions that reached the handler
	client *http.Client
	ln     net.Listener
}

// startService serves h (the stand-in when nil) with a test PKI of its own.
func startService(t *testing.T, h http.Handler) *env {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(uzi, ura string) tls.Certificate {
		c, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: uzi, URA: ura, AGB: "00000000"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if h == nil {
		s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := s.Register(Registered{BSN: bsnKnown, Geslachtsnaam: "Vries", VoorvoegselGeslachtsnaam: "de", Voornamen: "Anna",
			Geboortedatum: "19700412", Geslachtsaanduiding: "V"}); err != nil {
			t.Fatal(err)
		}
		h = s.Handler()
	}
	e := &env{}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.asked.Add(1); h.ServeHTTP(w, r) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.ln = ln
	roots := pki.CertPool(ca.Cert)
	srv := &http.Server{Handler: counted, TLSConfig: pki.ServerTLSConfig(issue("900009955", "90000995"), roots), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	e.url = "https://" + ln.Addr().String() + Path
	e.client = &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(issue("900000011", "90000001"), roots)}}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

func (e *env) newClient(t *testing.T, now func() time.Time) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{URL: e.url, HTTPClient: e.client, CacheTTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyAgainstStandIn(t *testing.T) {
	e := startService(t, nil)
	c := e.newClient(t, nil)
	for _, tc := range []struct {
		name      string
		p         Person
		want      Outcome
		deviating string
	}{
		{"known BSN, matching birth date", Person{BSN: bsnKnown, BirthDate: "1970-04-12"}, Verified, ""},
		{"known BSN, no birth date given", Person{BSN: bsnKnown}, Verified, ""},
		{"known BSN, birth year and month only", Person{BSN: bsnKnown, BirthDate: "1970-04"}, Verified, ""},
		{"known BSN, other birth date", Person{BSN: bsnKnown, BirthDate: "1971-04-12"}, Mismatch, "Geboortedatum"},
		{"BSN the register does not hold", Person{BSN: bsnUnknown, BirthDate: "1970-04-12"}, NotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Verify(context.Background(), tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tc.want || res.Cached || res.Reference == "" {
				t.Fatalf("result %+v, want %s from the service with a reference", res, tc.want)
			}
			if tc.deviating != "" && (len(res.Deviating) != 1 || res.Deviating[0] != tc.deviating) {
				t.Errorf("deviating %v, want [%s]", res.Deviating, tc.deviating)
			}
		})
	}
}

func TestVerifyRefusesInvalidQuestions(t *testing.T) {
	e := startService(t, nil)
	c := e.newClient(t, nil)
	for _, p := range []Person{{BSN: "123456789"}, {BSN: "99999365"}, {BSN: bsnKnown, BirthDate: "12-04-1970"}} {
		if _, err := c.Verify(context.Background(), p); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("%+v: err %v, want ErrInvalidQuery", p, err)
		}
	}
	if n := e.asked.Load(); n != 0 {
		t.Errorf("%d invalid questions reached the service", n)
	}
}

func TestVerifyCachesDefiniteAnswers(t *testing.T) {
	e := startService(t, nil)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	c := e.newClient(t, func() time.Time { return now })
	ctx := context.Background()
	for _, p := range []Person{{BSN: bsnKnown, BirthDate: "1970-04-12"}, {BSN: bsnUnknown}} {
		first, err := c.Verify(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Verify(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if !second.Cached || second.Outcome != first.Outcome || second.Reference != first.Reference {
			t.Errorf("%s: second answer %+v is not the cached %+v", p.BSN, second, first)
		}
	}
	if n := e.asked.Load(); n != 2 {
		t.Fatalf("the service was asked %d times, want 2 (one per person)", n)
	}
	// Other identifying data is another question.
	if res, err := c.Verify(ctx, Person{BSN: bsnKnown, BirthDate: "1971-01-01"}); err != nil || res.Cached || res.Outcome != Mismatch {
		t.Fatalf("other birth date: %+v, %v", res, err)
	}
	// Within the lifetime the answer stays; after it the service is asked again.
	now = now.Add(time.Hour - time.Second)
	if res, _ := c.Verify(ctx, Person{BSN: bsnKnown, BirthDate: "1970-04-12"}); !res.Cached {
		t.Error("answer expired before its lifetime")
	}
	now = now.Add(time.Second)
	if res, _ := c.Verify(ctx, Person{BSN: bsnKnown, BirthDate: "1970-04-12"}); res.Cached {
		t.Error("answer served from the cache after its lifetime")
	}
	if n := e.asked.Load(); n != 4 {
		t.Errorf("the service was asked %d times, want 4", n)
	}
}

func TestVerifyUnavailable(t *testing.T) {
	answer := func(status int, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/xml; charset=utf-8")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		})
	}
	response := func(bericht string) string {
		return `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>` +
			`<OpvragenVerifierenResponse xmlns="` + Namespace + `"><OpvragenVerifierenAntwoordBericht>` + bericht +
			`</OpvragenVerifierenAntwoordBericht></OpvragenVerifierenResponse></soap:Body></soap:Envelope>`
	}
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"SOAP fault", answer(http.StatusInternalServerError, `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>busy</faultstring></soap:Fault></soap:Body></soap:Envelope>`)},
		{"technical error at the BRP", answer(http.StatusOK, response(`<Resultaat>F</Resultaat><Melding Soort="F" Code="MD01">Technische fout</Melding>`))},
		{"answer about another BSN", answer(http.StatusOK, response(`<Antwoord><Persoon><BSN>`+bsnUnknown+`</BSN></Persoon></Antwoord><Resultaat>G</Resultaat>`))},
		{"not SOAP", answer(http.StatusBadGateway, `<html>gateway</html>`)},
		{"unknown Resultaat", answer(http.StatusOK, response(`<Resultaat>X</Resultaat>`))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startService(t, tc.h)
			c := e.newClient(t, nil)
			for i := 0; i < 2; i++ {
				if _, err := c.Verify(context.Background(), Person{BSN: bsnKnown}); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("err %v, want ErrUnavailable", err)
				}
			}
			if n := e.asked.Load(); n != 2 {
				t.Errorf("asked %d times: a failure must not be cached", n)
			}
		})
	}
	t.Run("service down", func(t *testing.T) {
		e := startService(t, nil)
		e.ln.Close()
		if _, err := e.newClient(t, nil).Verify(context.Background(), Person{BSN: bsnKnown}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err %v, want ErrUnavailable", err)
		}
	})
}

// TestWireShape checks the question the client sends against the WSDL's
// shape: SOAP 1.1, the action header, OpvragenVerifieren in the service's
// namespace with Persoon's elements in order and a LokaalKenmerk.
func TestWireShape(t *testing.T) {
	var got []byte
	var action, ctype string
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	_ = s.Register(Registered{BSN: bsnKnown, Geslachtsnaam: "Vries", Geboortedatum: "19700412"})
	e := startService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		action, ctype = r.Header.Get("SOAPAction"), r.Header.Get("Content-Type")
		r.Body = io.NopCloser(bytes.NewReader(got))
		s.Handler().ServeHTTP(w, r)
	}))
	res, err := e.newClient(t, nil).Verify(context.Background(), Person{BSN: bsnKnown, BirthDate: "1970-04-12"})
	if err != nil || res.Outcome != Verified {
		t.Fatalf("%+v %v", res, err)
	}
	if action != `"`+Namespace+`/OpvragenVerifieren"` || !strings.HasPrefix(ctype, "text/xml") {
		t.Errorf("SOAPAction %q, Content-Type %q", action, ctype)
	}
	var doc struct {
		XMLName xml.Name
		Body    struct {
			XMLName xml.Name
			Op      struct {
				XMLName xml.Name
				Bericht struct {
					Vraag struct {
						Persoon struct {
							Inner []byte `xml:",innerxml"`
						}
					}
					LokaalKenmerk string
				} `xml:"OpvragenVerifierenVraagBericht"`
			} `xml:"OpvragenVerifieren"`
		}
	}
	if err := xml.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.XMLName.Space != soapEnvelopeNS || doc.Body.XMLName.Local != "Body" || doc.Body.Op.XMLName.Space != Namespace {
		t.Errorf("envelope %v, body %v, operation %v", doc.XMLName, doc.Body.XMLName, doc.Body.Op.XMLName)
	}
	if inner := string(doc.Body.Op.Bericht.Vraag.Persoon.Inner); inner != "<BSN>"+bsnKnown+"</BSN><Geboortedatum>19700412</Geboortedatum>" {
		t.Errorf("Persoon %s", inner)
	}
	if doc.Body.Op.Bericht.LokaalKenmerk != res.Reference {
		t.Errorf("LokaalKenmerk %q, reference %q", doc.Body.Op.Bericht.LokaalKenmerk, res.Reference)
	}
}

func TestStandInRefusesOtherRequests(t *testing.T) {
	e := startService(t, nil)
	for _, tc := range []struct {
		name, action, body string
	}{
		{"wrong action", "urn:other", "<x/>"},
		{"not XML", SOAPAction, "{}"},
		{"other namespace", SOAPAction, `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><OpvragenVerifieren xmlns="urn:x"/></Body></Envelope>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(tc.body))
			req.Header.Set("SOAPAction", tc.action)
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "Fault") {
				t.Errorf("%d %s", resp.StatusCode, b)
			}
		})
	}
}

func TestPersonFromFHIR(t *testing.T) {
	p, err := PersonFromFHIR([]byte(`{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsnKnown + `"}],
		"name":[{"family":"Vries","given":["Anna","Maria"]}],"gender":"female","birthDate":"1970-04-12"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p != (Registered{BSN: bsnKnown, Voornamen: "Anna Maria", Geslachtsnaam: "Vries", Geboortedatum: "19700412", Geslachtsaanduiding: "V"}) {
		t.Errorf("%+v", p)
	}
	for _, bad := range []string{`{"resourceType":"Observation"}`, `{"resourceType":"Patient","birthDate":"1970-04-12"}`,
		`{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsnKnown + `"}]}`} {
		if _, err := PersonFromFHIR([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
