package rest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/fhir/store"
)

// fakeStore is a small in-memory store.Store: enough behaviour to drive the
// HTTP layer, plus knobs (err, page) to make it answer what a test needs.
type fakeStore struct {
	mu       sync.Mutex
	versions map[string][]store.Resource // tenant/type/id → versions, oldest first
	nextID   int
	now      time.Time

	calls     int         // store methods called, to prove Authorize runs first
	lastQuery store.Query // the last Search query
	err       error       // when set, every method fails with it
	page      *store.Page // when set, Search answers it
	txCommits int         // committed InTx calls
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		versions: make(map[string][]store.Resource),
		now:      time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
}

func key(tenant, typ, id string) string { return tenant + "/" + typ + "/" + id }

// put stores a version; the body gets id and meta.versionId/lastUpdated set,
// keeping whatever else meta holds (e.g. profile).
func (f *fakeStore) put(tenant string, body json.RawMessage, deleted bool) (store.Resource, error) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return store.Resource{}, fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	typ, _ := doc["resourceType"].(string)
	id, _ := doc["id"].(string)
	k := key(tenant, typ, id)
	vid := strconv.Itoa(len(f.versions[k]) + 1)
	f.now = f.now.Add(time.Minute)
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = vid
	meta["lastUpdated"] = f.now.Format(time.RFC3339)
	doc["meta"] = meta
	b, _ := json.Marshal(doc)
	res := store.Resource{Type: typ, ID: id, VersionID: vid, LastUpdated: f.now, Deleted: deleted, Body: b}
	f.versions[k] = append(f.versions[k], res)
	return res, nil
}

// seed stores body as is (it must carry its id) and returns the stored version.
func (f *fakeStore) seed(tenant, body string) store.Resource {
	f.mu.Lock()
	defer f.mu.Unlock()
	res, err := f.put(tenant, json.RawMessage(body), false)
	if err != nil {
		panic(err)
	}
	return res
}

func (f *fakeStore) enter() error {
	f.mu.Lock()
	f.calls++
	return f.err
}

func (f *fakeStore) Create(_ context.Context, tenant string, body json.RawMessage) (store.Resource, error) {
	err := f.enter()
	defer f.mu.Unlock()
	if err != nil {
		return store.Resource{}, err
	}
	return f.create(tenant, body)
}

func (f *fakeStore) create(tenant string, body json.RawMessage) (store.Resource, error) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return store.Resource{}, fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	f.nextID++
	doc["id"] = "new" + strconv.Itoa(f.nextID)
	b, _ := json.Marshal(doc)
	return f.put(tenant, b, false)
}

func (f *fakeStore) Update(_ context.Context, tenant string, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	err := f.enter()
	defer f.mu.Unlock()
	if err != nil {
		return store.Resource{}, false, err
	}
	return f.update(tenant, body, ifMatch)
}

