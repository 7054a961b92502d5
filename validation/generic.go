package validation

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// Sources the generic cases cite.
const (
	srcTLS      = "TA Notified Pull §5 / TTA FHIR Authentication & Authorization: mTLS, TLS 1.3 (SPEC §4); NEN 7512"
	srcTrust    = "Twiin trust list: only GtKs with a trusted, unrevoked UZI server certificate (SPEC §4, §3)"
	srcRFC7523  = "RFC 7523 §3 (JWT client authentication); TTA FHIR Authentication & Authorization (SPEC §4)"
	srcRFC8414  = "RFC 8414 §2–3 (authorization server metadata); RFC 8705 §3.3"
	srcRFC8705  = "RFC 8705 §3 (certificate-bound access tokens)"
	srcRFC6750  = "RFC 6750 §3 (bearer token use: 401 with WWW-Authenticate)"
	srcPlateau  = "Groeien met Twiin, generic function authorization, plateau 1: a bilateral list of who may ask (seed 000; SPEC §6)"
	srcPlateau4 = "Groeien met Twiin, user authentication plateau 4: the requesting user signed by the authentication means (seed 000; SPEC §6)"
	srcAudit    = "NEN 7513 logging, every plateau: own log, available on request (seed 000; SPEC §6, §8)"
	srcAddress  = "Addressing: the GtK endpoint listed in the addressbook (seed 000 plateau 3; SPEC §9 payload types)"
)

