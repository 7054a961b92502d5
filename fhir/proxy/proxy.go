// Package proxy is the source adapter that puts a participant's own EHR FHIR
// server behind the node instead of the node's store: a store.Store whose
// reads and searches are forwarded over HTTP(S) to the EHR's FHIR base URL
// and whose answers are mapped back to store results. The node serves it with
// fhir/rest like any store, so the node's policy (the Authorize hook) decides
// what is forwarded at all, and the audit hook sees what came back.
//
// Writes are refused unless Config.AllowWrites is set. Upstream failures
// (unreachable, too slow, too large, malformed, a 5xx) are *fhir.Error values
// with status 502 (504 for timeouts) that wrap ErrUpstream: fhir/rest sends
// them as they are, with a message that names no upstream detail.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 32 << 20
	// pageCacheSize bounds the remembered opaque next links.
	pageCacheSize = 4096
	pageCacheTTL  = 15 * time.Minute
)

// ErrUpstream is in the chain of every failure of the upstream FHIR server:
// not reachable, no answer in time, an answer too large or not FHIR, or a
// server error.
var ErrUpstream = errors.New("upstream FHIR server failed")

// Config configures a Proxy.
type Config struct {
	// BaseURL is the EHR's FHIR base, e.g. https://ehr.example/fhir; required.
	BaseURL string
	// Version is the FHIR version of the upstream server (and of the node
	// endpoint serving this proxy); required.
	Version fhir.Version
	// Client sends the requests; nil means a client with default transport.
	// Put the TLS configuration for the EHR connection here.
	Client *http.Client
	// Timeout limits each upstream request, answer included; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes limits an upstream answer; 0 means
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// AllowWrites forwards create, update and delete; otherwise they fail
	// with store.ErrInvalid ("read-only proxy").
	AllowWrites bool
	// Prepare, when set, is called on every upstream request before it is
	// sent, e.g. to add the EHR's credentials.
	Prepare func(*http.Request) error
}

// Validate reports whether c can be used to build a Proxy.
func (c Config) Validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("proxy: Config.BaseURL %q is not an http(s) URL without query", c.BaseURL)
	}
	if c.Version != fhir.STU3 && c.Version != fhir.R4 {
		return fmt.Errorf("proxy: Config.Version %q is not a supported FHIR version", c.Version)
	}
	if c.Timeout < 0 || c.MaxResponseBytes < 0 {
		return errors.New("proxy: Config.Timeout and MaxResponseBytes must not be negative")
	}
	return nil
}

// Proxy is a store.Store backed by an upstream FHIR server. The tenant
// argument of its methods is not sent upstream: one Proxy stands for one
// participant's EHR. It is safe for concurrent use.
type Proxy struct {
	base     string // without trailing slash
	baseURL  *url.URL
	version  fhir.Version
	client   *http.Client
	timeout  time.Duration
	maxBytes int64
	writes   bool
	prepare  func(*http.Request) error
	pages    pageCache
}

var _ store.Store = (*Proxy)(nil)

// New returns a Proxy for cfg. It panics when cfg.Validate fails: a
// misconfigured source adapter is a programming error of the composition
// root, which validates configuration first.
func New(cfg Config) *Proxy {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	p := &Proxy{
		base:     strings.TrimRight(cfg.BaseURL, "/"),
		version:  cfg.Version,
		client:   cfg.Client,
		timeout:  cfg.Timeout,
		maxBytes: cfg.MaxResponseBytes,
		writes:   cfg.AllowWrites,
		prepare:  cfg.Prepare,
	}
	p.baseURL, _ = url.Parse(p.base)
	if p.client == nil {
		p.client = &http.Client{}
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.maxBytes == 0 {
		p.maxBytes = DefaultMaxResponseBytes
	}
	p.pages.entries = make(map[string]pageEntry)
	return p
}

// Close releases idle connections.
func (p *Proxy) Close() error {
	p.client.CloseIdleConnections()
	return nil
}

var errReadOnly = fmt.Errorf("%w: read-only proxy: the participant's FHIR server does not accept writes through this node", store.ErrInvalid)

// Create forwards a create when writes are allowed.
func (p *Proxy) Create(ctx context.Context, _ string, body json.RawMessage) (store.Resource, error) {
	if !p.writes {
		return store.Resource{}, errReadOnly
	}
	typ, _, err := head(body)
	if err != nil {
		return store.Resource{}, err
	}
	res, _, err := p.write(ctx, http.MethodPost, p.base+"/"+url.PathEscape(typ), body, "", typ, "")
	return res, err
}

// Update forwards an update (update-as-create) when writes are allowed.
func (p *Proxy) Update(ctx context.Context, _ string, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	if !p.writes {
		return store.Resource{}, false, errReadOnly
	}
	typ, id, err := head(body)
	if err != nil {
		return store.Resource{}, false, err
	}
	if id == "" {
		return store.Resource{}, false, fmt.Errorf("%w: update needs an id", store.ErrInvalid)
	}
	return p.write(ctx, http.MethodPut, p.resourceURL(typ, id), body, ifMatch, typ, id)
}

// Delete forwards a delete when writes are allowed.
func (p *Proxy) Delete(ctx context.Context, _ string, typ, id string) error {
	if !p.writes {
		return errReadOnly
	}
	resp, body, err := p.do(ctx, http.MethodDelete, p.resourceURL(typ, id), nil, nil)
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s/%s", store.ErrNotFound, typ, id)
	}
	return p.statusError(resp, body, typ+"/"+id)
}

