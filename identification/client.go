package identification

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// Errors of a verification. ErrUnavailable means no answer was obtained:
// the caller fails closed.
var (
	ErrUnavailable  = errors.New("BSN verification service unavailable")
	ErrInvalidQuery = errors.New("invalid verification question")
)

// Outcome is what the service said of a BSN and the data given with it.
type Outcome string

// The outcomes of a verification that reached the service.
const (
	// Verified: the BSN belongs to one person and the data given matches.
	Verified Outcome = "verified"
	// NotFound: the service knows no (single) person by this BSN.
	NotFound Outcome = "not-found"
	// Mismatch: the BSN is known, but data given with it deviates.
	Mismatch Outcome = "mismatch"
)

// Person is the patient whose BSN is verified, with the identifying data
// the node has of them; empty fields are not compared.
type Person struct {
	BSN string
	// BirthDate is a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).
	BirthDate string
}

// Result is a verification's answer.
type Result struct {
	Outcome Outcome
	// Deviating names the data that did not match (Mismatch): the
	// service's element names, e.g. "Geboortedatum".
	Deviating []string
	// Reference is the LokaalKenmerk the question carried: the service's
	// logs and the node's audit record share it.
	Reference string
	// Cached is true when the answer came from the cache, not the service.
	Cached bool
	// Message is the service's Melding (code and text), for the audit record.
	Message string
}

// Defaults of a client.
const (
	// DefaultCacheTTL keeps an answer an hour: a person's BSN and birth date
	// rarely change, and the cache spares the service a question per request.
	DefaultCacheTTL = time.Hour
	// DefaultTimeout bounds one question.
	DefaultTimeout = 5 * time.Second
	// maxEntries bounds the cache; it is cleared when full.
	maxEntries = 100000
	// maxAnswerBytes bounds an answer read.
	maxAnswerBytes = 1 << 20
)

// ClientConfig configures a client.
type ClientConfig struct {
	// URL is the service's address, e.g.
	// https://webservice.sbv-z.nl/cibg.sbv.interface.xis.webservice.mrt21/opvragenverifieren.asmx.
	URL string
	// HTTPClient presents the node's UZI server certificate (mTLS).
	HTTPClient *http.Client
	Timeout    time.Duration
	CacheTTL   time.Duration
	// Now is the clock the cache reads; time.Now when nil.
	Now func() time.Time
}

// Client asks the service and caches its answers.
type Client struct {
	cfg   ClientConfig
	mu    sync.Mutex
	cache map[cacheKey]cached
}

type cacheKey struct{ bsn, birthDate string }

type cached struct {
	res     Result
	expires time.Time
}

// NewClient checks cfg and applies its defaults.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("identification: %q is not an https URL", cfg.URL)
	}
	if cfg.HTTPClient == nil {
		return nil, errors.New("identification: an mTLS HTTP client is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg, cache: map[cacheKey]cached{}}, nil
}

// Verify asks whether p.BSN belongs to one person whose data matches p's.
// A definite answer (verified, not found, mismatch) is cached for CacheTTL;
// an error wraps ErrUnavailable (no answer) or ErrInvalidQuery.
func (c *Client) Verify(ctx context.Context, p Person) (Result, error) {
	if err := nl.ValidateBSN(p.BSN); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	born, err := sbvzDate(p.BirthDate)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	key := cacheKey{p.BSN, born}
	now := c.cfg.Now()
	c.mu.Lock()
	if e, ok := c.cache[key]; ok && now.Before(e.expires) {
		c.mu.Unlock()
		res := e.res
		res.Cached = true
		return res, nil
	}
	c.mu.Unlock()

	res, err := c.ask(ctx, vraagPersoon{BSN: p.BSN, Geboortedatum: born})
	if err != nil {
		return res, err
	}
	c.mu.Lock()
	if len(c.cache) >= maxEntries {
		clear(c.cache)
	}
	c.cache[key] = cached{res: res, expires: now.Add(c.cfg.CacheTTL)}
	c.mu.Unlock()
	return res, nil
}

// ask sends one OpvragenVerifieren question and reads its answer.
func (c *Client) ask(ctx context.Context, q vraagPersoon) (Result, error) {
	ref := newReference()
	res := Result{Reference: ref}
	var env requestEnvelope
	env.Soap = soapEnvelopeNS
	env.Body.Op.NS = Namespace
	env.Body.Op.Bericht.Vraag.Persoon = q
	env.Body.Op.Bericht.LokaalKenmerk = ref
	body, err := xml.Marshal(env)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(append([]byte(xml.Header), body...)))
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("SOAPAction", `"`+SOAPAction+`"`)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return res, fmt.Errorf("%w: reading the answer: %w", ErrUnavailable, err)
	}
	var in incomingResponse
	if err := xml.Unmarshal(raw, &in); err != nil {
		return res, fmt.Errorf("%w: HTTP %d, not a SOAP answer", ErrUnavailable, resp.StatusCode)
	}
	if f := in.Body.Fault; f != nil {
		// The fault string may echo the question: only its code is kept.
		return res, fmt.Errorf("%w: SOAP fault %s (HTTP %d)", ErrUnavailable, f.Code, resp.StatusCode)
	}
	r := in.Body.Response
	if resp.StatusCode != http.StatusOK || r == nil {
		return res, fmt.Errorf("%w: HTTP %d without an OpvragenVerifierenResponse", ErrUnavailable, resp.StatusCode)
	}
	if ns := r.XMLName.Space; ns != Namespace && ns != namespaceDec14 {
		return res, fmt.Errorf("%w: answer in namespace %q", ErrUnavailable, ns)
	}
	return interpret(r.Bericht, q.BSN, res)
}

// interpret maps an answer to a Result: G verified, A mismatch, F with
// 23001/23006 not found; any other F (a technical fault at the service or
// behind it) and anything malformed is unavailable.
func interpret(b antwoordBericht, bsn string, res Result) (Result, error) {
	if len(b.Melding) > 0 {
		m := b.Melding[0]
		res.Message = strings.TrimSpace(m.Code + " " + m.Text)
	}
	switch b.Resultaat {
	case resultFound, resultDeviating:
		if b.Antwoord == nil || b.Antwoord.Persoon == nil || b.Antwoord.Persoon.BSN != bsn {
			return res, fmt.Errorf("%w: the answer is not about the BSN asked", ErrUnavailable)
		}
		p := b.Antwoord.Persoon
		for _, f := range []struct {
			name string
			v    *afwijkend
		}{{"Voornamen", p.Voornamen}, {"VoorvoegselGeslachtsnaam", p.VoorvoegselGeslachtsnaam},
			{"Geslachtsnaam", p.Geslachtsnaam}, {"Geboortedatum", p.Geboortedatum}, {"Geslachtsaanduiding", p.Geslachtsaanduiding}} {
			if f.v != nil && f.v.Afwijkend {
				res.Deviating = append(res.Deviating, f.name)
			}
		}
		res.Outcome = Verified
		if b.Resultaat == resultDeviating || len(res.Deviating) > 0 {
			res.Outcome = Mismatch
		}
		return res, nil
	case resultError:
		for _, m := range b.Melding {
			if m.Code == codeNoResult || m.Code == codeNotOne {
				res.Outcome = NotFound
				return res, nil
			}
		}
		return res, fmt.Errorf("%w: the service answered with an error (%s)", ErrUnavailable, res.Message)
	}
	return res, fmt.Errorf("%w: unknown Resultaat %q", ErrUnavailable, b.Resultaat)
}

// newReference is a LokaalKenmerk: a random UUID.
func newReference() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
