package network

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/identity"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// unreachableOrg has an agreement with both nodes but no endpoint
// anywhere: not configured, not in the addressbook.
var unreachableOrg = Participant{URA: "90000008", Name: "Zorggroep Onvindbaar"}

// TestGrowthModelMatrix: the growth model's 8 generic functions × 4
// plateaus between the GP practice and the hospital. One network per
// plateau, every function agreed at it: RunAtPlateau (a Notified Pull and
// a Direct Pull) is each function's positive case, with its evidence; then
// per function a request that lacks what the plateau demands is refused
// with a reason naming the function and the plateau.
func TestGrowthModelMatrix(t *testing.T) {
	for n := plateau.Lowest; n <= plateau.Highest; n++ {
		t.Run(fmt.Sprintf("plateau %d", n), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			// The peer's certificate from a CA no node trusts, pinned
			// bilaterally for the peer (network plateau 1–2's way), and one
			// from the same CA that nobody pinned.
			pinned, unpinned, pin := foreignCerts(t)
			nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 2, Plateau: n, Agreements: []plateau.PartnerConfig{
				{URA: peerURA, Name: "Testpraktijk", Plateaus: plateau.Uniform(n)},
				{URA: unreachableOrg.URA, Name: unreachableOrg.Name, Plateaus: plateau.Uniform(n)},
			}, trust: func(tc *pki.TrustConfig) {
				tc.Pinned = append(tc.Pinned, pki.PinConfig{Name: "Testpraktijk (bilateral)", URA: peerURA, SHA256: pin})
			}})
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			nw.Start(ctx)
			t.Cleanup(func() { cancel(); _ = nw.Wait() })

			run, err := nw.RunAtPlateau(ctx)
			if err != nil {
				t.Fatalf("the exchange at plateau %d: %v", n, err)
			}
			reports := map[plateau.Function]FunctionReport{}
			for _, f := range run.Functions {
				reports[f.Function] = f
			}
			for _, f := range plateau.Functions {
				t.Run(string(f)+"/positive", func(t *testing.T) {
					r, ok := reports[f]
					if !ok || r.Plateau != n || r.Sent == "" || r.Checked == "" {
						t.Fatalf("no evidence of %s at plateau %d: %+v", f, n, r)
					}
					positive(t, nw, f, n, r)
				})
			}
			p := newPeer(t, nw)
			p.pinned, p.unpinned = pinned, unpinned
			for _, f := range plateau.Functions {
				t.Run(string(f)+"/negative", func(t *testing.T) {
					reason := negative(t, nw, p, f, n)
					t.Logf("refused: %s", reason)
					if f == plateau.Network && n <= 2 {
						// Refused in the TLS handshake: the connection
						// never reaches a node that could name a plateau.
						// In TLS 1.3 the client's side of the handshake
						// ends before the server checks its certificate,
						// so the client may learn of the refusal as the
						// server's alert or, writing its request as the
						// server closes, as a broken connection.
						if !strings.Contains(reason, "tls: ") && !strings.Contains(reason, "broken pipe") &&
							!strings.Contains(reason, "connection reset by peer") {
							t.Errorf("an untrusted certificate at network plateau %d: %q, want a TLS refusal", n, reason)
						}
						return
					}
					if !namesPlateau(reason, f, n) {
						t.Errorf("the refusal does not name %s at plateau %d: %q", f, n, reason)
					}
				})
			}
		})
	}
}

// namesPlateau reports whether a refusal's reason names the function and
// the plateau, in either of the Refusal's forms.
func namesPlateau(reason string, f plateau.Function, n int) bool {
	return strings.Contains(reason, fmt.Sprintf("%s, plateau %d", f, n)) ||
		strings.Contains(reason, fmt.Sprintf("%s: plateau %d required", f, n)) ||
		strings.Contains(reason, fmt.Sprintf("%s is agreed at plateau %d", f, n))
}

