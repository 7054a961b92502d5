package node

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/schakel-nl/schakel/fhir/store"
)

// localTypes are kept in the node's own store even for a participant whose
// record lives in its EHR (proxy mode): the exchange's own resources.
var localTypes = map[string]bool{"Task": true, "Bundle": true}

// routedStore serves each participant from where its record lives: the
// node's own store, or — in proxy mode — the participant's EHR behind a
// proxy, for everything but the exchange's own Tasks and received Bundles.
// The node's policy runs before either is asked.
type routedStore struct {
	local   store.Store
	proxies map[string]store.Store // tenant → its EHR
}

func (r *routedStore) pick(tenant, typ string) store.Store {
	if p, ok := r.proxies[tenant]; ok && !localTypes[typ] {
		return p
	}
	return r.local
}

func resourceType(body json.RawMessage) string {
	var h struct {
		ResourceType string `json:"resourceType"`
	}
	_ = json.Unmarshal(body, &h)
	return h.ResourceType
}

func (r *routedStore) Create(ctx context.Context, tenant string, body json.RawMessage) (store.Resource, error) {
	return r.pick(tenant, resourceType(body)).Create(ctx, tenant, body)
}

func (r *routedStore) Update(ctx context.Context, tenant string, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	return r.pick(tenant, resourceType(body)).Update(ctx, tenant, body, ifMatch)
}

func (r *routedStore) Delete(ctx context.Context, tenant, typ, id string) error {
	return r.pick(tenant, typ).Delete(ctx, tenant, typ, id)
}

func (r *routedStore) Read(ctx context.Context, tenant, typ, id string) (store.Resource, error) {
	return r.pick(tenant, typ).Read(ctx, tenant, typ, id)
}

func (r *routedStore) VRead(ctx context.Context, tenant, typ, id, versionID string) (store.Resource, error) {
	return r.pick(tenant, typ).VRead(ctx, tenant, typ, id, versionID)
}

func (r *routedStore) Search(ctx context.Context, tenant string, q store.Query) (store.Page, error) {
	return r.pick(tenant, q.Type).Search(ctx, tenant, q)
}

// Close closes the node's own store; proxies hold no resources to close.
func (r *routedStore) Close() error { return r.local.Close() }

// History answers from the node's own store; a proxied participant's
// history is its EHR's business.
func (r *routedStore) History(ctx context.Context, tenant string, q store.HistoryQuery) (store.HistoryPage, error) {
	h, ok := r.local.(store.Historian)
	if _, proxied := r.proxies[tenant]; proxied || !ok {
		return store.HistoryPage{}, fmt.Errorf("%w: history is not kept for this participant", store.ErrInvalidSearch)
	}
	return h.History(ctx, tenant, q)
}

// InTx runs transactions on the node's own store, for participants whose
// record is there.
func (r *routedStore) InTx(ctx context.Context, tenant string, fn func(tx store.Tx) error) error {
	t, ok := r.local.(store.Transactional)
	if _, proxied := r.proxies[tenant]; proxied || !ok {
		return fmt.Errorf("%w: transactions are not available for a participant served from its EHR", store.ErrInvalid)
	}
	return t.InTx(ctx, tenant, fn)
}

// Local is the node's own store, beside the proxies.
func (r *routedStore) Local() store.Store { return r.local }
