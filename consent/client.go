package consent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// ClientConfig configures a Client of a Mitz-compatible consent service.
type ClientConfig struct {
	// BaseURL of the service: the closed question is asked at
	// BaseURL/geslotenautorisatievraag/xacml3, subscriptions made at
	// BaseURL/abonnementen/fhir.
	BaseURL string
	// TLS is the mTLS client configuration (pki.ClientTLSConfig). Required
	// unless HTTPClient is given.
	TLS *tls.Config
	// HTTPClient replaces the client built from TLS.
	HTTPClient *http.Client
	// Timeout bounds one question, connection included; 5s when zero.
	Timeout time.Duration
	// CacheTTL keeps Permit/Deny/NotApplicable answers this long; zero
	// disables the cache. Keep it short: a withdrawn consent must take
	// effect quickly. A cached answer is also dropped as soon as the
	// connection it came over is closed by the service, and the whole cache
	// when any question to the service fails (see Client).
	CacheTTL time.Duration
	// CacheSize bounds the number of cached answers; 10000 when zero.
	CacheSize int
	// To is the WS-Addressing To of the question; the question URL when empty.
	To string
	// GatewaySystem and SourceSystem (urn:oid:...) are added to
	// subscriptions as Mitz asks.
	GatewaySystem string
	SourceSystem  string
	// Now is the clock of the cache; time.Now when nil.
	Now func() time.Time
}

// Client asks a Mitz-compatible service (Schakel's Server or Mitz itself)
// the closed question, and subscribes to consent changes. It implements
// Checker; it fails closed: anything but a well-formed Permit is no access,
// and a service that cannot be asked gives an error wrapping ErrUnavailable.
//
// Its cache never outlives the service: an answer is served from the cache
// only while the connection it came over is still open (checked on the
// socket, without a round trip), so the first question after the service
// stopped goes to the service and is refused; and any failed question
// purges every cached answer, also those in flight.
type Client struct {
	cfg      ClientConfig
	hc       *http.Client
	question string
	to       string

	mu    sync.Mutex
	cache map[Question]cacheEntry
	gen   uint64 // bumped by every purge; answers asked before one are not kept
}

type cacheEntry struct {
	decision Decision
	expires  time.Time
	conn     net.Conn // the connection the answer came over
}

// maxAnswerBytes bounds an answer read from the service.
const maxAnswerBytes = 1 << 20

// NewClient checks cfg and builds the client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("consent client: BaseURL %q is not an absolute URL", cfg.BaseURL)
	}
	if u.Scheme != "https" && cfg.HTTPClient == nil {
		return nil, errors.New("consent client: the consent service must be reached over https (mTLS)")
	}
	if cfg.HTTPClient == nil && cfg.TLS == nil {
		return nil, errors.New("consent client: TLS (mTLS client configuration) is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Client{cfg: cfg, hc: cfg.HTTPClient, cache: make(map[Question]cacheEntry)}
	if c.hc == nil {
		c.hc = &http.Client{
			Transport: &http.Transport{
				TLSClientConfig:     cfg.TLS,
				ForceAttemptHTTP2:   true,
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     90 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c.question = strings.TrimSuffix(u.String(), "/") + ClosedQuestionPath
	c.to = cfg.To
	if c.to == "" {
		c.to = c.question
	}
	return c, nil
}

// Decide asks the closed question (or answers from the cache).
func (c *Client) Decide(ctx context.Context, q Question) (Decision, error) {
	q, err := q.Normalize()
	if err != nil {
		return "", err
	}
	if d, ok := c.cached(q); ok {
		return d, nil
	}
	gen := c.generation()
	d, conn, err := c.ask(ctx, q)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			c.purge()
		}
		return "", err
	}
	if d != DecisionIndeterminate {
		c.store(q, d, conn, gen)
	}
	return d, nil
}

func (c *Client) cached(q Question) (Decision, bool) {
	if c.cfg.CacheTTL <= 0 {
		return "", false
	}
	c.mu.Lock()
	e, ok := c.cache[q]
	if ok && !c.cfg.Now().Before(e.expires) {
		delete(c.cache, q)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return "", false
	}
	if !connOpen(e.conn) {
		// The service closed the connection (stopped, restarted, or only
		// idle): no cached answer is trusted until it answers again.
		c.purge()
		return "", false
	}
	return e.decision, true
}

func (c *Client) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// purge drops every cached answer, and keeps answers to questions already
// on their way from being cached.
func (c *Client) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cache)
	c.gen++
}

// store caches an answer that came over conn to a question asked in
// generation gen; without a known connection nothing is cached.
func (c *Client) store(q Question, d Decision, conn net.Conn, gen uint64) {
	if c.cfg.CacheTTL <= 0 || conn == nil {
		return
	}
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.cache) >= c.cfg.CacheSize {
		for k, e := range c.cache {
			if !now.Before(e.expires) {
				delete(c.cache, k)
			}
		}
		// Still full: drop arbitrary entries; they are only a shortcut.
		for k := range c.cache {
			if len(c.cache) < c.cfg.CacheSize {
				break
			}
			delete(c.cache, k)
		}
	}
	c.cache[q] = cacheEntry{decision: d, expires: now.Add(c.cfg.CacheTTL), conn: conn}
}

