package scan

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// ProbeOptions say how to reach a running node.
type ProbeOptions struct {
	// URL is the node's public base URL (https).
	URL string
	// Certificate is presented for the mTLS handshake; without it only the
	// handshake itself can be observed.
	Certificate *tls.Certificate
	// Roots verify the node's certificate; without them it is not verified
	// (and the report says so).
	Roots *x509.CertPool
	// SigningKey signs the probe's client assertions: a key the node finds
	// for the certificate's URA (the addressbook's JWKS of a development
	// participant). With it the probe sends a token request that lacks the
	// user data plateau 2 requires, which a node holding that URA to
	// authentication plateau 2 or higher must refuse.
	SigningKey jwk.Key
	Timeout    time.Duration
}

// Observation is one thing the probe saw.
type Observation struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Probe is what a running node showed.
type Probe struct {
	URL          string `json:"url"`
	Verified     bool   `json:"serverVerified"` // the server certificate was checked against --ca
	Reachable    bool   `json:"reachable"`
	TLSVersion   string `json:"tlsVersion,omitempty"`
	RefusesTLS12 bool   `json:"refusesTLS12"`
	AsksCert     bool   `json:"requestsClientCertificate"`
	DemandsCert  bool   `json:"demandsClientCertificate"`
	Metadata     bool   `json:"metadata"`
	PrivateKeyJW bool   `json:"privateKeyJWT"`
	JWTBearer    bool   `json:"jwtBearerGrant"`
	BoundTokens  bool   `json:"certificateBoundTokens"`
	JWKS         bool   `json:"jwks"`
	RefusesNone  bool   `json:"refusesAlgNone"`
	Authed       bool   `json:"authenticated"` // probed with a client certificate
	// ProbeURA is the URA of the probe's certificate, when it has one.
	ProbeURA string `json:"probeURA,omitempty"`
	// Userless is how the token endpoint answered a correctly signed
	// jwt-bearer request without any user data (needs SigningKey).
	Userless     UserlessAnswer `json:"userlessTokenRequest,omitempty"`
	Observations []Observation  `json:"observations"`
}

// UserlessAnswer classifies the answer to a token request without user data.
type UserlessAnswer string

const (
	// UserlessRefusedAuthn: refused for lack of user authentication — the
	// plateau-2 requirement observed.
	UserlessRefusedAuthn UserlessAnswer = "refused-authentication"
	// UserlessRefusedPartner: refused because the probe's URA is no partner
	// — the bilateral list (authorization plateau 1) observed.
	UserlessRefusedPartner UserlessAnswer = "refused-not-a-partner"
	// UserlessAccepted: the node did not refuse for missing user data.
	UserlessAccepted UserlessAnswer = "not-refused-for-missing-user"
	// UserlessInconclusive: the node could not authenticate the probe as a
	// client, so nothing about user authentication was learned.
	UserlessInconclusive UserlessAnswer = "inconclusive"
)

