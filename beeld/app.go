package beeld

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/careapp/hosted"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/pki"
)

// App is Beeldbeschikbaarheid as a care application: FHIR R4, Direct Pull
// (POST /internal/imaging at one holder) and Indexed Pull (the referral
// index names the holders), on public routes of its own (the ImagingStudy
// search and the DICOMweb proxy). Its access policy is policy/beeld.yaml.
type App struct{}

// New returns the application.
func New() App { return App{} }

// Name is the care application's name.
func (App) Name() string { return Application }

// FHIRVersion is R4: ImagingStudy is read in FHIR R4.
func (App) FHIRVersion() fhir.Version { return fhir.R4 }

// Patterns are Direct Pull (its own) and Indexed Pull.
func (App) Patterns() []careapp.Pattern {
	return []careapp.Pattern{careapp.DirectPull, careapp.IndexedPull}
}

// Public route patterns of the holder side.
const (
	routeImagingStudy = "GET /fhir/r4/{ura}/ImagingStudy"
	routeDICOMweb     = "GET /dicomweb/{ura}/{path...}"
)

// PublicPatterns are the ImagingStudy search and the DICOMweb proxy.
func (App) PublicPatterns() []string { return []string{routeImagingStudy, routeDICOMweb} }

// CareContext is imaging at the referral index: LOINC 18748-4.
func (App) CareContext() careapp.Coding {
	return careapp.Coding{System: CareContextSystem, Code: CareContextCode, Display: "Diagnostic imaging study"}
}

// defaultPACSTimeout bounds the wait for a PACS's answer to start.
const defaultPACSTimeout = 30 * time.Second

// Mount builds both sides on a node: a PACS client per participant with a
// PACS, the holder (public routes, imaging tokens) and the requester
// (internal API).
func (App) Mount(h hosted.Host) (hosted.Mounted, error) {
	m := &mounted{host: h, backends: map[string]Backend{}}
	for _, p := range h.Participants() {
		if p.PACS.URL == "" {
			continue
		}
		b, err := pacsBackend(p.PACS)
		if err != nil {
			return nil, fmt.Errorf("participant %s: pacs.cafiles: %w", p.URA, err)
		}
		m.backends[p.URA] = b
	}
	tenants := func() []string {
		var out []string
		for _, p := range h.Participants() {
			out = append(out, p.URA)
		}
		return out
	}
	facility := func(ura string) string {
		p, _ := h.Participant(ura)
		return p.FacilityType
	}
	m.holder = NewHolder(HolderConfig{
		Backend: func(t string) (Backend, bool) {
			b, ok := m.backends[t]
			if !ok {
				return Backend{}, false
			}
			_, ok = h.Participant(t)
			return b, ok
		},
		Tenants: tenants, FHIRBase: m.r4Base, DICOMwebBase: m.dicomwebBase,
		Verify: h.Verify, PeerURA: h.PeerURA, Admit: m.admit, Identify: h.IdentifyHeld,
		FacilityType: facility, ConsentSource: func(q consent.Question) (consent.Checker, string) { return h.ConsentFor(q.RequesterURA) },
		Audit: h.Audit(), Logger: h.Logger(),
	})
	m.requester = NewRequester(RequesterConfig{
		Directory: h.Directory(), Parties: h.Party, FacilityType: facility,
		Admit: h.AdmitConsult, Present: h.Present, Audit: h.Audit(), Logger: h.Logger(),
	})
	if f, ok := h.(interface{ Faults() *faults.Set }); ok {
		m.requester.cfg.Faults = f.Faults()
	}
	return m, nil
}

// pacsBackend is the DICOMweb client of a PACS.
func pacsBackend(c hosted.PACS) (Backend, error) {
	var roots *x509.CertPool
	if len(c.CAFiles) > 0 {
		var err error
		if roots, err = pki.LoadCertPool(c.CAFiles...); err != nil {
			return Backend{}, err
		}
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = defaultPACSTimeout
	}
	tr := &http.Transport{TLSClientConfig: pki.BackendClientTLSConfig(roots), MaxIdleConnsPerHost: 16,
		ResponseHeaderTimeout: timeout, DialContext: (&net.Dialer{Timeout: timeout}).DialContext, IdleConnTimeout: 90 * time.Second}
	return Backend{Base: strings.TrimSuffix(c.URL, "/"), HTTP: &http.Client{Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}