func (f *fakeStore) update(tenant string, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	var head struct{ ResourceType, ID string }
	if err := json.Unmarshal(body, &head); err != nil {
		return store.Resource{}, false, fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	vs := f.versions[key(tenant, head.ResourceType, head.ID)]
	if ifMatch != "" && (len(vs) == 0 || vs[len(vs)-1].VersionID != ifMatch) {
		return store.Resource{}, false, fmt.Errorf("%w: want %s", store.ErrVersionConflict, ifMatch)
	}
	res, err := f.put(tenant, body, false)
	return res, len(vs) == 0, err
}

func (f *fakeStore) Delete(_ context.Context, tenant, typ, id string) error {
	err := f.enter()
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.delete(tenant, typ, id)
}

func (f *fakeStore) delete(tenant, typ, id string) error {
	vs := f.versions[key(tenant, typ, id)]
	if len(vs) == 0 {
		return fmt.Errorf("%w: %s/%s", store.ErrNotFound, typ, id)
	}
	if vs[len(vs)-1].Deleted {
		return fmt.Errorf("%w: %s/%s", store.ErrDeleted, typ, id)
	}
	_, err := f.put(tenant, vs[len(vs)-1].Body, true)
	return err
}

func (f *fakeStore) Read(_ context.Context, tenant, typ, id string) (store.Resource, error) {
	err := f.enter()
	defer f.mu.Unlock()
	if err != nil {
		return store.Resource{}, err
	}
	return f.read(tenant, typ, id)
}

func (f *fakeStore) read(tenant, typ, id string) (store.Resource, error) {
	vs := f.versions[key(tenant, typ, id)]
	if len(vs) == 0 {
		return store.Resource{}, fmt.Errorf("%w: %s/%s", store.ErrNotFound, typ, id)
	}
	if vs[len(vs)-1].Deleted {
		return store.Resource{}, fmt.Errorf("%w: %s/%s", store.ErrDeleted, typ, id)
	}
	return vs[len(vs)-1], nil
}

func (f *fakeStore) VRead(_ context.Context, tenant, typ, id, versionID string) (store.Resource, error) {
	err := f.enter()
	defer f.mu.Unlock()
	if err != nil {
		return store.Resource{}, err
	}
	for _, v := range f.versions[key(tenant, typ, id)] {
		if v.VersionID == versionID {
			return v, nil
		}
	}
	return store.Resource{}, fmt.Errorf("%w: %s/%s/_history/%s", store.ErrNotFound, typ, id, versionID)
}

// Search matches every current resource of the type (filtered by _id and
// identifier when given), sorted by id, paged by _count/_offset. In strict
// mode, other parameters are an error.
func (f *fakeStore) Search(_ context.Context, tenant string, q store.Query) (store.Page, error) {
	err := f.enter()
	defer f.mu.Unlock()
	if err != nil {
		f.lastQuery = q
		return store.Page{}, err
	}
	return f.search(tenant, q)
}

func (f *fakeStore) search(tenant string, q store.Query) (store.Page, error) {
	f.lastQuery = q
	if q.Strict {
		for k := range q.Params {
			switch k {
			case "_id", "identifier", "_count", "_offset", "name", "family", "gender":
			default:
				return store.Page{}, fmt.Errorf("%w: unknown search parameter %s", store.ErrInvalidSearch, k)
			}
		}
	}
	if f.page != nil {
		return *f.page, nil
	}
	var all []store.Resource
	for k, vs := range f.versions {
		cur := vs[len(vs)-1]
		if k != key(tenant, cur.Type, cur.ID) || cur.Type != q.Type || cur.Deleted {
			continue
		}
		if id := q.Params.Get("_id"); id != "" && id != cur.ID {
			continue
		}
		if ident := q.Params.Get("identifier"); ident != "" && !hasIdentifier(cur.Body, ident) {
			continue
		}
		all = append(all, cur)
	}
	slices.SortFunc(all, func(a, b store.Resource) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	count, offset := len(all), 0
	if c, err := strconv.Atoi(q.Params.Get("_count")); err == nil {
		count = c
	}
	if o, err := strconv.Atoi(q.Params.Get("_offset")); err == nil {
		offset = min(o, len(all))
	}
	end := min(offset+count, len(all))
	page := store.Page{Matches: all[offset:end], Total: len(all), NextOffset: -1}
	if end < len(all) {
		page.NextOffset = end
	}
	return page, nil
}

func (f *fakeStore) Close() error { return nil }

// hasIdentifier reports whether body has an identifier matching token
// (system|value or value).
func hasIdentifier(body []byte, token string) bool {
	var doc struct {
		Identifier []struct{ System, Value string }
	}
	if json.Unmarshal(body, &doc) != nil {
		return false
	}
	system, value, hasSystem := strings.Cut(token, "|")
	if !hasSystem {
		value = system
	}
	for _, id := range doc.Identifier {
		if id.Value == value && (!hasSystem || id.System == system) {
			return true
		}
	}
	return false
}

// History lists versions newest first (store.Historian).
func (f *fakeStore) History(_ context.Context, tenant string, q store.HistoryQuery) (store.HistoryPage, error) {
	err := f.enter()
	defer f.mu.Unlock()
	if err != nil {
		return store.HistoryPage{}, err
	}
	var all []store.Resource
	for k, vs := range f.versions {
		if !strings.HasPrefix(k, tenant+"/") {
			continue
		}
		for _, v := range vs {
			if (q.Type != "" && v.Type != q.Type) || (q.ID != "" && v.ID != q.ID) || v.LastUpdated.Before(q.Since) {
				continue
			}
			if v.Deleted {
				v.Body = nil
			}
			all = append(all, v)
		}
	}
	slices.SortFunc(all, func(a, b store.Resource) int { return b.LastUpdated.Compare(a.LastUpdated) })
	count := q.Count
	if count == 0 {
		count = 50
	}
	offset := min(q.Offset, len(all))
	end := min(offset+count, len(all))
	page := store.HistoryPage{Versions: all[offset:end], Total: len(all), NextOffset: -1}
	if end < len(all) {
		page.NextOffset = end
	}
	return page, nil
}

// InTx runs fn with the store locked; on failure every write is undone
// (store.Transactional).
func (f *fakeStore) InTx(ctx context.Context, tenant string, fn func(tx store.Tx) error) error {
	err := f.enter()
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	saved := make(map[string][]store.Resource, len(f.versions))
	for k, vs := range f.versions {
		saved[k] = slices.Clone(vs)
	}
	savedID, savedNow := f.nextID, f.now
	if err := fn(fakeTx{f, tenant}); err != nil {
		f.versions, f.nextID, f.now = saved, savedID, savedNow
		return err
	}
	f.txCommits++
	return nil
}

// fakeTx is the store.Tx of fakeStore.InTx (the lock is held).
type fakeTx struct {
	f      *fakeStore
	tenant string
}

func (t fakeTx) Create(_ context.Context, body json.RawMessage) (store.Resource, error) {
	return t.f.create(t.tenant, body)
}

func (t fakeTx) Update(_ context.Context, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	return t.f.update(t.tenant, body, ifMatch)
}

func (t fakeTx) Delete(_ context.Context, typ, id string) error { return t.f.delete(t.tenant, typ, id) }

func (t fakeTx) Read(_ context.Context, typ, id string) (store.Resource, error) {
	return t.f.read(t.tenant, typ, id)
}

func (t fakeTx) Search(_ context.Context, q store.Query) (store.Page, error) {
	return t.f.search(t.tenant, q)
}

// plainStore hides History and InTx: a store without them.
type plainStore struct{ store.Store }

// count returns the number of versions stored, over all resources.
func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, vs := range f.versions {
		n += len(vs)
	}
	return n
}