// Read forwards a read.
func (p *Proxy) Read(ctx context.Context, _ string, typ, id string) (store.Resource, error) {
	return p.get(ctx, p.resourceURL(typ, id), typ, id, "")
}

// VRead forwards a vread.
func (p *Proxy) VRead(ctx context.Context, _ string, typ, id, versionID string) (store.Resource, error) {
	return p.get(ctx, p.resourceURL(typ, id)+"/_history/"+url.PathEscape(versionID), typ, id, versionID)
}

func (p *Proxy) resourceURL(typ, id string) string {
	return p.base + "/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
}

func (p *Proxy) get(ctx context.Context, u, typ, id, versionID string) (store.Resource, error) {
	resp, body, err := p.do(ctx, http.MethodGet, u, nil, nil)
	if err != nil {
		return store.Resource{}, err
	}
	ref := typ + "/" + id
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return store.Resource{Type: typ, ID: id}, fmt.Errorf("%w: %s", store.ErrNotFound, ref)
	case http.StatusGone:
		return store.Resource{Type: typ, ID: id, Deleted: true}, fmt.Errorf("%w: %s", store.ErrDeleted, ref)
	default:
		return store.Resource{}, p.statusError(resp, body, ref)
	}
	res, err := p.resource(body, typ, id)
	if err != nil {
		return store.Resource{}, err
	}
	if versionID != "" && res.VersionID != "" && res.VersionID != versionID {
		return store.Resource{}, upstreamf(http.StatusBadGateway, "answered version %s for %s version %s", res.VersionID, ref, versionID)
	}
	return res, nil
}

// resource maps one upstream resource to a store.Resource, checking that it
// is the one asked for (typ, and id when not empty).
func (p *Proxy) resource(body []byte, typ, id string) (store.Resource, error) {
	var doc struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID   string `json:"versionId"`
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return store.Resource{}, upstreamf(http.StatusBadGateway, "answer is not FHIR JSON: %v", err)
	}
	if doc.ResourceType == "" || (typ != "" && doc.ResourceType != typ) {
		return store.Resource{}, upstreamf(http.StatusBadGateway, "answered a %q where a %s was expected", doc.ResourceType, typ)
	}
	if doc.ID == "" || (id != "" && doc.ID != id) {
		return store.Resource{}, upstreamf(http.StatusBadGateway, "answered %s/%s where %s/%s was expected", doc.ResourceType, doc.ID, typ, id)
	}
	res := store.Resource{Type: doc.ResourceType, ID: doc.ID, VersionID: doc.Meta.VersionID, Body: body}
	if doc.Meta.LastUpdated != "" {
		t, err := time.Parse(time.RFC3339Nano, doc.Meta.LastUpdated)
		if err != nil {
			return store.Resource{}, upstreamf(http.StatusBadGateway, "%s/%s: meta.lastUpdated %q is not an instant", res.Type, res.ID, doc.Meta.LastUpdated)
		}
		res.LastUpdated = t.UTC()
	}
	return res, nil
}