// Forget drops every cached answer about the patient, e.g. when a consent
// notification arrives.
func (c *Client) Forget(bsn string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.cache {
		if k.PatientBSN == bsn {
			delete(c.cache, k)
		}
	}
}

func unavailable(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, a...))
}

// ask puts the closed question to the service; conn is the connection the
// answer came over (nil when the transport does not tell).
func (c *Client) ask(ctx context.Context, q Question) (d Decision, conn net.Conn, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { conn = info.Conn }})
	d, err = c.exchange(ctx, q)
	if err != nil {
		return "", nil, err
	}
	return d, conn, nil
}

func (c *Client) exchange(ctx context.Context, q Question) (Decision, error) {
	messageID := "urn:uuid:" + uuid.NewString()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.question, bytes.NewReader(buildQuery(q, messageID, c.to)))
	if err != nil {
		return "", unavailable("build request: %v", err)
	}
	req.Header.Set("Content-Type", `application/soap+xml; charset=utf-8; action="`+ActionQuery+`"`)
	req.Header.Set("Accept", "application/soap+xml, text/xml")
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return "", fmt.Errorf("%w: read answer: %w", ErrUnavailable, err)
	}
	if len(body) > maxAnswerBytes {
		return "", unavailable("answer larger than %d bytes", maxAnswerBytes)
	}
	a, err := parseResponse(body)
	if err != nil {
		return "", unavailable("HTTP %d: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", unavailable("HTTP %d with a decision", resp.StatusCode)
	}
	if a.relatesTo != "" && a.relatesTo != messageID {
		return "", unavailable("answer relates to another message")
	}
	return a.decision, nil
}

// SubscriptionRequest is what a data holder subscribes to: consent changes
// of one patient that concern it.
type SubscriptionRequest struct {
	PatientBSN    string
	BirthDate     string // YYYY-MM-DD, when known
	ProviderURA   string // the subscribing data holder
	ProviderType  string // its facility type code
	Endpoint      string // the rest-hook URL notifications are posted to (https)
	GatewaySystem string // urn:oid:...; optional
	SourceSystem  string // urn:oid:...; optional
}

// Subscribe asks the service for notifications, with the client's gateway
// and source systems unless the request names its own.
func (c *Client) Subscribe(ctx context.Context, req SubscriptionRequest) (string, error) {
	if req.GatewaySystem == "" {
		req.GatewaySystem = c.cfg.GatewaySystem
	}
	if req.SourceSystem == "" {
		req.SourceSystem = c.cfg.SourceSystem
	}
	base := strings.TrimSuffix(c.question, ClosedQuestionPath)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	return Subscribe(ctx, c.hc, base, req)
}

// Subscribe posts a Mitz subscription (FHIR R4 Subscription, reason OTV) to
// baseURL/abonnementen/fhir over hc (which must present the node's
// certificate) and returns the Location of the created subscription. It
// accepts 201 Created, and 202 Accepted as the real Mitz answers.
func Subscribe(ctx context.Context, hc *http.Client, baseURL string, req SubscriptionRequest) (string, error) {
	var res subscriptionResource
	res.ResourceType, res.Status, res.Reason = "Subscription", "requested", subscriptionReason
	res.Criteria = subscriptionCriteria + criteriaQuery(req.PatientBSN, req.ProviderURA, req.ProviderType)
	res.Channel.Type, res.Channel.Endpoint, res.Channel.Payload = "rest-hook", req.Endpoint, mimeFHIRJSON
	if req.BirthDate != "" {
		res.Extension = append(res.Extension, extension{URL: extBirthDate, ValueDate: req.BirthDate})
	}
	if req.GatewaySystem != "" {
		res.Extension = append(res.Extension, extension{URL: extGatewaySystem, ValueOid: req.GatewaySystem})
	}
	if req.SourceSystem != "" {
		res.Extension = append(res.Extension, extension{URL: extSourceSystem, ValueOid: req.SourceSystem})
	}
	body, err := json.Marshal(res)
	if err != nil {
		return "", err
	}
	// Validate locally what the service would refuse anyway.
	if _, err := parseSubscription(body); err != nil {
		return "", err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(baseURL, "/")+SubscriptionPath, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	hr.Header.Set("Content-Type", mimeFHIRJSON+"; fhirVersion=4.0")
	hr.Header.Set("Accept", mimeFHIRJSON)
	resp, err := hc.Do(hr)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusAccepted, http.StatusOK:
		return resp.Header.Get("Location"), nil
	}
	msg := outcomeText(answer)
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return "", unavailable("subscription refused with %d: %s", resp.StatusCode, msg)
	}
	return "", fmt.Errorf("subscription refused with %d: %s", resp.StatusCode, msg)
}

// outcomeText extracts the diagnostics of an OperationOutcome, if any.
func outcomeText(body []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &oo) != nil || len(oo.Issue) == 0 {
		return "no OperationOutcome"
	}
	var parts []string
	for _, i := range oo.Issue {
		parts = append(parts, i.Diagnostics)
	}
	return strings.Join(parts, "; ")
}
