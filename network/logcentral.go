package network

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/schakel-nl/schakel/logcentral"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/plateau"
)

// logcentralOrg runs the network's central log and monitoring service.
var logcentralOrg = Participant{URA: "90000990", Name: "Schakel central log", SystemUZI: "900009900", AGB: "00000000"}

// shipsToCentral configures cfg to ship its audit log to the network's
// central log when one of its agreements is at logging plateau 3–4, which
// requires it; the service is started with the first node that needs it.
func (nw *Network) shipsToCentral(ctx context.Context, cfg *node.Config) error {
	if !needsCentral(*cfg) {
		return nil
	}
	if nw.logcentralURL == "" {
		if err := nw.startLogcentral(ctx); err != nil {
			return fmt.Errorf("central log: %w", err)
		}
	}
	cfg.Audit.Central.URL = nw.logcentralURL
	return nil
}

// needsCentral reports whether one of cfg's agreements (or its default)
// is at logging plateau 3–4: the node must then ship its audit log.
func needsCentral(cfg node.Config) bool {
	needs := cfg.Partners.Default != nil && cfg.Partners.Default[plateau.Logging] >= 3
	for _, a := range cfg.Partners.Agreements {
		needs = needs || cfg.Partners.Plateau(a, plateau.Logging) >= 3
	}
	return needs
}

// startLogcentral builds the central log (`schakel logcentral serve` in
// production) on an mTLS listener that Start serves with the other services.
func (nw *Network) startLogcentral(ctx context.Context) error {
	dir := filepath.Join(nw.opts.DataDir, "logcentral")
	cert, err := nw.issue(dir, "logcentral", logcentralOrg)
	if err != nil {
		return err
	}
	st, err := logcentral.Open(ctx, filepath.Join(dir, "logcentral.db"), "", "")
	if err != nil {
		return err
	}
	nw.closers = append(nw.closers, st)
	srv, err := logcentral.NewServer(logcentral.ServerConfig{Store: st, PeerURA: logcentral.PeerURAFromUZI,
		Logger: nw.opts.Logger.With("component", "logcentral")})
	if err != nil {
		return err
	}
	svc, err := nw.listen("logcentral", cert)
	if err != nil {
		return err
	}
	svc.srv.Handler = srv.Handler()
	nw.logcentralURL, nw.logcentral = svc.url, st
	return nil
}

// CentralLog is the network's central log store; nil when no agreement
// is at logging plateau 3–4.
func (nw *Network) CentralLog() logcentral.Store { return nw.logcentral }