// positive checks what the run's evidence must show per function.
func positive(t *testing.T, nw *Network, f plateau.Function, n int, r FunctionReport) {
	t.Helper()
	switch f {
	case plateau.Authentication:
		if !strings.Contains(r.Checked, fmt.Sprintf("authentication plateau %d", n)) {
			t.Errorf("token audit record: %q", r.Checked)
		}
		if n == 4 && !strings.Contains(r.Checked, "user identity signed by the identity issuer") {
			t.Errorf("at plateau 4 the audit record shows no signed user identity: %q", r.Checked)
		}
	case plateau.Consent:
		want := map[int]string{1: "plateau 1 local registry: Permit", 2: "plateau 2 regional portal", 3: "plateau 3 Mitz", 4: "plateau 4 Mitz"}[n]
		if !strings.Contains(r.Checked, want) {
			t.Errorf("consent decided %q, want %q", r.Checked, want)
		}
	case plateau.Authorization:
		if !strings.Contains(r.Checked, fmt.Sprintf("authorization %d", n)) || !strings.Contains(r.Checked, DemoUser.Role) {
			t.Errorf("authorization evidence %q", r.Checked)
		}
	case plateau.Identification:
		if n >= 3 && !strings.Contains(r.Checked, "verified at the service") {
			t.Errorf("identification evidence %q", r.Checked)
		}
	case plateau.Logging:
		if n >= 3 && (nw.CentralLog() == nil || !strings.Contains(r.Checked, "central log holds")) {
			t.Errorf("logging evidence %q", r.Checked)
		}
		if n <= 2 && !strings.Contains(r.Checked, "records verified") {
			t.Errorf("logging evidence %q", r.Checked)
		}
	case plateau.Addressing:
		// At 1–2 the two found each other by their agreement: neither is
		// in the addressbook, and the exchange went through all the same.
		page, err := nw.dirStore.Search(context.Background(), "addressbook", store.Query{Type: "Organization",
			Params: url.Values{"identifier": {"http://fhir.nl/fhir/NamingSystem/ura|" + GP.URA}}})
		if err != nil {
			t.Fatal(err)
		}
		listed := page.Total > 0
		if (n <= 2) == listed {
			t.Errorf("addressing plateau %d: GP practice listed in the addressbook: %v", n, listed)
		}
	}
}

