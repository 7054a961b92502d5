// Package network starts a complete local Twiin network in one process: an
// addressbook and two nodes (a GP practice and a hospital) with their PKI,
// demo data and configuration, and runs a real Notified Pull between them.
// It is the test environment; the nodes are the production nodes.
package network

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"go.opentelemetry.io/otel/trace"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/admission"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/identification"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/logcentral"
	"github.com/schakel-nl/schakel/monitor"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
)

// Participant is an organisation in the demo network.
type Participant struct {
	URA, Name, SystemUZI, AGB string
	// FacilityType is the provider type in consent questions and the index.
	FacilityType string
}

// The demo network's organisations.
var (
	GP       = Participant{URA: "90000001", Name: "Huisartsenpraktijk De Linde", SystemUZI: "900000011", AGB: "01000001", FacilityType: "Z1"}
	Hospital = Participant{URA: "90000002", Name: "Ziekenhuis Rijnstroom", SystemUZI: "900000022", AGB: "06000002", FacilityType: "Z3"}
	// NursingHome runs the third node of the mixed network (Options.Mixed).
	// R5 is "Verpleeghuis" in the organisation type code system
	// (2.16.840.1.113883.2.4.15.1060).
	NursingHome = Participant{URA: "90000003", Name: "Verpleeghuis De Berken", SystemUZI: "900000033", AGB: "33000003", FacilityType: "R5"}
	dirOrg      = Participant{URA: "90000999", Name: "Schakel addressbook", SystemUZI: "900009999", AGB: "00000000"}
	consentOrg  = Participant{URA: "90000998", Name: "Schakel consent service", SystemUZI: "900009988", AGB: "00000000"}
	portalOrg   = Participant{URA: "90000996", Name: "Regionaal toestemmingsportaal", SystemUZI: "900009966", AGB: "00000000"}
	indexOrg    = Participant{URA: "90000997", Name: "Schakel referral index", SystemUZI: "900009977", AGB: "00000000"}
)

// AddressbookStoreFile is the addressbook's database in its data directory:
// the file `schakel addressbook serve --data-dir` and `load` open.
const AddressbookStoreFile = "addressbook-r4.db"

// Options configure a network.
type Options struct {
	// DataDir keeps keys, certificates and stores; reused across runs.
	DataDir string
	// Patients is the number of demo patients the GP practice holds (≥1).
	Patients int
	// Host is the address listeners bind to; 127.0.0.1 by default.
	Host string
	// Agreements are extra partner agreements every node gets, besides the
	// plateau-1 agreement the GP practice and the hospital have with each other.
	Agreements []plateau.PartnerConfig
	// Plateaus, per function, replace the plateaus of the agreement the GP
	// practice and the hospital have with each other (plateau 1, consent 4).
	Plateaus plateau.Plateaus
	// Plateau (1–4), when set, agrees every function between the GP
	// practice and the hospital at that plateau (Plateaus still override
	// single functions), and the network provides what the plateau needs:
	// at addressing 1–2 the two know each other's endpoints from their
	// agreement (the addressbook stays, for the services and other
	// partners); RunAtPlateau registers the demo consent at the source the
	// consent plateau names. The identity issuer, the BSN verification
	// stand-in, the referral index and a fresh CRL run at every plateau; the
	// central log starts with the first agreement at logging 3–4.
	Plateau int
	// Mixed runs a third node, the nursing home's, and agrees the plateaus
	// per pair of nodes and per function as mixedAgreements says (network/
	// mixed.go); RunMixed runs its exchanges. Not with Plateau.
	Mixed bool
	// IndexedPull runs a third node, the nursing home's, and the clinic
	// (Clinic) on the hospital's node, all at the default agreement;
	// RunIndexedPull runs an Indexed Pull across the three holders
	// (network/indexedpull.go). Not with Mixed, Plateau or Requesters.
	IndexedPull bool
	// Geboortezorg runs a third node, the midwife practice's (Midwife),
	// all at the default agreement; ExchangeTransfer sends the perinatal
	// transfer over Push (network/geboortezorg.go). Alone only.
	Geboortezorg bool
	// SystemIdentity lets the hospital's system pull a referral without a
	// user's acceptance (the agreement's systemidentity) at
	// authentication plateau 2–3.
	SystemIdentity bool
	// Postgres, when set, keeps each node's FHIR store in PostgreSQL (a
	// schema per node, PostgresSchemaPrefix + node name) instead of SQLite.
	Postgres             string
	PostgresSchemaPrefix string
	// Replicas (UpProcesses, with Postgres) runs each node as that many
	// `schakel node` processes behind a HAProxy (network/replicas.go).
	Replicas int
	// LocalConsent agrees consent at plateau 1 between the GP practice and
	// the hospital: the GP's node then decides from consents the practice
	// registered in it (its internal API) instead of asking the consent
	// service that plays Mitz (plateau 4, the default).
	LocalConsent bool
	// Requesters are further organisations the hospital's node serves
	// (each with its own UZI server certificate), e.g. to consult the GP
	// practice under agreements of their own (Agreements).
	Requesters []Participant
	// RecordInEHR keeps the GP practice's record in its own EHR (a FHIR
	// server beside the network) and puts the GP's node in proxy mode in
	// front of it, instead of loading the record into the node.
	RecordInEHR bool
	// OwnAddressing gives the GP practice and the hospital each other's
	// endpoints in their agreement (addressing plateau 1–2, "own
	// mechanism") instead of an addressbook: the nodes get no addressbook
	// and are not listed in the network's. Not with Requesters.
	OwnAddressing bool
	// Applications are the care applications every node runs and the kit
	// validates; nil: the ones Schakel ships (node.DefaultApplications).
	Applications *careapp.Registry
	// Care is the care application the demo's exchanges are for; empty:
	// the first of Applications on the exchange's pattern.
	Care string
	// Imaging starts a PACS stand-in for the hospital (network/beeld.go):
	// demo studies of every demo patient, served over DICOMweb to the
	// hospital's node (participants[].pacs); RunImaging runs the exchange.
	Imaging bool
	// Out receives the progress lines; nil discards them.
	Out    io.Writer
	Logger *slog.Logger

	// Faults, in the module's own tests only, breaks both nodes on purpose
	// (internal/faults), to prove the validation kit catches each defect.
	Faults *faults.Set
	// Tracing, when set, gives each node (by name: gp, hospital, …) the
	// tracer provider its spans go to (node.Options.TracerProvider).
	Tracing func(node string) trace.TracerProvider

	// trust adjusts the nodes' trust lists (tests: a clock, a policy).
	trust func(*pki.TrustConfig)
}

