package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/admission"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/careapp/hosted"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/proxy"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/identification"
	"github.com/schakel-nl/schakel/indexedpull"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/oauth/replaydb"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/policy"
	"github.com/schakel-nl/schakel/push"
)

// participant is a Deelnemer with its credentials loaded.
type participant struct {
	ParticipantConfig
	cert    tls.Certificate
	signing jwk.Key
	party   *notifiedpull.Party
	index   *localization.Client // referral index, when configured
}

// Node is one running GtK.
type Node struct {
	cfg   Config
	log   *slog.Logger
	trust *pki.Trust
	cert  tls.Certificate
	parts *tenants // the participants served now; the admin API changes them

	publicLn, internalLn net.Listener
	publicURL            string

	stu3     store.Store
	r4       store.Store // fhirversions.go
	auditLog *audit.Store
	// requests counts the public and internal requests under way: the
	// audit log's group commit waits a little for theirs (audit.Config.Siblings).
	requests atomic.Int64
	// draining is set while the node drains before it stops (Serve):
	// its health checks answer 503.
	draining atomic.Bool
	npDB     *notifiedpull.DB
	np       *notifiedpull.Service
	pushDB   *push.DB
	push     *push.Service
	as       *oauth.Server
	replay   oauth.ReplayCache
	replayDB *replaydb.Cache // the replay cache's database, with store.postgres
	dir      addressbook.EndpointResolver
	dirs     *addressbook.Directories // replicas, when configured
	plateaus *plateau.Enforcer
	consents *consent.Store  // the local registry (plateau 1), with consent.local
	regional *consent.Client // the regional portal's service (plateau 2), with consent.regional.url
	mitz     *consent.Client // Mitz (plateau 3–4), with consent.url
	// regionalHost names the regional portal in audit records.
	regionalHost string
	consult      *consult.Service
	apps         *careapp.Registry // the care applications it runs
	indexed      *indexedpull.Service
	hits         hitKeeper                 // localization hits of the participants' lookups (requesting side)
	hitTable     *hitTable                 // the hits' table, with store.postgres
	hitCheck     *localization.HolderCheck // the holding side of localization
	bsn          *identification.Client    // the BSN verification service, with identification.url
	metrics      *metrics
	tracing      *tracing // spans; a no-op without telemetry.otlp.endpoint
	// localIdentity signs user identities with a local key (identity.issuer.keyfile).
	localIdentity plateau.IdentityIssuer
	shipper       *audit.Shipper // to the central log (logging plateau 3–4), when configured

	publicSrv, internalSrv *http.Server
	adminLn                net.Listener // with admin.addr
	adminSrv               *http.Server
	admin                  *adminState // what the admin API changes
	events                 func(notifiedpull.Event)
	clientsMu              sync.Mutex
	clients                []*http.Client // outgoing mTLS clients, for CloseIdleConnections
	background             sync.WaitGroup // side work (index registrations) finished before the stores close
	registeredMu           sync.Mutex
	registered             map[string]time.Time // holdings registered at the index recently
	faults                 *nodeFaults          // nil but in the module's own tests (faults.go)
	admission              *admission.Client    // partners' proofs of validation; nil without admission.url
	mounted                []hosted.Mounted     // care applications with routes of their own (hosted.go)
}

// Options are the node's collaborators that are not configuration.
type Options struct {
	Logger *slog.Logger
	// Events receives each Notified Pull step as it happens.
	Events func(notifiedpull.Event)
	// Registry receives the node's metrics; a fresh one when nil.
	Registry prometheus.Registerer
	// PublicListener, when set, is the public listener, already bound (e.g.
	// handed over by a supervisor); public.addr is then not bound. The node
	// owns it from then on: New closes it when it fails.
	PublicListener net.Listener
	// Faults breaks the node on purpose, to prove the validation kit
	// catches each defect. Only the module's own tests can set it: the
	// package internal/faults is not importable from outside, and no
	// configuration key or flag reaches it.
	Faults *faults.Set
	// Applications are the care applications the node runs; nil: the ones
	// Schakel ships (DefaultApplications).
	Applications *careapp.Registry
	// TracerProvider, when set, receives the node's spans instead of the
	// one telemetry.otlp configures (tests use an in-memory exporter).
	TracerProvider trace.TracerProvider
}