func (p *Probe) observe(check string, ok bool, format string, args ...any) {
	p.Observations = append(p.Observations, Observation{Check: check, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// RunProbe probes the node at o.URL.
func RunProbe(ctx context.Context, o ProbeOptions) (*Probe, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--probe %q: an https URL is required", o.URL)
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	p := &Probe{URL: strings.TrimSuffix(o.URL, "/"), Verified: o.Roots != nil}

	// 1. A handshake without a client certificate: does the node ask for
	// one, and does it refuse to go on without?
	asked := false
	var acceptable int
	cfg := baseTLS(o, u.Hostname())
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked, acceptable = true, len(cri.AcceptableCAs)
		return &tls.Certificate{}, nil
	}
	version, demanded, err := handshakeAndRead(ctx, host, cfg, o.Timeout)
	if err != nil {
		p.observe("reachable", false, "no TLS connection to %s: %v", host, err)
		return p, nil
	}
	p.Reachable, p.TLSVersion, p.AsksCert, p.DemandsCert = true, version, asked, demanded
	p.observe("tls-version", version == "TLS 1.3", "negotiated %s", version)
	if asked {
		p.observe("client-certificate-requested", true, "the node asks for a client certificate (%d acceptable CAs named)", acceptable)
	} else {
		p.observe("client-certificate-requested", false, "the node did not ask for a client certificate")
	}
	if demanded {
		p.observe("client-certificate-required", true, "without a client certificate the node ends the connection before answering")
	} else {
		p.observe("client-certificate-required", false, "the node answered HTTP without a client certificate")
	}
	if !p.Verified {
		p.observe("server-certificate", false, "the node's certificate was not verified: pass --ca to check it")
	}

	// 2. TLS 1.2 only: NEN 7512 channel encryption on Twiin is TLS 1.3.
	cfg12 := baseTLS(o, u.Hostname())
	cfg12.MaxVersion = tls.VersionTLS12
	if o.Certificate != nil {
		cfg12.Certificates = []tls.Certificate{*o.Certificate}
	}
	if _, _, err := handshakeAndRead(ctx, host, cfg12, o.Timeout); err != nil {
		p.RefusesTLS12 = true
		p.observe("refuses-tls12", true, "a TLS 1.2 handshake is refused")
	} else {
		p.observe("refuses-tls12", false, "the node accepts TLS 1.2")
	}

	if o.Certificate == nil {
		p.observe("authenticated-probe", false, "no --cert/--key: the OAuth endpoints behind mTLS were not probed")
		return p, nil
	}
	p.probeOAuth(ctx, o)
	return p, nil
}

func baseTLS(o ProbeOptions, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		RootCAs:    o.Roots,
		// Without --ca the probe still observes the handshake; the report
		// states that the server was not verified.
		InsecureSkipVerify: o.Roots == nil, //nolint:gosec // reported as unverified
	}
}

// handshakeAndRead completes a handshake and sends one HTTP request; demanded
// is true when the server ends the connection instead of answering, which is
// how TLS 1.3 servers refuse a missing client certificate.
func handshakeAndRead(ctx context.Context, host string, cfg *tls.Config, timeout time.Duration) (version string, demanded bool, err error) {
	d := &tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: timeout}}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return "", false, err
	}
	defer c.Close()
	tc := c.(*tls.Conn)
	version = tls.VersionName(tc.ConnectionState().Version)
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: "+cfg.ServerName+"\r\nConnection: close\r\n\r\n"); err != nil {
		return version, true, nil
	}
	buf := make([]byte, 12)
	n, err := io.ReadFull(c, buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 ") {
		return version, true, nil
	}
	return version, false, nil
}

// probeOAuth reads the RFC 8414 metadata and JWKS, and sends the token
// endpoint an unsigned (alg none) client assertion that must be refused.
func (p *Probe) probeOAuth(ctx context.Context, o ProbeOptions) {
	p.Authed = true
	if leaf, err := x509.ParseCertificate(o.Certificate.Certificate[0]); err == nil {
		if id, err := pki.ParseUZIServerID(leaf); err == nil {
			p.ProbeURA = id.URA
		}
	}
	tcfg := pki.ClientTLSConfig(*o.Certificate, o.Roots, pki.AcceptNonUZIPeer())
	hc := &http.Client{Timeout: o.Timeout, Transport: &http.Transport{TLSClientConfig: tcfg}}
	defer hc.CloseIdleConnections()

	var md oauth.Metadata
	if err := getJSON(ctx, hc, p.URL+oauth.MetadataPath, &md); err != nil {
		p.observe("metadata", false, "GET %s: %v", oauth.MetadataPath, err)
		return
	}
	p.Metadata = md.Issuer != "" && md.TokenEndpoint != "" && md.JWKSURI != ""
	p.observe("metadata", p.Metadata, "RFC 8414 metadata: issuer %s, token endpoint %s", md.Issuer, md.TokenEndpoint)
	p.PrivateKeyJW = slices.Contains(md.TokenEndpointAuthMethodsSupported, "private_key_jwt")
	p.observe("client-authentication", p.PrivateKeyJW, "token endpoint client authentication: %s", strings.Join(md.TokenEndpointAuthMethodsSupported, ", "))
	p.JWTBearer = slices.Contains(md.GrantTypesSupported, oauth.GrantTypeJWTBearer)
	p.observe("jwt-bearer-grant", p.JWTBearer, "grant types: %s", strings.Join(md.GrantTypesSupported, ", "))
	weak := slices.ContainsFunc(md.TokenEndpointAuthSigningAlgValuesSupported, func(a string) bool {
		return a == "none" || strings.HasPrefix(a, "HS")
	})
	p.observe("signing-algorithms", !weak, "assertion algorithms: %s", strings.Join(md.TokenEndpointAuthSigningAlgValuesSupported, ", "))
	p.BoundTokens = md.TLSClientCertificateBoundAccessTokens
	p.observe("certificate-bound-tokens", p.BoundTokens, "tls_client_certificate_bound_access_tokens: %t (RFC 8705)", p.BoundTokens)

	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := getJSON(ctx, hc, md.JWKSURI, &jwks); err != nil {
		p.observe("jwks", false, "GET %s: %v", md.JWKSURI, err)
	} else {
		private := slices.ContainsFunc(jwks.Keys, func(k map[string]any) bool { return k["d"] != nil || k["k"] != nil })
		p.JWKS = len(jwks.Keys) > 0 && !private
		p.observe("jwks", p.JWKS, "%d public keys published; private or symmetric members present: %t", len(jwks.Keys), private)
	}

	if md.TokenEndpoint != "" {
		code, status := p.unsignedAssertion(ctx, hc, md.TokenEndpoint, o.Certificate)
		p.RefusesNone = status >= 400 && status < 500 && (code == "invalid_client" || code == "invalid_request")
		p.observe("refuses-alg-none", p.RefusesNone, "a client assertion with alg none was answered %d %s", status, code)
		if o.SigningKey != nil {
			p.userless(ctx, hc, md.TokenEndpoint, o.SigningKey)
		} else {
			p.observe("refuses-missing-user", false, "no --signing-key: a signed token request without user data was not sent")
		}
	}
}

