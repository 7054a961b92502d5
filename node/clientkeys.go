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
	if errors.Is(err, addressbook.ErrNotFound) {
		// An organisation the addressbook does not know is an unknown
		// client (RFC 6749 invalid_client), not a failure of this node.
		return nil, fmt.Errorf("%w: client %s has no key set in the addressbook: %w", oauth.ErrInvalidClient, clientID, err)
	}
	if err != nil {
		return nil, fmt.Errorf("client %s has no key set in the addressbook: %w", clientID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch key set of %s: %w", clientID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch key set of %s: %s", clientID, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	if err != nil {
		return nil, err
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("key set of %s: %w", clientID, err)
	}
	c.mu.Lock()
	if c.cache == nil {
		c.cache = map[string]cachedSet{}
	}
	c.cache[clientID] = cachedSet{set: set, at: time.Now()}
	c.mu.Unlock()
	return set, nil
}
