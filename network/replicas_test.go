package network

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
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
	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// TestReplicasShareState runs a second replica of the hospital's node on
// the same PostgreSQL schema as the first (its own listeners and datadir,
// the same public URL, as behind a load balancer) and shows that all state
// a request may need is shared: a referral the first replica received is
// accepted and pulled through the second; an assertion used at the first
// is refused at the second; and the audit log both wrote is one chain.
func TestReplicasShareState(t *testing.T) {
	dsn, prefix := pgtest.Schema(t, "rep_")
	prefix += "_" // the nodes' schemas are named after it
	ctx, cancel := context.WithCancel(context.Background())
	dataDir := t.TempDir()
	// Authentication agreed at plateau 3: a received referral waits for a
	// specialist to accept it, which the test does at the other replica.
	nw, err := Up(ctx, Options{DataDir: dataDir, Patients: 1, Postgres: dsn, PostgresSchemaPrefix: prefix,
		Plateaus: plateau.Plateaus{plateau.Authentication: 3}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })

	// The second replica: the first's configuration, its own listeners and
	// datadir, the same public URL and keys.
	cfg := loadNodeConfig(t, filepath.Join(dataDir, "hospital-node", "node.yaml"))
	if cfg.Store.Postgres == "" || cfg.Store.Schema != prefix+"hospital_node" {
		t.Fatalf("the hospital's node is not on PostgreSQL: %+v", cfg.Store)
	}
	first := nw.HospNode
	cfg.Public.URL = first.PublicURL()
	cfg.Public.Addr, cfg.Internal.Addr = "127.0.0.1:0", "127.0.0.1:0"
	if cfg.Audit.CheckpointKeyFile == "" {
		cfg.Audit.CheckpointKeyFile = filepath.Join(cfg.DataDir, "audit-checkpoint-key.pem")
	}
	cfg.DataDir = filepath.Join(t.TempDir(), "replica")
	publicLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second, err := node.New(ctx, cfg, node.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PublicListener: publicLn})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = second.Serve(ctx); close(served) }()
	t.Cleanup(func() { cancel(); <-served })

	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: hc}
	hosp2 := &xis{base: second.InternalURL(), token: nw.Token(Hospital.URA), http: hc}

	// An exchange started at the first replica (the GP's notification
	// arrives there: the addressbook lists its address) completes at the
	// second.
	var sent node.Referral
	if err := gp.do(ctx, http.MethodPost, "/internal/referrals", notifiedpull.ReferRequest{
		PatientBSN: nw.Patients[0].BSN, ReceiverURA: Hospital.URA, Application: "bgz", Description: "Verwijzing",
	}, &sent); err != nil {
		t.Fatal(err)
	}
	got := waitReferral(ctx, t, hosp2, sent.ID, func(r node.Referral) bool { return r.AwaitingUser })
	if err := hosp2.do(ctx, http.MethodPost, "/internal/referrals/"+got.ID+"/accept",
		plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}, &got); err != nil {
		t.Fatalf("accept at the second replica: %v", err)
	}
	got = waitReferral(ctx, t, hosp2, sent.ID, func(r node.Referral) bool { return notifiedpull.Final(r.Status) })
	if got.Status != notifiedpull.StatusCompleted {
		t.Fatalf("the pull through the second replica ended %s: %s", got.Status, got.StatusReason)
	}
	hosp1 := &xis{base: first.InternalURL(), token: nw.Token(Hospital.URA), http: hc}
	if seen := waitReferral(ctx, t, hosp1, sent.ID, func(node.Referral) bool { return true }); seen.Status != notifiedpull.StatusCompleted {
		t.Errorf("the first replica sees the referral %s, want completed", seen.Status)
	}

	// An assertion used at the first replica is refused at the second.
	gpCfg := loadNodeConfig(t, filepath.Join(dataDir, "gp-node", "node.yaml"))
	cert, err := tls.LoadX509KeyPair(gpCfg.TLS.CertFile, gpCfg.TLS.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signing, err := pki.LoadOrCreateSigningKey(gpCfg.Participants[0].SigningKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	peerHTTP := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}
	client := &oauth.Client{ClientID: GP.URA, Key: signing, HTTP: peerHTTP}
	endpoint := first.PublicURL() + oauth.TokenPath
	form, err := client.TokenForm(endpoint, oauth.TokenRequest{GrantType: oauth.GrantTypeClientCredentials, Scope: []string{"twiin-ta-notification"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := postForm(t, peerHTTP, endpoint, form); code != http.StatusOK {
		t.Fatalf("first use at the first replica: %d %s", code, body)
	}
	at2 := "https://" + publicLn.Addr().String() + oauth.TokenPath
	if code, body := postForm(t, peerHTTP, at2, form); code == http.StatusOK || !strings.Contains(body, "jti has been used before") {
		t.Fatalf("replay at the second replica: %d %s, want refused as a replay", code, body)
	}

	// The audit log both replicas wrote is one chain.
	cancel()
	<-served
	_ = nw.Wait()
	keyJWK, err := pki.LoadOrCreateSigningKey(cfg.Audit.CheckpointKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pki.PublicJWKS(keyJWK)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := audit.OpenWith(context.Background(), audit.Config{Postgres: dsn, Schema: cfg.Store.Schema, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rep, err := audit.Verify(context.Background(), ro, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records == 0 || rep.LastAnchored != rep.Records {
		t.Fatalf("audit chain of both replicas: %d records, last anchored %d, problems %v", rep.Records, rep.LastAnchored, rep.Problems)
	}
	// Both replicas wrote to it: the first the token it issued, the
	// second the replay it refused.
	recs, err := ro.List(context.Background(), audit.Filter{ActorURA: GP.URA})
	if err != nil {
		t.Fatal(err)
	}
	var issued, refused bool
	for _, r := range recs {
		if r.Interaction == "token" {
			issued = issued || r.Outcome == http.StatusOK
			refused = refused || (r.Outcome >= 400 && strings.Contains(r.OutcomeText, "used before"))
		}
	}
	if !issued || !refused {
		t.Errorf("audit log: token issued %v, replay refused %v; want both recorded", issued, refused)
	}
}

func loadNodeConfig(t *testing.T, path string) node.Config {
	t.Helper()
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	var cfg node.Config
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitReferral polls a node's received referrals until the one with
// identifier id satisfies ok.
func waitReferral(ctx context.Context, t *testing.T, x *xis, id string, ok func(node.Referral) bool) node.Referral {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var list []node.Referral
		if err := x.do(ctx, http.MethodGet, "/internal/referrals?direction=received", nil, &list); err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			if r.Identifier == id && ok(r) {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("referral %s not in the expected state within 60s", id)
	return node.Referral{}
}

func postForm(t *testing.T, hc *http.Client, endpoint string, form url.Values) (int, string) {
	t.Helper()
	resp, err := hc.PostForm(endpoint, form)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
