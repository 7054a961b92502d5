package validation

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// Identity is who the kit is on the wire: a Twiin party with development
// credentials that the node under test has admitted (an addressbook entry
// and a partner agreement), plus the extra certificates the negative cases
// need.
type Identity struct {
	URA, Name, SystemUZI string
	// Cert is the kit's UZI server certificate (TLS client and server).
	Cert tls.Certificate
	// AltCert has the same URA and another key: a token bound to Cert must
	// not work with it (RFC 8705).
	AltCert tls.Certificate
	// Stranger is from a trusted CA for a URA without an agreement.
	Stranger tls.Certificate
	// Revoked is on the CA's revocation list.
	Revoked tls.Certificate
	// Signing signs the kit's client assertions; its public half is at the
	// kit's client JWKS endpoint (addressbook payload oauth-client-jwks).
	Signing jwk.Key
	// ServerKey signs the access tokens of the kit's authorization server.
	ServerKey jwk.Key
	// Roots are the CAs of the trust domain.
	Roots *x509.CertPool
}

// Config is one validation run.
type Config struct {
	// Target is the public base URL of the node under test (https).
	Target string
	// TargetURA is the participant validated; when empty, the URA of the
	// node's server certificate.
	TargetURA string
	Role      Role
	Care      string
	Plateau   int // the plateau agreed with the kit; default 1
	Kit       Identity
	// Addressbook is the FHIR base of the directory where the target's
	// endpoints are found, and where the kit is listed.
	Addressbook string
	// Listen is the address of the kit's counterpart (as listed in the
	// addressbook); Listener, when set, is used instead (tests).
	Listen   string
	Listener net.Listener
	// Driver makes the node under test act (send, consult); nil is Manual.
	Driver Driver
	// Patient is a BSN the target holds data of, with the patient's
	// consent for the kit (holder role) or to refer to the kit (sender role).
	Patient string
	// Vendor and Version name the product validated (in the proof).
	Vendor, Version string
	// Wait bounds how long the kit waits for the node to act (default 20s).
	Wait time.Duration
	// Progress is called before each case and once at the end.
	Progress func(done, total int, c *Case)
	Logger   *slog.Logger
}

func (c *Config) defaults() error {
	if c.Plateau == 0 {
		c.Plateau = 1
	}
	if c.Wait == 0 {
		c.Wait = 20 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Driver == nil {
		c.Driver = Manual{}
	}
	u, err := url.Parse(c.Target)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "":
		return errors.New("validation: --target must be the node's https base URL")
	case c.Role.Counterpart() == "":
		return fmt.Errorf("validation: unknown role %q", c.Role)
	case c.Care == "":
		return errors.New("validation: a care application is required")
	case c.Plateau < 1 || c.Plateau > 4:
		return fmt.Errorf("validation: plateau %d is not 1..4", c.Plateau)
	case c.Kit.URA == "" || c.Kit.Signing == nil || c.Kit.Cert.Leaf == nil || c.Kit.Roots == nil:
		return errors.New("validation: the kit's identity is incomplete (URA, certificate, signing key, trust roots)")
	case c.Addressbook == "":
		return errors.New("validation: the addressbook's FHIR base is required")
	case c.Listen == "" && c.Listener == nil:
		return errors.New("validation: the kit's counterpart address is required")
	}
	c.Target = strings.TrimSuffix(c.Target, "/")
	return nil
}

// Target is the node under test as the kit found it.
type Target struct {
	URL string `json:"url"`
	URA string `json:"ura"`
	// CertificateSHA256 is the SHA-256 fingerprint (hex) of the node's TLS
	// server certificate.
	CertificateSHA256 string `json:"certificateSha256"`
	// Endpoints found in the addressbook, by payload type; Missing lists
	// the payload types the addressbook has no usable endpoint of.
	Endpoints map[string]string `json:"endpoints"`
	Missing   []string          `json:"missing,omitempty"`
	// DataPayloadType is the payload type of the care application's data
	// endpoint among Endpoints; FHIRVersion its FHIR version ("3.0", "4.0").
	DataPayloadType string `json:"dataPayloadType,omitempty"`
	FHIRVersion     string `json:"fhirVersion,omitempty"`
}

// Endpoint payload types the kit looks up besides the care application's
// data endpoint (SPEC §9).
var payloadTypes = []string{addressbook.PayloadNotification, addressbook.PayloadAuthServer, addressbook.PayloadClientJWKS}

// PayloadPush is the addressbook payload type of a participant's Push
// endpoint, its $process-message (docs/protocols.md "Push").
const PayloadPush = "Twiin-TA-push"