// GenericCases are the generic functions every GtK is checked on,
// whatever its role and care application.
func GenericCases() []Case {
	return []Case{
		{ID: "generic.addressing.endpoints", Title: "The node's endpoints are in the addressbook", Mandatory: true,
			Requirement: "The addressbook lists, for the participant's URA, an active notification endpoint (Twiin-TA-notification, FHIR STU3), a FHIR data endpoint of the care application (its payload type, at its FHIR version: STU3 for bgz, R4 for bgz-r4), an authorization server and a client JWKS, all https.",
			Source:      srcAddress, Run: addressingEndpoints},
		{ID: "generic.tls.v13", Title: "TLS 1.3 with a client certificate is accepted", Mandatory: true,
			Requirement: "The public port completes a TLS 1.3 handshake with a trusted client certificate and presents an UZI server certificate of the participant's URA.",
			Source:      srcTLS, Run: tlsAccepted},
		{ID: "generic.tls.no-v12", Title: "TLS 1.2 is refused", Mandatory: true, Negative: true,
			Requirement: "The public port refuses a handshake below TLS 1.3.", Source: srcTLS,
			Run: tlsRefused(func(e *Env) *tls.Config {
				c := pki.ClientTLSConfig(e.Config.Kit.Cert, e.Config.Kit.Roots)
				c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return c
			})},
		{ID: "generic.tls.client-certificate-required", Title: "A connection without a client certificate is refused", Mandatory: true, Negative: true,
			Requirement: "The public port requires a client certificate (mutual TLS).", Source: srcTLS,
			Run: tlsRefused(func(e *Env) *tls.Config {
				return &tls.Config{RootCAs: e.Config.Kit.Roots, MinVersion: tls.VersionTLS13}
			})},
		{ID: "generic.tls.untrusted-ca", Title: "A certificate from an untrusted CA is refused", Mandatory: true, Negative: true,
			Requirement: "Only certificates chaining to the trust list get through the handshake.", Source: srcTrust,
			Run: tlsRefused(func(e *Env) *tls.Config {
				ca, err := pki.NewCA("Untrusted validation CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
				if err != nil {
					return nil
				}
				cert, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: e.Config.Kit.SystemUZI, URA: e.Config.Kit.URA, AGB: "00000000"}})
				if err != nil {
					return nil
				}
				return pki.ClientTLSConfig(cert, e.Config.Kit.Roots)
			})},
		{ID: "generic.tls.revoked", Title: "A revoked certificate is refused", Mandatory: true, Negative: true,
			Requirement: "A certificate on the CA's revocation list is refused, though it chains to the trust list.", Source: srcTrust,
			Run: tlsRefused(func(e *Env) *tls.Config {
				if e.Config.Kit.Revoked.Leaf == nil {
					return nil
				}
				return pki.ClientTLSConfig(e.Config.Kit.Revoked, e.Config.Kit.Roots)
			})},
		{ID: "generic.oauth.metadata", Title: "Authorization server metadata (RFC 8414)", Mandatory: true,
			Requirement: "The metadata names its own issuer, an https token endpoint, the jwt-bearer grant, private_key_jwt client authentication, only asymmetric signing algorithms, and certificate-bound tokens.",
			Source:      srcRFC8414, Run: oauthMetadata},
		{ID: "generic.oauth.client-assertion", Title: "A conformant client assertion gets a certificate-bound token", Mandatory: true,
			Requirement: "A token request authenticated with a signed JWT client assertion (iss = sub = URA, aud = token endpoint, exp, iat, jti, kid) gets a Bearer access token bound to the client certificate (cnf x5t#S256).",
			Source:      srcRFC7523 + "; " + srcRFC8705, Run: oauthValid},
		{ID: "generic.oauth.alg-none", Title: "An unsigned assertion (alg none) is refused", Mandatory: true, Negative: true,
			Requirement: "A client assertion with alg none gets invalid_client and no token.", Source: srcRFC7523,
			Run: oauthRefused("invalid_client", func(p *Probe, f url.Values, aud string) error {
				f.Set("client_assertion", unsignedJWT("none", kitClaims(p, aud)))
				return nil
			})},
		{ID: "generic.oauth.hmac", Title: "An HMAC assertion keyed with the public key is refused", Mandatory: true, Negative: true,
			Requirement: "A client assertion signed HS256 with the client's public JWK as secret (algorithm confusion) gets invalid_client.", Source: srcRFC7523,
			Run: oauthRefused("invalid_client", func(p *Probe, f url.Values, aud string) error {
				pub, err := p.env.Config.Kit.Signing.PublicKey()
				if err != nil {
					return err
				}
				secret, _ := json.Marshal(pub)
				payload, _ := json.Marshal(kitClaims(p, aud))
				s, err := jws.Sign(payload, jws.WithKey(jwa.HS256(), secret))
				f.Set("client_assertion", string(s))
				return err
			})},
		{ID: "generic.oauth.replay", Title: "A replayed assertion (same jti) is refused", Mandatory: true, Negative: true,
			Requirement: "A client assertion whose jti was used before gets invalid_client.", Source: srcRFC7523 + " (§3 item 7: jti)",
			Run: oauthReplay},
		{ID: "generic.oauth.wrong-audience", Title: "An assertion for another audience is refused", Mandatory: true, Negative: true,
			Requirement: "A client assertion whose aud is not this token endpoint gets invalid_client.", Source: srcRFC7523 + " (§3 item 3: aud)",
			Run: oauthRefused("invalid_client", func(p *Probe, f url.Values, aud string) error {
				return signInto(p, f, kitClaims(p, "https://elsewhere.invalid/token"))
			})},
		{ID: "generic.oauth.expired", Title: "An expired assertion is refused", Mandatory: true, Negative: true,
			Requirement: "A client assertion past its exp gets invalid_client.", Source: srcRFC7523 + " (§3 item 4: exp)",
			Run: oauthRefused("invalid_client", func(p *Probe, f url.Values, aud string) error {
				c := kitClaims(p, aud)
				c["iat"], c["exp"] = time.Now().Add(-10*time.Minute).Unix(), time.Now().Add(-9*time.Minute).Unix()
				return signInto(p, f, c)
			})},
		{ID: "generic.oauth.bad-signature", Title: "An assertion with a broken signature is refused", Mandatory: true, Negative: true,
			Requirement: "A client assertion whose signature does not verify with the client's published key gets invalid_client.", Source: srcRFC7523,
			Run: oauthRefused("invalid_client", func(p *Probe, f url.Values, aud string) error {
				if err := signInto(p, f, kitClaims(p, aud)); err != nil {
					return err
				}
				a := f.Get("client_assertion")
				f.Set("client_assertion", a[:len(a)-6]+"AAAAAA")
				return nil
			})},
		{ID: "generic.oauth.ura-bound", Title: "An assertion for a URA other than the certificate's is refused", Mandatory: true, Negative: true,
			Requirement: "The client (iss/sub of the assertion) must be the URA of the TLS client certificate: the kit's assertion over another organisation's certificate gets no token.",
			Source:      srcRFC7523 + "; " + srcRFC8705 + "; UZI server certificate URA (SPEC §3)",
			Run: func(ctx context.Context, p *Probe) Verdict {
				return tokenRefusal(p, p.env.StrangerHTTP, "", func(f url.Values, aud string) error { return nil })
			}},
		{ID: "generic.plateau.no-agreement", Title: "An organisation without an agreement gets no token", Mandatory: true, Negative: true,
			Requirement: "A trusted organisation that is not on the node's bilateral list (no partner agreement) gets no token, whatever it signs.",
			Source:      srcPlateau, Run: noAgreement},
		{ID: "generic.oauth.no-token", Title: "A data request without a token is refused", Mandatory: true, Negative: true,
			Requirement: "A FHIR request without an access token gets 401 with a WWW-Authenticate Bearer challenge and an OperationOutcome.",
			Source:      srcRFC6750, Run: noToken},
		{ID: "generic.oauth.certificate-binding", Title: "A token used over another certificate is refused", Mandatory: true, Negative: true,
			Requirement: "An access token bound to one client certificate is refused (401) when presented over a connection with another certificate of the same organisation.",
			Source:      srcRFC8705, Run: certificateBinding},
		{ID: "generic.plateau4.user-identity", Title: "Plateau 4: a data token without a signed user identity is refused", Negative: true, Mandatory: true,
			MinPlateau:  4,
			Requirement: "At plateau 4 a token for patient data needs the user's identity signed by the authentication means; a request with only unsigned user claims gets no token.",
			Source:      srcPlateau4, Run: plateau4User},
		{ID: "generic.audit.trail", Title: "The node's audit log holds the kit's accesses and refusals", Mandatory: true, Final: true,
			Requirement: "Every access by the kit, and every refusal, is in the node's NEN 7513 log by the time it is answered, available on request (here: the participant's AuditEvent trail, records since the run began; the node's clock and the kit's agree).",
			Source:      srcAudit, Run: auditTrail},
	}
}