// userless sends a jwt-bearer token request, properly signed by the probe's
// own (development) identity, that names no user at all. A node that holds
// the probe's URA to user authentication plateau 2 or higher refuses it
// with invalid_grant naming authentication (RFC 6749 §5.2).
func (p *Probe) userless(ctx context.Context, hc *http.Client, endpoint string, key jwk.Key) {
	if p.ProbeURA == "" {
		p.Userless = UserlessInconclusive
		p.observe("refuses-missing-user", false, "the probe's certificate carries no URA, so it cannot act as a client")
		return
	}
	c := &oauth.Client{ClientID: p.ProbeURA, Key: key, HTTP: hc}
	tok, err := c.Token(ctx, endpoint, oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer, Scope: []string{"bgz"}})
	var er *oauth.ErrorResponse
	switch {
	case err == nil && tok != nil:
		p.Userless = UserlessAccepted
		p.observe("refuses-missing-user", false, "a token request without user data was granted a token")
	case errors.As(err, &er) && er.Code == "invalid_grant" && strings.Contains(er.Description, "not on this node's list of partners"):
		p.Userless = UserlessRefusedPartner
		p.observe("refuses-unlisted-partner", true, "the probe's URA %s is refused as no partner: %s", p.ProbeURA, er.Description)
	case errors.As(err, &er) && er.Code == "invalid_grant" && strings.Contains(er.Description, "authentication"):
		p.Userless = UserlessRefusedAuthn
		p.observe("refuses-missing-user", true, "a token request without user data is refused: %s", er.Description)
	case errors.As(err, &er) && er.Code == "invalid_grant":
		// Refused, but for the exchange (no referral, no consent), after
		// the user authentication passed: plateau 1 for this URA.
		p.Userless = UserlessAccepted
		p.observe("refuses-missing-user", false, "a token request without user data passed user authentication (refused later: %s)", er.Description)
	default:
		p.Userless = UserlessInconclusive
		p.observe("refuses-missing-user", false, "the node did not accept the probe as a client (%v): pass the signing key the addressbook lists for URA %s", err, p.ProbeURA)
	}
}

func (p *Probe) unsignedAssertion(ctx context.Context, hc *http.Client, endpoint string, cert *tls.Certificate) (string, int) {
	sub := "probe"
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		if id, err := pki.ParseUZIServerID(leaf); err == nil {
			sub = id.URA
		}
	}
	enc := base64.RawURLEncoding
	now := time.Now().Unix()
	claims, _ := json.Marshal(map[string]any{"iss": sub, "sub": sub, "aud": endpoint, "iat": now, "exp": now + 60, "jti": fmt.Sprintf("scan-%d", time.Now().UnixNano())})
	jwt := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"probe"}`)) + "." + enc.EncodeToString(claims) + "."
	form := url.Values{
		"grant_type":            {oauth.GrantTypeClientCredentials},
		"scope":                 {"notify"},
		"client_assertion_type": {oauth.ClientAssertionTypeJWTBearer},
		"client_assertion":      {jwt},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err.Error(), 0
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return err.Error(), 0
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	return e.Error, resp.StatusCode
}

func getJSON(ctx context.Context, hc *http.Client, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into)
}