// negative makes a request that lacks function f's plateau-n requirement
// and returns the reason it was refused with.
func negative(t *testing.T, nw *Network, p *peer, f plateau.Function, n int) string {
	t.Helper()
	ctx := context.Background()
	strong := &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}
	switch f {
	case plateau.Identification:
		// A BSN the sender cannot stand for at this plateau: one that
		// fails the 11-proef (1–2), one the BRP does not know (3–4).
		bsn := "123456789"
		if n >= 3 {
			bsn = unregisteredBSN
			patient := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn +
				`"}],"name":[{"family":"Onbekend"}],"birthDate":"1980-01-01"}`
			if _, err := nw.GPNode.Store().Create(ctx, GP.URA, []byte(patient)); err != nil {
				t.Fatal(err)
			}
		}
		code, detail := problem(t, nw, GP.URA, "/internal/referrals",
			notifiedpull.ReferRequest{PatientBSN: bsn, ReceiverURA: Hospital.URA, Application: "bgz"})
		if code < 400 {
			t.Fatalf("referral of BSN %s: status %d", bsn, code)
		}
		return detail
	case plateau.Authentication:
		if n == 1 {
			// A signed identity is never ignored: one from an issuer the GP
			// does not trust is refused even where plateau 1 asks for none.
			return rogueIdentity(t, nw, p)
		}
		// No strong login: short of plateau 2 already; the hospital's node
		// refuses before anything leaves.
		code, detail := consultRaw(t, nw, &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role})
		if code != http.StatusUnprocessableEntity {
			t.Fatalf("consult without a strong login: %d %q", code, detail)
		}
		return detail
	case plateau.Authorization:
		if n == 1 {
			// The bilateral list of who may ask for what: a read the BgZ
			// policy has no rule for.
			return policyless(t, nw, p)
		}
		// An insurance physician: no BgZ under the plateau's role tables.
		return refusedQueries(t, nw, nw.Patients[0].BSN, &plateau.Caller{ID: DemoUser.UZI, Role: "01.048", LoA: DemoUser.LoA})
	case plateau.Consent:
		if n == 2 || n == 4 {
			// At localization 2 and 4 a patient without consent is never
			// localized, so the hospital's node would not ask. The demo
			// patient is, since the run: the patient now objects at the
			// consent source, and another specialist of the hospital (not
			// in the GP node's short consent cache) consults with the hit
			// the run left.
			st := nw.consent.Store()
			if n == 2 {
				st = nw.portal.Store()
			}
			if _, err := st.Register(ctx, consent.Registration{PatientBSN: nw.Patients[0].BSN, Effect: consent.Deny, HolderURA: GP.URA,
				Source: "matrix test", RegisteredBy: GP.URA}); err != nil {
				t.Fatal(err)
			}
			return refusedQueries(t, nw, nw.Patients[0].BSN, &plateau.Caller{ID: "900054321", Role: DemoUser.Role, LoA: DemoUser.LoA})
		}
		// The second patient consented nowhere.
		return refusedQueries(t, nw, nw.Patients[1].BSN, strong)
	case plateau.Localization:
		switch n {
		case 1:
			// Plateau 1 consults partners only.
			code, detail := problem(t, nw, Hospital.URA, "/internal/consult", consult.Request{PatientBSN: nw.Patients[0].BSN,
				HolderURA: "90000009", User: strong})
			if code != http.StatusForbidden {
				t.Fatalf("consult of a non-partner: %d %q", code, detail)
			}
			return detail
		case 3:
			// A direct query is allowed, but a hit presented must hold.
			return tokenRefusal(t, nw, p, map[string]any{"localization_hit": "a.b.c", "localization_salt": "AAAAAAAAAAAAAAAAAAAAAA"})
		}
		// The holder's side: a Direct Pull without a localization hit.
		return tokenRefusal(t, nw, p, nil)
	case plateau.Addressing:
		code, detail := problem(t, nw, GP.URA, "/internal/referrals",
			notifiedpull.ReferRequest{PatientBSN: nw.Patients[0].BSN, ReceiverURA: unreachableOrg.URA, Application: "bgz"})
		if code < 400 {
			t.Fatalf("referral to an organisation without endpoints: status %d", code)
		}
		return detail
	case plateau.Logging:
		if n >= 3 {
			// A node at logging 3–4 without a central log does not start.
			cfg := nodeConfigFile(t, nw, "gp-node")
			cfg.Audit.Central.URL = ""
			err := cfg.Validate()
			if err == nil {
				t.Fatal("a node at logging plateau 3 without audit.central.url validates")
			}
			return err.Error()
		}
		// The export gives a partner its own requests only.
		code, detail := exportFor(t, p, nw.GPNode.PublicURL(), Hospital.URA)
		if code != http.StatusForbidden {
			t.Fatalf("export of another organisation's requests: %d %q", code, detail)
		}
		return detail
	case plateau.Network:
		if n >= 3 {
			// A bilaterally pinned certificate is plateau 2's way; at 3–4
			// only the CA route counts.
			return tokenRefusalOver(t, nw, p, p.pinned)
		}
		// At 1–2 mutual TLS as agreed: a certificate neither pinned for
		// the peer nor under a trusted CA does not get a connection.
		return tlsRefusal(t, nw, p, p.unpinned)
	}
	t.Fatalf("no negative case for %s", f)
	return ""
}

// problem calls an internal API of ura's node and returns the status and
// the problem's detail.
func problem(t *testing.T, nw *Network, ura, path string, in any) (int, string) {
	t.Helper()
	x := &xis{base: nw.internalURLs[ura], token: nw.Token(ura), http: http.DefaultClient}
	err := x.do(context.Background(), http.MethodPost, path, in, nil)
	if err == nil {
		return http.StatusOK, ""
	}
	var code int
	fmt.Sscanf(err.Error()[strings.Index(err.Error(), ": ")+2:], "%d", &code)
	return code, err.Error()
}

