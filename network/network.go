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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/pki"
)

// Participant is an organisation in the demo network.
type Participant struct {
	URA, Name, SystemUZI, AGB string
}

// The demo network's organisations.
var (
	GP       = Participant{URA: "90000001", Name: "Huisartsenpraktijk De Linde", SystemUZI: "900000011", AGB: "01000001"}
	Hospital = Participant{URA: "90000002", Name: "Ziekenhuis Rijnstroom", SystemUZI: "900000022", AGB: "06000002"}
	dirOrg   = Participant{URA: "90000999", Name: "Schakel addressbook", SystemUZI: "900009999", AGB: "00000000"}
)

// Options configure a network.
type Options struct {
	// DataDir keeps keys, certificates and stores; reused across runs.
	DataDir string
	// Patients is the number of demo patients the GP practice holds (≥1).
	Patients int
	// Host is the address listeners bind to; 127.0.0.1 by default.
	Host string
	// Out receives the progress lines; nil discards them.
	Out    io.Writer
	Logger *slog.Logger
}

// Network is a running local network.
type Network struct {
	opts      Options
	out       io.Writer
	mu        sync.Mutex
	Nodes     []*node.Node
	GPNode    *node.Node
	HospNode  *node.Node
	tokens    map[string]string // URA → internal API token
	dirStore  store.Store
	dirSrv    *http.Server
	dirLn     net.Listener
	dirURL    string
	dir       *addressbook.Server
	done      chan notifiedpull.Event // completed/failed pulls, for waiters
	CA        *pki.CA
	Patients  []demo.Patient
	serveDone chan struct{}
	nodeErrs  chan error
}