// Search forwards a search (or Observation/$lastn for q.LastN > 0) and maps
// the searchset Bundle back: entries by search mode, total, the offset of the
// next page, and the parameters the upstream did not use (missing from its
// self link) as Ignored.
func (p *Proxy) Search(ctx context.Context, tenant string, q store.Query) (store.Page, error) {
	params := url.Values{}
	for k, vs := range q.Params {
		params[k] = vs
	}
	path := p.base + "/" + url.PathEscape(q.Type)
	if q.LastN > 0 {
		path += "/$lastn"
		params.Set("max", strconv.Itoa(q.LastN))
	}
	offset := 0
	if vs := params["_offset"]; len(vs) > 0 {
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 0 || len(vs) > 1 {
			return store.Page{}, fmt.Errorf("%w: _offset must be one non-negative integer", store.ErrInvalidSearch)
		}
		offset = n
	}
	u := path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	key := pageKey(tenant, path, params)
	if offset > 0 {
		// A page behind an opaque upstream next link is fetched by that link.
		if next, ok := p.pages.get(key); ok {
			u = next
		}
	}
	var hdr http.Header
	if q.Strict {
		hdr = http.Header{"Prefer": {"handling=strict"}}
	}
	resp, body, err := p.do(ctx, http.MethodGet, u, hdr, nil)
	if err != nil {
		return store.Page{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return store.Page{}, p.statusError(resp, body, q.Type)
	}
	page, next, err := p.page(body, params)
	if err != nil {
		return store.Page{}, err
	}
	switch {
	case next == "":
		page.NextOffset = -1
	default:
		nu, err := p.sameServer(next)
		if err != nil {
			return store.Page{}, err
		}
		if n, err := strconv.Atoi(nu.Query().Get("_offset")); err == nil && n > offset {
			page.NextOffset = n
		} else {
			page.NextOffset = offset + len(page.Matches)
			if page.NextOffset == offset {
				page.NextOffset = offset + 1
			}
			p.pages.put(pageKey(tenant, path, withOffset(params, page.NextOffset)), nu.String())
		}
	}
	return page, nil
}

func withOffset(params url.Values, offset int) url.Values {
	out := make(url.Values, len(params)+1)
	for k, vs := range params {
		out[k] = vs
	}
	out["_offset"] = []string{strconv.Itoa(offset)}
	return out
}

func pageKey(tenant, path string, params url.Values) string {
	return tenant + " " + path + "?" + params.Encode()
}

// sameServer parses an upstream link and refuses one that leaves the
// upstream base: following it would let the upstream point the node
// anywhere.
func (p *Proxy) sameServer(link string) (*url.URL, error) {
	u, err := p.baseURL.Parse(link)
	if err != nil {
		return nil, upstreamf(http.StatusBadGateway, "next link is not a URL")
	}
	if u.Scheme != p.baseURL.Scheme || u.Host != p.baseURL.Host || !strings.HasPrefix(u.Path, p.baseURL.Path) {
		return nil, upstreamf(http.StatusBadGateway, "next link leaves the upstream FHIR base")
	}
	return u, nil
}

// page maps a searchset Bundle.
func (p *Proxy) page(body []byte, asked url.Values) (store.Page, string, error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Total        *int   `json:"total"`
		Link         []struct {
			Relation string `json:"relation"`
			URL      string `json:"url"`
		} `json:"link"`
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
			Search   *struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return store.Page{}, "", upstreamf(http.StatusBadGateway, "answer is not FHIR JSON: %v", err)
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" {
		return store.Page{}, "", upstreamf(http.StatusBadGateway, "answered a %s %s where a searchset Bundle was expected", b.ResourceType, b.Type)
	}
	var page store.Page
	seen := make(map[string]bool)
	for i, e := range b.Entry {
		mode := "match"
		if e.Search != nil && e.Search.Mode != "" {
			mode = e.Search.Mode
		}
		if mode == "outcome" {
			continue
		}
		res, err := p.resource(e.Resource, "", "")
		if err != nil {
			return store.Page{}, "", fmt.Errorf("entry %d: %w", i, err)
		}
		switch mode {
		case "match":
			page.Matches = append(page.Matches, res)
		case "include":
			if k := res.Type + "/" + res.ID; !seen[k] {
				seen[k] = true
				page.Included = append(page.Included, res)
			}
		default:
			return store.Page{}, "", upstreamf(http.StatusBadGateway, "entry %d has search mode %q", i, mode)
		}
	}
	page.Total = len(page.Matches)
	if b.Total != nil {
		page.Total = *b.Total
	}
	var next string
	for _, l := range b.Link {
		switch l.Relation {
		case "next":
			next = l.URL
		case "self":
			page.Ignored = ignored(asked, l.URL)
		}
	}
	return page, next, nil
}