// refusedQueries consults the GP for bsn as user and returns the holder's
// reason for the first refused query; every query must be refused.
func refusedQueries(t *testing.T, nw *Network, bsn string, user *plateau.Caller) string {
	t.Helper()
	var res consult.Result
	if code := internal(t, nw.HospNode, nw.Token(Hospital.URA), http.MethodPost, "/internal/consult",
		consult.Request{PatientBSN: bsn, HolderURA: GP.URA, User: user}, &res); code != http.StatusOK {
		t.Fatalf("consult: status %d", code)
	}
	if res.Resources != 0 || len(res.Queries) == 0 {
		t.Fatalf("consult: %d resources", res.Resources)
	}
	for _, q := range res.Queries {
		if q.Status != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", q.Block, q.Status)
		}
	}
	return res.Queries[0].Outcome
}

// tokenRefusal is the peer asking the GP for a Direct Pull token with the
// given extra grant-assertion claims; it must be refused.
func tokenRefusal(t *testing.T, nw *Network, p *peer, extra map[string]any) string {
	t.Helper()
	claims := matrixUser(t, nw, p)
	claims[consult.AssertionRequesterType] = "Z1"
	for k, v := range extra {
		claims[k] = v
	}
	base := nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA
	_, err := p.oauth.Token(context.Background(), tokenEndpoint(t, p, nw.GPNode.PublicURL()), oauth.TokenRequest{
		GrantType: notifiedpull.GrantTypeJWT, Scope: []string{"bgz"}, Resource: base, AssertionClaims: claims})
	var er *oauth.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("token: %v, want a refusal", err)
	}
	return er.Description
}

// tokenRefusalOver is tokenRefusal over a connection with cert.
func tokenRefusalOver(t *testing.T, nw *Network, p *peer, cert tls.Certificate) string {
	t.Helper()
	over := *p
	over.http = &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}
	t.Cleanup(over.http.CloseIdleConnections)
	over.oauth = &oauth.Client{ClientID: p.ura, Key: p.signing, HTTP: over.http}
	return tokenRefusal(t, nw, &over, nil)
}

// tlsRefusal is the peer asking the GP for a token over a connection with
// cert, which the GP's node must refuse in the TLS handshake.
func tlsRefusal(t *testing.T, nw *Network, p *peer, cert tls.Certificate) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}
	defer hc.CloseIdleConnections()
	_, err := (&oauth.Client{ClientID: p.ura, Key: p.signing, HTTP: hc}).Token(context.Background(), tokenEndpoint(t, p, nw.GPNode.PublicURL()),
		oauth.TokenRequest{GrantType: notifiedpull.GrantTypeJWT, Scope: []string{"bgz"}, Resource: nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA,
			AssertionClaims: matrixUser(t, nw, p)})
	var er *oauth.ErrorResponse
	if err == nil || errors.As(err, &er) {
		t.Fatalf("an untrusted certificate got past the TLS handshake: %v", err)
	}
	return err.Error()
}

// foreignCerts issues two certificates for the peer's URA under a CA of
// its own, which no node trusts, and gives the first one's pin (x5t#S256).
func foreignCerts(t *testing.T) (pinned, unpinned tls.Certificate, pin string) {
	t.Helper()
	ca, err := pki.NewCA("Testpraktijk eigen CA", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []*tls.Certificate{&pinned, &unpinned} {
		if *c, err = ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: fmt.Sprintf("90000003%d", 4+i), URA: peerURA, AGB: "01000003"},
			CommonName: "Testpraktijk"}); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(pinned.Certificate[0])
	return pinned, unpinned, base64.RawURLEncoding.EncodeToString(sum[:])
}