// Up prepares the network: PKI, addressbook, nodes and demo data. Listeners
// are bound, nothing is served until Start.
func Up(ctx context.Context, opts Options) (nw *Network, err error) {
	if opts.DataDir == "" {
		return nil, errors.New("a data directory is required")
	}
	if opts.Patients < 1 {
		opts.Patients = 1
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	nw = &Network{opts: opts, out: opts.Out, tokens: map[string]string{}, done: make(chan notifiedpull.Event, 64)}
	if nw.out == nil {
		nw.out = io.Discard
	}
	defer func() {
		if err != nil {
			nw.closeAll()
		}
	}()
	if nw.CA, err = pki.LoadOrCreateCA(filepath.Join(opts.DataDir, "pki")); err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	caFile := filepath.Join(opts.DataDir, "pki", "ca.pem")

	// The addressbook.
	dirDir := filepath.Join(opts.DataDir, "addressbook")
	dirCert, err := nw.issue(dirDir, "addressbook", dirOrg)
	if err != nil {
		return nil, err
	}
	if nw.dirStore, err = sqlite.Open(ctx, filepath.Join(dirDir, "fhir-r4.db"), fhir.R4); err != nil {
		return nil, fmt.Errorf("addressbook store: %w", err)
	}
	if nw.dirLn, err = net.Listen("tcp", net.JoinHostPort(opts.Host, "0")); err != nil {
		return nil, err
	}
	nw.dirURL = "https://" + nw.dirLn.Addr().String() + "/fhir"
	dir := addressbook.NewServer(nw.dirStore, nw.dirURL, opts.Logger.With("component", "addressbook"))
	nw.dir = dir
	nw.dirSrv = &http.Server{Handler: dir.Handler(), TLSConfig: pki.ServerTLSConfig(dirCert, pki.CertPool(nw.CA.Cert)),
		ReadHeaderTimeout: 10 * time.Second}

	// The nodes.
	events := func(e notifiedpull.Event) { nw.printEvent(e) }
	for _, spec := range []struct {
		name string
		p    Participant
	}{{"gp-node", GP}, {"hospital-node", Hospital}} {
		cfg, err := nw.nodeConfig(spec.name, spec.p, caFile)
		if err != nil {
			return nil, err
		}
		n, err := node.New(ctx, cfg, node.Options{Logger: opts.Logger, Events: events})
		if err != nil {
			return nil, err
		}
		nw.Nodes = append(nw.Nodes, n)
		if err := dir.Load(ctx, n.AddressbookEntries()...); err != nil {
			return nil, err
		}
	}
	nw.GPNode, nw.HospNode = nw.Nodes[0], nw.Nodes[1]

	// Demo data: the GP practice's record.
	if nw.Patients, err = demo.Generate(demo.Options{Count: opts.Patients, Seed: 1, GPName: GP.Name}); err != nil {
		return nil, err
	}
	for _, p := range nw.Patients {
		for _, res := range p.Resources {
			if _, _, err := nw.GPNode.Store().Update(ctx, GP.URA, res, ""); err != nil {
				return nil, fmt.Errorf("load demo data: %w", err)
			}
		}
	}
	return nw, nil
}

func (nw *Network) issue(dir, name string, p Participant) (tls.Certificate, error) {
	return pki.LoadOrIssueUZIServer(dir, name, nw.CA, pki.ServerCertRequest{
		ID:         pki.UZIServerID{UZI: p.SystemUZI, URA: p.URA, AGB: p.AGB},
		CommonName: p.Name,
		IPs:        []net.IP{net.ParseIP(nw.opts.Host)},
		DNSNames:   []string{"localhost"},
	})
}

func (nw *Network) nodeConfig(name string, p Participant, caFile string) (node.Config, error) {
	dir := filepath.Join(nw.opts.DataDir, name)
	tlsDir := filepath.Join(dir, "tls")
	if _, err := nw.issue(tlsDir, "node", p); err != nil {
		return node.Config{}, fmt.Errorf("%s certificate: %w", name, err)
	}
	token, err := loadOrCreateSecret(filepath.Join(dir, "internal-token-"+p.URA))
	if err != nil {
		return node.Config{}, err
	}
	nw.tokens[p.URA] = token
	return node.Config{
		Name:           name,
		DataDir:        filepath.Join(dir, "data"),
		Public:         node.ListenerConfig{Addr: net.JoinHostPort(nw.opts.Host, "0")},
		Internal:       node.ListenerConfig{Addr: net.JoinHostPort(nw.opts.Host, "0")},
		TLS:            node.TLSConfig{CertFile: filepath.Join(tlsDir, "node.pem"), KeyFile: filepath.Join(tlsDir, "node-key.pem"), CAFiles: []string{caFile}},
		SigningKeyFile: filepath.Join(dir, "keys", "authorization-server.pem"),
		AddressbookURL: nw.dirURL,
		Participants: []node.ParticipantConfig{{
			URA: p.URA, Name: p.Name, SystemUZI: p.SystemUZI,
			SigningKeyFile: filepath.Join(dir, "keys", "client-"+p.URA+".pem"),
			InternalToken:  token,
		}},
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
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc := make(chan error, 1)
		go func() { errc <- nw.dirSrv.ServeTLS(nw.dirLn, "", "") }()
		select {
		case <-ctx.Done():
		case err := <-errc:
			nw.nodeErrs <- fmt.Errorf("addressbook: %w", err)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = nw.dirSrv.Shutdown(sctx)
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
		if nw.dirStore != nil {
			nw.dirStore.Close()
		}
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
	if nw.dirStore != nil {
		nw.dirStore.Close()
	}
	if nw.dirLn != nil {
		nw.dirLn.Close()
	}
}

// PrintListeners writes the address of every listener.
func (nw *Network) PrintListeners() {
	nw.printf("Twiin network on %s (data in %s)\n", nw.opts.Host, nw.opts.DataDir)
	nw.printf("  addressbook          %s   (mTLS)\n", nw.dirURL)
	for i, n := range nw.Nodes {
		p := []Participant{GP, Hospital}[i]
		nw.printf("  %-20s public   %s   (mTLS, TLS 1.3)\n", n.Name(), n.PublicURL())
		nw.printf("  %-20s internal %s   (participant %s %s; token in %s)\n", "", n.InternalURL(), p.URA, p.Name,
			filepath.Join(nw.opts.DataDir, n.Name(), "internal-token-"+p.URA))
	}
}

func (nw *Network) printf(format string, args ...any) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	fmt.Fprintf(nw.out, format, args...)
}

func (nw *Network) printEvent(e notifiedpull.Event) {
	if e.Step == "completed" || (e.Step == "failed" && e.Node == nw.HospNode.Name()) {
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
