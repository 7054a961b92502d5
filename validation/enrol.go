package validation

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/pki"
)

// KitFile is the kit's enrolment in a network, written where its keys are
// (KitFileName) so that `schakel validate --kit` finds everything: who the
// kit is, where it listens, the addressbook and the CA, and the network's
// nodes it may validate with a driver for each.
type KitFile struct {
	URA         string      `json:"ura"`
	Name        string      `json:"name"`
	SystemUZI   string      `json:"systemUzi"`
	AGB         string      `json:"agb"`
	Listen      string      `json:"listen"`
	Addressbook string      `json:"addressbook"`
	CAFile      string      `json:"caFile"`
	Targets     []KitTarget `json:"targets,omitempty"`
}

// KitTarget is a node of the network the kit can drive through its
// internal API, with a patient it holds data of (and consent for).
type KitTarget struct {
	URA         string `json:"ura"`
	Name        string `json:"name"`
	PublicURL   string `json:"publicUrl"`
	InternalURL string `json:"internalUrl"`
	TokenFile   string `json:"tokenFile"`
	Patient     string `json:"patient,omitempty"`
}

// Files of an enrolled kit in its directory.
const (
	KitFileName     = "kit.json"
	kitCert         = "kit"
	kitAltCert      = "kit-alt"
	kitStrangerCert = "stranger"
	kitRevokedCert  = "revoked"
	kitSigningKey   = "client-signing.pem"
	kitServerKey    = "authorization-server.pem"
)

// StrangerURA is the URA of the kit's certificate that no node has an
// agreement with.
const StrangerURA = "90000994"

// Enrolment is what a network must do to admit the kit: list Entry in its
// addressbook, give the kit's URA an agreement, and revoke RevokedSerial.
type Enrolment struct {
	File          KitFile
	Entry         addressbook.Entry
	RevokedSerial *big.Int
}

// Enrol creates (or reuses) the kit's credentials in dir under the
// development CA: its certificates, its signing keys, and a listening
// address on host that stays the same across restarts.
func Enrol(dir string, ca *pki.CA, host string, f KitFile) (*Enrolment, error) {
	if old, err := ReadKitFile(dir); err == nil && old.Listen != "" {
		f.Listen = old.Listen
	}
	if f.Listen == "" {
		// A free port now, kept in the kit file: the addressbook lists it.
		addr, err := stablePort(host)
		if err != nil {
			return nil, fmt.Errorf("validation: choose the kit's port: %w", err)
		}
		f.Listen = addr
	}
	req := func(ura, uzi, name string) pki.ServerCertRequest {
		return pki.ServerCertRequest{ID: pki.UZIServerID{UZI: uzi, URA: ura, AGB: f.AGB}, CommonName: name,
			IPs: []net.IP{net.ParseIP(host)}, DNSNames: []string{"localhost"}}
	}
	if _, err := pki.LoadOrIssueUZIServer(dir, kitCert, ca, req(f.URA, f.SystemUZI, f.Name)); err != nil {
		return nil, err
	}
	if _, err := pki.LoadOrIssueUZIServer(dir, kitAltCert, ca, req(f.URA, f.SystemUZI, f.Name+" (second key)")); err != nil {
		return nil, err
	}
	if _, err := pki.LoadOrIssueUZIServer(dir, kitStrangerCert, ca, req(StrangerURA, "900009944", "Organisation without agreement")); err != nil {
		return nil, err
	}
	revoked, err := pki.LoadOrIssueUZIServer(dir, kitRevokedCert, ca, req(f.URA, f.SystemUZI, f.Name+" (revoked)"))
	if err != nil {
		return nil, err
	}
	for _, k := range []string{kitSigningKey, kitServerKey} {
		if _, err := pki.LoadOrCreateSigningKey(filepath.Join(dir, k)); err != nil {
			return nil, err
		}
	}
	base := "https://" + f.Listen
	fhirBase := base + "/fhir/stu3/" + f.URA
	return &Enrolment{File: f, RevokedSerial: revoked.Leaf.SerialNumber, Entry: addressbook.Entry{
		ID: "org-" + f.URA, URA: f.URA, Name: f.Name,
		Endpoints: []addressbook.EndpointSpec{
			{ID: "ep-" + f.URA + "-notification", PayloadType: addressbook.PayloadNotification, Address: fhirBase + "/Task", FHIRVersion: "3.0"},
			{ID: "ep-" + f.URA + "-bgz", PayloadType: addressbook.PayloadBgZServer, Address: fhirBase, FHIRVersion: "3.0"},
			{ID: "ep-" + f.URA + "-push", PayloadType: PayloadPush, Address: fhirBase + "/$process-message", FHIRVersion: "3.0"},
			{ID: "ep-" + f.URA + "-as", PayloadType: addressbook.PayloadAuthServer, Address: base},
			{ID: "ep-" + f.URA + "-jwks", PayloadType: addressbook.PayloadClientJWKS, Address: base + "/jwks/" + f.URA},
		}}}, nil
}