// Network is a running local network.
type Network struct {
	opts            Options
	out             io.Writer
	mu              sync.Mutex
	Nodes           []*node.Node
	GPNode          *node.Node
	HospNode        *node.Node
	NursingHomeNode *node.Node        // with Mixed only
	members         []Participant     // the participant of each of Nodes, in order
	tokens          map[string]string // URA → internal API token
	internalURLs    map[string]string // URA → its node's internal API base
	// replicaInternals are, with replicas, each replica's internal
	// listener per node name (the monitor reads every replica's /metrics).
	replicaInternals     map[string][]string
	dirStore             store.Store
	services             []*service // addressbook, consent, localization
	closers              []io.Closer
	dirURL               string
	consentURL, indexURL string
	identityURL          string // the development identity issuer
	identityJWKS         string // its public keys, as the nodes trust them
	consent              *consent.Server
	portalURL            string
	portal               *consent.Server        // the regional consent portal's service
	bsn                  *identification.Server // the BSN verification stand-in (SBV-Z role)
	bsnURL               string
	ehrStore             store.Store // the GP's EHR, with RecordInEHR
	ehrURL               string
	pacs                 *pacsStandIn // the hospital's PACS, with Imaging (beeld.go)
	validatedTransfer    bool         // the nursing home's node holds a proof for the transfer (eoverdracht.go)
	dir                  *addressbook.Server
	done                 chan notifiedpull.Event // completed/failed pulls and completions reported to the sender, for waiters
	CA                   *pki.CA
	Patients             []demo.Patient
	serveDone            chan struct{}
	nodeErrs             chan error
	procs                []*Process            // components in processes of their own (UpProcesses)
	processes            bool                  // started by UpProcesses
	nodeNames            []string              // the node of each of members, by name
	publicURLs           map[string]string     // URA of a node's first participant → its node's public base
	validator            *validation.Enrolment // the Twiin validation service (network/validator.go)

	// The central log (logging plateau 3–4), when an agreement needs it.
	logcentralURL string
	logcentral    logcentral.Store
	register      *admission.Register // the admission register (network/admission.go)
	admissionURL  string
	authority     jwk.Key         // the development validation authority's key
	monitor       *monitor.Server // the Twiin Monitor (network/monitor.go)
	monitorURL    string
}

