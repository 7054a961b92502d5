package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// HAProxy is the load balancer UpProcesses starts in front of each node's
// replicas (Options.Replicas): Debian's haproxy package.
const HAProxy = "haproxy"

// ReplicaHeader is the response header the balancer of a node's internal
// listener adds: which replica answered.
const ReplicaHeader = "X-Schakel-Replica"

// DefaultSchemaPrefix names each node's PostgreSQL schema with replicas
// when Options.PostgresSchemaPrefix is empty: schakel_gp_node, ….
const DefaultSchemaPrefix = "schakel_"

// replicaCheckInterval is how often the balancer asks each replica whether
// it is alive; three failed checks in a row take it out of rotation, two
// passed ones bring it back. A killed replica refuses connections at once,
// and those are redispatched to another replica meanwhile; a check waits
// up to replicaCheckTimeout, so that a replica slowed by a busy machine is
// not taken for a dead one.
//
// A replica told to stop fails its checks first (node.Config.Drain,
// replicaDrain) and goes on serving until the balancer has taken it out of
// rotation: after its first failed check the next come every
// replicaFastCheck, so it is out after replicaCheckInterval + 2 ×
// replicaFastCheck at most, and only then does it close its connections.
// Closing them while the balancer could still reuse one would race a
// request sent on it, which HAProxy answers by closing the client's
// connection without an answer.
const (
	replicaCheckInterval = time.Second
	replicaFastCheck     = 250 * time.Millisecond
	replicaCheckTimeout  = 3 * time.Second
	replicaDrain         = replicaCheckInterval + 2*replicaFastCheck + time.Second
)

// checkReplicas refuses a replica setup that cannot work, before anything
// is started: replicas share their node's state in PostgreSQL, and HAProxy
// must be installed.
func checkReplicas(opts Options) error {
	if opts.Replicas == 0 {
		return nil
	}
	if opts.Replicas < 0 {
		return fmt.Errorf("network: %d replicas: give 1 or more", opts.Replicas)
	}
	if opts.Postgres == "" {
		return errors.New("network: replicas share their node's state in PostgreSQL: --replicas needs --postgres URL")
	}
	if _, err := exec.LookPath(HAProxy); err != nil {
		return errors.New("network: --replicas runs each node behind HAProxy, and haproxy is not installed (Debian: apt-get install haproxy)")
	}
	return nil
}

// resetSchemas drops each node's PostgreSQL schema, so that a network
// started again on the same database begins from the demo data alone; the
// nodes' migrations create the schemas again as the first replica starts.
func (nw *Network) resetSchemas(ctx context.Context, names ...string) error {
	conn, err := pgx.Connect(ctx, nw.opts.Postgres)
	if err != nil {
		// pgx names the host, user and database, never the password.
		return fmt.Errorf("--postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, name := range names {
		schemas, err := NodeSchemas(ctx, conn, nw.storeConfig(name).Schema)
		if err != nil {
			return fmt.Errorf("--postgres: %w", err)
		}
		for _, schema := range schemas {
			if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
				return fmt.Errorf("--postgres: drop schema %s: %w", schema, err)
			}
		}
	}
	return nil
}

