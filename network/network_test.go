package network

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// startNetwork brings a network up on 127.0.0.1 and stops it at cleanup.
func startNetwork(t testing.TB, patients int, agreements ...plateau.PartnerConfig) *Network {
	t.Helper()
	if agreements == nil {
		// The test peer (see newPeer) is a plateau-1 partner of both nodes.
		agreements = []plateau.PartnerConfig{{URA: peerURA, Name: "Testpraktijk", Plateaus: plateau.Uniform(1)}}
	}
	return upNetwork(t, Options{Patients: patients, Agreements: agreements})
}

// upNetwork brings up the network opts describes (in t's temporary
// directory unless opts.DataDir is set), starts it, and stops it when t
// ends; a network that stops with an error fails t.
func upNetwork(t testing.TB, opts Options) *Network {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() {
		cancel()
		if err := nw.Wait(); err != nil {
			t.Errorf("network stopped with: %v", err)
		}
	})
	return nw
}

func TestExchangeEndToEnd(t *testing.T) {
	nw := startNetwork(t, 2)
	ctx := context.Background()
	s, err := nw.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != notifiedpull.StatusCompleted || s.Sender != notifiedpull.StatusCompleted {
		t.Fatalf("statuses: receiver %s, sender %s", s.Status, s.Sender)
	}
	blocks := bgz.Queries()
	if len(s.Results) != len(blocks) {
		t.Fatalf("%d query results, want one per BgZ block (%d)", len(s.Results), len(blocks))
	}
	for _, r := range s.Results {
		if r.Matches == 0 {
			t.Errorf("block %s: no matches", r.Block)
		}
	}
	if s.Resources["Patient"] != 1 {
		t.Errorf("pulled %d Patients, want exactly the referred one", s.Resources["Patient"])
	}
	if s.Resources["OperationOutcome"] != 0 {
		t.Errorf("pulled data contains OperationOutcomes: the searches were not fully understood")
	}

	// Both sides audited the access to the patient's data.
	gpLog, err := nw.GPNode.Audit().List(ctx, audit.Filter{Patient: s.Patient})
	if err != nil {
		t.Fatal(err)
	}
	searches := 0
	for _, r := range gpLog {
		if r.Interaction == "search-type" || r.Interaction == "operation" {
			searches++
			if r.ActorURA != Hospital.URA || r.Outcome != http.StatusOK {
				t.Errorf("sender audit record: actor %s outcome %d", r.ActorURA, r.Outcome)
			}
			// The protocols applied and the checks performed (NEN 7513).
			checks := strings.Join(r.Checks, "; ")
			for _, want := range []string{"mtls:", "token-binding:", `plateau: agreement "Ziekenhuis Rijnstroom"`, "policy: care application bgz", "referral:"} {
				if !strings.Contains(checks, want) {
					t.Errorf("sender audit record of %s: checks %q lack %q", r.Query, checks, want)
				}
			}
			if r.Sensitivity != "N" || r.AuthzProtocol == "" || r.PurposeOfUse != "TREAT" {
				t.Errorf("sender audit record: sensitivity %q, protocol %q, purpose %q", r.Sensitivity, r.AuthzProtocol, r.PurposeOfUse)
			}
		}
	}
	if searches != len(blocks) {
		t.Errorf("sender audited %d searches, want %d", searches, len(blocks))
	}
	hospLog, err := nw.HospNode.Audit().List(ctx, audit.Filter{Patient: s.Patient})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, r := range hospLog {
		kinds[r.Interaction] = true
	}
	for _, k := range []string{"notify", "pull", "read"} {
		if !kinds[k] {
			t.Errorf("receiver audit has no %q record (has %v)", k, kinds)
		}
	}
	// The other demo patient's data did not travel.
	other := nw.Patients[1].BSN
	if recs, _ := nw.HospNode.Audit().List(ctx, audit.Filter{Patient: other}); len(recs) != 0 {
		t.Errorf("receiver has audit records for a patient that was not referred")
	}
}

