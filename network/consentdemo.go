package network

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/pki"
)

// permit records that patient bsn permits holder's data to every
// requester, at the consent service playing Mitz or (portal) at the
// regional consent portal's service; a permit in force is kept. In one
// process it is registered in the service's store (permitAtMitz); with the
// network in processes the holder's own system registers it over the
// service's registry API (consent.RegistryPath) with its node's
// certificate, as `schakel consent register` does.
func (nw *Network) permit(ctx context.Context, portal bool, bsn string, holder Participant) error {
	if !nw.processes {
		st := nw.consent.Store()
		if portal {
			st = nw.portal.Store()
		}
		return permitAtMitz(ctx, st, bsn, holder.URA)
	}
	base := nw.consentURL
	if portal {
		base = nw.portalURL
	}
	hc, err := nw.holderClient(holder)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	var regs []consent.Registration
	if err := consentCall(ctx, hc, http.MethodGet, base+consent.RegistryPath+"?patient="+url.QueryEscape(bsn), nil, http.StatusOK, &regs); err != nil {
		return fmt.Errorf("demo consent: %w", err)
	}
	for _, r := range regs {
		if r.Effect == consent.Permit && r.HolderURA == holder.URA && r.Revoked.IsZero() && r.RequesterURA == "" &&
			r.RequesterType == "" && r.RequesterRole == "" && r.HolderType == "" {
			return nil
		}
	}
	reg := consent.Registration{PatientBSN: bsn, Effect: consent.Permit, HolderURA: holder.URA}
	if err := consentCall(ctx, hc, http.MethodPost, base+consent.RegistryPath, reg, http.StatusCreated, nil); err != nil {
		return fmt.Errorf("register demo consent: %w", err)
	}
	return nil
}

// holderClient is an mTLS client with the UZI server certificate of the
// node that serves holder.
func (nw *Network) holderClient(holder Participant) (*http.Client, error) {
	name := ""
	for i, p := range nw.members {
		if p.URA == holder.URA {
			name = nw.nodeNames[i]
		}
	}
	if name == "" {
		return nil, fmt.Errorf("network: %s runs no node of its own", holder.Name)
	}
	dir := filepath.Join(nw.opts.DataDir, name, "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("%s's certificate: %w", holder.Name, err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}, nil
}

// consentCall sends one JSON request to a consent service and decodes
// the answer when it has the status wanted.
func consentCall(ctx context.Context, hc *http.Client, method, u string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