// Up prepares the network: PKI, addressbook, nodes and demo data. Listeners
// are bound, nothing is served until Start.
func Up(ctx context.Context, opts Options) (nw *Network, err error) {
	if nw, err = newNetwork(opts); err != nil {
		return nil, err
	}
	opts = nw.opts
	built := nw
	defer func() {
		if err != nil {
			// Whatever was built is released: stores, listeners, nodes.
			for _, n := range built.Nodes {
				n.Close()
			}
			built.closeAll()
		}
	}()
	if err := nw.preparePKI(); err != nil {
		return nil, err
	}
	if err := nw.prepareValidator(); err != nil {
		return nil, err
	}
	caFile := filepath.Join(opts.DataDir, "pki", "ca.pem")

	// The addressbook.
	dirDir := filepath.Join(opts.DataDir, "addressbook")
	dirCert, err := nw.issue(dirDir, "addressbook", dirOrg)
	if err != nil {
		return nil, err
	}
	if nw.dirStore, err = sqlite.Open(ctx, filepath.Join(dirDir, AddressbookStoreFile), fhir.R4); err != nil {
		return nil, fmt.Errorf("addressbook store: %w", err)
	}
	dirSvc, err := nw.listen("addressbook", dirCert)
	if err != nil {
		return nil, err
	}
	nw.dirURL = dirSvc.url + "/fhir"
	dir := addressbook.NewServer(nw.dirStore, nw.dirURL, opts.Logger.With("component", "addressbook"))
	nw.dir = dir
	dirSvc.srv.Handler = dir.Handler()
	if err := nw.startAdmission(ctx, dirSvc); err != nil {
		return nil, err
	}

	// The consent service (Mitz-compatible) and the referral index.
	if err := nw.startGenericServices(opts); err != nil {
		return nil, err
	}
	if err := nw.startIdentityIssuer(); err != nil {
		return nil, err
	}
	if err := nw.startIdentification(); err != nil {
		return nil, err
	}
	if opts.RecordInEHR {
		if err := nw.startEHR(ctx, opts); err != nil {
			return nil, err
		}
	}
	if err := nw.startPACS(); err != nil {
		return nil, err
	}

	// The nodes.
	events := func(e notifiedpull.Event) { nw.printEvent(e) }
	publicLn := map[string]net.Listener{}
	if nw.ownEndpoints() && len(opts.Requesters) > 0 {
		return nil, errors.New("network: OwnAddressing configures the GP practice and the hospital only, not Requesters")
	}
	specs := nw.nodeSpecs()
	if opts.Mixed || nw.ownEndpoints() {
		// With own addressing (and for some pairs of the mixed network,
		// addressing 1–2) each node must know the others' endpoints
		// before it starts: every node binds its public listener first.
		for _, spec := range specs {
			ln, err := net.Listen("tcp", net.JoinHostPort(opts.Host, "0"))
			if err != nil {
				return nil, fmt.Errorf("%s public listener: %w", spec.name, err)
			}
			nw.closers = append(nw.closers, ln)
			publicLn[spec.name] = ln
		}
	}
	nodeOf := map[string]string{} // URA → node name
	for _, spec := range specs {
		nodeOf[spec.p.URA] = spec.name
		for _, q := range spec.more {
			nodeOf[q.URA] = spec.name // the clinic, served by the hospital's node
		}
	}
	for _, spec := range specs {
		cfg, err := nw.nodeConfig(spec.name, spec.p, caFile, spec.more...)
		if err != nil {
			return nil, err
		}
		var peers []plateau.PartnerConfig
		for _, q := range spec.peers {
			peer, err := nw.agreementOf(spec.p, q)
			if err != nil {
				return nil, err
			}
			if ln := publicLn[nodeOf[q.URA]]; ln != nil && peer.Plateaus[plateau.Addressing] <= 2 {
				peer.Endpoints = node.Endpoints("https://"+ln.Addr().String(), q.URA)
			}
			peers = append(peers, peer)
		}
		if ln := publicLn[spec.name]; ln != nil {
			if opts.OwnAddressing {
				cfg.AddressbookURL = ""
			}
			cfg.Public.Addr = ln.Addr().String()
		}
		cfg.Partners.Agreements = append(append(peers, nw.validatorAgreements()...), opts.Agreements...)
		if err := nw.shipsToCentral(ctx, &cfg); err != nil {
			return nil, err
		}
		nopts := node.Options{Logger: opts.Logger, Events: events, PublicListener: publicLn[spec.name], Faults: opts.Faults,
			Applications: opts.Applications}
		if opts.Tracing != nil {
			nopts.TracerProvider = opts.Tracing(spec.name)
		}
		n, err := node.New(ctx, cfg, nopts)
		if err != nil {
			return nil, err
		}
		nw.Nodes = append(nw.Nodes, n)
		nw.members = append(nw.members, spec.p)
		nw.nodeNames = append(nw.nodeNames, spec.name)
		nw.internalURLs[spec.p.URA] = n.InternalURL()
		nw.publicURLs[spec.p.URA] = n.PublicURL()
		// The file carries the ports the node got, not the ":0" it asked for.
		cfg.Public.Addr, cfg.Internal.Addr = hostPort(n.PublicURL()), hostPort(n.InternalURL())
		if err := writeNodeConfig(filepath.Join(opts.DataDir, spec.name, "node.yaml"), cfg, filepath.Join(opts.DataDir, spec.name, "internal-token-"+spec.p.URA)); err != nil {
			return nil, err
		}
		if nw.ownEndpoints() {
			continue // found by their agreement, not listed
		}
		if err := dir.Load(ctx, n.AddressbookEntries()...); err != nil {
			return nil, err
		}
	}
	nw.GPNode, nw.HospNode = nw.Nodes[0], nw.Nodes[1]
	if opts.Mixed || opts.IndexedPull || nw.nursingTransfer() {
		nw.NursingHomeNode = nw.Nodes[2]
	}

	// Demo data: the GP practice's record.
	if nw.Patients, err = demo.Generate(demo.Options{Count: opts.Patients, Seed: 1, GPName: GP.Name}); err != nil {
		return nil, err
	}
	record := nw.GPNode.Store()
	if nw.ehrStore != nil {
		record = nw.ehrStore
	}
	if err := loadDemoData(ctx, record, nw.Patients); err != nil {
		return nil, err
	}
	if err := nw.loadDemoDataR4(ctx, nw.GPNode.R4Store()); err != nil {
		return nil, err
	}
	if nw.nursingTransfer() {
		if err := nw.LoadNursingTransferDossier(ctx); err != nil {
			return nil, err
		}
	}
	if err := nw.writeDemoRegister(nw.Patients); err != nil {
		return nil, err
	}
	if err := nw.registerDemoConsent(ctx, nw.consent.Store()); err != nil {
		return nil, err
	}
	if !opts.OwnAddressing {
		if err := nw.admitValidator(ctx); err != nil {
			return nil, err
		}
	}
	if err := nw.admitParticipants(ctx); err != nil {
		return nil, err
	}
	if err := nw.prepareMonitor(); err != nil {
		return nil, err
	}
	return nw, nil
}