func TestInternalAPIAuthentication(t *testing.T) {
	nw := startNetwork(t, 1)
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "not-a-token-of-anyone", http.StatusUnauthorized},
		{"another node's participant token", nw.Token(Hospital.URA), http.StatusUnauthorized},
		{"own token", nw.Token(GP.URA), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, nw.GPNode.InternalURL()+"/internal/referrals", nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestTLSHandshakeRefused(t *testing.T) {
	nw := startNetwork(t, 1)
	other, err := pki.NewCA("Unknown CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, err := other.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000044", URA: "90000004", AGB: "01000004"}})
	if err != nil {
		t.Fatal(err)
	}
	roots := pki.CertPool(nw.CA.Cert)
	host := strings.TrimPrefix(nw.GPNode.PublicURL(), "https://")
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no client certificate", nil},
		{"certificate from an unknown CA", []tls.Certificate{strangerCert}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13, Certificates: tc.certs})
			if err == nil {
				// TLS 1.3: the server's verdict on the client certificate arrives with the first read.
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = conn.Write([]byte("GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n"))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if err == nil {
				t.Fatal("the node accepted the connection")
			}
		})
	}
}

// peer is a GtK the test controls: it can receive notifications from the
// GP node and act as the receiver towards it, with its own certificate,
// signing key and authorization server, registered in the addressbook.
type peer struct {
	ura     string
	srv     *httptest.Server
	cert    tls.Certificate
	signing jwk.Key
	http    *http.Client
	oauth   *oauth.Client
	notes   chan []byte
	// pinned and unpinned are certificates for the peer's URA from a CA no
	// node trusts, the first pinned bilaterally (TestGrowthModelMatrix).
	pinned, unpinned tls.Certificate
}

const peerURA = "90000003"

