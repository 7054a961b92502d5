package identification

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/nl"
)

// Registered is a person in the stand-in's register, in the service's
// terms: Geboortedatum JJJJMMDD, Geslachtsaanduiding M, V or O.
type Registered struct {
	BSN                      string `json:"bsn"`
	Voornamen                string `json:"voornamen,omitempty"`
	VoorvoegselGeslachtsnaam string `json:"voorvoegselGeslachtsnaam,omitempty"`
	Geslachtsnaam            string `json:"geslachtsnaam"`
	Geboortedatum            string `json:"geboortedatum"`
	Geslachtsaanduiding      string `json:"geslachtsaanduiding,omitempty"`
}

// PersonFromFHIR reads a FHIR Patient (JSON, STU3 or R4) as a register
// entry: the development network registers its demo patients so.
func PersonFromFHIR(body []byte) (Registered, error) {
	var p struct {
		ResourceType string
		BirthDate    string
		Gender       string
		Identifier   []struct{ System, Value string }
		Name         []struct {
			Family string
			Given  []string
		}
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Patient" {
		return Registered{}, errors.New("identification: not a FHIR Patient")
	}
	bsn, _, _ := nl.Patient(body)
	if err := nl.ValidateBSN(bsn); err != nil {
		return Registered{}, fmt.Errorf("identification: Patient without a valid BSN: %w", err)
	}
	born, err := sbvzDate(p.BirthDate)
	if err != nil || born == "" {
		return Registered{}, errors.New("identification: Patient without a birth date")
	}
	r := Registered{BSN: bsn, Geboortedatum: born}
	if len(p.Name) > 0 {
		r.Geslachtsnaam = p.Name[0].Family
		r.Voornamen = strings.Join(p.Name[0].Given, " ")
	}
	r.Geslachtsaanduiding = map[string]string{"male": "M", "female": "V", "other": "O", "unknown": "O"}[p.Gender]
	return r, nil
}

// Server is the development stand-in of the SBV-Z OpvragenVerifieren
// service: it answers from its register and refuses every BSN it does
// not hold, as the real service does for one the BRP does not know.
type Server struct {
	log *slog.Logger
	mu  sync.RWMutex
	reg map[string]Registered
}

// NewServer returns a stand-in with an empty register.
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{log: log, reg: map[string]Registered{}}
}