func addressingEndpoints(_ context.Context, p *Probe) Verdict {
	t := p.env.Target
	var ps Problems
	for _, pt := range t.payloadTypes() {
		u, ok := t.Endpoints[pt]
		if !ok {
			ps.Add("no usable endpoint of payload type %s for URA %s", pt, t.URA)
			continue
		}
		ps.Check(strings.HasPrefix(u, "https://"), "endpoint %s is not https: %s", pt, u)
	}
	return ps.Verdict(fmt.Sprintf("URA %s: %v", t.URA, t.Endpoints))
}

// handshake connects with cfg and makes one request: under TLS 1.3 the
// server's verdict on the client certificate arrives with the first read.
func handshake(ctx context.Context, target string, cfg *tls.Config) (tls.ConnectionState, error) {
	u, _ := url.Parse(target)
	cfg = cfg.Clone()
	cfg.ServerName = u.Hostname()
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.Host); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return conn.(*tls.Conn).ConnectionState(), nil
}

func tlsAccepted(ctx context.Context, p *Probe) Verdict {
	cs, err := handshake(ctx, p.env.Target.URL, pki.ClientTLSConfig(p.env.Config.Kit.Cert, p.env.Config.Kit.Roots))
	ex := Exchange{Direction: KitToNode, Method: "TLS", URL: p.env.Target.URL}
	if err != nil {
		ex.Error = err.Error()
		p.Record(ex)
		return Fail("the TLS 1.3 handshake with the kit's trusted certificate failed: %v", err)
	}
	var ps Problems
	ps.Check(cs.Version == tls.VersionTLS13, "negotiated %s, want TLS 1.3", tls.VersionName(cs.Version))
	if len(cs.PeerCertificates) > 0 {
		id, err := pki.ParseUZIServerID(cs.PeerCertificates[0])
		ps.Check(err == nil, "the server certificate carries no UZI server identity: %v", err)
		ps.Check(err != nil || id.URA == p.env.Target.URA, "the server certificate's URA %s is not the participant's %s", id.URA, p.env.Target.URA)
	}
	ex.ResponseBody = fmt.Sprintf("%s, %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
	p.Record(ex)
	return ps.Verdict("TLS 1.3 handshake with the kit's certificate; server certificate of URA " + p.env.Target.URA)
}

func tlsRefused(config func(*Env) *tls.Config) func(context.Context, *Probe) Verdict {
	return func(ctx context.Context, p *Probe) Verdict {
		cfg := config(p.env)
		if cfg == nil {
			return Error("the kit could not build this case's TLS credentials")
		}
		_, err := handshake(ctx, p.env.Target.URL, cfg)
		ex := Exchange{Direction: KitToNode, Method: "TLS", URL: p.env.Target.URL}
		if err == nil {
			ex.ResponseBody = "connection accepted and answered"
			p.Record(ex)
			return Fail("the node accepted the connection and answered")
		}
		ex.Error = err.Error()
		p.Record(ex)
		return Pass("refused: %v", err)
	}
}

func oauthMetadata(_ context.Context, p *Probe) Verdict {
	md, err := p.Metadata()
	p.Record(p.ScenarioExchanges("oauth-metadata")...)
	if err != nil {
		return Fail("%v", err)
	}
	var ps Problems
	ps.Check(strings.TrimSuffix(md.Issuer, "/") == p.env.Target.Issuer(), "issuer %q is not the addressbook's %q", md.Issuer, p.env.Target.Issuer())
	ps.Check(strings.HasPrefix(md.TokenEndpoint, "https://"), "token_endpoint %q is not https", md.TokenEndpoint)
	ps.Check(slices.Contains(md.GrantTypesSupported, oauth.GrantTypeJWTBearer), "grant_types_supported lacks %s", oauth.GrantTypeJWTBearer)
	ps.Check(slices.Contains(md.TokenEndpointAuthMethodsSupported, "private_key_jwt"), "token_endpoint_auth_methods_supported lacks private_key_jwt")
	ps.Check(len(md.TokenEndpointAuthSigningAlgValuesSupported) > 0, "token_endpoint_auth_signing_alg_values_supported is empty")
	for _, a := range md.TokenEndpointAuthSigningAlgValuesSupported {
		ps.Check(a != "none" && !strings.HasPrefix(a, "HS"), "signing algorithm %s is offered: only asymmetric ones are allowed", a)
	}
	ps.Check(md.TLSClientCertificateBoundAccessTokens, "tls_client_certificate_bound_access_tokens is not true")
	return ps.Verdict("issuer " + md.Issuer + ", token endpoint " + md.TokenEndpoint)
}

// notifyRequest is the baseline token request of the generic cases: a
// client_credentials token for posting notifications, which any partner
// may ask for and which gives access to no data.
var notifyRequest = oauth.TokenRequest{GrantType: oauth.GrantTypeClientCredentials, Scope: []string{ScopeNotify}}

func oauthValid(_ context.Context, p *Probe) Verdict {
	tok, resp, err := p.Token(p.env.HTTP, notifyRequest)
	if err != nil {
		return Fail("%v", err)
	}
	var ps Problems
	ps.Check(resp.Status == http.StatusOK && tok != "", "HTTP %d %s, want 200 with an access token", resp.Status, resp.OAuthError())
	var body struct {
		TokenType string `json:"token_type"`
		ExpiresIn int    `json:"expires_in"`
	}
	_ = resp.JSON(&body)
	ps.Check(strings.EqualFold(body.TokenType, "Bearer"), "token_type %q, want Bearer", body.TokenType)
	ps.Check(body.ExpiresIn > 0 && body.ExpiresIn <= 3600, "expires_in %d: access tokens are short-lived (≤ 1 hour)", body.ExpiresIn)
	if tok != "" {
		claims, err := unverifiedClaims(tok)
		ps.Check(err == nil, "the access token is not a JWT (RFC 9068): %v", err)
		cnf, _ := claims["cnf"].(map[string]any)
		want := pki.CertThumbprintS256(p.env.Config.Kit.Cert.Leaf)
		ps.Check(cnf != nil && cnf["x5t#S256"] == want, "cnf.x5t#S256 %v is not the thumbprint of the kit's certificate %s", cnf["x5t#S256"], want)
	}
	return ps.Verdict("token granted, bound to the kit's certificate")
}

// kitClaims are a client assertion's claims for the kit (RFC 7523 §3).
func kitClaims(p *Probe, aud string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": p.env.Config.Kit.URA, "sub": p.env.Config.Kit.URA, "aud": aud, "iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(), "jti": fmt.Sprintf("kit-%d", now.UnixNano())}
}

