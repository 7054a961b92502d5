package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// ErrUnavailable marks a register that could not be asked: the node
// refuses then too (fail closed), with another reason.
var ErrUnavailable = errors.New("admission: the register cannot be reached")

// Client asks a register over FHIR (the node's side). A valid proof is
// kept for TTL (a proof withdrawn or expired is seen within it); a missing
// one is asked again on the next request, so a partner admitted a moment
// ago is served at once.
type Client struct {
	// Base is the register's FHIR R4 base.
	Base string
	HTTP *http.Client
	// Authority are the validation authority's public keys.
	Authority jwk.Set
	TTL       time.Duration
	Now       func() time.Time

	mu    sync.Mutex
	cache map[string]answer
}

type answer struct {
	err     error
	expires time.Time
}

// maxCached bounds the cache: partners × care applications.
const maxCached = 4096

// Check reports whether ura's GtK holds a valid proof of validation for
// care; the error says why not.
func (c *Client) Check(ctx context.Context, ura, care string) error {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	key := ura + "|" + care
	c.mu.Lock()
	if a, ok := c.cache[key]; ok && now().Before(a.expires) {
		c.mu.Unlock()
		return a.err
	}
	c.mu.Unlock()
	err := c.ask(ctx, ura, care, now())
	if err != nil {
		return err // not cached: the next request asks again
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil || len(c.cache) >= maxCached {
		c.cache = map[string]answer{}
	}
	c.cache[key] = answer{expires: now().Add(c.TTL)}
	return nil
}

func (c *Client) ask(ctx context.Context, ura, care string, now time.Time) error {
	q := url.Values{"target": {"Organization/" + orgID(ura)}, "_count": {"100"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Base, "/")+"/VerificationResult?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	var bundle struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		return fmt.Errorf("%w: the answer is not a Bundle", ErrUnavailable)
	}
	var results []json.RawMessage
	for _, e := range bundle.Entry {
		results = append(results, e.Resource)
	}
	_, err = ValidProofs(results, c.Authority, ura, care, now)
	return err
}