// loadDemoData imports the patients' records as `schakel import` does: a
// restart on the same data directory finds the content unchanged and
// writes no new versions.
func loadDemoData(ctx context.Context, st store.Store, patients []demo.Patient) error {
	im, err := importer.New(importer.Config{Store: st, Version: fhir.STU3, Tenant: GP.URA})
	if err != nil {
		return fmt.Errorf("load demo data: %w", err)
	}
	sum := &importer.Summary{Types: map[string]importer.Counts{}}
	for _, p := range patients {
		if err := im.Import(ctx, "demo patient "+p.BSN, demo.TransactionBundle(p), sum); err != nil {
			return fmt.Errorf("load demo data: %w", err)
		}
	}
	return nil
}

// registerDemoConsent records that the first patient permits the GP
// practice's data to be seen by other providers (as through Mitz), and with
// imaging the hospital's (its PACS holds the patient's studies); the rest
// registered none. A registration already in force is kept: registering
// again would supersede it and notify every subscriber.
func (nw *Network) registerDemoConsent(ctx context.Context, st *consent.Store) error {
	bsn := nw.Patients[0].BSN
	if err := permitAtMitz(ctx, st, bsn, GP.URA); err != nil {
		return err
	}
	if nw.opts.Imaging {
		return permitAtMitz(ctx, st, bsn, Hospital.URA)
	}
	return nil
}

