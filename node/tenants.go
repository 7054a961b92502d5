package node

import (
	"crypto/subtle"
	"sort"
	"sync"
)

// tenants are the participants the node serves right now. The admin API
// adds and withdraws them while requests are served, so every lookup goes
// through the lock; a participant itself is never changed once registered
// (a change registers a new one in its place).
type tenants struct {
	mu      sync.RWMutex
	byURA   map[string]*participant
	byToken map[[32]byte]*participant // sha256(internal token) → participant
}

func newTenants() *tenants {
	return &tenants{byURA: map[string]*participant{}, byToken: map[[32]byte]*participant{}}
}

// get is the participant with URA ura.
func (t *tenants) get(ura string) (*participant, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	p, ok := t.byURA[ura]
	return p, ok
}

// has reports whether ura is a participant.
func (t *tenants) has(ura string) bool {
	_, ok := t.get(ura)
	return ok
}

// all are the participants, ordered by URA.
func (t *tenants) all() []*participant {
	t.mu.RLock()
	out := make([]*participant, 0, len(t.byURA))
	for _, p := range t.byURA {
		out = append(out, p)
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].URA < out[j].URA })
	return out
}

// len is the number of participants.
func (t *tenants) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byURA)
}

// put registers p, in place of the participant with its URA if there is
// one: from the next request on, only p's internal token is accepted.
func (t *tenants) put(p *participant) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byURA[p.URA]; ok {
		delete(t.byToken, tokenHash(old.InternalToken))
	}
	t.byURA[p.URA] = p
	t.byToken[tokenHash(p.InternalToken)] = p
}

// remove withdraws the participant with URA ura; its token stops working
// at once.
func (t *tenants) remove(ura string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byURA[ura]; ok {
		delete(t.byToken, tokenHash(old.InternalToken))
		delete(t.byURA, ura)
	}
}

// byInternalToken is the participant whose internal API token has hash h;
// nil when none. Every token is compared, in constant time.
func (t *tenants) byInternalToken(h [32]byte) *participant {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var p *participant
	for k, cand := range t.byToken {
		if subtle.ConstantTimeCompare(k[:], h[:]) == 1 {
			p = cand
		}
	}
	return p
}
