package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pires/go-proxyproto"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// replicaLease is the lease of the replicas' pulls in the kill test, and
// replicaTakeOver the bound from the kill within which the live replica
// has completed every pull the killed one left: the lease, the quarter
// lease until unheld pulls are looked for, and the pulls themselves.
const (
	replicaLease    = 2 * time.Second
	replicaTakeOver = 20 * time.Second
)

// replicaEnv is how many operations the replica fault tests send by hand
// (default: a small count for CI).
const replicaEnv = "SCHAKEL_TEST_REPLICA_OPS"

func replicaOps(t *testing.T, def int) int {
	t.Helper()
	v := os.Getenv(replicaEnv)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 3 || n > 100000 {
		t.Fatalf("%s=%q: give a count from 3 to 100000", replicaEnv, v)
	}
	return n
}

// upReplicas starts the network of processes with two replicas per node on
// dsn, in schemas of this test's own, or skips without PostgreSQL or
// HAProxy.
func upReplicas(t testing.TB, dsn func(real string) string) (*network.Network, map[string]*network.Process) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a network of replicas")
	}
	real := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if real == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	if _, err := exec.LookPath(network.HAProxy); err != nil {
		t.Skip("haproxy not installed")
	}
	prefix := fmt.Sprintf("rep_%d_", time.Now().UnixNano())
	replicaSchemaPrefix = prefix
	t.Cleanup(func() { dropSchemas(t, real, prefix) })
	t.Setenv(runMainEnv, "1") // the children are this test binary running schakel's main
	nw, err := network.UpProcesses(context.Background(), network.Options{DataDir: t.TempDir(), Patients: 1, Host: "127.0.0.1",
		Replicas: 2, Postgres: dsn(real), PostgresSchemaPrefix: prefix}, os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.StopProcesses)
	procs := map[string]*network.Process{}
	for _, p := range nw.Processes() {
		procs[p.Name] = p
	}
	return nw, procs
}

// replicaSchemaPrefix is the schema prefix of the network upReplicas
// started last (the tests run one at a time).
var replicaSchemaPrefix string

func dropSchemas(t testing.TB, dsn, prefix string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Logf("schemas %s* left behind: %v", prefix, err)
		return
	}
	defer conn.Close(ctx)
	for _, n := range []string{"gp_node", "hospital_node"} {
		schemas, err := network.NodeSchemas(ctx, conn, prefix+n)
		if err != nil {
			t.Logf("schemas %s%s* left behind: %v", prefix, n, err)
			continue
		}
		for _, schema := range schemas {
			if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
				t.Logf("schema %s left behind: %v", schema, err)
			}
		}
	}
}

// xisClient is a participant's system on its node's internal API, through
// the node's balancer.
type xisClient struct {
	base, token string
	http        *http.Client
}

// do sends a JSON request and returns the status, the body and the replica
// that answered.
func (c *xisClient) do(method, path string, in any) (int, []byte, string, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, body)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get(network.ReplicaHeader), err
}