// New validates cfg, loads credentials, opens the stores and binds the
// listeners (so their addresses are known before Serve). When it fails it
// has released whatever it opened, and its error names the setting at fault.
func New(ctx context.Context, cfg Config, opts Options) (*Node, error) {
	// The admin API's changes, kept in datadir (or shared by the replicas
	// in PostgreSQL), override the file's entries.
	var ovs overlayStore = overlayFile{cfg.DataDir}
	if cfg.Store.Postgres != "" {
		t, err := openOverlayTable(ctx, cfg.Store.Postgres, cfg.Store.Schema, cfg.Name, cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("store.postgres: %w", err)
		}
		ovs = t
	}
	ov, ovVersion, err := ovs.load(ctx)
	if err != nil {
		ovs.Close()
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	seed := cfg
	cfg = ov.apply(seed)
	if err := cfg.Validate(); err != nil {
		ovs.Close()
		if !ov.empty() {
			err = fmt.Errorf("%w\n(with the run-time changes in %s)", err, ovs)
		}
		return nil, fmt.Errorf("node %s: invalid configuration:\n%w", cfg.Name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	n := &Node{cfg: cfg, log: slog.New(contextHandler{log.Handler()}).With("node", cfg.Name), parts: newTenants(),
		events: opts.Events, registered: map[string]time.Time{}, publicLn: opts.PublicListener,
		admin: &adminState{seed: seed, ov: ov, current: cfg, store: ovs, version: ovVersion}, faults: newNodeFaults(opts.Faults), apps: applications(opts)}
	// n is never nil here, whatever the return statements below say; the
	// result is not named so that no return can reset it before this runs.
	started := false
	defer func() {
		if !started {
			n.closeStores()
			n.stopTracing()
		}
	}()
	if err := n.open(ctx, opts); err != nil {
		return nil, err
	}
	started = true
	return n, nil
}

// open does New's work on n, filling in what it opens as it goes so that
// closeStores can release exactly that when a later step fails.
func (n *Node) open(ctx context.Context, opts Options) error {
	cfg := n.cfg
	var err error
	// First: the audit log's commits and the clients' calls report to it.
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	n.metrics = newMetrics(reg)
	// Before any outgoing client is made: their transports carry the trace.
	if n.tracing, err = newTracing(ctx, cfg.Name, cfg.Telemetry, opts.TracerProvider); err != nil {
		return err
	}
	trustCfg := cfg.trust()
	trustCfg.Logger = n.log
	if n.trust, err = pki.LoadTrust(trustCfg); err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	policies, err := policy.Load(cfg.Partners.PolicyDir)
	if err == nil {
		err = checkApplications(n.apps, policies)
	}
	if err != nil {
		return fmt.Errorf("partners.policydir: %w", err)
	}
	n.hits = newHitMemory(nil)
	n.hitCheck = &localization.HolderCheck{IsTenant: func(ura string) bool { return n.parts.has(ura) }}
	partners := cfg.Partners
	partners.IdentityIssuers = cfg.Identity.trustedIssuerNames(partners.IdentityIssuers)
	if n.plateaus, err = plateau.New(partners, policies, plateau.NetworkCheck{Trust: n.trust}, n.hitCheck); err != nil {
		return fmt.Errorf("partners: %w", err)
	}
	if n.cert, err = loadKeyPair("tls", cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
		return err
	}
	for i, pc := range cfg.Participants {
		p, err := n.loadParticipant(fmt.Sprintf("participants[%d]", i), pc)
		if err != nil {
			return err
		}
		n.parts.put(p)
	}

	if n.publicLn == nil {
		if n.publicLn, err = net.Listen("tcp", cfg.Public.Addr); err != nil {
			return fmt.Errorf("public.addr: %w", err)
		}
	}
	if n.internalLn, err = net.Listen("tcp", cfg.Internal.Addr); err != nil {
		return fmt.Errorf("internal.addr: %w", err)
	}
	if n.publicLn, err = withProxyProtocol(n.publicLn, cfg.Public.ProxyProtocol); err != nil {
		return fmt.Errorf("public.proxyprotocol: %w", err)
	}
	if n.internalLn, err = withProxyProtocol(n.internalLn, cfg.Internal.ProxyProtocol); err != nil {
		return fmt.Errorf("internal.proxyprotocol: %w", err)
	}
	if cfg.Admin.Addr != "" {
		if n.admin.operators, err = loadOperators(cfg.Admin.TokenFile); err != nil {
			return err
		}
		if n.adminLn, err = net.Listen("tcp", cfg.Admin.Addr); err != nil {
			return fmt.Errorf("admin.addr: %w", err)
		}
	}
	n.publicURL = cfg.Public.URL
	if n.publicURL == "" {
		n.publicURL = "https://" + n.publicLn.Addr().String()
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("datadir: %w", err)
	}
	// Through concrete variables: a failed Open's nil *Store would make
	// n.stu3 a non-nil interface that closeStores then calls.
	if cfg.Store.Postgres != "" {
		var opts []postgres.Option
		if cfg.Store.Schema != "" {
			opts = append(opts, postgres.WithSchema(cfg.Store.Schema))
		}
		st, err := postgres.Open(ctx, cfg.Store.Postgres, fhir.STU3, opts...)
		if err != nil {
			// The store's errors never carry the DSN's password.
			return fmt.Errorf("store.postgres: %w", err)
		}
		n.stu3 = timedStore{st, n.metrics.series, n.tracing.tracer}
	} else {
		st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "fhir-stu3.db"), fhir.STU3)
		if err != nil {
			return fmt.Errorf("datadir: FHIR store: %w", err)
		}
		n.stu3 = timedStore{st, n.metrics.series, n.tracing.tracer}
	}
	if err := n.openR4Store(ctx); err != nil {
		return err
	}
	keyFile, keySetting := cfg.Audit.CheckpointKeyFile, "audit.checkpointkeyfile"
	if keyFile == "" {
		keyFile, keySetting = filepath.Join(cfg.DataDir, "audit-checkpoint-key.pem"), "datadir: audit checkpoint key"
	}
	checkpointKey, err := pki.LoadOrCreateSigningKey(keyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", keySetting, err)
	}
	if err := n.openAudit(ctx, checkpointKey); err != nil {
		return err
	}
	if err := n.setupProxies(); err != nil {
		return err
	}
	// The exchange state follows the FHIR store: with store.postgres a
	// node's replicas share it.
	if cfg.Store.Postgres != "" {
		if n.npDB, err = notifiedpull.OpenPostgres(ctx, cfg.Store.Postgres, cfg.Store.Schema); err != nil {
			return fmt.Errorf("store.postgres: exchange store: %w", err)
		}
	} else if n.npDB, err = notifiedpull.OpenDB(ctx, filepath.Join(cfg.DataDir, "exchange.db")); err != nil {
		return fmt.Errorf("datadir: exchange store: %w", err)
	}

	clientTLS := n.trust.ClientTLSConfig(n.cert)
	book := &addressing{plateaus: n.plateaus}
	if len(cfg.Addressbook.Directories) > 0 {
		if n.dirs, err = addressbook.OpenDirectoriesIn(ctx, cfg.Addressbook, n.httpClient(clientTLS), n.log, cfg.addressbookStorage()); err != nil {
			return fmt.Errorf("addressbook.directories: %w", err)
		}
		book.book = n.dirs
	} else if cfg.AddressbookURL != "" {
		book.book = &addressbook.Client{Base: cfg.AddressbookURL, HTTP: n.httpClient(clientTLS)}
	}
	n.dir = book
	if err := n.setupAdmission(n.httpClient(clientTLS)); err != nil {
		return err
	}

	signing, err := pki.LoadOrCreateSigningKey(cfg.SigningKeyFile)
	if err != nil {
		return fmt.Errorf("signingkeyfile: %w", err)
	}
	var previous []jwk.Key
	for i, f := range cfg.PreviousSigningKeyFiles {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("previoussigningkeyfiles[%d]: %w", i, err)
		}
		k, err := pki.LoadOrCreateSigningKey(f)
		if err != nil {
			return fmt.Errorf("previoussigningkeyfiles[%d]: %w", i, err)
		}
		previous = append(previous, k)
	}
	n.np = notifiedpull.New(notifiedpull.Config{
		Node: cfg.Name, Applications: n.apps, DB: n.npDB, Store: n.stu3, DataStore: n.StoreFor, Directory: n.dir,
		Parties: func(ura string) (*notifiedpull.Party, bool) {
			p, ok := n.parts.get(ura)
			if !ok {
				return nil, false
			}
			return p.party, true
		},
		FHIRBase: n.fhirBase,
		Issuer:   n.publicURL,
		PeerURA:  func(r *http.Request) (string, error) { return n.trust.PeerURA(r.TLS) },
		Verify:   func(r *http.Request, aud string) (*oauth.AccessToken, error) { return n.verify(r, aud) },
		Audit:    n.auditAppender(), Events: n.emit, Logger: n.log, Validity: cfg.ReferralValidity,
		Lease: cfg.Lease, Holding: n.holding, Present: n.present, NeedsUser: n.needsUser, Faults: n.faults.Set(), Tracer: n.tracing.tracer,
		Identify: func(ctx context.Context, c notifiedpull.IdentityCheck) error {
			return n.identify(ctx, identityCheck{tenant: c.Tenant, partner: c.PartnerURA, bsn: c.PatientBSN, birthDate: c.BirthDate, step: c.Step})
		},
	})
	if err := n.setupPush(ctx); err != nil {
		return err
	}
	if err := n.setupGeneric(); err != nil {
		return err
	}
	if err := n.setupIdentification(); err != nil {
		return err
	}
	n.consult = consult.New(consult.Config{
		Node: cfg.Name, Applications: n.apps, Directory: n.dir,
		Parties: func(ura string) (*notifiedpull.Party, bool) {
			p, ok := n.parts.get(ura)
			if !ok {
				return nil, false
			}
			return p.party, true
		},
		Tenants: func() []string {
			var out []string
			for _, p := range n.parts.all() {
				out = append(out, p.URA)
			}
			return out
		},
		FHIRBase: n.fhirBase,
		R4Base:   n.fhirBaseR4,
		FacilityType: func(ura string) string {
			if p, ok := n.parts.get(ura); ok {
				return p.FacilityType
			}
			return ""
		},
		ConsentSource: func(q consent.Question) (consent.Checker, string) { return n.observedConsentFor(q.RequesterURA) },
		Admit:         n.admitConsult,
		Present:       n.present,
		Audit:         n.auditAppender(), Logger: n.log,
	})
	n.setupIndexedPull()
	if err := n.mountApplications(); err != nil {
		return err
	}
	trustedIdentities, err := n.loadIdentity(ctx, clientTLS)
	if err != nil {
		return err
	}
	if err := n.openReplay(ctx); err != nil {
		return err
	}
	if err := n.openHits(ctx); err != nil {
		return err
	}
	n.as, err = oauth.NewServer(oauth.ServerConfig{
		Issuer:       n.publicURL,
		SigningKey:   signing,
		PreviousKeys: previous,
		Clients:      &clientKeys{dir: n.dir, http: n.httpClient(clientTLS)},
		Grants:       oauth.GrantResolverFunc(n.tracedResolveGrant),
		OnRefusal:    n.auditRefusal,
		PeerURA:      n.trust.PeerURA,
		Replay:       n.replay,
		TokenTTL:     cfg.TokenTTL,
		ClockSkew:    cfg.ClockSkew,
		// Verification is per request; ES256 checks dominate without a cache.
		VerifiedTokenCacheSize: 10000,
		Logger:                 n.log,
		IdentityIssuers:        trustedIdentities,
		AuthenticationPlateau:  n.authenticationPlateau,
		Faults:                 n.faults.Set(),
	})
	if err != nil {
		return fmt.Errorf("authorization server: %w", err)
	}
	if err := n.setupShipping(reg); err != nil {
		return err
	}
	reg.MustRegister(newNodeCollector(n))
	n.zeroSeries()
	n.publicSrv = &http.Server{
		Handler:           n.edge("public", n.publicRoutes()),
		TLSConfig:         n.faults.publicTLS(n.trust.ServerTLSConfig(n.cert)),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.With("listener", "public").Handler(), slog.LevelInfo), // refused TLS handshakes, among others
	}
	n.internalSrv = &http.Server{
		Handler:           n.edge("internal", n.internalRoutes(reg)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	n.adminSrv = &http.Server{Handler: n.edge("admin", n.adminRoutes()), ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// PublicURL is the base URL peers reach this node at.
func (n *Node) PublicURL() string { return n.publicURL }

// InternalURL is the base URL of the internal listener.
func (n *Node) InternalURL() string { return "http://" + n.internalLn.Addr().String() }

// AdminURL is the base URL of the admin API; empty without admin.addr.
func (n *Node) AdminURL() string {
	if n.adminLn == nil {
		return ""
	}
	return "http://" + n.adminLn.Addr().String()
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Store is the node's STU3 FHIR store (for loading a participant's data).
func (n *Node) Store() store.Store { return n.stu3 }

// Audit is the node's audit log.
func (n *Node) Audit() *audit.Store { return n.auditLog }

// fhirBase is the public STU3 FHIR base of a participant (Endpoints' BgZ;
// asked per data request, so built alone).
func (n *Node) fhirBase(tenant string) string {
	return strings.TrimSuffix(n.publicURL, "/") + "/fhir/stu3/" + tenant
}

// AddressbookEntries are the directory entries that make this node's
// participants reachable: notification endpoint, FHIR base, authorization
// server and client keys.
func (n *Node) AddressbookEntries() []addressbook.Entry {
	var out []addressbook.Entry
	for _, p := range n.parts.all() {
		e := Endpoints(n.publicURL, p.URA)
		eps := []addressbook.EndpointSpec{
			{ID: "ep-" + p.URA + "-notification", PayloadType: addressbook.PayloadNotification, Address: e.Notification, FHIRVersion: "3.0"}}
		eps = append(eps, DataEndpoints(n.apps, n.publicURL, p.URA)...) // one per care application's data server
		eps = append(eps,
			addressbook.EndpointSpec{ID: "ep-" + p.URA + "-as", PayloadType: addressbook.PayloadAuthServer, Address: e.AuthServer},
			addressbook.EndpointSpec{ID: "ep-" + p.URA + "-jwks", PayloadType: addressbook.PayloadClientJWKS, Address: e.JWKS},
			addressbook.EndpointSpec{ID: "ep-" + p.URA + "-push", PayloadType: push.PayloadType, Address: e.Push, FHIRVersion: "3.0"})
		eps = append(eps, n.hostedEndpoints(p.URA)...) // care applications with routes of their own (hosted.go)
		out = append(out, addressbook.Entry{ID: "org-" + p.URA, URA: p.URA, Name: p.Name, Endpoints: eps})
	}
	return out
}

// Endpoints are the endpoints a node whose public base URL is publicURL
// serves for participant ura: what its addressbook entry lists, and what a
// partner configures at addressing plateau 1–2
// (partners.agreements[].endpoints).
func Endpoints(publicURL, ura string) plateau.Endpoints {
	base := strings.TrimSuffix(publicURL, "/")
	return plateau.Endpoints{Notification: base + "/fhir/stu3/" + ura + "/Task", BgZ: base + "/fhir/stu3/" + ura, R4: base + "/fhir/r4/" + ura,
		AuthServer: base, JWKS: base + "/jwks/" + ura, Push: base + "/fhir/stu3/" + ura + "/$process-message"}
}

// Serve runs the node until ctx ends, then shuts down gracefully: with
// Config.Drain set, it first answers its health checks 503 for that long
// while it goes on serving, so that a load balancer takes it out of
// rotation before any connection closes; then it finishes what it has
// accepted and stops.
func (n *Node) Serve(ctx context.Context) error {
	// The node's own work (pulls, deliveries, replication) runs until the
	// drain is over: a referral accepted while draining is pulled here.
	stop := ctx
	ctx, stopWork := context.WithCancel(context.WithoutCancel(stop))
	defer stopWork()
	// Stopped before it serves, the node stops its work at once.
	unlink := context.AfterFunc(stop, stopWork)
	defer unlink()
	if err := n.np.Start(ctx); err != nil {
		n.np.Wait()
		n.closeStores()
		if ctx.Err() != nil {
			return nil // stopped while starting: a shutdown, not a failure
		}
		return err
	}
	if err := n.push.Start(ctx); err != nil {
		n.np.Wait()
		n.closeStores()
		if ctx.Err() != nil {
			return nil // as above
		}
		return err
	}
	dirsDone := make(chan struct{})
	if n.dirs != nil {
		go func() { _ = n.dirs.Run(ctx); close(dirsDone) }()
	} else {
		close(dirsDone)
	}
	stopShipping := n.startShipping(ctx)
	if n.admin.store.shared() {
		n.background.Add(1)
		go func() { defer n.background.Done(); n.watchOverlay(ctx) }()
	}
	errc := make(chan error, 3)
	go func() { errc <- n.publicSrv.ServeTLS(n.publicLn, "", "") }()
	go func() { errc <- n.internalSrv.Serve(n.internalLn) }()
	if n.adminLn != nil {
		go func() { errc <- n.adminSrv.Serve(n.adminLn) }()
	}
	n.log.Info("node started", "public", n.PublicURL(), "internal", n.InternalURL(), "admin", n.AdminURL(), "participants", n.parts.len())
	unlink() // from here the drain decides when the work stops
	var err error
	select {
	case <-stop.Done():
		if ctx.Err() == nil && n.cfg.Drain > 0 {
			err = n.drain(errc)
		}
	case <-ctx.Done(): // stopped while starting
	case err = <-errc:
	}
	stopWork()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.publicSrv.Shutdown(shutdownCtx)
	_ = n.internalSrv.Shutdown(shutdownCtx)
	_ = n.adminSrv.Shutdown(shutdownCtx)
	n.np.Wait()
	n.push.Wait()
	stopShipping()
	n.background.Wait()
	<-dirsDone
	n.faults.flush(n.auditLog)
	n.closeStores()
	n.stopTracing()
	n.log.Info("node stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// drain answers the health checks 503 for Config.Drain while the node goes
// on serving, unless a listener fails first (its error is returned).
func (n *Node) drain(errc <-chan error) error {
	n.draining.Store(true)
	n.log.Info("node draining: health checks answer 503 before the listeners close", "drain", n.cfg.Drain)
	t := time.NewTimer(n.cfg.Drain)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case err := <-errc:
		return err
	}
}

// closeStores releases what New opened, in the reverse order, skipping
// what a failed New did not get to.
func (n *Node) closeStores() {
	if n.admin != nil && n.admin.store != nil {
		_ = n.admin.store.Close()
	}
	if n.hitTable != nil {
		_ = n.hitTable.Close()
	}
	if n.replayDB != nil {
		_ = n.replayDB.Close()
	}
	if n.consents != nil {
		_ = n.consents.Close()
	}
	if n.dirs != nil {
		_ = n.dirs.Close()
	}
	if n.npDB != nil {
		_ = n.npDB.Close()
	}
	if n.pushDB != nil {
		_ = n.pushDB.Close()
	}
	if n.auditLog != nil {
		_ = n.auditLog.Close()
	}
	if n.r4 != nil {
		_ = n.r4.Close()
	}
	if n.stu3 != nil {
		_ = n.stu3.Close()
	}
	if n.adminLn != nil {
		n.adminLn.Close()
	}
	if n.internalLn != nil {
		n.internalLn.Close()
	}
	if n.publicLn != nil {
		n.publicLn.Close()
	}
}

// loadParticipant loads a participant's credentials — its certificate
// (the node's when it has none of its own), which must carry its URA, and
// its signing key — and gives it its outgoing client. where names the
// configuration entry in errors.
func (n *Node) loadParticipant(where string, pc ParticipantConfig) (*participant, error) {
	p := &participant{ParticipantConfig: pc, cert: n.cert}
	var err error
	if pc.CertFile != "" {
		if p.cert, err = loadKeyPair(where, pc.CertFile, pc.KeyFile); err != nil {
			return nil, err
		}
	}
	leaf, err := x509.ParseCertificate(p.cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%s (URA %s) certificate: %w", where, pc.URA, err)
	}
	id, err := pki.ParseUZIServerID(leaf)
	if err != nil {
		return nil, fmt.Errorf("%s (URA %s) certificate: %w", where, pc.URA, err)
	}
	if id.URA != pc.URA {
		return nil, fmt.Errorf("%s.ura %s: its certificate carries URA %s", where, pc.URA, id.URA)
	}
	if p.signing, err = pki.LoadOrCreateSigningKey(pc.SigningKeyFile); err != nil {
		return nil, fmt.Errorf("%s.signingkeyfile: %w", where, err)
	}
	hc := n.httpClient(n.trust.ClientTLSConfig(p.cert))
	p.party = &notifiedpull.Party{URA: p.URA, Name: p.Name, SystemUZI: p.SystemUZI, HTTP: hc,
		OAuth: &oauth.Client{ClientID: p.URA, Key: p.signing, HTTP: hc}}
	return p, nil
}

// loadKeyPair loads a certificate and its key, naming the setting
// (<section>.certfile or <section>.keyfile) of the file at fault.
func loadKeyPair(section, certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.certfile: %w", section, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.keyfile: %w", section, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.certfile %s and %s.keyfile %s: %w", section, certFile, section, keyFile, err)
	}
	return cert, nil
}

func eventf(node, tenant, step, format string, args ...any) notifiedpull.Event {
	return notifiedpull.Event{Time: time.Now(), Node: node, Tenant: tenant, Step: step, Detail: fmt.Sprintf(format, args...)}
}

func (n *Node) emit(e notifiedpull.Event) {
	n.metrics.events.WithLabelValues(e.Step).Inc()
	n.exchangeEvent(e)
	if n.events != nil {
		n.events(e)
	}
}

// CloseIdleConnections drops the node's idle outgoing connections, so the
// next exchange starts with fresh TLS handshakes.
func (n *Node) CloseIdleConnections() {
	n.clientsMu.Lock()
	defer n.clientsMu.Unlock()
	for _, c := range n.clients {
		c.CloseIdleConnections()
	}
}

func (n *Node) httpClient(cfg *tls.Config) *http.Client {
	c := &http.Client{
		Timeout: 30 * time.Second,
		Transport: n.traceTransport(&http.Transport{
			TLSClientConfig:     cfg,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	n.clientsMu.Lock()
	n.clients = append(n.clients, c)
	n.clientsMu.Unlock()
	return c
}

// setupProxies puts participants in proxy mode in front of their EHRs.
func (n *Node) setupProxies() error {
	proxies := map[string]store.Store{}
	for _, p := range n.cfg.Participants {
		if p.EHR.URL == "" {
			continue
		}
		var roots *x509.CertPool // the system roots when no CA is configured
		if len(p.EHR.CAFiles) > 0 {
			var err error
			if roots, err = pki.LoadCertPool(p.EHR.CAFiles...); err != nil {
				return fmt.Errorf("participant %s EHR CA: %w", p.URA, err)
			}
		}
		tlsCfg := pki.BackendClientTLSConfig(roots)
		cfg := proxy.Config{BaseURL: p.EHR.URL, Version: fhir.STU3, Timeout: p.EHR.Timeout,
			Client: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 16}}}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("participant %s: %w", p.URA, err)
		}
		proxies[p.URA] = proxy.New(cfg)
	}
	if len(proxies) > 0 {
		n.stu3 = &routedStore{local: n.stu3, proxies: proxies}
	}
	return nil
}

// Close releases a node that will not be served (Serve closes what it
// serves itself): its stores and bound listeners.
func (n *Node) Close() {
	n.closeStores()
	n.stopTracing()
}
