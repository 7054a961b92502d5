package node

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/plateau"
)

// maxRememberedLocalizations bounds the hit memory: one entry per
// participant and patient localized within a hit's lifetime.
const maxRememberedLocalizations = 20000

// hitMemory remembers, per requesting participant and patient, the holders
// the last localization named and their hits, until the hits expire: the
// requesting side of localization plateau 2–4 consults only those.
type hitMemory struct {
	mu      sync.Mutex
	now     func() time.Time
	entries map[[32]byte]localized
}

type localized struct {
	salt    []byte
	holders map[string]rememberedHit
}

type rememberedHit struct {
	raw string
	hit localization.Hit
}

func newHitMemory(now func() time.Time) *hitMemory {
	if now == nil {
		now = time.Now
	}
	return &hitMemory{now: now, entries: map[[32]byte]localized{}}
}

// The key hashes the BSN: the memory need not hold it in the clear.
func memoryKey(tenant, bsn string) [32]byte { return sha256.Sum256([]byte(tenant + "|" + bsn)) }

// remember replaces what is remembered of tenant's localization of bsn.
func (m *hitMemory) remember(tenant, bsn string, res localization.LocalizeResult) {
	e := localized{salt: res.Salt, holders: map[string]rememberedHit{}}
	for _, h := range res.Holders {
		if h.Hit == "" {
			continue
		}
		hit, err := localization.PeekHit(h.Hit)
		if err != nil || hit.Holder != h.URA {
			continue
		}
		e.holders[h.URA] = rememberedHit{raw: h.Hit, hit: hit}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.entries) >= maxRememberedLocalizations {
		now := m.now()
		for k, old := range m.entries {
			if !old.live(now) {
				delete(m.entries, k)
			}
		}
		for k := range m.entries { // still full: drop any one
			if len(m.entries) < maxRememberedLocalizations {
				break
			}
			delete(m.entries, k)
		}
	}
	m.entries[memoryKey(tenant, bsn)] = e
}

func (e localized) live(now time.Time) bool {
	for _, h := range e.holders {
		if now.Before(h.hit.Expires) {
			return true
		}
	}
	return false
}

// lookup returns the unexpired hit naming holder from tenant's last
// localization of bsn, and the salt of its patient binding.
func (m *hitMemory) lookup(tenant, bsn, holder string) (rememberedHit, []byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[memoryKey(tenant, bsn)]
	if !ok {
		return rememberedHit{}, nil, false
	}
	h, ok := e.holders[holder]
	if !ok || !m.now().Before(h.hit.Expires) {
		return rememberedHit{}, nil, false
	}
	return h, e.salt, true
}

// admitConsult is the requesting side of the localization function: may
// tenant consult req's holder directly, at the localization plateau agreed
// with that holder?
//
//   - 1: yes, a bilateral partner is asked without localization;
//   - 2: only a holder the localization service named for this patient,
//     recently (no fan-out to every partner);
//   - 3: as 2, plus a direct query to a plateau-3 party, one nationally
//     consultable through the addressbook (not by configured endpoints);
//   - 4: only a holder the national localization service named.
//
// The hit, when there is one, goes into the grant assertion at every
// plateau: the holder's agreement may ask for it.
func (n *Node) admitConsult(_ context.Context, tenant string, req consult.Request) (map[string]any, error) {
	a, ok := n.plateaus.Agreement(req.HolderURA)
	if !ok {
		return nil, &plateau.Refusal{Function: plateau.Localization, Required: 1, Partner: req.HolderURA,
			Reason: fmt.Sprintf("organisation %s is not a partner of this node: a direct query goes to a partner with an agreement only", req.HolderURA)}
	}
	p := a.Plateau(plateau.Localization)
	h, salt, found := n.hits.lookup(tenant, req.PatientBSN, req.HolderURA)
	var claims map[string]any
	if found {
		claims = map[string]any{localization.AssertionHit: h.raw, localization.AssertionSalt: base64.RawURLEncoding.EncodeToString(salt)}
	}
	refuse := func(delivered int, format string, args ...any) error {
		return &plateau.Refusal{Function: plateau.Localization, Required: p, Delivered: delivered, Partner: req.HolderURA,
			Reason: fmt.Sprintf(format, args...)}
	}
	notNamed := fmt.Sprintf("no localization in the last %s named %s as a holder of this patient's data: localize the patient first (POST /internal/localize)",
		localization.DefaultHitLifetime, req.HolderURA)
	switch {
	case p <= 1:
	case p == 2 && !found:
		return nil, refuse(1, "%s", notNamed)
	case p == 3 && !found && !a.Endpoints.IsZero():
		return nil, refuse(1, "%s; a direct query without localization goes only to a party consultable through the national addressbook, and the agreement with %s configures its endpoints",
			notNamed, req.HolderURA)
	case p == 4 && !found:
		return nil, refuse(1, "%s", notNamed)
	case p == 4 && h.hit.Scope != localization.ScopeNational:
		return nil, refuse(2, "localization plateau 4 requires the national localization service; %s was named by a %s one", req.HolderURA, h.hit.Scope)
	}
	return claims, nil
}