func signInto(p *Probe, f url.Values, claims map[string]any) error {
	payload, _ := json.Marshal(claims)
	key := p.env.Config.Kit.Signing
	alg, _ := key.Algorithm()
	kid, _ := key.KeyID()
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, kid)
	_ = hdr.Set(jws.TypeKey, "JWT")
	sa, ok := alg.(jwa.SignatureAlgorithm)
	if !ok {
		return errors.New("the kit's signing key has no signature algorithm")
	}
	s, err := jws.Sign(payload, jws.WithKey(sa, key, jws.WithProtectedHeaders(hdr)))
	f.Set("client_assertion", string(s))
	return err
}

func unsignedJWT(alg string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	b, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(b) + "."
}

// unverifiedClaims decodes a JWT's payload without checking it: the kit
// reads what the node put in, the node's own verification is not its job.
func unverifiedClaims(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c map[string]any
	return c, json.Unmarshal(b, &c)
}

// UnverifiedClaims is unverifiedClaims for the care applications' cases.
func UnverifiedClaims(tok string) (map[string]any, error) { return unverifiedClaims(tok) }

// UnverifiedHeader decodes a JWS's protected header.
func UnverifiedHeader(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, err
	}
	var h map[string]any
	return h, json.Unmarshal(b, &h)
}