// Register adds or replaces persons; each must have a valid BSN and a
// birth date JJJJMMDD.
func (s *Server) Register(persons ...Registered) error {
	for _, p := range persons {
		if err := nl.ValidateBSN(p.BSN); err != nil {
			return fmt.Errorf("identification: register: %w", err)
		}
		if len(p.Geboortedatum) != 8 || strings.Trim(p.Geboortedatum, "0123456789") != "" {
			return fmt.Errorf("identification: register %s: geboortedatum %q is not JJJJMMDD", p.BSN, p.Geboortedatum)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range persons {
		s.reg[p.BSN] = p
	}
	return nil
}

// LoadRegister reads a JSON array of Registered persons into the register.
func (s *Server) LoadRegister(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("identification: register: %w", err)
	}
	var persons []Registered
	if err := json.Unmarshal(b, &persons); err != nil {
		return fmt.Errorf("identification: register %s: %w", path, err)
	}
	return s.Register(persons...)
}

// Handler serves POST Path; the listener requires a client certificate.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, s.serve)
	return mux
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	peer := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		peer = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	if peer == "" {
		s.log.Warn("verification question without a client certificate", "remote", r.RemoteAddr)
		writeFault(w, http.StatusForbidden, "soap:Client", "a client certificate is required")
		return
	}
	if a := strings.Trim(r.Header.Get("SOAPAction"), `"`); a != SOAPAction {
		writeFault(w, http.StatusBadRequest, "soap:Client", "unknown SOAPAction")
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	var in incomingRequest
	if err == nil {
		err = xml.Unmarshal(raw, &in)
	}
	if err != nil || in.Body.Op == nil || in.Body.Op.XMLName.Space != Namespace {
		writeFault(w, http.StatusBadRequest, "soap:Client", "not an OpvragenVerifieren request in namespace "+Namespace)
		return
	}
	q := in.Body.Op.Bericht
	b := s.answer(q.Vraag.Persoon)
	b.LokaalKenmerk = q.LokaalKenmerk
	vraag := q.Vraag.Persoon
	vraag.BSN = "" // the question is echoed without the BSN; the answer carries it once
	b.Vraag = &struct {
		Persoon vraagPersoon `xml:"Persoon"`
	}{vraag}
	code := ""
	if len(b.Melding) > 0 {
		code = b.Melding[0].Code
	}
	// The log names the question by its reference, never by the BSN.
	s.log.Info("verification answered", "client", peer, "reference", q.LokaalKenmerk, "resultaat", b.Resultaat, "melding", code)
	var env responseEnvelope
	env.Soap = soapEnvelopeNS
	env.Body.Response = &struct {
		XMLName xml.Name        `xml:"OpvragenVerifierenResponse"`
		NS      string          `xml:"xmlns,attr"`
		Bericht antwoordBericht `xml:"OpvragenVerifierenAntwoordBericht"`
	}{NS: Namespace, Bericht: b}
	writeEnvelope(w, http.StatusOK, env)
}

// answer decides a question against the register. Only the BSN path of
// the service is offered: a question without a BSN finds no one.
func (s *Server) answer(q vraagPersoon) antwoordBericht {
	if q.BSN == "" {
		return antwoordBericht{Resultaat: resultError, Melding: []melding{{Soort: "F", Code: codeNotOne, Text: "Vraag heeft niet tot één persoon geleid"}}}
	}
	if nl.ValidateBSN(q.BSN) != nil {
		return antwoordBericht{Resultaat: resultError, Melding: []melding{{Soort: "F", Code: codeInvalidBSN, Text: "BSN voldoet niet aan de elfproef"}}}
	}
	s.mu.RLock()
	p, ok := s.reg[q.BSN]
	s.mu.RUnlock()
	if !ok {
		return antwoordBericht{Resultaat: resultError, Melding: []melding{{Soort: "F", Code: codeNoResult, Text: "Geen resultaat gevonden"}}}
	}
	field := func(asked, known string, same func(a, b string) bool) *afwijkend {
		return &afwijkend{Value: known, Afwijkend: asked != "" && !same(asked, known)}
	}
	fold := strings.EqualFold
	ap := &antwoordPersoon{BSN: p.BSN,
		Voornamen:                field(q.Voornamen, p.Voornamen, fold),
		VoorvoegselGeslachtsnaam: field(q.VoorvoegselGeslachtsnaam, p.VoorvoegselGeslachtsnaam, fold),
		Geslachtsnaam:            field(q.Geslachtsnaam, p.Geslachtsnaam, fold),
		Geboortedatum:            field(q.Geboortedatum, p.Geboortedatum, datesMatch),
		Geslachtsaanduiding:      field(q.Geslachtsaanduiding, p.Geslachtsaanduiding, fold),
	}
	b := antwoordBericht{Resultaat: resultFound, Melding: []melding{{Soort: "G", Code: codeFound, Text: "BSN gevonden"}}}
	b.Antwoord = &struct {
		Persoon *antwoordPersoon `xml:"Persoon,omitempty"`
	}{ap}
	for _, f := range []*afwijkend{ap.Voornamen, ap.VoorvoegselGeslachtsnaam, ap.Geslachtsnaam, ap.Geboortedatum, ap.Geslachtsaanduiding} {
		if f.Afwijkend {
			b.Resultaat = resultDeviating
			b.Melding[0].Text = "BSN gevonden, maar met afwijkende gegevens"
		}
	}
	return b
}

// datesMatch compares two JJJJMMDD dates; a part given as 00 (unknown)
// matches any.
func datesMatch(asked, known string) bool {
	if len(asked) != 8 || len(known) != 8 {
		return false
	}
	for _, r := range [][2]int{{0, 4}, {4, 6}, {6, 8}} {
		a, k := asked[r[0]:r[1]], known[r[0]:r[1]]
		if a != k && strings.Trim(a, "0") != "" && strings.Trim(k, "0") != "" {
			return false
		}
	}
	return true
}

func writeFault(w http.ResponseWriter, status int, code, text string) {
	var env responseEnvelope
	env.Soap = soapEnvelopeNS
	env.Body.Fault = &fault{Code: code, String: text}
	writeEnvelope(w, status, env)
}

func writeEnvelope(w http.ResponseWriter, status int, env responseEnvelope) {
	b, err := xml.Marshal(env)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append([]byte(xml.Header), b...))
}