// matrixUser is the peer's user as the agreement's authentication plateau
// asks: organisation-signed claims, and at plateau 4 the identity the
// network's identity issuer signs for the peer.
func matrixUser(t *testing.T, nw *Network, p *peer) map[string]any {
	t.Helper()
	claims := userClaims(DemoUser.Role)
	if nw.agreement(Hospital).Plateaus[plateau.Authentication] < 4 {
		return claims
	}
	iss, err := pki.LoadOrCreateIdentityIssuer(filepath.Join(nw.opts.DataDir, "pki"), nw.CA)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := (&identity.Signer{Issuer: nw.IdentityIssuerURL(), Key: iss.Key}).IssueIdentity(context.Background(), plateau.IdentityRequest{
		UZI: DemoUser.UZI, Role: DemoUser.Role, URA: p.ura, LoA: DemoUser.LoA, Audience: tokenEndpoint(t, p, nw.GPNode.PublicURL())})
	if err != nil {
		t.Fatal(err)
	}
	claims["user_identity"] = tok
	return claims
}

// rogueIdentity is the peer presenting a user identity signed by an
// issuer the GP does not trust.
func rogueIdentity(t *testing.T, nw *Network, p *peer) string {
	t.Helper()
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "rogue.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := (&identity.Signer{Issuer: "https://rogue.example", Key: key}).IssueIdentity(context.Background(), plateau.IdentityRequest{
		UZI: DemoUser.UZI, Role: DemoUser.Role, URA: p.ura, LoA: DemoUser.LoA, Audience: tokenEndpoint(t, p, nw.GPNode.PublicURL())})
	if err != nil {
		t.Fatal(err)
	}
	claims := userClaims(DemoUser.Role)
	claims["user_identity"] = tok
	base := nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA
	_, err = p.oauth.Token(context.Background(), tokenEndpoint(t, p, nw.GPNode.PublicURL()), oauth.TokenRequest{
		GrantType: notifiedpull.GrantTypeJWT, Scope: []string{"bgz"}, Resource: base, AssertionClaims: claims})
	var er *oauth.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("token with a rogue identity: %v, want a refusal", err)
	}
	audited := false
	recs, _ := nw.GPNode.Audit().List(context.Background(), audit.Filter{ActorURA: p.ura})
	for _, r := range recs {
		audited = audited || (r.Interaction == "token" && r.Outcome >= 400 && strings.Contains(r.OutcomeText, "identity issuer"))
	}
	if !audited {
		t.Error("the refused identity is not in the GP's audit log")
	}
	return er.Description
}

// policyless is the peer reading the GP practice's Patient directly with
// a Direct Pull token: no rule of the BgZ policy allows a read.
func policyless(t *testing.T, nw *Network, p *peer) string {
	t.Helper()
	claims := matrixUser(t, nw, p)
	claims[consult.AssertionRequesterType] = "Z1"
	base := nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA
	tok, err := p.oauth.Token(context.Background(), tokenEndpoint(t, p, nw.GPNode.PublicURL()), oauth.TokenRequest{
		GrantType: notifiedpull.GrantTypeJWT, Scope: []string{"bgz"}, Resource: base, AssertionClaims: claims})
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	code, body := p.get(t, p.http, tok.AccessToken, base+"/Patient/1")
	if code != http.StatusForbidden || !isOutcome(body) {
		t.Fatalf("a read outside the policy: %d %s", code, body)
	}
	return string(body)
}

// exportFor asks node base for the audit export of another organisation's
// requests, as the peer.
func exportFor(t *testing.T, p *peer, base, agent string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+audit.ExportPath+"?agent="+agent, nil)
	code, body := do(t, p.http, req)
	return code, string(body)
}

// nodeConfigFile reads the configuration network up wrote for a node.
func nodeConfigFile(t *testing.T, nw *Network, name string) node.Config {
	t.Helper()
	k := koanf.New(".")
	if err := k.Load(file.Provider(filepath.Join(nw.opts.DataDir, name, "node.yaml")), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	var cfg node.Config
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		t.Fatal(err)
	}
	return cfg
}
