package consult

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// URAs of the parties in the tests.
const (
	uraConsent    = "00000001" // the consent service
	uraHolder     = "00000010" // the data holder, a hospital (Z3)
	uraHolder2    = "00000011" // another participant on the holder's node
	uraRequester  = "00000020" // the requester, another hospital
	holderType    = "Z3"
	requesterType = "Z3"
	userUZI       = "900012345"
	userRole      = "01.015"
)

// checkerSwitch lets a test swap the holder's consent checker (e.g. for one
// that cannot reach the service).
type checkerSwitch struct {
	c atomic.Pointer[consent.Checker]
}

func (s *checkerSwitch) Decide(ctx context.Context, q consent.Question) (consent.Decision, error) {
	return (*s.c.Load()).Decide(ctx, q)
}

func (s *checkerSwitch) set(c consent.Checker) { s.c.Store(&c) }

// env is a holder node (authorization server + FHIR endpoint over SQLite
// with demo data, asking a real consent service) and a requester node's
// consult service, all on 127.0.0.1 with mTLS.
type env struct {
	ca        *pki.CA
	roots     *x509.CertPool
	certs     map[string]tls.Certificate
	consentTS *httptest.Server
	consent   *consent.Server
	checker   *checkerSwitch
	holder    *Service
	as        *oauth.Server
	ts        *httptest.Server
	patients  []demo.Patient
	// policy, when set, runs before the consult check, as the node's own
	// access policy (plateau checks) does.
	policy    atomic.Pointer[func(*rest.Request, *oauth.AccessToken) error]
	requester *Service
	party     *Party
	dir       mapDirectory
}

type mapDirectory map[string]string

// uraDirectoryDown is an organisation whose lookup fails as if the
// addressbook could not be reached.
const uraDirectoryDown = "00000078"

func (d mapDirectory) Endpoint(_ context.Context, ura, payloadType, _ string) (string, error) {
	if u, ok := d[ura+" "+payloadType]; ok {
		return u, nil
	}
	if ura == uraDirectoryDown {
		return "", fmt.Errorf("query addressbook: connection refused")
	}
	return "", fmt.Errorf("%w: no endpoint %s for %s", addressbook.ErrNotFound, payloadType, ura)
}

func (e *env) cert(t testing.TB, ura string) tls.Certificate {
	t.Helper()
	if c, ok := e.certs[ura]; ok {
		return c
	}
	c, err := e.ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "9" + ura, URA: ura, AGB: "01234567"}})
	if err != nil {
		t.Fatal(err)
	}
	e.certs[ura] = c
	return c
}

func (e *env) httpClient(t testing.TB, ura string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(e.cert(t, ura), e.roots),
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16}}
}

