package main

import (
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// BenchmarkReplicaBalancer measures what the HAProxy in front of a node's
// replicas costs, on the network `network up --replicas 2` runs (PostgreSQL,
// audit on): the same request straight to one replica and through the
// balancer.
//
//   - internal-search: the GP practice's system searches its record by BSN
//     on the internal API (keep-alive; the balancer parses each request).
//   - public-token: the hospital's node asks the GP's authorization server
//     for a notification token on a new mTLS connection each time (TLS
//     passed through at layer 4: the handshake is the replica's).
//
// go test ./cmd/schakel -run '^$' -bench ReplicaBalancer -benchtime 200x -count 3
func BenchmarkReplicaBalancer(b *testing.B) {
	nw, procs := upReplicas(b, func(real string) string { return real })
	patient := nw.Patients[0]
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	direct := &xisClient{base: "http://" + replicaInternal(b, procs["gp-node/1"]), token: nw.Token(network.GP.URA), http: hc}
	balanced := &xisClient{base: nw.InternalURL(network.GP.URA), token: nw.Token(network.GP.URA), http: hc}
	search := "/internal/fhir/Patient?identifier=" + url.QueryEscape(nl.SystemBSN+"|"+patient.BSN)
	for _, c := range []struct {
		name string
		x    *xisClient
	}{{"internal-search/direct", direct}, {"internal-search/balanced", balanced}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				code, body, _, err := c.x.do(http.MethodGet, search, nil)
				if err != nil || code != http.StatusOK {
					b.Fatalf("search: %d %v %s", code, err, clip(body))
				}
			}
		})
	}

	dir := filepath.Dir(filepath.Dir(procs["gp-node"].Log))
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(dir, "hospital-node", "keys", "client-"+network.Hospital.URA+".pem"))
	if err != nil {
		b.Fatal(err)
	}
	oc := &oauth.Client{ClientID: network.Hospital.URA, Key: key}
	endpoint := procs["gp-node"].URL + "/oauth2/token"
	for _, c := range []struct{ name, url string }{
		{"public-token/direct", procs["gp-node/1"].URL + "/oauth2/token"},
		{"public-token/balanced", endpoint},
	} {
		b.Run(c.name, func(b *testing.B) {
			client := nodeMTLSClient(b, dir, "hospital-node")
			if c.name == "public-token/direct" {
				client = asBalancer(client) // the replica expects the balancer's PROXY header
			}
			client.Transport.(*http.Transport).DisableKeepAlives = true // a handshake per request
			for b.Loop() {
				form, err := oc.TokenForm(endpoint, oauth.TokenRequest{GrantType: oauth.GrantTypeClientCredentials, Scope: []string{"twiin-ta-notification"}})
				if err != nil {
					b.Fatal(err)
				}
				resp, err := client.PostForm(c.url, form)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("token: %d %s", resp.StatusCode, clip(body))
				}
			}
		})
	}
	benchfloor.Run(b, "")
}