// newNetwork applies the defaults of opts.
func newNetwork(opts Options) (*Network, error) {
	if opts.DataDir == "" {
		return nil, errors.New("a data directory is required")
	}
	if opts.Patients < 1 {
		opts.Patients = 1
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if net.ParseIP(opts.Host) == nil {
		// The certificates name it as an IP address, the balancers trust it.
		return nil, fmt.Errorf("network: --host %q: give an IP address of this machine (e.g. 127.0.0.1)", opts.Host)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Applications == nil {
		opts.Applications = node.DefaultApplications()
	}
	if opts.Plateau != 0 && !plateau.ValidPlateau(opts.Plateau) {
		return nil, fmt.Errorf("network: plateau %d: the growth model has plateaus 1 to 4", opts.Plateau)
	}
	if opts.IndexedPull && (opts.OwnAddressing || len(opts.Requesters) > 0) {
		return nil, errors.New("network: the Indexed Pull network has its own nodes: not with OwnAddressing or Requesters")
	}
	if err := geboortezorgOptions(opts); err != nil {
		return nil, err
	}
	if opts.Mixed && (opts.Plateau != 0 || opts.OwnAddressing || len(opts.Requesters) > 0) {
		return nil, errors.New("network: the mixed network agrees its own plateaus: not with Plateau, OwnAddressing or Requesters")
	}
	nw := &Network{opts: opts, out: opts.Out, tokens: map[string]string{}, internalURLs: map[string]string{}, publicURLs: map[string]string{},
		done: make(chan notifiedpull.Event, 64)}
	if nw.out == nil {
		nw.out = io.Discard
	}
	if err := nw.localizingAtPlateau(); err != nil {
		return nil, err
	}
	return nw, nil
}

// preparePKI loads (or creates) the development CA and refreshes its CRL.
func (nw *Network) preparePKI() error {
	dir := filepath.Join(nw.opts.DataDir, "pki")
	var err error
	if nw.CA, err = pki.LoadOrCreateCA(dir); err != nil {
		return fmt.Errorf("development CA: %w", err)
	}
	// A fresh nextUpdate on every start, as `schakel pki revoke` with no
	// serial does: a network reused after a month must not find its CRL
	// stale and refuse everyone (the nodes fail closed on a stale CRL).
	if _, err := pki.RevokeInDir(dir, nw.CA, nil, 0); err != nil {
		return fmt.Errorf("development CA's CRL: %w", err)
	}
	return nil
}

// ownEndpoints says whether the GP practice and the hospital know each
// other's endpoints from their agreement (their own addressing mechanism,
// plateau 1–2) rather than from the addressbook: with OwnAddressing, and
// with Plateau when the agreement's addressing is at 1–2.
func (nw *Network) ownEndpoints() bool {
	return nw.opts.OwnAddressing || (nw.opts.Plateau != 0 && nw.agreement(Hospital).Plateaus[plateau.Addressing] <= 2)
}

// nodeSpec is one node of the network: its name, the participant it
// serves first, the network's participants it has an agreement with, and
// further participants it serves (Requesters).
type nodeSpec struct {
	name  string
	p     Participant
	peers []Participant
	more  []Participant
}

// nodeSpecs are the network's nodes: the GP practice's and the hospital's,
// and with Mixed the nursing home's, each with an agreement with the others.
func (nw *Network) nodeSpecs() []nodeSpec {
	if nw.opts.IndexedPull {
		return indexedPullSpecs()
	}
	if nw.opts.Geboortezorg {
		return geboortezorgSpecs()
	}
	if nw.nursingTransfer() {
		return nursingTransferSpecs()
	}
	if nw.opts.Mixed {
		return []nodeSpec{
			{name: "gp-node", p: GP, peers: []Participant{Hospital, NursingHome}},
			{name: "hospital-node", p: Hospital, peers: []Participant{GP, NursingHome}},
			{name: "nursinghome-node", p: NursingHome, peers: []Participant{GP, Hospital}},
		}
	}
	return []nodeSpec{{name: "gp-node", p: GP, peers: []Participant{Hospital}},
		{name: "hospital-node", p: Hospital, peers: []Participant{GP}, more: nw.opts.Requesters}}
}

// agreementOf is the agreement self's node has with peer: with Mixed the
// pair's own (mixedAgreements), else that of the GP practice and the
// hospital.
func (nw *Network) agreementOf(self, peer Participant) (plateau.PartnerConfig, error) {
	if !nw.opts.Mixed {
		return nw.agreement(peer), nil
	}
	if a, ok := mixedAgreement(self, peer); ok {
		// The pairs' plateaus differ; what they exchange does not: the
		// network's pull applications, as between the demo nodes.
		a.Applications = nw.withImaging(nw.pullApplications())
		return a, nil
	}
	return plateau.PartnerConfig{}, fmt.Errorf("network: the mixed network has no agreement of %s with %s", self.Name, peer.Name)
}

// agreement is the partner agreement between the GP practice and the
// hospital, from one's side: plateau 1, mutual trust by certificate and a
// bilateral list of who may ask for what; consent through Mitz (plateau
// 4), or recorded in the provider's own system (plateau 1).
func (nw *Network) agreement(peer Participant) plateau.PartnerConfig {
	agreed := plateau.Uniform(1)
	agreed[plateau.Consent] = 4
	if nw.opts.Plateau != 0 {
		agreed = plateau.Uniform(nw.opts.Plateau)
	}
	if nw.opts.LocalConsent {
		agreed[plateau.Consent] = 1
	}
	for f, p := range nw.opts.Plateaus {
		agreed[f] = p
	}
	return plateau.PartnerConfig{URA: peer.URA, Name: peer.Name, Plateaus: agreed, Applications: nw.withImaging(nw.pullApplications()),
		SystemIdentity: nw.opts.SystemIdentity}
}

func (nw *Network) issue(dir, name string, p Participant) (tls.Certificate, error) {
	return pki.LoadOrIssueUZIServer(dir, name, nw.CA, pki.ServerCertRequest{
		ID:         pki.UZIServerID{UZI: p.SystemUZI, URA: p.URA, AGB: p.AGB},
		CommonName: p.Name,
		IPs:        []net.IP{net.ParseIP(nw.opts.Host)},
		DNSNames:   []string{"localhost"},
	})
}

func (nw *Network) nodeConfig(name string, p Participant, caFile string, more ...Participant) (node.Config, error) {
	dir := filepath.Join(nw.opts.DataDir, name)
	tlsDir := filepath.Join(dir, "tls")
	if _, err := nw.issue(tlsDir, "node", p); err != nil {
		return node.Config{}, fmt.Errorf("%s certificate: %w", name, err)
	}
	participant := func(q Participant) (node.ParticipantConfig, error) {
		token, err := loadOrCreateSecret(filepath.Join(dir, "internal-token-"+q.URA))
		if err != nil {
			return node.ParticipantConfig{}, err
		}
		nw.tokens[q.URA] = token
		return node.ParticipantConfig{URA: q.URA, Name: q.Name, SystemUZI: q.SystemUZI, FacilityType: q.FacilityType,
			SigningKeyFile: filepath.Join(dir, "keys", "client-"+q.URA+".pem"), InternalToken: token, EHR: nw.ehrFor(q), PACS: nw.pacsFor(q)}, nil
	}
	first, err := participant(p)
	if err != nil {
		return node.Config{}, err
	}
	parts := []node.ParticipantConfig{first}
	for _, q := range more {
		pc, err := participant(q)
		if err != nil {
			return node.Config{}, err
		}
		// Its own UZI server certificate, presented when the node acts for it.
		if _, err := nw.issue(tlsDir, "participant-"+q.URA, q); err != nil {
			return node.Config{}, fmt.Errorf("%s certificate of %s: %w", name, q.URA, err)
		}
		pc.CertFile, pc.KeyFile = filepath.Join(tlsDir, "participant-"+q.URA+".pem"), filepath.Join(tlsDir, "participant-"+q.URA+"-key.pem")
		parts = append(parts, pc)
	}
	// Revocation is checked as on a production node: the dev CA's CRL
	// (`schakel pki issue --revoked`, `schakel pki revoke`), stale fails closed.
	trust := pki.TrustConfig{CRLFiles: []string{filepath.Join(nw.opts.DataDir, "pki", pki.CRLFile)}}
	if nw.opts.trust != nil {
		nw.opts.trust(&trust)
	}
	return node.Config{
		Trust:          trust,
		Store:          nw.storeConfig(name),
		Consent:        nw.consentConfig(),
		Localization:   node.LocalizationConfig{URL: nw.indexURL + "/fhir"},
		Identity:       nw.identityConfig(),
		Identification: nw.identificationConfig(),
		Name:           name,
		DataDir:        filepath.Join(dir, "data"),
		Public:         node.ListenerConfig{Addr: net.JoinHostPort(nw.opts.Host, "0")},
		Internal:       node.ListenerConfig{Addr: net.JoinHostPort(nw.opts.Host, "0")},
		TLS:            node.TLSConfig{CertFile: filepath.Join(tlsDir, "node.pem"), KeyFile: filepath.Join(tlsDir, "node-key.pem"), CAFiles: []string{caFile}},
		SigningKeyFile: filepath.Join(dir, "keys", "authorization-server.pem"),
		AddressbookURL: nw.dirURL,
		Admission:      nw.admissionConfig(),
		Participants:   parts,
	}, nil
}

// Addressbook is the network's directory, for loading more entries.
func (nw *Network) Addressbook() *addressbook.Server { return nw.dir }

// Token is the internal API token of a participant of the network.
func (nw *Network) Token(ura string) string { return nw.tokens[ura] }

// AddressbookURL is the FHIR base of the addressbook.
func (nw *Network) AddressbookURL() string { return nw.dirURL }

// Start serves the addressbook and the nodes until ctx ends; Wait returns
// when all have stopped.
func (nw *Network) Start(ctx context.Context) {
	nw.serveDone = make(chan struct{})
	nw.nodeErrs = make(chan error, len(nw.Nodes)+1)
	nw.runMonitor(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc := make(chan error, len(nw.services))
		for _, svc := range nw.services {
			go func() {
				serve := func() error { return svc.srv.ServeTLS(svc.ln, "", "") }
				if svc.plain {
					serve = func() error { return svc.srv.Serve(svc.ln) }
				}
				if err := serve(); !errors.Is(err, http.ErrServerClosed) {
					errc <- fmt.Errorf("%s: %w", svc.name, err)
				}
			}()
		}
		select {
		case <-ctx.Done():
		case err := <-errc:
			nw.nodeErrs <- err
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, svc := range nw.services {
			_ = svc.srv.Shutdown(sctx)
		}
	}()
	for _, n := range nw.Nodes {
		wg.Add(1)
		go func(n *node.Node) {
			defer wg.Done()
			if err := n.Serve(ctx); err != nil {
				nw.nodeErrs <- fmt.Errorf("%s: %w", n.Name(), err)
			}
		}(n)
	}
	go func() {
		wg.Wait()
		nw.closeAll()
		close(nw.serveDone)
	}()
}

// Wait blocks until everything Start started has stopped and returns the
// first failure.
func (nw *Network) Wait() error {
	<-nw.serveDone
	select {
	case err := <-nw.nodeErrs:
		return err
	default:
		return nil
	}
}

func (nw *Network) closeAll() {
	for _, svc := range nw.services {
		svc.ln.Close()
	}
	for i := len(nw.closers) - 1; i >= 0; i-- {
		nw.closers[i].Close()
	}
	nw.closers = nil
	if nw.dirStore != nil {
		nw.dirStore.Close()
		nw.dirStore = nil
	}
}

// PrintListeners writes the address of every listener.
func (nw *Network) PrintListeners() {
	nw.printf("Twiin network on %s (data in %s)\n", nw.opts.Host, nw.opts.DataDir)
	nw.printf("  addressbook          %s   (mTLS)\n", nw.dirURL)
	nw.printf("  consent (Mitz-like)  %s/geslotenautorisatievraag/xacml3   (mTLS; notifies the nodes' /consent/notifications)\n", nw.consentURL)
	nw.printf("  regional consent     %s/geslotenautorisatievraag/xacml3   (mTLS; a portal's service, plateau 2)\n", nw.portalURL)
	nw.printf("  referral index       %s/fhir   (mTLS)\n", nw.indexURL)
	nw.printf("  BSN verification     %s   (mTLS; SBV-Z OpvragenVerifieren stand-in)\n", nw.bsnURL)
	for i, n := range nw.Nodes {
		p := nw.members[i]
		nw.printf("  %-20s public   %s   (mTLS, TLS 1.3)\n", n.Name(), n.PublicURL())
		nw.printf("  %-20s internal %s   (participant %s %s; token in %s)\n", "", n.InternalURL(), p.URA, p.Name,
			filepath.Join(nw.opts.DataDir, n.Name(), "internal-token-"+p.URA))
	}
	nw.printMonitor()
}

func (nw *Network) printf(format string, args ...any) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	fmt.Fprintf(nw.out, format, args...)
}

func (nw *Network) printEvent(e notifiedpull.Event) {
	// The GP's node's "status" is the receiver reporting the workflow Task
	// done: the sender has learnt the completion.
	if e.Step == "completed" || (e.Step == "failed" && e.Node == nw.HospNode.Name()) || (e.Step == "status" && e.Node == nw.GPNode.Name()) {
		select {
		case nw.done <- e:
		default:
		}
	}
	line := e.Detail
	if e.Err != nil {
		line = strings.TrimSpace(line + " error: " + e.Err.Error())
	}
	nw.printf("  %s  %-13s %-13s %s\n", e.Time.Format("15:04:05.000"), e.Node, e.Step, line)
}

// hostPort is the host:port of a base URL.
func hostPort(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Host
}

func loadOrCreateSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	s := base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// service is one of the network's TLS services.
type service struct {
	plain bool // plain HTTP on loopback (a participant's own system)
	name  string
	url   string
	ln    net.Listener
	srv   *http.Server
}

// listen binds a service's mTLS listener; the handler is set by the caller.
func (nw *Network) listen(name string, cert tls.Certificate) (*service, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(nw.opts.Host, "0"))
	if err != nil {
		return nil, err
	}
	svc := &service{name: name, url: "https://" + ln.Addr().String(), ln: ln,
		srv: &http.Server{TLSConfig: pki.ServerTLSConfig(cert, pki.CertPool(nw.CA.Cert)), ReadHeaderTimeout: 10 * time.Second}}
	nw.services = append(nw.services, svc)
	return svc, nil
}

// startGenericServices builds the consent service and the referral index.
func (nw *Network) startGenericServices(opts Options) error {
	roots := pki.CertPool(nw.CA.Cert)
	consentDir := filepath.Join(opts.DataDir, "consent")
	cert, err := nw.issue(consentDir, "consent", consentOrg)
	if err != nil {
		return err
	}
	svc, err := nw.listen("consent", cert)
	if err != nil {
		return err
	}
	nw.consent, err = consent.NewServer(consent.ServerConfig{DataDir: consentDir, ClientTLS: pki.ClientTLSConfig(cert, roots),
		Logger: opts.Logger.With("component", "consent")})
	if err != nil {
		return fmt.Errorf("consent service: %w", err)
	}
	nw.closers = append(nw.closers, nw.consent)
	svc.srv.Handler = nw.consent.Handler()
	nw.consentURL = svc.url

	// A regional consent portal's service: the same closed question, asked
	// for partners whose consent is agreed at plateau 2.
	portalDir := filepath.Join(opts.DataDir, "consent-portal")
	if cert, err = nw.issue(portalDir, "portal", portalOrg); err != nil {
		return err
	}
	if svc, err = nw.listen("consent-portal", cert); err != nil {
		return err
	}
	nw.portal, err = consent.NewServer(consent.ServerConfig{DataDir: portalDir, ClientTLS: pki.ClientTLSConfig(cert, roots),
		Issuer: "schakel-consent-portal", Logger: opts.Logger.With("component", "consent-portal")})
	if err != nil {
		return fmt.Errorf("regional consent portal: %w", err)
	}
	nw.closers = append(nw.closers, nw.portal)
	svc.srv.Handler = nw.portal.Handler()
	nw.portalURL = svc.url

	indexDir := filepath.Join(opts.DataDir, "localization")
	if cert, err = nw.issue(indexDir, "index", indexOrg); err != nil {
		return err
	}
	if svc, err = nw.listen("localization", cert); err != nil {
		return err
	}
	idx, err := localization.NewServer(localization.ServerConfig{DataDir: indexDir, Logger: opts.Logger.With("component", "localization")})
	if err != nil {
		return fmt.Errorf("referral index: %w", err)
	}
	nw.closers = append(nw.closers, idx)
	svc.srv.Handler = idx.Handler()
	nw.indexURL = svc.url
	return nil
}

// Consent is the network's consent service (it plays Mitz), for
// registering consents.
func (nw *Network) Consent() *consent.Server { return nw.consent }

// RegionalConsent is the network's regional consent portal's service
// (plateau 2), for registering consents.
func (nw *Network) RegionalConsent() *consent.Server { return nw.portal }

// IndexURL is the referral index's FHIR base.
func (nw *Network) IndexURL() string { return nw.indexURL + "/fhir" }

func (nw *Network) storeConfig(nodeName string) node.StoreConfig {
	if nw.opts.Postgres == "" {
		return node.StoreConfig{}
	}
	return node.StoreConfig{Postgres: nw.opts.Postgres,
		Schema: nw.opts.PostgresSchemaPrefix + strings.ReplaceAll(nodeName, "-", "_")}
}

// writeNodeConfig writes a node's configuration as the YAML file
// `schakel node --config` and `schakel scan --config` read, with the
// participant's token as a file reference rather than the secret itself:
// tokenFile for the first, the file beside it named for its URA for each
// further participant (nodeConfig writes them so). The listener addresses
// are those of this run.
func writeNodeConfig(path string, cfg node.Config, tokenFile string) error {
	c := cfg
	c.Participants = append([]node.ParticipantConfig(nil), cfg.Participants...)
	for i := range c.Participants {
		c.Participants[i].InternalToken = ""
		c.Participants[i].InternalTokenFile = tokenFile
		if i > 0 {
			c.Participants[i].InternalTokenFile = filepath.Join(filepath.Dir(tokenFile), "internal-token-"+c.Participants[i].URA)
		}
	}
	k := koanf.New(".")
	if err := k.Load(structs.Provider(c, "koanf"), nil); err != nil {
		return fmt.Errorf("node configuration: %w", err)
	}
	if c.Partners.Default == nil {
		k.Delete("partners.default")
	}
	b, err := k.Marshal(yaml.Parser())
	if err != nil {
		return fmt.Errorf("node configuration: %w", err)
	}
	header := "# Configuration of this node in the local network (written by `schakel network up`).\n" +
		"# Use it with `schakel scan --config` or, once the network is stopped, `schakel node --config`.\n"
	return os.WriteFile(path, append([]byte(header), b...), 0o600)
}

func (nw *Network) ehrFor(p Participant) node.EHRConfig {
	if p.URA != GP.URA || nw.ehrURL == "" {
		return node.EHRConfig{}
	}
	return node.EHRConfig{URL: nw.ehrURL}
}

// startEHR runs the GP practice's own FHIR server (its EHR) on loopback,
// plain HTTP as inside the practice's network.
func (nw *Network) startEHR(ctx context.Context, opts Options) error {
	dir := filepath.Join(opts.DataDir, "gp-ehr")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var err error
	if nw.ehrStore, err = sqlite.Open(ctx, filepath.Join(dir, "fhir-stu3.db"), fhir.STU3); err != nil {
		return fmt.Errorf("GP EHR store: %w", err)
	}
	nw.closers = append(nw.closers, nw.ehrStore)
	ln, err := net.Listen("tcp", net.JoinHostPort(nw.opts.Host, "0"))
	if err != nil {
		return err
	}
	nw.ehrURL = "http://" + ln.Addr().String() + "/fhir"
	api := rest.New(rest.Config{Store: nw.ehrStore, Version: fhir.STU3, Logger: opts.Logger.With("component", "gp-ehr")})
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir/{path...}", func(w http.ResponseWriter, r *http.Request) {
		api.Serve(w, r, GP.URA, nw.ehrURL, r.PathValue("path"))
	})
	nw.services = append(nw.services, &service{plain: true, name: "gp-ehr", url: "http://" + ln.Addr().String(), ln: ln,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}})
	return nil
}

// consentConfig gives every node all three consent sources, so that any
// agreement's consent plateau has its source: its own registry (plateau 1),
// the regional portal (2) and the consent service playing Mitz (3–4), where
// it subscribes to the consent changes of the patients it holds data of.
func (nw *Network) consentConfig() node.ConsentConfig {
	return node.ConsentConfig{Local: true, Regional: node.RegionalConsentConfig{URL: nw.portalURL}, URL: nw.consentURL,
		Subscribe: true, NotifierURA: consentOrg.URA}
}