// PushEndpoint is the target's Push endpoint (looked up for a Push role).
func (t Target) PushEndpoint() string { return t.Endpoints[PayloadPush] }

// payloadTypes are the endpoints of the target the run looks up: the
// notification endpoint, the care application's data endpoint, the
// authorization server and the client JWKS.
func (t Target) payloadTypes() []string {
	return []string{payloadTypes[0], t.dataPayloadType(), payloadTypes[1], payloadTypes[2]}
}

func (t Target) dataPayloadType() string {
	if t.DataPayloadType == "" {
		return addressbook.PayloadBgZServer
	}
	return t.DataPayloadType
}

// FHIRBase is the target's data endpoint for the run's care application:
// its FHIR base of the application's version.
func (t Target) FHIRBase() string { return t.Endpoints[t.dataPayloadType()] }

// TaskBase is the target's FHIR STU3 base the Notified Pull Tasks are on:
// its notification endpoint without the trailing /Task (for an STU3
// application the same base as its data).
func (t Target) TaskBase() string {
	return strings.TrimSuffix(t.NotificationEndpoint(), "/Task")
}

// NotificationEndpoint is the target's Notified Pull Task endpoint.
func (t Target) NotificationEndpoint() string { return t.Endpoints[addressbook.PayloadNotification] }

// Issuer is the target's authorization server.
func (t Target) Issuer() string { return t.Endpoints[addressbook.PayloadAuthServer] }

// Env is what every case of a run shares: the kit's clients and identity,
// the target, the counterpart, and scenarios run once for several cases.
type Env struct {
	Config Config
	Target Target
	App    Application
	// HTTP uses the kit's certificate; AltHTTP the same URA with another
	// key; StrangerHTTP a URA without agreement.
	HTTP, AltHTTP, StrangerHTTP *http.Client
	// OAuth signs the kit's assertions.
	OAuth       *oauth.Client
	Counterpart *Counterpart
	Driver      Driver

	// started is when the run began: the audit case counts only what the
	// node recorded since (a node validated before has older records).
	started time.Time
	red     *redactor
	mu      sync.Mutex
	memo    map[string]*memo
	md      *oauth.Metadata
}

type memo struct {
	done chan struct{}
	val  any
	err  error
	ex   []Exchange
}

// Once runs fn the first time key is asked for and returns its result
// (and the exchanges it recorded) on every later call: the cases that
// check one exchange from several sides share a single run of it.
func (p *Probe) Once(key string, fn func(p *Probe) (any, error)) (any, error) {
	e := p.env
	e.mu.Lock()
	m, ok := e.memo[key]
	if !ok {
		m = &memo{done: make(chan struct{})}
		e.memo[key] = m
	}
	e.mu.Unlock()
	if !ok {
		sub := &Probe{env: e, ctx: p.ctx}
		m.val, m.err = fn(sub)
		m.ex = sub.ex
		close(m.done)
	}
	<-m.done
	return m.val, m.err
}

// Started is when the run began: what the node recorded before is not
// this run's.
func (e *Env) Started() time.Time { return e.started }

// Exchanges of a scenario run by Once, for a case to show as evidence.
func (p *Probe) ScenarioExchanges(key string) []Exchange {
	p.env.mu.Lock()
	defer p.env.mu.Unlock()
	if m, ok := p.env.memo[key]; ok {
		return m.ex
	}
	return nil
}

// Redact keeps s out of every report (e.g. an authorization base).
func (p *Probe) Redact(s string) {
	p.env.mu.Lock()
	defer p.env.mu.Unlock()
	p.env.red.add(s)
}

// Probe is a case's view of the run: the environment plus the exchanges
// the case recorded.
type Probe struct {
	env *Env
	ctx context.Context
	ex  []Exchange
}

// Env is the run's shared environment.
func (p *Probe) Env() *Env { return p.env }

// Context is the case's context (bounded by the run).
func (p *Probe) Context() context.Context { return p.ctx }

// Record adds evidence to the case's verdict.
func (p *Probe) Record(ex ...Exchange) { p.ex = append(p.ex, ex...) }