func oauthRefused(code string, mutate func(p *Probe, f url.Values, aud string) error) func(context.Context, *Probe) Verdict {
	return func(_ context.Context, p *Probe) Verdict {
		return tokenRefusal(p, p.env.HTTP, code, func(f url.Values, aud string) error { return mutate(p, f, aud) })
	}
}

// tokenRefusal sends the baseline token request, changed by mutate, over
// client, and passes when the node refuses it (with code, when given) and
// gives no token.
func tokenRefusal(p *Probe, client *http.Client, code string, mutate func(f url.Values, aud string) error) Verdict {
	endpoint, form, err := p.TokenForm(notifyRequest)
	if err != nil {
		return Error("%v", err)
	}
	if err := mutate(form, endpoint); err != nil {
		return Error("build the request: %v", err)
	}
	resp, err := p.PostForm(client, endpoint, form)
	if err != nil {
		// A refusal at the TLS layer is a refusal too.
		return Pass("refused on the connection: %v", err)
	}
	return judgeRefusal(resp, code)
}

func judgeRefusal(resp *Response, code string) Verdict {
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = resp.JSON(&body)
	var ps Problems
	ps.Check(body.AccessToken == "", "a token was issued (HTTP %d)", resp.Status)
	ps.Check(resp.Status == http.StatusBadRequest || resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden,
		"HTTP %d, want 400 or 401 (RFC 6749 §5.2)", resp.Status)
	got := resp.OAuthError()
	ps.Check(got != "", "the refusal is not an RFC 6749 error response")
	if code != "" {
		ps.Check(got == code, "error %q, want %q", got, code)
	}
	return ps.Verdict(fmt.Sprintf("refused: HTTP %d %s", resp.Status, got))
}

func oauthReplay(_ context.Context, p *Probe) Verdict {
	endpoint, form, err := p.TokenForm(notifyRequest)
	if err != nil {
		return Error("%v", err)
	}
	first, err := p.PostForm(p.env.HTTP, endpoint, form)
	if err != nil {
		return Fail("%v", err)
	}
	if first.Status != http.StatusOK {
		return Error("the first use of the assertion was refused (HTTP %d %s): replay cannot be judged", first.Status, first.OAuthError())
	}
	second, err := p.PostForm(p.env.HTTP, endpoint, form)
	if err != nil {
		return Pass("refused on the connection: %v", err)
	}
	return judgeRefusal(second, "invalid_client")
}

func noAgreement(_ context.Context, p *Probe) Verdict {
	md, err := p.Metadata()
	if err != nil {
		return Error("%v", err)
	}
	// The stranger signs as itself with the kit's key: whatever the node
	// makes of the key, the organisation has no agreement.
	stranger := &oauth.Client{ClientID: StrangerURA, Key: p.env.Config.Kit.Signing, HTTP: p.env.StrangerHTTP}
	form, err := stranger.TokenForm(md.TokenEndpoint, notifyRequest)
	if err != nil {
		return Error("%v", err)
	}
	resp, err := p.PostForm(p.env.StrangerHTTP, md.TokenEndpoint, form)
	if err != nil {
		return Pass("refused on the connection: %v", err)
	}
	return judgeRefusal(resp, "")
}

