package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// tokenRequest posts a client_credentials token request as the peer with
// cert would, signed with a key the node has never seen.
func (e *notifyEnv) tokenRequest(t *testing.T, cert *tls.Certificate, ura string) *httptest.ResponseRecorder {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = key.Set(jwk.KeyIDKey, "k1")
	_ = key.Set(jwk.AlgorithmKey, jwa.ES256())
	c := &oauth.Client{ClientID: ura, Key: key}
	form, err := c.TokenForm(e.n.as.TokenEndpoint(), oauth.TokenRequest{GrantType: oauth.GrantTypeClientCredentials})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, oauth.TokenPath, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}
	w := httptest.NewRecorder()
	e.n.publicRoutes().ServeHTTP(w, r)
	return w
}

// TestTokenFromClientOutsideTheAddressbook: a client whose certificate the
// node trusts but whose URA no addressbook lists is refused 401
// invalid_client (RFC 6749 §5.2), audited with its URA; an addressbook that
// cannot be asked is 503 temporarily_unavailable, not a 500.
func TestTokenFromClientOutsideTheAddressbook(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*Config)
		status int
		code   string
	}{
		{"no addressbook lists the URA", func(c *Config) {
			// Partners are known by configuration only; 90000005 is not one of them.
			c.AddressbookURL, c.Consent.Local = "", true
			c.Partners.Agreements = []plateau.PartnerConfig{{URA: "90000012", Plateaus: addressingPlateaus(2),
				Endpoints: plateau.Endpoints{Notification: "https://h.example/fhir/stu3/90000012/Task", BgZ: "https://h.example/fhir/stu3/90000012",
					AuthServer: "https://h.example", JWKS: "https://h.example/jwks/90000012"}}}
		}, http.StatusUnauthorized, "invalid_client"},
		{"the addressbook is unreachable", nil, http.StatusServiceUnavailable, "temporarily_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newNotifyEnvWith(t, tc.mod)
			w := e.tokenRequest(t, &e.other, "90000005")
			var body struct{ Error, ErrorDescription string }
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), `"error":"`+tc.code+`"`) {
				t.Fatalf("status %d %s, want %d %s", w.Code, w.Body, tc.status, tc.code)
			}
			recs, err := e.n.Audit().List(context.Background(), audit.Filter{ActorURA: "90000005"})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Interaction != "token" || recs[0].Outcome != tc.status {
				t.Fatalf("audit records %+v, want one token refusal with %d", recs, tc.status)
			}
		})
	}
}

// fixedBook answers every lookup with address, or with err.
type fixedBook struct {
	address string
	err     error
}

func (b fixedBook) Endpoint(context.Context, string, string, string) (string, error) {
	return b.address, b.err
}

// TestClientKeysTellsWhoIsAtFault: a partner whose key set is missing or
// malformed fails client authentication; a key set host that is down is
// upstream unavailability, never a server error of ours.
func TestClientKeysTellsWhoIsAtFault(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/down":
			http.Error(w, "down", http.StatusBadGateway)
		case "/garbage":
			_, _ = w.Write([]byte("<html>"))
		default:
			_, _ = w.Write([]byte(`{"keys":[]}`))
		}
	}))
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name string
		book fixedBook
		want error // nil: a key set
	}{
		{"listed and served", fixedBook{address: srv.URL + "/jwks"}, nil},
		{"not in the addressbook", fixedBook{err: fmt.Errorf("%w: organisation 90000005", addressbook.ErrNotFound)}, oauth.ErrInvalidClient},
		{"addressbook unreachable", fixedBook{err: errors.New("query addressbook: connection refused")}, oauth.ErrTemporarilyUnavailable},
		{"key set not found", fixedBook{address: srv.URL + "/missing"}, oauth.ErrInvalidClient},
		{"key set malformed", fixedBook{address: srv.URL + "/garbage"}, oauth.ErrInvalidClient},
		{"listed address is no URL", fixedBook{address: "http://[::1"}, oauth.ErrInvalidClient},
		{"key set host failing", fixedBook{address: srv.URL + "/down"}, oauth.ErrTemporarilyUnavailable},
		{"key set host unreachable", fixedBook{address: closed.URL + "/jwks"}, oauth.ErrTemporarilyUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clientKeys{dir: tc.book, http: srv.Client()}
			set, err := c.ClientKeySet(context.Background(), "90000005")
			if tc.want == nil {
				if err != nil || set == nil {
					t.Fatalf("got %v, %v; want a key set", set, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}