// NodeSchemas are the PostgreSQL schemas a node with store.schema schema
// keeps its state in: that one and those named after it (the R4 store's
// <schema>_r4, an addressbook replica's <schema>_addressbook_<directory>).
func NodeSchemas(ctx context.Context, conn *pgx.Conn, schema string) ([]string, error) {
	like := strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`).Replace(schema) + `\_%`
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname = $1 OR nspname LIKE $2`, schema, like)
	if err != nil {
		return nil, fmt.Errorf("schemas of %s: %w", schema, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// openNodeStore opens the FHIR store node name will serve, to load demo
// data into it before it starts: its schema in PostgreSQL, or its SQLite
// file.
func (nw *Network) openNodeStore(ctx context.Context, name string) (store.Store, error) {
	sc := nw.storeConfig(name)
	if sc.Postgres == "" {
		return sqlite.Open(ctx, filepath.Join(nw.opts.DataDir, name, "data", "fhir-stu3.db"), fhir.STU3)
	}
	st, err := postgres.Open(ctx, sc.Postgres, fhir.STU3, postgres.WithSchema(sc.Schema))
	if err != nil {
		return nil, err // never carries the DSN's password
	}
	return st, nil
}

// replica is one process of a node run as replicas: a `schakel node`
// replica or the node's balancer.
type replica struct {
	name  string // gp-node/1, …; the balancer carries the node's name
	url   string // the base its peers (or the balancer) use
	bin   string // the executable; empty: schakel itself
	args  []string
	ready string // host:port that accepts connections once it serves
	// health, for a node replica, is its /healthz: the balancer starts
	// only once every replica answers it, so that none begins out of
	// rotation.
	health string
	// held are its addresses, kept bound here until it starts, so that no
	// other program on the machine takes them meanwhile.
	held []net.Listener
}

// hold binds addr (host:port, or host:0 for any free port) and keeps it
// until the process that is to listen there starts.
func hold(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

// releaseHeld frees whatever addresses are still held (a start that
// failed half-way).
func releaseHeld(reps []replica) {
	for _, r := range reps {
		for _, ln := range r.held {
			ln.Close() // a second close is harmless
		}
	}
}

// prepareReplicas writes the configuration of each of the node's
// Options.Replicas replicas and of the HAProxy that balances them, and
// returns the processes to start, replicas first. cfg is the node's
// configuration with the balancer's listeners: the replicas differ from
// it only in their own listeners and data directory (for the stores that
// are not in PostgreSQL), and advertise the balancer's public URL.
//
// lbHeld are the node's public and internal addresses, bound by the caller:
// they become the balancer's, held from here until it starts.
func (nw *Network) prepareReplicas(name string, cfg node.Config, lbHeld []net.Listener) (_ []replica, err error) {
	all := append([]net.Listener(nil), lbHeld...) // every address held, freed if this fails
	defer func() {
		if err != nil {
			for _, ln := range all {
				ln.Close()
			}
		}
	}()
	dir := filepath.Join(nw.opts.DataDir, name)
	// Keys every replica must share, made before any replica starts so
	// that two never each create their own: the authorization server's,
	// the participants' assertion keys, the audit checkpoint key.
	cfg.Audit.CheckpointKeyFile = filepath.Join(dir, "keys", "audit-checkpoint-key.pem")
	keys := []string{cfg.SigningKeyFile, cfg.Audit.CheckpointKeyFile}
	for _, p := range cfg.Participants {
		keys = append(keys, p.SigningKeyFile)
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		if _, err := pki.LoadOrCreateSigningKey(k); err != nil {
			return nil, fmt.Errorf("%s: key %s: %w", name, k, err)
		}
	}
	lb := balancer{name: name, public: cfg.Public.Addr, internal: cfg.Internal.Addr}
	var out []replica
	for i := 1; i <= nw.opts.Replicas; i++ {
		rc := cfg
		rname := fmt.Sprintf("%s/%d", name, i)
		var held []net.Listener
		for range 2 {
			ln, err := hold(net.JoinHostPort(nw.opts.Host, "0"))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rname, err)
			}
			all, held = append(all, ln), append(held, ln)
		}
		pub, in := held[0].Addr().String(), held[1].Addr().String()
		rc.Public = node.ListenerConfig{Addr: pub, URL: "https://" + cfg.Public.Addr, ProxyProtocol: []string{nw.opts.Host}}
		rc.Internal = node.ListenerConfig{Addr: in}
		rc.Drain = replicaDrain
		rc.DataDir = filepath.Join(dir, fmt.Sprintf("replica-%d", i), "data")
		if err := os.MkdirAll(rc.DataDir, 0o700); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, fmt.Sprintf("replica-%d.yaml", i))
		if err := writeNodeConfig(path, rc, filepath.Join(dir, "internal-token-"+cfg.Participants[0].URA)); err != nil {
			return nil, err
		}
		lb.servers = append(lb.servers, backendServer{name: fmt.Sprintf("%s-%d", name, i), public: pub, internal: in})
		if nw.replicaInternals == nil {
			nw.replicaInternals = map[string][]string{}
		}
		nw.replicaInternals[name] = append(nw.replicaInternals[name], "http://"+in)
		out = append(out, replica{name: rname, url: "https://" + pub, args: []string{"node", "--config", path}, ready: pub,
			health: "http://" + in + "/healthz", held: held})
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(lb.config()), 0o600); err != nil {
		return nil, fmt.Errorf("%s: balancer configuration: %w", name, err)
	}
	bin, err := exec.LookPath(HAProxy)
	if err != nil {
		return nil, errors.New("network: haproxy is not installed (Debian: apt-get install haproxy)")
	}
	// -db: in the foreground, logging to its standard output (our log file).
	out = append(out, replica{name: name, url: "https://" + cfg.Public.Addr, bin: bin,
		args: []string{"-db", "-f", cfgPath}, ready: cfg.Public.Addr, held: lbHeld})
	return out, nil
}