// WriteKitFile writes f to dir/kit.json.
func WriteKitFile(dir string, f KitFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, KitFileName), append(b, '\n'), 0o600)
}

// ReadKitFile reads dir/kit.json.
func ReadKitFile(dir string) (KitFile, error) {
	var f KitFile
	b, err := os.ReadFile(filepath.Join(dir, KitFileName))
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("validation: %s: %w", filepath.Join(dir, KitFileName), err)
	}
	return f, nil
}

// LoadIdentity reads the kit's identity from an enrolled directory.
func LoadIdentity(dir string) (KitFile, Identity, error) {
	f, err := ReadKitFile(dir)
	if err != nil {
		return f, Identity{}, fmt.Errorf("validation: no enrolled kit in %s (start `schakel network up` first): %w", dir, err)
	}
	id := Identity{URA: f.URA, Name: f.Name, SystemUZI: f.SystemUZI}
	load := func(name string) (tls.Certificate, error) {
		return tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	}
	var errs []error
	var e error
	id.Cert, e = load(kitCert)
	errs = append(errs, e)
	id.AltCert, e = load(kitAltCert)
	errs = append(errs, e)
	id.Stranger, e = load(kitStrangerCert)
	errs = append(errs, e)
	id.Revoked, e = load(kitRevokedCert)
	errs = append(errs, e)
	id.Signing, e = pki.LoadOrCreateSigningKey(filepath.Join(dir, kitSigningKey))
	errs = append(errs, e)
	id.ServerKey, e = pki.LoadOrCreateSigningKey(filepath.Join(dir, kitServerKey))
	errs = append(errs, e)
	if err := errors.Join(errs...); err != nil {
		return f, id, fmt.Errorf("validation: kit credentials in %s: %w", dir, err)
	}
	if id.Roots, err = pki.LoadCertPool(f.CAFile); err != nil {
		return f, id, fmt.Errorf("validation: CA %s: %w", f.CAFile, err)
	}
	return f, id, nil
}

// TargetFor returns the kit file's node serving ura or at publicURL.
func (f KitFile) TargetFor(ura, publicURL string) (KitTarget, bool) {
	for _, t := range f.Targets {
		if (ura != "" && t.URA == ura) || (ura == "" && strings.TrimSuffix(t.PublicURL, "/") == strings.TrimSuffix(publicURL, "/")) {
			return t, true
		}
	}
	return KitTarget{}, false
}

// stablePort finds a free port on host below the system's ephemeral range.
// The kit listens on it only while it runs, so between runs nothing holds
// it: a port the system hands out for outgoing connections (and to
// listeners on port 0) could be taken meanwhile, one below that range only
// by a program that asks for it by number.
func stablePort(host string) (string, error) {
	lo, hi := 20000, ephemeralLow()-1
	if hi < lo {
		lo = 10000
	}
	if hi >= lo {
		for range 50 {
			addr := net.JoinHostPort(host, strconv.Itoa(lo+mrand.IntN(hi-lo+1)))
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				return addr, nil
			}
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ephemeralLow is the first port of the system's ephemeral range (Linux:
// net.ipv4.ip_local_port_range; 32768 elsewhere and when it cannot be read,
// below the IANA range other systems use).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1024 {
		return 32768
	}
	return n
}
