package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/oauth"
)

// clientKeys resolves the keys a partner signs its client assertions with:
// the JWKS the addressbook lists for the partner's URA, fetched over mTLS
// from a trusted node. Keys are cached for a short time.
//
// Its errors tell the authorization server who is at fault: a partner the
// addressbook does not list, or whose listed key set is missing or
// malformed, wraps oauth.ErrInvalidClient (401); an addressbook or key set
// host that cannot be reached wraps oauth.ErrTemporarilyUnavailable (503).
type clientKeys struct {
	dir  addressbook.EndpointResolver
	http *http.Client

	mu    sync.Mutex
	cache map[string]cachedSet
}

type cachedSet struct {
	set jwk.Set
	at  time.Time
}

const clientKeysTTL = 5 * time.Minute

func (c *clientKeys) ClientKeySet(ctx context.Context, clientID string) (jwk.Set, error) {
	c.mu.Lock()
	if e, ok := c.cache[clientID]; ok && time.Since(e.at) < clientKeysTTL {
		c.mu.Unlock()
		return e.set, nil
	}
	c.mu.Unlock()
	u, err := c.dir.Endpoint(ctx, clientID, addressbook.PayloadClientJWKS, "")
	switch {
	case errors.Is(err, addressbook.ErrNotFound):
		return nil, fmt.Errorf("%w: client %s has no key set in the addressbook: %w", oauth.ErrInvalidClient, clientID, err)
	case err != nil:
		return nil, fmt.Errorf("%w: addressbook lookup of client %s: %w", oauth.ErrTemporarilyUnavailable, clientID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		// The addressbook lists an address that is no URL: the partner's entry is broken.
		return nil, fmt.Errorf("%w: key set address of %s: %w", oauth.ErrInvalidClient, clientID, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch key set of %s: %w", oauth.ErrTemporarilyUnavailable, clientID, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("%w: fetch key set of %s: %s", oauth.ErrTemporarilyUnavailable, clientID, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: fetch key set of %s: %s", oauth.ErrInvalidClient, clientID, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: read key set of %s: %w", oauth.ErrTemporarilyUnavailable, clientID, err)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: key set of %s: %w", oauth.ErrInvalidClient, clientID, err)
	}
	c.mu.Lock()
	if c.cache == nil {
		c.cache = map[string]cachedSet{}
	}
	c.cache[clientID] = cachedSet{set: set, at: time.Now()}
	c.mu.Unlock()
	return set, nil
}