// spawnReplicas starts the replicas and balancers prepareReplicas
// planned, in order, each waited for until it accepts connections.
func (nw *Network) spawnReplicas(ctx context.Context, exe string, reps []replica) error {
	for _, r := range reps {
		bin := exe
		if r.bin != "" {
			bin = r.bin
		}
		releaseHeld([]replica{r}) // the process binds them now
		if err := nw.spawn(ctx, r.name, r.url, r.ready, append([]string{bin}, r.args...)); err != nil {
			return err
		}
		if r.health != "" {
			if err := waitHealthy(ctx, r.name, r.health); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitHealthy waits, bounded, until url answers 200: a node binds its
// listeners before it has finished starting, and serves only then.
func waitHealthy(ctx context.Context, name, url string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	// Bounded: 240 attempts, each at most ~2.25 s.
	for i := 0; i < 240; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("%s does not answer %s", name, url)
}

// balancer is the HAProxy in front of one node's replicas.
type balancer struct {
	name             string
	public, internal string // the frontends: the node's addresses as peers and systems know them
	servers          []backendServer
}

type backendServer struct{ name, public, internal string }

// config is the balancer's HAProxy configuration. The public listener is
// balanced at layer 4 (mode tcp): the TLS 1.3 handshake and the client
// certificate go through to the replica, which alone holds the node's key
// and checks the peer. The internal listener is balanced per request
// (mode http) and each answer names its replica in ReplicaHeader. Both
// check a replica's /healthz on its internal listener: alive and serving.
// Not /readyz: what it adds (PostgreSQL, the consent service, CRLs) is
// shared by every replica, and taking them all out of rotation would turn
// the replicas' own 503 with an OperationOutcome into a dropped connection.
func (b balancer) config() string {
	var s strings.Builder
	name := strings.ReplaceAll(b.name, "/", "_")
	fmt.Fprintf(&s, `# HAProxy in front of the replicas of %[1]s (written by `+"`schakel network up --replicas`"+`).
global
    log stdout format raw local0
    maxconn 4096

defaults
    log global
    timeout connect 2s
    timeout client 5m
    timeout server 5m
    timeout check %[5]dms
    # A replica that refuses the connection (killed) is skipped: the
    # connection goes to the next one.
    retries 2
    option redispatch
    default-server inter %[2]dms fastinter %[6]dms fall 3 rise 2

frontend %[3]s_public
    mode tcp
    bind %[4]s
    # Logged as the connection is handed to a replica, not when it closes.
    option logasap
    log-format "public %%ci:%%cp %%b/%%s %%Tw/%%Tc"
    default_backend %[3]s_public

backend %[3]s_public
    mode tcp
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz
    http-check expect status 200
`, b.name, replicaCheckInterval.Milliseconds(), name, b.public, replicaCheckTimeout.Milliseconds(), replicaFastCheck.Milliseconds())
	for _, sv := range b.servers {
		_, port, _ := strings.Cut(sv.internal, ":")
		// send-proxy-v2: the replica learns each connection's client from
		// a PROXY header (its public.proxyprotocol trusts this balancer),
		// so its audit records name the partner, not the balancer.
		fmt.Fprintf(&s, "    server %s %s check port %s send-proxy-v2\n", sv.name, sv.public, port)
	}
	fmt.Fprintf(&s, `
frontend %[1]s_internal
    mode http
    bind %[2]s
    log-format "internal %%ci:%%cp %%b/%%s %%ST %%HM %%HP"
    default_backend %[1]s_internal

backend %[1]s_internal
    mode http
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz
    http-check expect status 200
    http-response set-header %[3]s %%[srv_name]
`, name, b.internal, ReplicaHeader)
	for _, sv := range b.servers {
		fmt.Fprintf(&s, "    server %s %s check\n", sv.name, sv.internal)
	}
	return s.String()
}

// ReplicaTraffic counts, per node and listener, the connections (public)
// and requests (internal) each replica was given, from the balancers'
// logs: the evidence that an exchange's steps landed on different
// replicas.
type ReplicaTraffic map[string]map[string]map[string]int // node → listener → replica → count

// ReplicaTraffic reads the balancers' logs. Empty without replicas.
func (nw *Network) ReplicaTraffic() (ReplicaTraffic, error) {
	out := ReplicaTraffic{}
	if nw.opts.Replicas == 0 {
		return out, nil
	}
	for _, p := range nw.Processes() {
		if p.Replica() || len(p.Args) == 0 || filepath.Base(p.Args[0]) != HAProxy {
			continue
		}
		f, err := os.Open(p.Log)
		if err != nil {
			return nil, err
		}
		perListener := map[string]map[string]int{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// "public 127.0.0.1:40404 gp-node_public/gp-node-2 0/0"
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 || (fields[0] != "public" && fields[0] != "internal") {
				continue
			}
			_, server, ok := strings.Cut(fields[2], "/")
			if !ok || server == "<NOSRV>" {
				continue
			}
			if perListener[fields[0]] == nil {
				perListener[fields[0]] = map[string]int{}
			}
			perListener[fields[0]][server]++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
		out[p.Name] = perListener
	}
	return out, nil
}

// Spread is the number of different replicas that served node's listener.
func (t ReplicaTraffic) Spread(node, listener string) int { return len(t[node][listener]) }

// PrintReplicaTraffic writes which replicas served each node's listeners.
func (nw *Network) PrintReplicaTraffic(t ReplicaTraffic) {
	nodes := make([]string, 0, len(t))
	for n := range t {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	nw.printf("\nReplicas (from the balancers' logs; public: TLS connections, internal: requests):\n")
	for _, n := range nodes {
		for _, l := range []string{"public", "internal"} {
			servers := make([]string, 0, len(t[n][l]))
			for s := range t[n][l] {
				servers = append(servers, s)
			}
			sort.Strings(servers)
			parts := make([]string, len(servers))
			for i, s := range servers {
				parts[i] = fmt.Sprintf("%s %d", s, t[n][l][s])
			}
			nw.printf("  %-14s %-8s %s\n", n, l, strings.Join(parts, ", "))
		}
	}
}

// DirectPull has the hospital's specialist consult the GP practice for the
// first demo patient (BgZ, Direct Pull) through the hospital node's
// internal API, and fails unless every query was answered.
func (nw *Network) DirectPull(ctx context.Context) (*consult.Result, error) {
	if len(nw.Patients) == 0 {
		return nil, errors.New("no demo patients")
	}
	patient := nw.Patients[0]
	hosp := &xis{base: nw.internalURLs[Hospital.URA], token: nw.Token(Hospital.URA), http: &http.Client{Timeout: 30 * time.Second}}
	nw.printf("\nDirect Pull: the hospital's specialist consults %s for patient %s\n", GP.Name, patient.Name)
	var res consult.Result
	if err := hosp.do(ctx, http.MethodPost, "/internal/consult", consult.Request{PatientBSN: patient.BSN, HolderURA: GP.URA,
		Application: "bgz", User: &plateau.Caller{ID: DemoUser.UZI, Role: DemoUser.Role, LoA: DemoUser.LoA}}, &res); err != nil {
		return nil, fmt.Errorf("consult: %w", err)
	}
	if !res.Complete || res.Resources == 0 {
		var failed []string
		for _, q := range res.Queries {
			if q.Status != http.StatusOK {
				failed = append(failed, fmt.Sprintf("%s %d %s", q.Block, q.Status, q.Outcome))
			}
		}
		return &res, fmt.Errorf("consult: %d resources, not every query answered: %s", res.Resources, strings.Join(failed, "; "))
	}
	nw.printf("  %d resources from %d queries\n", res.Resources, len(res.Queries))
	return &res, nil
}
