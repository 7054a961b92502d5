package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/identification"
	"github.com/schakel-nl/schakel/logcentral"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
)

// Process is one component of a network started by UpProcesses, running
// as its own OS process.
type Process struct {
	// Name is the component's: addressbook, consent, consent-portal,
	// localization, identification, identity-issuer, logcentral, pacs,
	// monitor, or a node's (gp-node, hospital-node, nursinghome-node,
	// midwife-node; gp-node/1 for a replica).
	Name string
	URL  string // the base its peers use
	PID  int
	// Args is the command line that starts it again, on the same port and
	// data: Args[0] is the executable.
	Args []string
	Log  string // the file its output is appended to

	cmd    *exec.Cmd
	exited chan struct{}
}

// Replica tells whether p is one of a node's replicas (its name has the
// replica's number: gp-node/1).
func (p *Process) Replica() bool { return strings.Contains(p.Name, "/") }

// Exited reports whether the process has ended (killed, or failed).
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// childStopTimeout is how long a component gets to stop after SIGTERM
// before it is killed.
const childStopTimeout = 15 * time.Second

// UpProcesses prepares the network as Up does (PKI, configurations, demo
// data) and starts every component as its own process: exe (the schakel
// binary) with the component's serve subcommand — `addressbook serve
// --admission` (the directory and the admission register), `consent
// serve` (twice: the service playing Mitz and the regional portal's),
// `localization serve`, `bsn serve`, `identity-issuer serve`, `logcentral
// serve` when an agreement is at logging plateau 3–4, `pacs serve` with
// Options.Imaging, `node --config` for each node of the network
// (nodeSpecs: two, or three for the Indexed Pull, the mixed, the transfer
// and the Geboortezorg networks) and, last, `monitor serve`. The ports are chosen here and written
// into the commands and node.yaml files, so a component killed by a
// tester starts again where its peers expect it (Process.Args).
// StopProcesses ends them; the children also die with this process
// (Linux: parent-death signal). With opts.Replicas (and opts.Postgres)
// each node runs as that many processes behind a HAProxy that takes the
// node's addresses (network/replicas.go).
func UpProcesses(ctx context.Context, opts Options, exe string) (_ *Network, err error) {
	nw, err := newNetwork(opts)
	if err != nil {
		return nil, err
	}
	opts = nw.opts
	if err := checkReplicas(opts); err != nil {
		return nil, err
	}
	if (opts.Postgres != "" && opts.Replicas == 0) || opts.RecordInEHR || opts.OwnAddressing || len(opts.Requesters) > 0 {
		return nil, errors.New("network: separate processes run the default network only (PostgreSQL only with replicas; no EHR, own addressing or extra requesters)")
	}
	if opts.Replicas > 0 && opts.PostgresSchemaPrefix == "" {
		opts.PostgresSchemaPrefix = DefaultSchemaPrefix
		nw.opts.PostgresSchemaPrefix = DefaultSchemaPrefix
	}
	nw.processes = true
	// nw, not the named result (nil on failure), stops what was started.
	defer func() {
		if err != nil {
			nw.StopProcesses()
		}
	}()
	if err := nw.preparePKI(); err != nil {
		return nil, err
	}
	if err := nw.prepareValidator(); err != nil {
		return nil, err
	}
	// The register (and the validation authority's key the nodes trust).
	if _, err := nw.openAdmission(ctx); err != nil {
		return nil, err
	}
	data := opts.DataDir
	caFile := filepath.Join(data, "pki", "ca.pem")
	specs := nw.nodeSpecs()
	names := []string{"addressbook", "consent", "consent-portal", "localization", "identification", "identity-issuer", "monitor"}
	if opts.Imaging {
		names = append(names, "pacs")
	}
	for _, spec := range specs {
		names = append(names, spec.name, spec.name+" internal")
	}
	// Each address stays bound here until its component starts, so that no
	// other program (nor a component's own outgoing connection, which takes
	// a port from the same range) takes it while the network is prepared.
	addr := map[string]string{}
	held := map[string]net.Listener{}
	defer func() {
		for _, ln := range held {
			ln.Close() // a second close is harmless
		}
	}()
	reserve := func(name string) error {
		ln, err := hold(net.JoinHostPort(opts.Host, "0"))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		held[name], addr[name] = ln, ln.Addr().String()
		return nil
	}
	for _, name := range names {
		if err := reserve(name); err != nil {
			return nil, err
		}
	}
	nw.dirURL = "https://" + addr["addressbook"] + "/fhir"
	nw.admissionURL = "https://" + addr["addressbook"] + "/admission/fhir"
	nw.consentURL = "https://" + addr["consent"]
	nw.portalURL = "https://" + addr["consent-portal"]
	nw.indexURL = "https://" + addr["localization"]
	nw.bsnURL = "https://" + addr["identification"] + identification.Path
	nw.identityURL = "https://" + addr["identity-issuer"]
	pkiDir := filepath.Join(data, "pki")
	if _, err := pki.LoadOrCreateIdentityIssuer(pkiDir, nw.CA); err != nil {
		return nil, fmt.Errorf("identity issuer: %w", err)
	}
	nw.identityJWKS = filepath.Join(pkiDir, pki.IdentityIssuerJWKSFile)

	// The services: certificate, then the command that serves it.
	type component struct {
		name, dir, cert string
		org             Participant
		url             string
		args            []string
	}
	services := []component{
		{"addressbook", "addressbook", "addressbook", dirOrg, nw.dirURL, []string{"addressbook", "serve", "--admission"}},
		{"consent", "consent", "consent", consentOrg, nw.consentURL, []string{"consent", "serve"}},
		{"consent-portal", "consent-portal", "portal", portalOrg, nw.portalURL, []string{"consent", "serve", "--issuer", "schakel-consent-portal"}},
		{"localization", "localization", "index", indexOrg, nw.indexURL + "/fhir", []string{"localization", "serve"}},
		{"identification", "identification", "identification", bsnOrg, nw.bsnURL, []string{"bsn", "serve"}},
		{"identity-issuer", "identity", "identity", identityOrg, nw.identityURL, []string{"identity-issuer", "serve", "--pki-dir", pkiDir}},
	}
	if opts.Imaging {
		if nw.pacs, err = newPACSStandIn(opts.Patients, "http://"+addr["pacs"]+pacsPrefix); err != nil {
			return nil, err
		}
		// Plain HTTP, as inside the hospital's network: no certificate.
		services = append(services, component{name: "pacs", url: nw.pacs.url, args: []string{"pacs", "serve",
			"--addr", addr["pacs"], "--prefix", pacsPrefix, "--patients", strconv.Itoa(opts.Patients)}})
	}

	// The nodes' configurations, with the ports chosen above.
	nodeOf := map[string]string{} // URA → node name
	for _, spec := range specs {
		nodeOf[spec.p.URA] = spec.name
		for _, q := range spec.more {
			nodeOf[q.URA] = spec.name // the clinic, served by the hospital's node
		}
	}
	var entries []addressbook.Entry
	nodes := []component{}
	var replicas []replica // with Options.Replicas: each node's replicas and balancer
	defer func() { releaseHeld(replicas) }()
	for _, spec := range specs {
		cfg, err := nw.nodeConfig(spec.name, spec.p, caFile, spec.more...)
		if err != nil {
			return nil, err
		}
		cfg.Public.Addr, cfg.Internal.Addr = addr[spec.name], addr[spec.name+" internal"]
		var peers []plateau.PartnerConfig
		for _, q := range spec.peers {
			peer, err := nw.agreementOf(spec.p, q)
			if err != nil {
				return nil, err
			}
			if a := addr[nodeOf[q.URA]]; a != "" && (nw.opts.Mixed || nw.opts.Plateau != 0) && peer.Plateaus[plateau.Addressing] <= 2 {
				peer.Endpoints = node.Endpoints("https://"+a, q.URA)
			}
			peers = append(peers, peer)
		}
		cfg.Partners.Agreements = append(append(peers, nw.validatorAgreements()...), opts.Agreements...)
		if needsCentral(cfg) {
			if nw.logcentralURL == "" {
				if err := reserve("logcentral"); err != nil {
					return nil, err
				}
				nw.logcentralURL = "https://" + addr["logcentral"]
				services = append(services, component{"logcentral", "logcentral", "logcentral", logcentralOrg, nw.logcentralURL, []string{"logcentral", "serve"}})
			}
			cfg.Audit.Central.URL = nw.logcentralURL
		}
		path := filepath.Join(data, spec.name, "node.yaml")
		if err := writeNodeConfig(path, cfg, filepath.Join(data, spec.name, "internal-token-"+spec.p.URA)); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, err
		}
		public := "https://" + cfg.Public.Addr
		nw.internalURLs[spec.p.URA] = "http://" + cfg.Internal.Addr
		nw.members = append(nw.members, spec.p)
		nw.nodeNames = append(nw.nodeNames, spec.name)
		nw.publicURLs[spec.p.URA] = public
		if !nw.ownEndpoints() {
			es, err := nodeEntries(ctx, cfg, public, nw.opts)
			if err != nil {
				return nil, err
			}
			entries = append(entries, es...)
		}
		if opts.Replicas == 0 {
			nodes = append(nodes, component{name: spec.name, url: public, args: []string{"node", "--config", path}})
			continue
		}
		// The node's addresses pass to its balancer, which holds them on.
		lbHeld := []net.Listener{held[spec.name], held[spec.name+" internal"]}
		delete(held, spec.name)
		delete(held, spec.name+" internal")
		reps, err := nw.prepareReplicas(spec.name, cfg, lbHeld)
		if err != nil {
			return nil, err
		}
		replicas = append(replicas, reps...)
	}
	for i, c := range services {
		if c.cert == "" {
			continue
		}
		dir := filepath.Join(data, c.dir)
		if _, err := nw.issue(dir, c.cert, c.org); err != nil {
			return nil, fmt.Errorf("%s certificate: %w", c.name, err)
		}
		if c.name != "identity-issuer" { // keeps its key in the PKI's directory, nothing else
			services[i].args = append(services[i].args, "--data-dir", dir)
		}
		services[i].args = append(services[i].args, "--addr", addr[c.name],
			"--cert", filepath.Join(dir, c.cert+".pem"), "--key", filepath.Join(dir, c.cert+"-key.pem"), "--ca", caFile)
	}
	if opts.Replicas > 0 {
		if err := nw.resetSchemas(ctx, "gp-node", "hospital-node"); err != nil {
			return nil, err
		}
	}

	// Data the components find when they start: the addressbook's entries
	// and admission register, the GP practice's record (and with a
	// transfer the hospital's dossier), the BSN register and the demo
	// consent.
	if nw.Patients, err = demo.Generate(demo.Options{Count: opts.Patients, Seed: 1, GPName: GP.Name}); err != nil {
		return nil, err
	}
	if err := nw.loadDirectory(ctx, entries); err != nil {
		return nil, err
	}
	if err := nw.writeDemoRegister(nw.Patients); err != nil {
		return nil, err
	}
	if err := nw.withNodeStore(ctx, "gp-node", func(st store.Store) error { return loadDemoData(ctx, st, nw.Patients) }); err != nil {
		return nil, fmt.Errorf("GP node's store: %w", err)
	}
	if nw.pullsR4() {
		r4Store, err := sqlite.Open(ctx, filepath.Join(data, "gp-node", "data", "fhir-r4.db"), fhir.R4)
		if err != nil {
			return nil, fmt.Errorf("GP node's R4 store: %w", err)
		}
		err = nw.loadDemoDataR4(ctx, r4Store)
		if cerr := r4Store.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	if nw.nursingTransfer() {
		if err := nw.withNodeStore(ctx, "hospital-node", func(st store.Store) error { return loadNursingTransferDossier(ctx, st) }); err != nil {
			return nil, err
		}
	}
	cs, err := consent.NewServer(consent.ServerConfig{DataDir: filepath.Join(data, "consent"), Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("consent service: %w", err)
	}
	err = nw.registerDemoConsent(ctx, cs.Store())
	if cerr := cs.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	// Services first: the nodes register at the index and subscribe at
	// the consent service as they start.
	for _, c := range append(services, nodes...) {
		ready := strings.TrimPrefix(strings.TrimPrefix(c.url, "https://"), "http://")
		ready, _, _ = strings.Cut(ready, "/")
		for _, name := range []string{c.name, c.name + " internal"} {
			if ln := held[name]; ln != nil {
				ln.Close()
			}
		}
		if err := nw.spawn(ctx, c.name, c.url, ready, append([]string{exe}, c.args...)); err != nil {
			return nil, err
		}
	}
	if err := nw.spawnReplicas(ctx, exe, replicas); err != nil {
		return nil, err
	}
	// The Twiin Monitor last: it reads the register, the addressbook and
	// every node's /metrics (each replica's, with replicas).
	monitor, err := nw.monitorCommand(addr["monitor"], caFile)
	if err != nil {
		return nil, err
	}
	held["monitor"].Close()
	if err := nw.spawn(ctx, "monitor", nw.monitorURL, addr["monitor"], append([]string{exe}, monitor...)); err != nil {
		return nil, err
	}
	return nw, nil
}

// monitorCommand is the `monitor serve` command line of the Twiin Monitor
// on addr, watching the network's nodes as prepareMonitor's does.
func (nw *Network) monitorCommand(addr, caFile string) ([]string, error) {
	dir := filepath.Join(nw.opts.DataDir, "monitor")
	if _, err := nw.issue(dir, "monitor", monitorOrg); err != nil {
		return nil, fmt.Errorf("monitor certificate: %w", err)
	}
	nw.monitorURL = "http://" + addr
	args := []string{"monitor", "serve", "--addr", addr, "--addressbook", nw.dirURL, "--admission", nw.admissionURL,
		"--authority-jwks", filepath.Join(nw.opts.DataDir, "pki", validation.AuthorityJWKSFile),
		"--cert", filepath.Join(dir, "monitor.pem"), "--key", filepath.Join(dir, "monitor-key.pem"), "--ca", caFile,
		"--user", MonitorUser, "--password-file", filepath.Join(nw.opts.DataDir, MonitorPasswordFile)}
	for i, name := range nw.nodeNames {
		// With replicas, each replica's /metrics (the monitor adds them
		// up): through the balancer every scrape would reach another one.
		sources := nw.replicaInternals[name]
		if len(sources) == 0 {
			sources = []string{nw.internalURLs[nw.members[i].URA]}
		}
		for _, base := range sources {
			args = append(args, "--node", name+"="+base+"/metrics")
		}
		args = append(args, "--node-config", name+"="+filepath.Join(nw.opts.DataDir, name, "node.yaml"))
	}
	return args, nil
}

// nodeEntries are the addressbook entries of the node configured by cfg
// at publicURL: what node.AddressbookEntries lists for it once it runs,
// the care applications' own endpoints included. They are read from the
// node built on a scratch data directory and listeners of its own, and
// closed again before the node's process starts.
func nodeEntries(ctx context.Context, cfg node.Config, publicURL string, opts Options) ([]addressbook.Entry, error) {
	scratch, err := os.MkdirTemp(opts.DataDir, ".entries-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	c := cfg
	c.DataDir, c.Store = scratch, node.StoreConfig{}
	c.Public = node.ListenerConfig{Addr: net.JoinHostPort(opts.Host, "0"), URL: publicURL}
	c.Internal = node.ListenerConfig{Addr: net.JoinHostPort(opts.Host, "0")}
	c.Admin = node.AdminConfig{}
	n, err := node.New(ctx, c, node.Options{Logger: opts.Logger, Applications: opts.Applications})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	defer n.Close()
	return n.AddressbookEntries(), nil
}

// withNodeStore opens the FHIR store of node name (not running yet), runs
// f on it and closes it.
func (nw *Network) withNodeStore(ctx context.Context, name string, f func(store.Store) error) error {
	st, err := nw.openNodeStore(ctx, name)
	if err != nil {
		return err
	}
	err = f(st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

// loadDirectory prepares what `addressbook serve --admission` serves: the
// nodes' and the validation service's entries, and the admission register
// with every participant's declaration (the register UpProcesses opened
// stays open here, for the proofs a run records); it writes the
// validation kit's kit.json.
func (nw *Network) loadDirectory(ctx context.Context, entries []addressbook.Entry) error {
	if err := loadAddressbook(ctx, filepath.Join(nw.opts.DataDir, "addressbook"), nw.dirURL, append(entries, nw.validatorEntry())); err != nil {
		return err
	}
	if err := nw.admitValidator(ctx); err != nil {
		return err
	}
	return nw.admitParticipants(ctx)
}

// loadAddressbook puts entries into the directory database in dir, the one
// `schakel addressbook serve --data-dir dir` serves.
func loadAddressbook(ctx context.Context, dir, base string, entries []addressbook.Entry) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, AddressbookStoreFile), fhir.R4)
	if err != nil {
		return fmt.Errorf("addressbook store: %w", err)
	}
	err = addressbook.NewServer(st, base, nil).Load(ctx, entries...)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

// spawn starts one component and waits until it accepts connections on
// ready, or fails when it exits first.
func (nw *Network) spawn(ctx context.Context, name, url, ready string, args []string) error {
	logDir := filepath.Join(nw.opts.DataDir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(logDir, strings.ReplaceAll(name, "/", "-")+".log") // gp-node/1: a replica
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, URL: url, PID: cmd.Process.Pid, Args: args, Log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	nw.mu.Lock()
	nw.procs = append(nw.procs, p)
	nw.mu.Unlock()
	// Bounded: 300 attempts, each at most ~250 ms.
	for i := 0; i < 300; i++ {
		if p.Exited() {
			return fmt.Errorf("%s exited while starting: %s (see %s)%s", name, cmd.ProcessState, logPath, logTail(logPath))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if c, err := net.DialTimeout("tcp", ready, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s does not accept connections on %s (see %s)", name, ready, logPath)
}

// Processes are the components UpProcesses started, in start order.
func (nw *Network) Processes() []*Process {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return append([]*Process(nil), nw.procs...)
}

// InternalURL is the base of the internal API of participant ura's node.
func (nw *Network) InternalURL(ura string) string { return nw.internalURLs[ura] }

// StopProcesses ends the components UpProcesses started, nodes first:
// SIGTERM, then SIGKILL for one that has not stopped in time. A component
// a tester restarted by hand is not this network's child and keeps running.
func (nw *Network) StopProcesses() {
	procs := nw.Processes()
	// Replicas drain before they stop (node.Config.Drain): told together,
	// they drain side by side, not one after another.
	told := map[*Process]bool{}
	for _, p := range procs {
		if p.Replica() && !p.Exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			told[p] = true
		}
	}
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if p.Exited() {
			continue
		}
		if !told[p] {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-p.exited:
		case <-time.After(childStopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	nw.closeAll() // the admission register this process keeps open
}

// PrintProcesses writes every component's PID, address and the command
// that restarts it.
func (nw *Network) PrintProcesses() {
	nw.printf("Twiin network on %s, one process per component (data in %s)\n", nw.opts.Host, nw.opts.DataDir)
	for _, p := range nw.Processes() {
		nw.printf("  %-15s pid %-7d %s\n", p.Name, p.PID, p.URL)
		if ura := nw.uraOfNode(p.Name); ura != "" {
			nw.printf("  %-15s internal      %s   (participant %s; token in %s)\n", "", nw.internalURLs[ura], ura,
				filepath.Join(nw.opts.DataDir, p.Name, "internal-token-"+ura))
		}
		if p.Name == "monitor" {
			nw.printf("  %-15s login         %s, password in %s\n", "", MonitorUser, filepath.Join(nw.opts.DataDir, MonitorPasswordFile))
		}
		nw.printf("  %-15s log           %s\n", "", p.Log)
		nw.printf("  %-15s restart:      %s\n", "", shellJoin(p.Args))
	}
}

// uraOfNode is the URA of the first participant of node name; empty for a
// component that is no node.
func (nw *Network) uraOfNode(name string) string {
	for i, n := range nw.nodeNames {
		if n == name {
			return nw.members[i].URA
		}
	}
	return ""
}

// shellJoin quotes args for a POSIX shell, for a command line to paste.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+") == "" {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// logTail is the end of a component's log, quoted for an error message: a
// component that failed to start says why on its last lines.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return ":\n" + strings.TrimRight(string(b), "\n")
}

// nodeAudit is the audit log of the node whose first participant is ura:
// the running node's own in this process; with the network in processes
// the node's log opened read-only, as `schakel audit` opens it, once the
// node has indexed what its journal held (bounded: 5 s). done releases it.
func (nw *Network) nodeAudit(ctx context.Context, ura string) (st *audit.Store, done func(), err error) {
	for i, p := range nw.members {
		if p.URA != ura {
			continue
		}
		if !nw.processes {
			return nw.Nodes[i].Audit(), func() {}, nil
		}
		cfg := audit.Config{ReadOnly: true, Path: filepath.Join(nw.opts.DataDir, nw.nodeNames[i], "data", "audit.db")}
		if sc := nw.storeConfig(nw.nodeNames[i]); sc.Postgres != "" {
			// The replicas' one log, in the node's schema (node.Config's
			// audit schema when store.schema is set).
			cfg = audit.Config{ReadOnly: true, Postgres: sc.Postgres, Schema: sc.Schema}
		}
		for j := 0; ; j++ {
			st, err := audit.OpenWith(ctx, cfg)
			if err != nil {
				return nil, nil, fmt.Errorf("%s's audit log: %w", nw.nodeNames[i], err)
			}
			if st.Unindexed() == 0 || j >= 250 {
				return st, func() { st.Close() }, nil
			}
			st.Close()
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil, nil, fmt.Errorf("network: no node of %s", ura)
}

// centralLog is the central log's store: the one this process serves, or
// with the network in processes the database `logcentral serve` keeps,
// opened here for reading; nil when no agreement is at logging 3–4.
func (nw *Network) centralLog(ctx context.Context) (logcentral.Store, error) {
	if nw.logcentral != nil || !nw.processes || nw.logcentralURL == "" {
		return nw.logcentral, nil
	}
	st, err := logcentral.Open(ctx, filepath.Join(nw.opts.DataDir, "logcentral", "logcentral.db"), "", "")
	if err != nil {
		return nil, err
	}
	nw.closers = append(nw.closers, st)
	nw.logcentral = st
	return st, nil
}