func newPeer(t testing.TB, nw *Network) *peer {
	t.Helper()
	p := &peer{ura: peerURA, notes: make(chan []byte, 4)}
	var err error
	p.cert, err = nw.CA.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000033", URA: peerURA, AGB: "01000003"},
		CommonName: "Testpraktijk", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	if p.signing, err = pki.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "peer.pem")); err != nil {
		t.Fatal(err)
	}
	asKey, err := pki.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "peer-as.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := pki.CertPool(nw.CA.Cert)
	p.http = &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(p.cert, roots)}}
	p.oauth = &oauth.Client{ClientID: peerURA, Key: p.signing, HTTP: p.http}
	p.srv = httptest.NewUnstartedServer(nil)
	p.srv.TLS = pki.ServerTLSConfig(p.cert, roots)
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	as, err := oauth.NewServer(oauth.ServerConfig{
		Issuer: p.srv.URL, SigningKey: asKey, PeerURA: pki.PeerURA,
		Clients: clientKeysFunc(func(ctx context.Context, clientID string) (jwk.Set, error) {
			from := nw.GPNode
			if clientID == Hospital.URA {
				from = nw.HospNode // the hospital notifies the peer (eOverdracht)
			}
			resp, err := p.http.Get(from.PublicURL() + "/jwks/" + clientID)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return jwk.Parse(b)
		}),
		Grants: oauth.GrantResolverFunc(func(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
			return oauth.Grant{Audience: p.srv.URL, Scope: req.Scope, Subject: req.ClientID}, nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	as.Routes(mux)
	mux.HandleFunc("GET /jwks/"+peerURA, func(w http.ResponseWriter, r *http.Request) {
		set, _ := pki.PublicJWKS(p.signing)
		_ = json.NewEncoder(w).Encode(set)
	})
	mux.HandleFunc("POST /fhir/stu3/"+peerURA+"/Task", func(w http.ResponseWriter, r *http.Request) {
		if _, err := as.Verify(r, p.srv.URL); err != nil {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		p.notes <- b
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("PUT /fhir/stu3/"+peerURA+"/Task", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	p.srv.Config.Handler = mux
	base := p.srv.URL + "/fhir/stu3/" + peerURA
	if err := nw.Addressbook().Load(context.Background(), addressbook.Entry{ID: "org-" + peerURA, URA: peerURA, Name: "Testpraktijk",
		Endpoints: []addressbook.EndpointSpec{
			{ID: "ep-peer-n", PayloadType: addressbook.PayloadNotification, Address: base + "/Task", FHIRVersion: "3.0"},
			{ID: "ep-peer-bgz", PayloadType: addressbook.PayloadBgZServer, Address: base, FHIRVersion: "3.0"},
			{ID: "ep-peer-as", PayloadType: addressbook.PayloadAuthServer, Address: p.srv.URL},
			{ID: "ep-peer-jwks", PayloadType: addressbook.PayloadClientJWKS, Address: p.srv.URL + "/jwks/" + peerURA},
		}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// internal calls a node's internal API as a participant's system.
func internal(t *testing.T, n *node.Node, token, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.InternalURL()+path, body)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// referToPeer makes the GP refer a demo patient to the peer and returns the
// notification the peer received.
func referToPeer(t *testing.T, nw *Network, p *peer, patient int) (node.Referral, notifiedpull.Notification) {
	t.Helper()
	var ref node.Referral
	if code := internal(t, nw.GPNode, nw.Token(GP.URA), http.MethodPost, "/internal/referrals",
		notifiedpull.ReferRequest{PatientBSN: nw.Patients[patient].BSN, ReceiverURA: peerURA, Application: "bgz"}, &ref); code != http.StatusCreated {
		t.Fatalf("refer: status %d", code)
	}
	select {
	case raw := <-p.notes:
		n, err := notifiedpull.ParseNotification(raw, time.Now())
		if err != nil {
			t.Fatalf("the GP sent a notification that breaks the agreement: %v", err)
		}
		return ref, n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification arrived")
	}
	panic("unreachable")
}

func (p *peer) dataToken(t *testing.T, nw *Network, authBase string) (*oauth.Token, error) {
	t.Helper()
	md, err := p.oauth.Metadata(context.Background(), nw.GPNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	return p.oauth.Token(context.Background(), md.TokenEndpoint, oauth.TokenRequest{
		GrantType: notifiedpull.GrantTypeJWT, Scope: []string{"bgz"}, AuthorizationBase: authBase})
}

func (p *peer) get(t *testing.T, client *http.Client, token, u string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func isOutcome(b []byte) bool {
	var oo struct{ ResourceType string }
	return json.Unmarshal(b, &oo) == nil && oo.ResourceType == "OperationOutcome"
}

func TestDataAccessLimitedToReferral(t *testing.T) {
	nw := startNetwork(t, 2)
	p := newPeer(t, nw)
	ref, note := referToPeer(t, nw, p, 0)
	tok, err := p.dataToken(t, nw, note.AuthorizationBase)
	if err != nil {
		t.Fatal(err)
	}
	base := nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA
	bsn, otherBSN := nw.Patients[0].BSN, nw.Patients[1].BSN
	condition := bgz.Queries()[5] // Problem
	if !strings.HasPrefix(condition.Template, "Condition?") {
		t.Fatalf("block order changed: %s", condition.Template)
	}
	hospital := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(mustLoadCert(t, nw, "hospital-node"), pki.CertPool(nw.CA.Cert))}}

	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		want   int
	}{
		{"workflow Task", p.http, note.WorkflowTask, http.StatusOK},
		{"a query of the workflow Task", p.http, base + "/" + condition.Query(bsn), http.StatusOK},
		{"the same query for another patient", p.http, base + "/" + condition.Query(otherBSN), http.StatusForbidden},
		{"a query not in the workflow Task", p.http, base + "/Observation?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + bsn, http.StatusForbidden},
		{"a direct read", p.http, base + "/Patient/" + nw.Patients[0].BSN, http.StatusForbidden},
		{"the token with another client certificate", hospital, base + "/" + condition.Query(bsn), http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := p.get(t, tc.client, tok.AccessToken, tc.url)
			if code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, body)
			}
			if code >= 400 && !isOutcome(body) {
				t.Errorf("refusal is not an OperationOutcome: %s", body)
			}
		})
	}

	// A wrong authorization base gets no token.
	if _, err := p.dataToken(t, nw, "not-the-secret"); !isOAuthError(err, "invalid_grant") {
		t.Errorf("wrong authorization_base: %v, want invalid_grant", err)
	}

	// After the sender withdraws the referral: no new token, the old one is refused.
	if code := internal(t, nw.GPNode, nw.Token(GP.URA), http.MethodPost, "/internal/referrals/"+url.PathEscape(ref.ID)+"/cancel", nil, nil); code != http.StatusOK {
		t.Fatalf("cancel: status %d", code)
	}
	if code, body := p.get(t, p.http, tok.AccessToken, base+"/"+condition.Query(bsn)); code != http.StatusForbidden || !isOutcome(body) {
		t.Errorf("after cancellation: status %d, want 403 OperationOutcome", code)
	}
	if _, err := p.dataToken(t, nw, note.AuthorizationBase); !isOAuthError(err, "invalid_grant") {
		t.Errorf("token after cancellation: %v, want invalid_grant", err)
	}

	// Every refusal is in the sender's audit log.
	recs, err := nw.GPNode.Audit().List(context.Background(), audit.Filter{Tenant: GP.URA})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, r := range recs {
		if r.ActorURA == peerURA && r.Outcome == http.StatusForbidden {
			refused++
		}
	}
	if refused < 4 {
		t.Errorf("%d refusals audited, want at least 4", refused)
	}
}

func mustLoadCert(t *testing.T, nw *Network, nodeName string) tls.Certificate {
	t.Helper()
	dir := filepath.Join(nw.opts.DataDir, nodeName, "tls")
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func isOAuthError(err error, code string) bool {
	var er *oauth.ErrorResponse
	return errors.As(err, &er) && er.Code == code
}

func TestTokenRequestsRefused(t *testing.T) {
	nw := startNetwork(t, 1)
	p := newPeer(t, nw)
	_, note := referToPeer(t, nw, p, 0)
	md, err := p.oauth.Metadata(context.Background(), nw.GPNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	good := func() url.Values {
		f, err := p.oauth.TokenForm(md.TokenEndpoint, oauth.TokenRequest{GrantType: notifiedpull.GrantTypeJWT,
			Scope: []string{"bgz"}, AuthorizationBase: note.AuthorizationBase})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": peerURA, "sub": peerURA, "aud": md.TokenEndpoint, "iat": now.Unix(),
			"exp": now.Add(time.Minute).Unix(), "jti": fmt.Sprintf("t-%d", time.Now().UnixNano())}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(c map[string]any) string {
		b, _ := json.Marshal(c)
		hdr := jws.NewHeaders()
		kid, _ := p.signing.KeyID()
		_ = hdr.Set(jws.KeyIDKey, kid)
		s, err := jws.Sign(b, jws.WithKey(jwa.ES256(), p.signing, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(s)
	}
	unsigned := func(alg string, c map[string]any) string {
		h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
		b, _ := json.Marshal(c)
		enc := base64.RawURLEncoding.EncodeToString
		return enc(h) + "." + enc(b) + "."
	}
	replayed := good()

	for _, tc := range []struct {
		name string
		form func() url.Values
		code string
	}{
		{"valid request", func() url.Values { return replayed }, ""},
		{"replayed jti", func() url.Values { return replayed }, "invalid_client"},
		{"wrong aud", func() url.Values {
			f := good()
			f.Set("client_assertion", sign(claims(func(c map[string]any) { c["aud"] = "https://elsewhere.example/token" })))
			return f
		}, "invalid_client"},
		{"expired", func() url.Values {
			f := good()
			f.Set("client_assertion", sign(claims(func(c map[string]any) {
				c["iat"], c["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-9*time.Minute).Unix()
			})))
			return f
		}, "invalid_client"},
		{"bad signature", func() url.Values {
			f := good()
			a := sign(claims(nil))
			f.Set("client_assertion", a[:len(a)-4]+"AAAA")
			return f
		}, "invalid_client"},
		{"alg none", func() url.Values {
			f := good()
			f.Set("client_assertion", unsigned("none", claims(nil)))
			return f
		}, "invalid_client"},
		{"HS256 with the public key", func() url.Values {
			f := good()
			pub, _ := p.signing.PublicKey()
			pubJSON, _ := json.Marshal(pub)
			b, _ := json.Marshal(claims(nil))
			s, err := jws.Sign(b, jws.WithKey(jwa.HS256(), pubJSON))
			if err != nil {
				t.Fatal(err)
			}
			f.Set("client_assertion", string(s))
			return f
		}, "invalid_client"},
		{"wrong authorization_base", func() url.Values {
			f := good()
			f.Set("authorization_base", "guessed")
			return f
		}, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := p.http.PostForm(md.TokenEndpoint, tc.form())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error       string `json:"error"`
				AccessToken string `json:"access_token"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if tc.code == "" {
				if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
					t.Fatalf("status %d error %q, want a token", resp.StatusCode, body.Error)
				}
				return
			}
			if body.Error != tc.code || body.AccessToken != "" {
				t.Errorf("status %d error %q token %v, want %s and no token", resp.StatusCode, body.Error, body.AccessToken != "", tc.code)
			}
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 400 or 401", resp.StatusCode)
			}
		})
	}
	// Every refusal is in the GP node's audit log, with its reason.
	recs, err := nw.GPNode.Audit().List(context.Background(), audit.Filter{ActorURA: peerURA})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, r := range recs {
		if r.Interaction == "token" && r.Outcome >= 400 && r.OutcomeText != "" {
			refused++
		}
	}
	if refused != 7 {
		t.Errorf("%d refused token requests audited, want 7", refused)
	}
}

func TestNotificationsRefused(t *testing.T) {
	nw := startNetwork(t, 1)
	p := newPeer(t, nw)
	ctx := context.Background()
	md, err := p.oauth.Metadata(ctx, nw.HospNode.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.oauth.Token(ctx, md.TokenEndpoint, oauth.TokenRequest{GrantType: notifiedpull.GrantTypeClient, Scope: []string{notifiedpull.ScopeNotify}})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := nw.HospNode.PublicURL() + "/fhir/stu3/" + Hospital.URA + "/Task"
	valid := func() notifiedpull.NotificationSpec {
		return notifiedpull.NotificationSpec{Identifier: "urn:uuid:0b8a6f0e-1111-4222-8333-944455556666", GroupIdentifier: "urn:uuid:0b8a6f0e-1111-4222-8333-944455556667",
			PatientBSN: "999911259", SenderURA: peerURA, SenderSystem: "900000033", ReceiverURA: Hospital.URA,
			WorkflowTask: p.srv.URL + "/fhir/stu3/" + peerURA + "/Task/1", AuthBase: "secret", Expires: time.Now().Add(time.Hour), Authored: time.Now()}
	}
	build := func(mod func(*notifiedpull.NotificationSpec)) []byte {
		s := valid()
		mod(&s)
		return notifiedpull.BuildNotification(s)
	}
	withoutInput := func(code string) []byte {
		var m map[string]any
		_ = json.Unmarshal(notifiedpull.BuildNotification(valid()), &m)
		var keep []any
		for _, in := range m["input"].([]any) {
			if !strings.Contains(fmt.Sprint(in), code) {
				keep = append(keep, in)
			}
		}
		m["input"] = keep
		b, _ := json.Marshal(m)
		return b
	}
	countStored := func() int {
		page, err := nw.HospNode.Store().Search(ctx, Hospital.URA, store.Query{Type: "Task", Params: url.Values{}})
		if err != nil {
			t.Fatal(err)
		}
		return page.Total
	}
	before := countStored()
	for _, tc := range []struct {
		name string
		body []byte
		want int
	}{
		{"malformed JSON", []byte(`{"resourceType": "Task", "status": `), http.StatusBadRequest},
		{"invalid BSN", build(func(s *notifiedpull.NotificationSpec) { s.PatientBSN = "123456789" }), http.StatusBadRequest},
		{"unknown owner URA", build(func(s *notifiedpull.NotificationSpec) { s.ReceiverURA = "90000005" }), http.StatusUnprocessableEntity},
		{"sender URA is not the certificate's", build(func(s *notifiedpull.NotificationSpec) { s.SenderURA = GP.URA }), http.StatusForbidden},
		{"missing authorization-base", withoutInput(notifiedpull.ParamAuthBase), http.StatusBadRequest},
		{"expired", build(func(s *notifiedpull.NotificationSpec) { s.Expires = time.Now().Add(-time.Minute) }), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			resp, err := p.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !isOutcome(b) {
				t.Fatalf("status %d, want %d with an OperationOutcome: %s", resp.StatusCode, tc.want, b)
			}
			if n := countStored(); n != before {
				t.Errorf("%d Tasks stored after a refused notification, want %d", n, before)
			}
		})
	}
	// Without a token the endpoint refuses too.
	req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(notifiedpull.BuildNotification(valid())))
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: status %d, want 401", resp.StatusCode)
	}
	recs, _ := nw.HospNode.Audit().List(ctx, audit.Filter{Tenant: Hospital.URA})
	refusals := 0
	for _, r := range recs {
		if r.Interaction == "notify" && r.Outcome >= 400 {
			refusals++
		}
	}
	if refusals < 7 {
		t.Errorf("%d refused notifications audited, want 7", refusals)
	}
}

type clientKeysFunc func(ctx context.Context, clientID string) (jwk.Set, error)

func (f clientKeysFunc) ClientKeySet(ctx context.Context, clientID string) (jwk.Set, error) {
	return f(ctx, clientID)
}

// TestRefusesWhenAuditUnavailable: a node that cannot write its audit log
// serves no patient data (and gives no token).
func TestRefusesWhenAuditUnavailable(t *testing.T) {
	nw := startNetwork(t, 1)
	p := newPeer(t, nw)
	_, note := referToPeer(t, nw, p, 0)
	tok, err := p.dataToken(t, nw, note.AuthorizationBase)
	if err != nil {
		t.Fatal(err)
	}
	q := bgz.Queries()[5].Query(nw.Patients[0].BSN)
	u := nw.GPNode.PublicURL() + "/fhir/stu3/" + GP.URA + "/" + q
	if code, _ := p.get(t, p.http, tok.AccessToken, u); code != http.StatusOK {
		t.Fatalf("before: status %d", code)
	}
	// The audit store fails (here: closed under the node).
	if err := nw.GPNode.Audit().Close(); err != nil {
		t.Fatal(err)
	}
	code, body := p.get(t, p.http, tok.AccessToken, u)
	if code != http.StatusServiceUnavailable || !isOutcome(body) || strings.Contains(string(body), "Condition") {
		t.Fatalf("with the audit log down: status %d %s, want 503 OperationOutcome without data", code, body)
	}
	if _, err := p.dataToken(t, nw, note.AuthorizationBase); err == nil {
		t.Error("a token was issued while the audit log is down")
	}
}

// TestNodeConfigFilesLoad: the node.yaml files network up writes are valid
// node configurations (what `schakel node` and `schakel scan` read), and
// hold no secret and the addresses the nodes listen on.
func TestNodeConfigFilesLoad(t *testing.T) {
	nw := startNetwork(t, 1)
	for _, n := range nw.Nodes {
		path := filepath.Join(nw.opts.DataDir, n.Name(), "node.yaml")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), nw.Token(GP.URA)) || strings.Contains(string(raw), nw.Token(Hospital.URA)) {
			t.Errorf("%s holds an internal API token", path)
		}
		k := koanf.New(".")
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			t.Fatal(err)
		}
		var cfg node.Config
		if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		if cfg.Name != n.Name() || len(cfg.Participants) != 1 || cfg.Participants[0].InternalToken == "" {
			t.Errorf("%s: name %q, participants %+v", path, cfg.Name, cfg.Participants)
		}
		// The addresses of this run, so `schakel node --config` starts the
		// node where its peers and the addressbook expect it.
		if "https://"+cfg.Public.Addr != n.PublicURL() || "http://"+cfg.Internal.Addr != n.InternalURL() {
			t.Errorf("%s: public %q internal %q, but the node listens on %s and %s", path, cfg.Public.Addr, cfg.Internal.Addr,
				n.PublicURL(), n.InternalURL())
		}
	}
}

// TestExchangeFromEHRInProxyMode: the GP practice keeps its record in its
// own EHR; its node answers the hospital's queries from the EHR (proxy
// mode) and keeps only the exchange's Tasks itself.
func TestExchangeFromEHRInProxyMode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 1, RecordInEHR: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })
	s, err := nw.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Results {
		if r.Matches == 0 {
			t.Errorf("block %s: no matches from the EHR", r.Block)
		}
	}
	// The record is not in the node's own store.
	local := nw.GPNode.Store().(interface{ Local() store.Store }).Local()
	page, err := local.Search(ctx, GP.URA, store.Query{Type: "Patient", Params: url.Values{}})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 0 {
		t.Errorf("the GP node holds %d Patients; in proxy mode the record stays in the EHR", page.Total)
	}
}

// TestHostMustBeAnIP: the network's certificates name its host as an IP
// address, and the balancers trust it by address: a name is refused up
// front, with the flag named.
func TestHostMustBeAnIP(t *testing.T) {
	for host, ok := range map[string]bool{"localhost": false, "gtk.example": false, "127.0.0.1": true, "::1": true} {
		_, err := newNetwork(Options{DataDir: t.TempDir(), Host: host})
		if ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "--host")) {
			t.Errorf("host %q: %v", host, err)
		}
	}
}