func (c *xisClient) referrals(t *testing.T, direction string) []node.Referral {
	t.Helper()
	code, b, _, err := c.do(http.MethodGet, "/internal/referrals?direction="+direction, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("list referrals %s: %d %v %s", direction, code, err, b)
	}
	var out []node.Referral
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplicaKilledUnderLoad: each node runs as two replicas behind its
// HAProxy on PostgreSQL. Under a bounded load of referrals (GP practice to
// hospital), letters (Push, hospital to GP practice) and Direct Pull reads
// (hospital consults the GP practice), one of the hospital's replicas gets
// SIGKILL. Then: every acknowledged referral is at both ends exactly once
// and completes on the live replica within a bound (a pull the killed one
// was running is taken over when its short lease runs out); once the
// killed replica is back, every acknowledged letter
// is delivered exactly once; every acknowledged write has its audit record
// on one of the replicas, and each replica's audit chain verifies; an
// assertion one replica accepted is refused by the other.
func TestReplicaKilledUnderLoad(t *testing.T) {
	// A short lease: the killed replica's pulls are taken over within
	// seconds (the replicas inherit the test's environment).
	t.Setenv("SCHAKEL_LEASE", replicaLease.String())
	nw, procs := upReplicas(t, func(real string) string { return real })
	ops := replicaOps(t, 24)
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	gp := &xisClient{base: nw.InternalURL(network.GP.URA), token: nw.Token(network.GP.URA), http: hc}
	hosp := &xisClient{base: nw.InternalURL(network.Hospital.URA), token: nw.Token(network.Hospital.URA), http: hc}
	victim := procs["hospital-node/2"]
	if victim == nil {
		t.Fatal("no replica hospital-node/2")
	}
	load := newReplicaLoad(nw, gp, hosp, "load")
	var (
		killOnce  sync.Once
		killedAt  time.Time
		deadline  = time.Now().Add(5 * time.Minute)
		killAfter = int64(ops / 3)
	)
	load.run(t, 4, func(i int64) bool { return i < int64(ops) && time.Now().Before(deadline) }, func(done int64) {
		if done >= killAfter {
			killOnce.Do(func() {
				killedAt = time.Now()
				_ = syscall.Kill(victim.PID, syscall.SIGKILL) // no shutdown: leases, queues and all die with it
			})
		}
	})
	if killedAt.IsZero() {
		t.Fatal("the load ended before the replica was killed")
	}
	if !waitGone(victim.PID) {
		t.Fatal("the killed replica is still running")
	}
	for _, u := range load.unexpected {
		t.Errorf("answer that is neither an acknowledgement nor a clean failure: %s", u)
	}
	t.Log("around the kill, " + load.summary())
	referrals, letters := load.referrals, load.letters
	if len(referrals) == 0 || len(letters) == 0 || load.reads == 0 {
		t.Fatalf("the load acknowledged too little to check: %d referrals, %d letters, %d reads", len(referrals), len(letters), load.reads)
	}

	// Every acknowledged referral at both ends once, and completed by the
	// replica that lives: a pull the killed one was running is taken over
	// once its lease runs out (renewed every third of replicaLease by a
	// live worker; unheld pulls are looked for every quarter), without
	// the killed replica coming back.
	sent := map[string]int{}
	for _, r := range gp.referrals(t, "sent") {
		sent[r.ID]++
	}
	for _, id := range referrals {
		if sent[id] != 1 {
			t.Errorf("referral %s acknowledged with 201 is %d times in the GP practice's sent referrals", id, sent[id])
		}
	}
	var unfinished []string
	settle := killedAt.Add(replicaTakeOver)
	for {
		got := map[string][]string{}
		reasons := map[string]string{}
		for _, r := range hosp.referrals(t, "received") {
			got[r.Identifier] = append(got[r.Identifier], r.Status)
			reasons[r.Identifier] = r.StatusReason
		}
		unfinished = unfinished[:0]
		for _, id := range referrals {
			st := got[id]
			switch {
			case len(st) != 1:
				t.Fatalf("referral %s acknowledged with 201 is received %d times: %v", id, len(st), st)
			case st[0] == notifiedpull.StatusCompleted:
			case notifiedpull.Final(st[0]):
				t.Fatalf("referral %s ended %s at the hospital (%s)", id, st[0], reasons[id])
			default:
				unfinished = append(unfinished, id)
			}
		}
		if len(unfinished) == 0 || time.Now().After(settle) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(unfinished) > 0 {
		leased := pullLeases(t, "hospital_node")
		for _, id := range unfinished {
			t.Errorf("referral %s not completed by the live replica %s after the kill (under a live lease: %v)", id, replicaTakeOver, leased[id])
		}
	} else {
		t.Logf("every acknowledged referral completed %s after the kill (lease %s)", time.Since(killedAt).Round(time.Millisecond), replicaLease)
	}

	// The operator restarts the killed replica; both replicas share the
	// state.
	back := restartReplica(t, victim, replicaInternal(t, victim))

	// Every acknowledged letter delivered once, with its receipt.
	hospPush := &pushClient{base: hosp.base, token: hosp.token, http: hc}
	gpPush := &pushClient{base: gp.base, token: gp.token, http: hc}
	waitDelivered(t, hospPush, letters, 3*time.Minute)
	checkOnce(t, hospPush, gpPush, letters)

	t.Run("assertion accepted once across replicas", func(t *testing.T) {
		if !sharedReplayCache(t, "hospital_node") {
			// Then a node's replicas each keep their own record of used
			// assertion ids (docs/operations.md, Running replicas).
			t.Skip("the hospital's replicas keep no replay cache in PostgreSQL (no oauth_replay table in their schema)")
		}
		replayAcrossReplicas(t, nw, procs)
	})

	// Stopped, every replica's audit log holds what it acknowledged and
	// its chain verifies.
	nw.StopProcesses()
	_ = back.Process.Signal(syscall.SIGTERM)
	if err := back.Wait(); err != nil {
		t.Errorf("the restarted replica after SIGTERM: %v", err)
	}
	dir := filepath.Dir(filepath.Dir(victim.Log))
	gpRecs := verifyReplicaAudits(t, dir, "gp-node")
	hospRecs := verifyReplicaAudits(t, dir, "hospital-node")
	refer := map[string]bool{}
	for _, r := range gpRecs {
		if r.Interaction == "refer" && r.Outcome == http.StatusCreated {
			refer[r.Task] = true
		}
	}
	pushed := map[string]bool{}
	for _, r := range hospRecs {
		if r.Interaction == "push-send" {
			pushed[r.Task] = true
		}
	}
	for _, id := range referrals {
		if !refer[id] {
			t.Errorf("referral %s acknowledged with 201 has no audit record on a GP replica", id)
		}
	}
	for _, id := range letters {
		if !pushed[id] {
			t.Errorf("letter %s acknowledged with 202 has no audit record on a hospital replica", id)
		}
	}
}

// TestReplicaKilledMidPull: a hospital replica is frozen (SIGSTOP) while
// it holds the lease of a pull it has not finished, then killed. The other
// replica takes the pull over once the lease runs out and completes it,
// within a bound, without the killed replica coming back; the referral is
// received once and completed once.
func TestReplicaKilledMidPull(t *testing.T) {
	t.Setenv("SCHAKEL_LEASE", replicaLease.String())
	nw, procs := upReplicas(t, func(real string) string { return real })
	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xisClient{base: nw.InternalURL(network.GP.URA), token: nw.Token(network.GP.URA), http: hc}
	hosp := &xisClient{base: nw.InternalURL(network.Hospital.URA), token: nw.Token(network.Hospital.URA), http: hc}
	byPID := map[int]*network.Process{}
	for _, p := range procs {
		if strings.HasPrefix(p.Name, "hospital-node/") {
			byPID[p.PID] = p
		}
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("SCHAKEL_TEST_POSTGRES"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	received := pgx.Identifier{replicaSchemaPrefix + "hospital_node", "np_received"}.Sanitize()

	// Referrals one after another until a hospital replica is caught
	// holding the unfinished pull of one that was acknowledged (201).
	var (
		referrals []string
		stop      atomic.Bool
		sending   sync.WaitGroup
		mu        sync.Mutex
	)
	sending.Add(1)
	go func() {
		defer sending.Done()
		for i := 0; i < 200 && !stop.Load(); i++ {
			code, body, _, err := gp.do(http.MethodPost, "/internal/referrals", notifiedpull.ReferRequest{
				PatientBSN: nw.Patients[0].BSN, ReceiverURA: network.Hospital.URA, Application: "bgz", Description: fmt.Sprintf("mid-pull %d", i)})
			var r node.Referral
			if err == nil && code == http.StatusCreated && json.Unmarshal(body, &r) == nil {
				mu.Lock()
				referrals = append(referrals, r.ID)
				mu.Unlock()
			}
		}
	}()
	var (
		victim           *network.Process
		caught, caughtBy string
		killedAt         time.Time
		finals           = []any{notifiedpull.StatusCompleted, notifiedpull.StatusRejected, notifiedpull.StatusFailed, notifiedpull.StatusCancelled}
		unfinishedHeldBy = `SELECT identifier, lease_owner FROM ` + received + ` WHERE lease_until > $1 AND status NOT IN ($2, $3, $4, $5)`
		stillHeld        = `SELECT count(*) FROM ` + received + ` WHERE identifier = $1 AND lease_owner = $2 AND status NOT IN ($3, $4, $5, $6)`
		catchBy          = time.Now().Add(60 * time.Second)
	)
	for victim == nil && time.Now().Before(catchBy) {
		rows, err := conn.Query(ctx, unfinishedHeldBy, append([]any{time.Now().UnixMilli()}, finals...)...)
		if err != nil {
			t.Fatal(err)
		}
		held, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ ID, Owner string }])
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range held {
			// The owner is host/pid/uuid: the replica holding the pull.
			parts := strings.Split(h.Owner, "/")
			pid, _ := strconv.Atoi(parts[len(parts)-2])
			p := byPID[pid]
			mu.Lock()
			acknowledged := slices.Contains(referrals, h.ID)
			mu.Unlock()
			if p == nil || !acknowledged {
				continue // only the pull of a referral the GP practice's system was told is made
			}
			_ = syscall.Kill(pid, syscall.SIGSTOP) // frozen: the pull can go no further
			var n int
			if err := conn.QueryRow(ctx, stillHeld, append([]any{h.ID, h.Owner}, finals...)...).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				victim, caught, caughtBy = p, h.ID, h.Owner
				killedAt = time.Now()
				_ = syscall.Kill(pid, syscall.SIGKILL) // no shutdown: its lease stays behind
				break
			}
			_ = syscall.Kill(pid, syscall.SIGCONT) // it finished meanwhile: go on
		}
		if victim == nil {
			time.Sleep(time.Millisecond)
		}
	}
	stop.Store(true)
	sending.Wait()
	if victim == nil {
		t.Fatal("no hospital replica was caught holding an unfinished pull")
	}
	if !waitGone(victim.PID) {
		t.Fatal("the killed replica is still running")
	}
	t.Logf("%s killed while pulling %s (lease %s)", victim.Name, caught, caughtBy)

	// The live replica completes it, and every other acknowledged referral.
	mu.Lock()
	defer mu.Unlock()
	deadline := killedAt.Add(replicaTakeOver)
	for {
		got := map[string][]string{}
		for _, r := range hosp.referrals(t, "received") {
			got[r.Identifier] = append(got[r.Identifier], r.Status)
		}
		var unfinished []string
		for _, id := range referrals {
			switch st := got[id]; {
			case len(st) != 1:
				t.Fatalf("referral %s is received %d times: %v", id, len(st), st)
			case st[0] == notifiedpull.StatusCompleted:
			case notifiedpull.Final(st[0]):
				t.Fatalf("referral %s ended %s at the hospital", id, st[0])
			default:
				unfinished = append(unfinished, id)
			}
		}
		if len(unfinished) == 0 {
			t.Logf("the pull taken over and %d referrals completed %s after the kill", len(referrals), time.Since(killedAt).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after the kill, not completed: %v", replicaTakeOver, unfinished)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The survivor's log names the pull it took over and the dead owner.
	for name, p := range procs {
		if !strings.HasPrefix(name, "hospital-node/") || p == victim {
			continue
		}
		b, err := os.ReadFile(p.Log)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, line := range bytes.Split(b, []byte("\n")) {
			if bytes.Contains(line, []byte("pull taken over")) && bytes.Contains(line, []byte(caughtBy)) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s's log (%s) does not say it took over the pull held by %s", name, p.Log, caughtBy)
		}
	}
	var owner string
	var completedOnce int
	if err := conn.QueryRow(ctx, `SELECT lease_owner, (SELECT count(*) FROM `+received+` WHERE identifier = $1 AND result_bundle <> '') FROM `+received+
		` WHERE identifier = $1`, caught).Scan(&owner, &completedOnce); err != nil {
		t.Fatal(err)
	}
	if owner == caughtBy || completedOnce != 1 {
		t.Errorf("the taken-over pull: lease owner %q (the killed one's %q), completed %d times", owner, caughtBy, completedOnce)
	}
}

// replicaInternal is the internal listener of replica p, from its
// configuration file.
func replicaInternal(t testing.TB, p *network.Process) string {
	t.Helper()
	cfgPath := p.Args[len(p.Args)-1]
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// internal:\n    addr: host:port
	_, rest, ok := strings.Cut(string(b), "\ninternal:")
	if !ok {
		t.Fatalf("no internal listener in %s", cfgPath)
	}
	_, rest, ok = strings.Cut(rest, "addr:")
	if !ok {
		t.Fatalf("no internal listener in %s", cfgPath)
	}
	line, _, _ := strings.Cut(rest, "\n")
	return strings.TrimSpace(line)
}

// restartReplica starts replica p again with the command the network
// recorded and waits until its listeners accept connections; the caller
// stops it.
func restartReplica(t *testing.T, p *network.Process, internal string) *exec.Cmd {
	t.Helper()
	cmd := startLogged(t, p)
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(t, p, strings.TrimPrefix(p.URL, "https://"), internal)
	return cmd
}

// verifyReplicaAudits checks the audit chain of each replica of node (as
// `schakel audit verify` does, with the node's checkpoint key) and returns
// their records together.
func verifyReplicaAudits(t *testing.T, dir, nodeName string) []audit.Record {
	t.Helper()
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(dir, nodeName, "keys", "audit-checkpoint-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := pki.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, nodeName, "checkpoint-jwks.json")
	if err := writeJSONFile(keyFile, jwks); err != nil {
		t.Fatal(err)
	}
	// Each replica's own SQLite log; or, with the log in PostgreSQL, the
	// one log the replicas share in the node's schema.
	type source struct {
		args []string
		cfg  audit.Config
	}
	var sources []source
	for i := 1; i <= 2; i++ {
		db := filepath.Join(dir, nodeName, fmt.Sprintf("replica-%d", i), "data", "audit.db")
		if _, err := os.Stat(db); err == nil {
			sources = append(sources, source{[]string{"--db", db}, audit.Config{Path: db, ReadOnly: true}})
		}
	}
	if len(sources) == 0 {
		schema := replicaSchemaPrefix + strings.ReplaceAll(nodeName, "-", "_")
		dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
		t.Setenv(auditPostgresEnv, dsn)
		sources = append(sources, source{[]string{"--schema", schema}, audit.Config{Postgres: dsn, Schema: schema, ReadOnly: true}})
	}
	var all []audit.Record
	for _, src := range sources {
		var out strings.Builder
		verify := newRootCommand()
		verify.SetArgs(append([]string{"audit", "verify", "--key", keyFile}, src.args...))
		verify.SetOut(&out)
		if err := verify.ExecuteContext(context.Background()); err != nil || !strings.Contains(out.String(), "OK:") {
			t.Errorf("audit verify %s %v: %v\n%s", nodeName, src.args, err, out.String())
			continue
		}
		s, err := audit.OpenWith(context.Background(), src.cfg)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := s.List(context.Background(), audit.Filter{})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	return all
}

// pullLeases are the notifications (by identifier) some pull worker of
// node holds a lease on now.
func pullLeases(t *testing.T, nodeSchema string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("SCHAKEL_TEST_POSTGRES"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT identifier FROM "+pgx.Identifier{replicaSchemaPrefix + nodeSchema, "np_received"}.Sanitize()+
		" WHERE lease_until > $1", time.Now().UnixMilli())
	if err != nil {
		t.Fatalf("pull leases: %v", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// sharedReplayCache reports whether node's replicas keep the assertion
// replay cache in their PostgreSQL schema.
func sharedReplayCache(t *testing.T, nodeSchema string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("SCHAKEL_TEST_POSTGRES"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var table *string
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1)::text", pgx.Identifier{replicaSchemaPrefix + nodeSchema, "oauth_replay"}.Sanitize()).Scan(&table); err != nil {
		t.Fatal(err)
	}
	return table != nil
}

// replayAcrossReplicas sends one client assertion to one of the hospital's
// replicas, which issues a token, and the same assertion to the other,
// which must refuse it (RFC 7523 §3: a jti is used once).
func replayAcrossReplicas(t *testing.T, nw *network.Network, procs map[string]*network.Process) {
	t.Helper()
	dir := filepath.Dir(filepath.Dir(procs["gp-node"].Log))
	client := asBalancer(nodeMTLSClient(t, dir, "gp-node")) // straight to each replica
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(dir, "gp-node", "keys", "client-"+network.GP.URA+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	oc := &oauth.Client{ClientID: network.GP.URA, Key: key}
	endpoint := procs["hospital-node"].URL + "/oauth2/token" // the audience: the node as its peers know it
	form, err := oc.TokenForm(endpoint, oauth.TokenRequest{GrantType: oauth.GrantTypeClientCredentials, Scope: []string{"twiin-ta-notification"}})
	if err != nil {
		t.Fatal(err)
	}
	post := func(replica string) (int, string) {
		resp, err := client.PostForm(procs[replica].URL+"/oauth2/token", form)
		if err != nil {
			t.Fatalf("token request to %s: %v", replica, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("hospital-node/1"); code != http.StatusOK {
		t.Fatalf("first use of the assertion at hospital-node/1: %d %s", code, body)
	}
	code, body := post("hospital-node/2")
	if code == http.StatusOK || !strings.Contains(body, "jti") {
		t.Errorf("the same assertion at hospital-node/2: %d %s; want a refusal for the used jti", code, body)
	}
}

// nodeMTLSClient presents the certificate of node name, as that node does
// when it calls a peer.
func nodeMTLSClient(t testing.TB, dir, name string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name, "tls", "node.pem"), filepath.Join(dir, name, "tls", "node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "pki", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}}}
}

// asBalancer makes client reach a replica's public listener directly, as
// the balancer does: each connection starts with a PROXY v2 header (the
// replica trusts the balancer's address, the test's too), naming the
// connection's own end as the client.
func asBalancer(client *http.Client) *http.Client {
	tr := client.Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, err := proxyproto.HeaderProxyFromAddrs(2, c.LocalAddr(), c.RemoteAddr()).WriteTo(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	return &http.Client{Timeout: client.Timeout, Transport: tr}
}

// waitUntil polls cond every 200 ms until it holds, failing after limit
// with cond's last word.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(limit)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("not within %s: %s (%s)", limit, what, detail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// pgProxy stands between the nodes and PostgreSQL: it passes connections
// through until Outage, which drops every connection and refuses new ones
// (its port closed, as a restarting server's is) until Restore.
type pgProxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]struct{}
	wg           sync.WaitGroup
}

func startPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() { p.Outage(); p.wg.Wait() })
	return p
}

func (p *pgProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, up) {
				continue
			}
			go p.pipe(c, up)
			go p.pipe(up, c)
		}
	}()
}

// track registers a connection pair, unless an outage began meanwhile.
func (p *pgProxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		a.Close()
		b.Close()
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

func (p *pgProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Outage drops every connection and closes the port.
func (p *pgProxy) Outage() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Restore opens the port again.
func (p *pgProxy) Restore(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("reopen the proxy's port: %v", err)
	}
	p.serve(ln)
}

// proxiedDSN is dsn with its host:port replaced by addr.
func proxiedDSN(t *testing.T, dsn, addr string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("SCHAKEL_TEST_POSTGRES is not a postgres:// URL: %v", err)
	}
	u.Host = addr
	return u.String()
}

// TestReplicasPostgresOutage: the nodes (two replicas each, behind their
// balancers) reach PostgreSQL through a proxy. Under a bounded load of
// reads of the GP practice's record, Direct Pull consults and referrals,
// the proxy drops every connection and refuses new ones for a few
// seconds. Meanwhile each answer is either a success or a clean 503 (an
// OperationOutcome on FHIR, problem+json on the internal API, RFC 6749
// JSON on the token endpoint) — never a 500, never a panic — and /readyz
// says the store is down. Once PostgreSQL is back, requests succeed again
// and a Notified Pull completes, with no node restarted.
func TestReplicasPostgresOutage(t *testing.T) {
	// By hand, the real server instead of the proxy: e.g.
	// SCHAKEL_TEST_PG_RESTART_CMD='pg_ctlcluster 15 main restart' (it
	// restarts the machine's shared PostgreSQL: never in CI).
	restartCmd := os.Getenv(pgRestartEnv)
	var proxy *pgProxy
	nw, procs := upReplicas(t, func(real string) string {
		if restartCmd != "" {
			return real
		}
		u, err := url.Parse(real)
		if err != nil || u.Host == "" {
			t.Skipf("SCHAKEL_TEST_POSTGRES is not a postgres:// URL: %v", err)
		}
		proxy = startPGProxy(t, u.Host)
		return proxiedDSN(t, real, proxy.addr)
	})
	ops := replicaOps(t, 60)
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	gp := &xisClient{base: nw.InternalURL(network.GP.URA), token: nw.Token(network.GP.URA), http: hc}
	hosp := &xisClient{base: nw.InternalURL(network.Hospital.URA), token: nw.Token(network.Hospital.URA), http: hc}
	patient := nw.Patients[0]
	dir := filepath.Dir(filepath.Dir(procs["gp-node"].Log))
	tlsClient := nodeMTLSClient(t, dir, "hospital-node")
	key, err := pki.LoadOrCreateSigningKey(filepath.Join(dir, "hospital-node", "keys", "client-"+network.Hospital.URA+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	hospOAuth := &oauth.Client{ClientID: network.Hospital.URA, Key: key}
	gpToken := procs["gp-node"].URL + "/oauth2/token"

	// One request of each kind; what it got and whether that is clean.
	request := func(kind string, i int) answer {
		switch kind {
		case "read": // the GP practice's system reads its own record (FHIR)
			code, b, _, err := gp.do(http.MethodGet, "/internal/fhir/Patient?identifier="+url.QueryEscape(nl.SystemBSN+"|"+patient.BSN), nil)
			if err != nil {
				return answer{kind, 0, false, err.Error()}
			}
			return answer{kind, code, code == http.StatusOK || (code == http.StatusServiceUnavailable && isOutcome(b)), clip(b)}
		case "refer": // internal API: problem+json
			code, b, _, err := gp.do(http.MethodPost, "/internal/referrals", notifiedpull.ReferRequest{
				PatientBSN: patient.BSN, ReceiverURA: network.Hospital.URA, Application: "bgz", Description: fmt.Sprintf("outage %d", i)})
			if err != nil {
				return answer{kind, 0, false, err.Error()}
			}
			return answer{kind, code, code == http.StatusCreated || (failedCleanly(code) && isProblem(b)), clip(b)}
		case "consult": // the hospital asks; the GP practice's data endpoint answers each query
			code, b, _, err := hosp.do(http.MethodPost, "/internal/consult", consult.Request{PatientBSN: patient.BSN,
				HolderURA: network.GP.URA, Application: "bgz", User: &plateau.Caller{ID: strconv.Itoa(900040000 + i), Role: "01.016"}})
			if err != nil {
				return answer{kind, 0, false, err.Error()}
			}
			var res consult.Result
			if code != http.StatusOK || json.Unmarshal(b, &res) != nil {
				return answer{kind, code, failedCleanly(code) && isProblem(b), clip(b)}
			}
			clean := true
			for _, q := range res.Queries {
				if q.Status != http.StatusOK && q.Status != http.StatusServiceUnavailable {
					clean = false
				}
			}
			if !res.Complete {
				code = http.StatusServiceUnavailable // some queries met the outage, each cleanly
			}
			return answer{kind, code, clean, fmt.Sprintf("complete %v, %d queries", res.Complete, len(res.Queries))}
		default: // "token": the GP's authorization server looks up the grant of an authorization base
			form, err := hospOAuth.TokenForm(gpToken, oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer,
				Scope: []string{"bgz"}, AuthorizationBase: "outage-probe-" + strconv.Itoa(i)})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tlsClient.PostForm(gpToken, form)
			if err != nil {
				return answer{kind, 0, false, err.Error()}
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct{ Error string }
			_ = json.Unmarshal(b, &e)
			// An unknown authorization base is refused as invalid_grant when
			// the store answers, temporarily_unavailable when it does not.
			clean := (resp.StatusCode == http.StatusBadRequest && e.Error == "invalid_grant") ||
				(resp.StatusCode == http.StatusServiceUnavailable && e.Error == "temporarily_unavailable")
			return answer{kind, resp.StatusCode, clean, clip(b)}
		}
	}
	kinds := []string{"read", "refer", "consult", "token"}

	// Before: everything answers.
	for i, k := range kinds {
		if a := request(k, i); !a.clean || a.status >= 500 {
			t.Fatalf("%s before the outage: %d %s", k, a.status, a.detail)
		}
	}

	// The load runs through the outage.
	var (
		mu       sync.Mutex
		answers  []answer
		next     atomic.Int64
		wg       sync.WaitGroup
		deadline = time.Now().Add(3 * time.Minute)
	)
	stop := make(chan struct{})
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > ops || time.Now().After(deadline) {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
				a := request(kinds[i%len(kinds)], i)
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
				time.Sleep(200 * time.Millisecond) // spread over before, during and after
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if restartCmd != "" {
		start := time.Now()
		out, err := exec.Command("sh", "-c", restartCmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", restartCmd, err, out)
		}
		t.Logf("%s took %s", restartCmd, time.Since(start).Round(time.Millisecond))
	} else {
		proxyOutage(t, procs, proxy, request, kinds)
	}

	// After: every kind succeeds again, on the same processes.
	for _, k := range kinds {
		waitUntil(t, 30*time.Second, k+" succeeds after the outage", func() (bool, string) {
			a := request(k, 2000)
			return a.clean && a.status < 500, fmt.Sprintf("%d %s", a.status, a.detail)
		})
	}
	close(stop)
	wg.Wait()
	counts := map[int]int{}
	for _, a := range answers {
		counts[a.status]++
		if !a.clean {
			t.Errorf("%s under load: %d %s; want a success or a clean 503", a.kind, a.status, a.detail)
		}
	}
	t.Logf("%d requests under load, by status: %v", len(answers), counts)
	for _, r := range []string{"gp-node/1", "gp-node/2", "hospital-node/1", "hospital-node/2"} {
		code, body := readyz(t, replicaInternal(t, procs[r]))
		if code != http.StatusOK {
			t.Errorf("/readyz of %s after the outage: %d %s", r, code, body)
		}
		if procs[r].Exited() {
			t.Errorf("%s exited", r)
		}
	}
	s, err := nw.Exchange(context.Background())
	if err != nil {
		t.Fatalf("Notified Pull after the outage: %v", err)
	}
	if s.Status != notifiedpull.StatusCompleted || s.Sender != notifiedpull.StatusCompleted {
		t.Fatalf("Notified Pull after the outage: receiver %s, sender %s", s.Status, s.Sender)
	}
	for _, p := range nw.Processes() {
		b, err := os.ReadFile(p.Log)
		if err == nil && bytes.Contains(b, []byte("handler panic")) {
			t.Errorf("%s logged a panic (%s)", p.Name, p.Log)
		}
	}
}

// pgRestartEnv names the command TestReplicasPostgresOutage restarts the
// real PostgreSQL with, by hand, instead of cutting the proxy.
const pgRestartEnv = "SCHAKEL_TEST_PG_RESTART_CMD"

// answer is what one request got, and whether that is clean: a success,
// or a 503 in the edge's error format.
type answer struct {
	kind   string
	status int
	clean  bool
	detail string
}

// proxyOutage cuts PostgreSQL off at the proxy for three seconds; meanwhile
// each kind of request fails cleanly with 503 and /readyz names the store.
func proxyOutage(t *testing.T, procs map[string]*network.Process, proxy *pgProxy,
	request func(string, int) answer, kinds []string) {
	t.Helper()
	proxy.Outage()
	outageStart := time.Now()
	// During the outage each kind fails cleanly, and readiness says why.
	for i, k := range kinds {
		a := request(k, 1000+i)
		if !a.clean || a.status < 500 {
			t.Errorf("%s during the outage: %d %s; want a clean 503 (or 502 relaying a partner's)", k, a.status, a.detail)
		}
	}
	for _, r := range []string{"gp-node/1", "gp-node/2"} {
		code, body := readyz(t, replicaInternal(t, procs[r]))
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "store") {
			t.Errorf("/readyz of %s during the outage: %d %s", r, code, body)
		}
	}
	time.Sleep(time.Until(outageStart.Add(3 * time.Second)))
	proxy.Restore(t)
	t.Logf("PostgreSQL unreachable for %s", time.Since(outageStart).Round(time.Millisecond))
}

func readyz(t *testing.T, internal string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + internal + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// failedCleanly: on the internal API a request fails cleanly with 503
// when the node's own store is down, or with 502 when a partner it called
// answered that (its store being down too: one PostgreSQL here).
func failedCleanly(code int) bool {
	return code == http.StatusServiceUnavailable || code == http.StatusBadGateway
}

func isOutcome(b []byte) bool {
	var o struct{ ResourceType string }
	return json.Unmarshal(b, &o) == nil && o.ResourceType == "OperationOutcome"
}

func isProblem(b []byte) bool {
	var p struct {
		Status int
		Type   string
	}
	return json.Unmarshal(b, &p) == nil && p.Status != 0 && p.Type != ""
}

// TestNetworkUpReplicasOnce: `schakel network up --once --replicas 2
// --postgres URL` completes the Notified Pull and the Direct Pull across
// the balanced replicas, exits 0, shows from the balancers' logs that both
// replicas of each node served, and leaves no process behind.
func TestNetworkUpReplicasOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of replicas")
	}
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	if _, err := exec.LookPath(network.HAProxy); err != nil {
		t.Skip("haproxy not installed")
	}
	prefix := fmt.Sprintf("repcli_%d_", time.Now().UnixNano())
	t.Cleanup(func() { dropSchemas(t, dsn, prefix) })
	cmd := exec.Command(os.Args[0], "network", "up", "--once", "--replicas", "2", "--postgres", dsn,
		"--postgres-schema-prefix", prefix, "--data-dir", t.TempDir(), "--log-level", "warn")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("network up --once --replicas 2: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"status: receiver completed, sender completed", "Direct Pull:", "resources from 26 queries", "Replicas (from the balancers' logs"} {
		if !strings.Contains(text, want) {
			t.Fatalf("no %q in:\n%s", want, text)
		}
	}
	// "  gp-node        public   gp-node-1 3, gp-node-2 1"
	for _, n := range []string{"gp-node", "hospital-node"} {
		served := map[string]bool{}
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == n && (f[1] == "public" || f[1] == "internal") {
				for _, r := range []string{n + "-1", n + "-2"} {
					if strings.Contains(line, r+" ") {
						served[r] = true
					}
				}
			}
		}
		if len(served) != 2 {
			t.Errorf("%s: the exchange's steps landed on %v, not on both replicas:\n%s", n, served, text)
		}
	}
	var pids []int
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == "pid" {
			if pid, err := strconv.Atoi(f[2]); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) < 9 || !gone(pids...) {
		t.Fatalf("processes still running after network up --once exited (or too few started): %v", pids)
	}
}

// TestNetworkUpReplicasCare: a care application other than BgZ, at a
// plateau, with every node (the nursing home's too) as two replicas: the
// eOverdracht demo's accepted and rejected transfers both complete, and
// the growth model's checks read the nodes' shared audit logs.
func TestNetworkUpReplicasCare(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of replicas")
	}
	dsn, prefix := pgtest.Schema(t, "repcare_")
	if _, err := exec.LookPath(network.HAProxy); err != nil {
		t.Skip("haproxy not installed")
	}
	cmd := exec.Command(os.Args[0], "network", "up", "--once", "--care", "eoverdracht", "--plateau", "3", "--replicas", "2",
		"--postgres", dsn, "--postgres-schema-prefix", prefix+"_", "--data-dir", t.TempDir(), "--log-level", "warn")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("network up --once --care eoverdracht --plateau 3 --replicas 2: %v\n%s", err, out.String())
	}
	for _, want := range []string{"nursinghome-node", "accepted after reading", "status: receiver completed, sender completed",
		"status: receiver rejected, sender rejected"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in:\n%s", want, out.String())
		}
	}
}

// TestReplicasFlags: --replicas needs --postgres and turns on --processes;
// --postgres with --processes needs --replicas.
func TestReplicasFlags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      network.Options
		processes bool
		err       string
		wantProc  bool
	}{
		{"none", network.Options{}, false, "", false},
		{"replicas without postgres", network.Options{Replicas: 2}, false, "--replicas needs --postgres", false},
		{"negative", network.Options{Replicas: -1, Postgres: "postgres://x"}, false, "give 1 or more", false},
		{"with plateau", network.Options{Replicas: 2, Postgres: "postgres://x", Plateau: 3}, false, "", true},
		{"postgres with processes only", network.Options{Postgres: "postgres://x"}, true, "needs --replicas", true},
		{"replicas", network.Options{Replicas: 2, Postgres: "postgres://x"}, false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, proc := tc.opts, tc.processes
			err := replicasOption(&opts, &proc)
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
			if err == nil && proc != tc.wantProc {
				t.Fatalf("processes %v, want %v", proc, tc.wantProc)
			}
		})
	}
}
