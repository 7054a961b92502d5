package network

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/schakel-nl/schakel/monitor"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/validation"
)

// monitorOrg is the Twiin Monitor's organisation: its UZI server
// certificate is how it reads the addressbook and the admission register,
// as every party reads them, over mTLS.
var monitorOrg = Participant{URA: "90000989", Name: "Twiin Monitor", SystemUZI: "900009899", AGB: "00000000"}

// MonitorUser is the monitor's development login; its password is
// generated into MonitorPasswordFile and never printed.
const MonitorUser = "operator"

// MonitorPasswordFile is the development login's password, under the
// network's data directory.
var MonitorPasswordFile = filepath.Join("monitor", "password")

// prepareMonitor builds the Twiin Monitor over the network's register,
// addressbook and nodes (their internal /metrics and the node.yaml that
// network up writes), and binds its listener: plain HTTP on the network's
// host, which is loopback unless --host says otherwise.
func (nw *Network) prepareMonitor() error {
	dir := filepath.Join(nw.opts.DataDir, "monitor")
	cert, err := nw.issue(dir, "monitor", monitorOrg)
	if err != nil {
		return fmt.Errorf("monitor certificate: %w", err)
	}
	pw, err := monitor.LoadOrCreatePassword(filepath.Join(nw.opts.DataDir, MonitorPasswordFile))
	if err != nil {
		return err
	}
	acct, err := monitor.NewLocalAccount(MonitorUser, pw)
	if err != nil {
		return err
	}
	keys, err := validation.ReadAuthorityJWKS(filepath.Join(nw.opts.DataDir, "pki", validation.AuthorityJWKSFile))
	if err != nil {
		return fmt.Errorf("monitor: the validation authority's keys: %w", err)
	}
	var nodes []monitor.NodeSource
	for _, n := range nw.Nodes {
		nodes = append(nodes, monitor.NodeSource{Name: n.Name(), MetricsURL: n.InternalURL() + "/metrics",
			ConfigFile: filepath.Join(nw.opts.DataDir, n.Name(), "node.yaml")})
	}
	dirClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}
	cfg := monitor.Config{AddressbookURL: nw.dirURL, AdmissionURL: nw.admissionURL, Directory: dirClient, Authority: keys,
		Nodes: nodes, Logins: []monitor.LoginProvider{acct}, Logger: nw.opts.Logger.With("component", "monitor")}
	if nw.opts.OwnAddressing {
		cfg.AddressbookURL = "" // the nodes are not listed in it
	}
	m, err := monitor.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(nw.opts.Host, "0"))
	if err != nil {
		return fmt.Errorf("monitor listener: %w", err)
	}
	nw.monitor, nw.monitorURL = m, "http://"+ln.Addr().String()
	nw.services = append(nw.services, &service{plain: true, name: "monitor", url: nw.monitorURL, ln: ln,
		srv: &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}})
	return nil
}

// runMonitor reads the monitor's sources until ctx ends.
func (nw *Network) runMonitor(ctx context.Context) {
	if nw.monitor != nil {
		go nw.monitor.Run(ctx)
	}
}

func (nw *Network) printMonitor() {
	if nw.monitor == nil {
		return
	}
	nw.printf("  Twiin Monitor        %s   (log in as %s, password in %s)\n", nw.monitorURL, MonitorUser,
		filepath.Join(nw.opts.DataDir, MonitorPasswordFile))
}

// Monitor is the network's Twiin Monitor.
func (nw *Network) Monitor() *monitor.Server { return nw.monitor }

// MonitorURL is the Twiin Monitor's base URL.
func (nw *Network) MonitorURL() string { return nw.monitorURL }