// Metadata is the target's RFC 8414 authorization server metadata,
// fetched once.
func (p *Probe) Metadata() (*oauth.Metadata, error) {
	v, err := p.Once("oauth-metadata", func(p *Probe) (any, error) {
		issuer := p.env.Target.Issuer()
		if issuer == "" {
			return nil, errors.New("the addressbook lists no authorization server for the target")
		}
		resp, err := p.Get(p.env.HTTP, strings.TrimSuffix(issuer, "/")+oauth.MetadataPath, "")
		if err != nil {
			return nil, err
		}
		if resp.Status != http.StatusOK {
			return nil, fmt.Errorf("metadata: HTTP %d", resp.Status)
		}
		var md oauth.Metadata
		if err := resp.JSON(&md); err != nil {
			return nil, fmt.Errorf("metadata is not JSON: %w", err)
		}
		return &md, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*oauth.Metadata), nil
}

// TokenForm is a fresh token request form of the kit for the target's
// token endpoint.
func (p *Probe) TokenForm(req oauth.TokenRequest) (string, url.Values, error) {
	md, err := p.Metadata()
	if err != nil {
		return "", nil, err
	}
	f, err := p.env.OAuth.TokenForm(md.TokenEndpoint, req)
	return md.TokenEndpoint, f, err
}

// Token asks the target's authorization server for a token; a refusal is
// returned as the answer, not an error.
func (p *Probe) Token(client *http.Client, req oauth.TokenRequest) (token string, resp *Response, err error) {
	endpoint, form, err := p.TokenForm(req)
	if err != nil {
		return "", nil, err
	}
	if resp, err = p.PostForm(client, endpoint, form); err != nil {
		return "", nil, err
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = resp.JSON(&body)
	return body.AccessToken, resp, nil
}

// ClientToken is the kit's client_credentials token for scope at the node
// under test, asked once a run (what names it in an error: "notification
// token", "push token").
func (p *Probe) ClientToken(scope, what string) (string, error) {
	v, err := p.Once("client-token."+scope, func(p *Probe) (any, error) {
		tok, resp, err := p.Token(p.Env().HTTP, oauth.TokenRequest{GrantType: oauth.GrantTypeClientCredentials, Scope: []string{scope}})
		if err != nil {
			return "", err
		}
		if tok == "" {
			return "", fmt.Errorf("the node gave no %s: HTTP %d %s", what, resp.Status, resp.OAuthError())
		}
		return tok, nil
	})
	s, _ := v.(string)
	return s, err
}

// discover finds the target: its server certificate (and URA) by a TLS
// handshake, its endpoints in the addressbook.
func discover(ctx context.Context, cfg Config, app Application, client *http.Client) (Target, error) {
	t := Target{URL: cfg.Target, URA: cfg.TargetURA, Endpoints: map[string]string{},
		DataPayloadType: app.PayloadType(), FHIRVersion: app.Version().MimeVersion()}
	u, _ := url.Parse(cfg.Target)
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{Config: pki.ClientTLSConfig(cfg.Kit.Cert, cfg.Kit.Roots)}
	d.Config.ServerName = u.Hostname()
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return t, fmt.Errorf("validation: TLS handshake with %s: %w", cfg.Target, err)
	}
	cs := conn.(*tls.Conn).ConnectionState()
	conn.Close()
	if len(cs.PeerCertificates) == 0 {
		return t, errors.New("validation: the target presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	t.CertificateSHA256 = hex.EncodeToString(sum[:])
	if t.URA == "" {
		id, err := pki.ParseUZIServerID(leaf)
		if err != nil {
			return t, fmt.Errorf("validation: the target's certificate carries no UZI server identity (give --ura): %w", err)
		}
		t.URA = id.URA
	}
	book := &addressbook.Client{Base: cfg.Addressbook, HTTP: client}
	types := t.payloadTypes()
	wanted := make([]Endpoint, 0, len(types)+len(app.Endpoints))
	for _, pt := range types {
		version := ""
		switch pt {
		case addressbook.PayloadNotification:
			version = "3.0" // the technical agreement's Task endpoint is STU3
		case t.DataPayloadType:
			version = t.FHIRVersion
		}
		wanted = append(wanted, Endpoint{PayloadType: pt, FHIRVersion: version})
	}
	for _, e := range app.Endpoints {
		if !slices.Contains(types, e.PayloadType) {
			wanted = append(wanted, e)
		}
	}
	for _, e := range wanted {
		ep, err := book.Endpoint(ctx, t.URA, e.PayloadType, e.FHIRVersion)
		if err != nil {
			t.Missing = append(t.Missing, e.PayloadType)
			continue
		}
		t.Endpoints[e.PayloadType] = strings.TrimSuffix(ep, "/")
	}
	if cfg.Role == RolePushSender || cfg.Role == RolePushReceiver {
		if ep, err := book.Endpoint(ctx, t.URA, PayloadPush, "3.0"); err != nil {
			t.Missing = append(t.Missing, PayloadPush)
		} else {
			t.Endpoints[PayloadPush] = ep
		}
	}
	return t, nil
}