func noToken(_ context.Context, p *Probe) Verdict {
	base := p.env.Target.FHIRBase()
	if base == "" {
		return Fail("the addressbook lists no FHIR endpoint")
	}
	resp, err := p.Get(p.env.HTTP, base+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+testBSN, "")
	if err != nil {
		return Fail("%v", err)
	}
	var ps Problems
	ps.Check(resp.Status == http.StatusUnauthorized, "HTTP %d, want 401", resp.Status)
	ps.Check(strings.HasPrefix(strings.ToLower(resp.Header.Get("WWW-Authenticate")), "bearer"), "no WWW-Authenticate: Bearer challenge")
	ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
	return ps.Verdict("refused with 401 and a Bearer challenge")
}

func certificateBinding(_ context.Context, p *Probe) Verdict {
	tok, resp, err := p.Token(p.env.HTTP, notifyRequest)
	if err != nil || tok == "" {
		return Error("no token to misuse (%v, %v)", err, resp)
	}
	endpoint := p.env.Target.NotificationEndpoint()
	if endpoint == "" {
		return Fail("the addressbook lists no notification endpoint")
	}
	// The token check comes before the body is read: an empty Task suffices.
	resp, err = p.Send(p.env.AltHTTP, http.MethodPost, endpoint, "application/fhir+json", tok, []byte(`{"resourceType":"Task"}`))
	if err != nil {
		return Pass("refused on the connection: %v", err)
	}
	if resp.Status != http.StatusUnauthorized {
		return Fail("HTTP %d over another certificate, want 401", resp.Status)
	}
	return Pass("refused with 401 over the kit's second certificate")
}

func plateau4User(_ context.Context, p *Probe) Verdict {
	base := p.env.Target.FHIRBase()
	_, resp, err := p.Token(p.env.HTTP, oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer, Scope: []string{p.env.App.Name},
		Resource: base, AssertionClaims: map[string]any{"user_id": "900012345", "user_role": "01.016"}})
	if err != nil {
		return Error("%v", err)
	}
	return judgeRefusal(resp, "")
}

func auditTrail(ctx context.Context, p *Probe) Verdict {
	// A requester's successful accesses are its own queries of the kit:
	// the node's participant is their actor, the kit only refuses.
	actor, whose := p.env.Config.Kit.URA, "the kit"
	if p.env.Config.Role == RoleRequester {
		actor, whose = p.env.Target.URA, "the node's participant"
	}
	b, err := p.env.Driver.AuditEvents(ctx, actor)
	if errors.Is(err, ErrNotDriven) {
		return Skip("%v", err)
	}
	if err != nil {
		return Fail("the audit trail could not be read: %v", err)
	}
	p.Record(Exchange{Direction: KitToNode, Method: "GET", URL: "(driver) AuditEvent?agent=" + actor, Status: 200,
		ResponseBody: p.env.red.body("application/json", b)})
	var bundle struct {
		Entry []struct {
			Resource struct {
				Outcome  string    `json:"outcome"`
				Recorded time.Time `json:"recorded"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		return Fail("the audit trail is not a FHIR Bundle: %v", err)
	}
	ok, refused, earlier := 0, 0, 0
	for _, e := range bundle.Entry {
		if e.Resource.Recorded.Before(p.env.started) {
			earlier++
			continue
		}
		if e.Resource.Outcome == "0" {
			ok++
		} else {
			refused++
		}
	}
	var ps Problems
	ps.Check(ok > 0, "no successful access by %s is in the audit trail", whose)
	// The kit's refused requests are the node's refusals; a requester's
	// refusals come from the kit, which the kit itself records.
	ps.Check(refused > 0 || p.env.Config.Role == RoleRequester, "none of %s's refused requests is in the audit trail", whose)
	return ps.Verdict(fmt.Sprintf("%d records of %s since the run began: %d successful, %d refused (%d earlier)", ok+refused, whose, ok, refused, earlier))
}

// testBSN is a valid test BSN (11-proef) no node holds data of.
const testBSN = "999990020"