// ignored lists the asked search parameters the upstream's self link does
// not carry: a FHIR server's self link shows the parameters it used.
// Paging and result parameters the proxy sets itself are not judged.
func ignored(asked url.Values, self string) []string {
	u, err := url.Parse(self)
	if err != nil {
		return nil
	}
	used := u.Query()
	var out []string
	for k := range asked {
		switch k {
		case "_offset", "_count", "max", "_format":
			continue
		}
		if _, ok := used[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func (p *Proxy) write(ctx context.Context, method, u string, body []byte, ifMatch, typ, id string) (store.Resource, bool, error) {
	hdr := http.Header{
		"Content-Type": {"application/fhir+json; fhirVersion=" + p.version.MimeVersion()},
		"Prefer":       {"return=representation"},
	}
	if ifMatch != "" {
		tag := strings.Trim(strings.TrimPrefix(strings.TrimSpace(ifMatch), "W/"), `"`)
		hdr.Set("If-Match", `W/"`+tag+`"`)
	}
	resp, rb, err := p.do(ctx, method, u, hdr, body)
	if err != nil {
		return store.Resource{}, false, err
	}
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
	case resp.StatusCode == http.StatusPreconditionFailed || resp.StatusCode == http.StatusConflict:
		return store.Resource{}, false, fmt.Errorf("%w: %s/%s", store.ErrVersionConflict, typ, id)
	default:
		return store.Resource{}, false, p.statusError(resp, rb, typ)
	}
	res, err := p.resource(rb, typ, id)
	if err != nil {
		return store.Resource{}, false, err
	}
	return res, resp.StatusCode == http.StatusCreated, nil
}

// head reads resourceType and id.
func head(body []byte) (typ, id string, err error) {
	var h struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.ResourceType == "" {
		return "", "", fmt.Errorf("%w: not a FHIR JSON resource", store.ErrInvalid)
	}
	return h.ResourceType, h.ID, nil
}

// do sends one request and reads the answer within the limits.
func (p *Proxy) do(ctx context.Context, method, u string, hdr http.Header, body []byte) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rb)
	if err != nil {
		return nil, nil, upstreamf(http.StatusBadGateway, "bad request URL: %v", err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/fhir+json; fhirVersion="+p.version.MimeVersion())
	if p.prepare != nil {
		if err := p.prepare(req); err != nil {
			return nil, nil, upstream(http.StatusBadGateway, fmt.Errorf("prepare request: %w", err))
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, p.transportError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, p.maxBytes+1))
	if err != nil {
		return nil, nil, p.transportError(ctx, err)
	}
	if int64(len(data)) > p.maxBytes {
		return nil, nil, upstreamf(http.StatusBadGateway, "answer larger than %d bytes", p.maxBytes)
	}
	if resp.StatusCode < 300 && len(data) > 0 {
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		switch ct {
		case "application/fhir+json", "application/json+fhir", "application/json":
		default:
			return nil, nil, upstreamf(http.StatusBadGateway, "answered %q, not FHIR JSON", ct)
		}
	}
	return resp, data, nil
}

// transportError classifies a failure to get an answer. The caller's own
// cancellation is passed on as it is.
func (p *Proxy) transportError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return upstream(http.StatusGatewayTimeout, fmt.Errorf("no answer within %s: %w", p.timeout, context.DeadlineExceeded))
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return upstream(http.StatusBadGateway, err)
}

// statusError maps an unexpected upstream status. A refused search or write
// becomes the store error fhir/rest answers with 400; everything else is an
// upstream failure (the node asked something valid, or it would not have
// been forwarded).
func (p *Proxy) statusError(resp *http.Response, _ []byte, what string) error {
	s := resp.StatusCode
	if s == http.StatusBadRequest || s == http.StatusUnprocessableEntity {
		switch method := resp.Request.Method; {
		case method == http.MethodGet && !strings.Contains(what, "/"):
			return fmt.Errorf("%w: the participant's FHIR server refused the search on %s (HTTP %d)", store.ErrInvalidSearch, what, s)
		case method == http.MethodPost || method == http.MethodPut:
			return fmt.Errorf("%w: the participant's FHIR server refused the %s (HTTP %d)", store.ErrInvalid, what, s)
		}
	}
	return upstreamf(http.StatusBadGateway, "HTTP %d for %s", s, what)
}

// upstream wraps cause as an upstream failure the client sees as status with
// a message that names no upstream detail.
func upstream(status int, cause error) error {
	msg := "the participant's FHIR server did not give a usable answer"
	if status == http.StatusGatewayTimeout {
		msg = "the participant's FHIR server did not answer in time"
	}
	e := fhir.Errorf(status, "transient", "%s", msg)
	if status == http.StatusBadGateway {
		e.Issues[0].Code = "exception"
	}
	e.Cause = fmt.Errorf("%w: %w", ErrUpstream, cause)
	return e
}

func upstreamf(status int, format string, args ...any) error {
	return upstream(status, fmt.Errorf(format, args...))
}

// pageCache remembers opaque upstream next links by the offset the node
// gave out for them, so that the node's _offset paging works over an
// upstream that pages with cursors.
type pageCache struct {
	mu      sync.Mutex
	entries map[string]pageEntry
}

type pageEntry struct {
	url     string
	expires time.Time
}

func (c *pageCache) get(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || time.Now().After(e.expires) {
		delete(c.entries, key)
		return "", false
	}
	return e.url, true
}

func (c *pageCache) put(key, u string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.entries) >= pageCacheSize {
		for k, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < pageCacheSize {
				break
			}
			delete(c.entries, k) // arbitrary eviction: a lost cursor falls back to _offset upstream
		}
	}
	c.entries[key] = pageEntry{url: u, expires: now.Add(pageCacheTTL)}
}