func signingKey(t testing.TB) jwk.Key {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.SigningJWK(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type keySet map[string]jwk.Set

func (k keySet) ClientKeySet(_ context.Context, id string) (jwk.Set, error) {
	if s, ok := k[id]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("unknown client %s: %w", id, oauth.ErrInvalidClient)
}

// newEnv starts everything; cacheTTL is the holder's consent cache.
func newEnv(t testing.TB, cacheTTL time.Duration) *env {
	t.Helper()
	ctx := context.Background()
	ca, err := pki.NewCA("consult test CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ca: ca, roots: pki.CertPool(ca.Cert), certs: map[string]tls.Certificate{}, checker: &checkerSwitch{}}

	// The consent service, with the first patient's permit for the holder.
	e.consent, err = consent.NewServer(consent.ServerConfig{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), ClientTLS: pki.ClientTLSConfig(e.cert(t, uraConsent), e.roots)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.consent.Close() })
	e.consentTS = httptest.NewUnstartedServer(e.consent.Handler())
	e.consentTS.TLS = pki.ServerTLSConfig(e.cert(t, uraConsent), e.roots)
	e.consentTS.StartTLS()
	t.Cleanup(e.consentTS.Close)
	e.checker.set(e.consentClient(t, e.consentTS.URL, cacheTTL))

	// The holder's record: demo patients in SQLite.
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "fhir.db"), fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.patients, err = demo.Generate(demo.Options{Count: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range e.patients {
		for _, res := range p.Resources {
			if _, _, err := st.Update(ctx, uraHolder, res, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.consent.Store().Register(ctx, consent.Registration{PatientBSN: e.patients[0].BSN, Effect: consent.Permit,
		HolderURA: uraHolder, Source: consent.SourceProvider, RegisteredBy: uraHolder}); err != nil {
		t.Fatal(err)
	}

	// The holder node: authorization server and FHIR endpoint.
	mux := http.NewServeMux()
	e.ts = httptest.NewUnstartedServer(mux)
	issuer := "https://" + e.ts.Listener.Addr().String()
	fhirBase := func(tenant string) string { return issuer + "/fhir/stu3/" + tenant }
	e.holder = New(Config{Applications: bgzOnly,
		Node: "holder", Tenants: func() []string { return []string{uraHolder, uraHolder2} }, FHIRBase: fhirBase,
		FacilityType: func(string) string { return holderType }, Consent: e.checker,
		Logger: slog.New(slog.DiscardHandler),
	})
	reqKey := signingKey(t)
	pub, err := reqKey.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	e.as, err = oauth.NewServer(oauth.ServerConfig{
		Issuer: issuer, SigningKey: signingKey(t), Clients: keySet{uraRequester: set}, PeerURA: pki.PeerURA,
		Logger: slog.New(slog.DiscardHandler), VerifiedTokenCacheSize: 64,
		// As the node does: the consult decides, then the growth model's
		// user claims are added from the signed assertion.
		Grants: oauth.GrantResolverFunc(func(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
			g, err := e.holder.ResolveGrant(ctx, req)
			if err != nil {
				return g, err
			}
			u, err := plateau.UserFromClaims(req.Assertion)
			if err != nil {
				return oauth.Grant{}, oauth.RefuseGrant("malformed user claims", err)
			}
			for k, v := range (plateau.TokenDecision{Delivered: 3, User: u}).Claims() {
				g.Claims[k] = v
			}
			return g, nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.as.Routes(mux)
	data := rest.New(rest.Config{Store: st, Version: fhir.STU3, Logger: slog.New(slog.DiscardHandler),
		Authorize: func(ctx context.Context, req *rest.Request) error {
			tok := ctx.Value(tokenKey{}).(*oauth.AccessToken)
			if p := e.policy.Load(); p != nil {
				if err := (*p)(req, tok); err != nil {
					return err
				}
			}
			return e.holder.AuthorizeData(ctx, tok, req)
		}})
	mux.HandleFunc("/fhir/stu3/{ura}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		ura := r.PathValue("ura")
		base := fhirBase(ura)
		tok, err := e.as.Verify(r, base)
		if err != nil {
			oauth.WriteBearerError(w, err)
			return
		}
		data.Serve(w, r.WithContext(context.WithValue(WithCheck(r.Context()), tokenKey{}, tok)), ura, base, r.PathValue("path"))
	})
	e.ts.TLS = pki.ServerTLSConfig(e.cert(t, uraHolder), e.roots)
	e.ts.StartTLS()
	t.Cleanup(e.ts.Close)

	// The requester node.
	hc := e.httpClient(t, uraRequester)
	e.party = &Party{URA: uraRequester, Name: "Ziekenhuis", SystemUZI: "9" + uraRequester, HTTP: hc,
		OAuth: &oauth.Client{ClientID: uraRequester, Key: reqKey, HTTP: hc}}
	e.dir = mapDirectory{
		uraHolder + " " + PayloadBgZServer:   fhirBase(uraHolder),
		uraHolder + " " + PayloadAuthServer:  issuer,
		uraHolder2 + " " + PayloadBgZServer:  fhirBase(uraHolder2),
		uraHolder2 + " " + PayloadAuthServer: issuer,
	}
	e.requester = New(Config{Node: "requester", Applications: bgzOnly, Directory: e.dir,
		Parties: func(ura string) (*Party, bool) {
			if ura == uraRequester {
				return e.party, true
			}
			return nil, false
		},
		FacilityType: func(string) string { return requesterType }, Logger: slog.New(slog.DiscardHandler)})
	return e
}

type tokenKey struct{}

func (e *env) consentClient(t testing.TB, baseURL string, cacheTTL time.Duration) *consent.Client {
	t.Helper()
	c, err := consent.NewClient(consent.ClientConfig{BaseURL: baseURL, TLS: pki.ClientTLSConfig(e.cert(t, uraHolder), e.roots),
		CacheTTL: cacheTTL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// request is a consult for patient i of the demo data at the holder.
func (e *env) request(i int) Request {
	return Request{PatientBSN: e.patients[i].BSN, HolderURA: uraHolder, UserID: userUZI, UserRole: userRole,
		UserLoA: plateau.LoASubstantial}
}

// token gets a consult token as the requester for resource.
func (e *env) token(t testing.TB, resource string) (string, error) {
	t.Helper()
	md, err := e.party.OAuth.Metadata(context.Background(), e.dir[uraHolder+" "+PayloadAuthServer])
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.party.OAuth.Token(context.Background(), md.TokenEndpoint, oauth.TokenRequest{GrantType: GrantTypeJWT,
		Scope: []string{ApplicationBgZ}, Resource: resource, AssertionClaims: map[string]any{
			plateau.ClaimUserID: userUZI, plateau.ClaimUserIDSystem: SystemUZIPerson,
			plateau.ClaimUserRole: userRole, plateau.ClaimUserRoleSystem: SystemUZIRole, AssertionRequesterType: requesterType}})
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// get fetches u with the token as the requester; it returns the status and body.
func (e *env) get(t testing.TB, token, u string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := e.party.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b
}

// bgzOnly is the registry of a node that consults and answers BgZ.
var bgzOnly = func() *careapp.Registry {
	r, err := careapp.NewRegistry(bgz.New())
	if err != nil {
		panic(err)
	}
	return r
}()
