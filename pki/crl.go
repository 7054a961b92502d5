package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// CRLFile is the name of the development CA's CRL inside its directory.
const CRLFile = "crl.pem"

// DefaultCRLValidity is the nextUpdate distance of CRLs the dev CA signs.
const DefaultCRLValidity = 30 * 24 * time.Hour

// CreateCRL signs a CRL (RFC 5280 §5) listing entries, with CRL number
// number and the given thisUpdate/nextUpdate, and returns its DER.
func (ca *CA) CreateCRL(entries []x509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	if !nextUpdate.After(thisUpdate) {
		return nil, errors.New("pki: CRL nextUpdate must be after thisUpdate")
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    number,
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign CRL: %w", err)
	}
	return der, nil
}

// RevokeInDir adds serials to the CRL dir/crl.pem of the CA in dir (creating
// the CRL if there is none), re-signs it with the next CRL number, thisUpdate
// now and nextUpdate now+validity (DefaultCRLValidity if zero), and returns
// it. With no serials it only refreshes the CRL. An existing CRL not signed
// by ca is an error, never silently replaced.
func RevokeInDir(dir string, ca *CA, serials []*big.Int, validity time.Duration) (*x509.RevocationList, error) {
	if validity <= 0 {
		validity = DefaultCRLValidity
	}
	path := filepath.Join(dir, CRLFile)
	var (
		entries []x509.RevocationListEntry
		number  = big.NewInt(1)
	)
	switch data, err := os.ReadFile(path); {
	case err == nil:
		old, err := parseCRL(data)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", path, err)
		}
		if err := old.CheckSignatureFrom(ca.Cert); err != nil {
			return nil, fmt.Errorf("pki: %s is not signed by the CA in %s: %w", path, dir, err)
		}
		entries = old.RevokedCertificateEntries
		if old.Number != nil {
			number.Add(old.Number, big.NewInt(1))
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("pki: %w", err)
	}
	now := time.Now()
	for _, s := range serials {
		if slices.ContainsFunc(entries, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Cmp(s) == 0 }) {
			continue
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Truncate(time.Second)})
	}
	der, err := ca.CreateCRL(entries, number, now.Add(-backdate), now.Add(validity))
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return x509.ParseRevocationList(der)
}

// parseCRL reads a CRL in PEM ("X509 CRL") or DER form.
func parseCRL(data []byte) (*x509.RevocationList, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		var b *pem.Block
		for {
			b, data = pem.Decode(data)
			if b == nil {
				return nil, errors.New("no X509 CRL PEM block")
			}
			if b.Type == "X509 CRL" {
				break
			}
		}
		data = b.Bytes
	}
	return x509.ParseRevocationList(data)
}

// crlWatcher holds the CRLs of a Trust and reloads changed files.
type crlWatcher struct {
	cas   []*x509.Certificate
	every time.Duration // <0: no polling
	now   func() time.Time
	log   *slog.Logger

	state    atomic.Pointer[crlState]
	gen      atomic.Uint64
	nextPoll atomic.Int64 // unix nanoseconds
	mu       sync.Mutex   // serializes reloads
}

// crlState is an immutable snapshot; reloads swap it whole.
type crlState struct {
	files    []crlFile
	byIssuer map[string]*crlFile // issuer RawSubject → its CRL
}

type crlFile struct {
	path    string
	modTime time.Time
	size    int64
	next    time.Time // nextUpdate
	issuer  string    // RawSubject of the signing CA
	revoked map[string]struct{}
	// staleWarned: the warning that a stale CRL is accepted is logged
	// once per loaded file; shared by the snapshots that copy it.
	staleWarned *atomic.Bool
}

func newCRLWatcher(paths []string, cas []*x509.Certificate, every time.Duration, now func() time.Time, log *slog.Logger) (*crlWatcher, error) {
	w := &crlWatcher{cas: cas, every: every, now: now, log: log}
	st := &crlState{byIssuer: map[string]*crlFile{}}
	for _, p := range paths {
		f, issuer, err := w.load(p)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(st.files, func(o crlFile) bool { return o.issuer == issuer }) {
			return nil, fmt.Errorf("pki: CRL %s: another CRL file has the same issuer", p)
		}
		st.files = append(st.files, f)
	}
	st.index()
	w.state.Store(st)
	w.nextPoll.Store(now().Add(every).UnixNano())
	return w, nil
}

// index rebuilds byIssuer; issuers were checked when each file loaded.
func (st *crlState) index() {
	st.byIssuer = make(map[string]*crlFile, len(st.files))
	for i := range st.files {
		st.byIssuer[st.files[i].issuerKey()] = &st.files[i]
	}
}

// load reads, parses and authenticates one CRL file.
func (w *crlWatcher) load(path string) (crlFile, string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return crlFile{}, "", fmt.Errorf("pki: CRL: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return crlFile{}, "", fmt.Errorf("pki: CRL: %w", err)
	}
	crl, err := parseCRL(data)
	if err != nil {
		return crlFile{}, "", fmt.Errorf("pki: CRL %s: %w", path, err)
	}
	if crl.NextUpdate.IsZero() {
		return crlFile{}, "", fmt.Errorf("pki: CRL %s has no nextUpdate", path)
	}
	var issuer *x509.Certificate
	for _, ca := range w.cas {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			issuer = ca
			break
		}
	}
	if issuer == nil {
		return crlFile{}, "", fmt.Errorf("pki: CRL %s is not signed by a configured CA", path)
	}
	f := crlFile{path: path, modTime: info.ModTime(), size: info.Size(), next: crl.NextUpdate, staleWarned: new(atomic.Bool),
		revoked: make(map[string]struct{}, len(crl.RevokedCertificateEntries))}
	for _, e := range crl.RevokedCertificateEntries {
		f.revoked[e.SerialNumber.String()] = struct{}{}
	}
	f.issuer = string(issuer.RawSubject)
	return f, f.issuer, nil
}

// issuerKey is the RawSubject of the CA that signed the CRL.
func (f *crlFile) issuerKey() string { return f.issuer }

func (w *crlWatcher) generation() uint64 { return w.gen.Load() }

// poll reloads changed files once the interval has passed; one caller does
// the work while the others go on with the current snapshot.
func (w *crlWatcher) poll() {
	if w.every < 0 || len(w.state.Load().files) == 0 {
		return
	}
	next := w.nextPoll.Load()
	if w.now().UnixNano() < next || !w.nextPoll.CompareAndSwap(next, w.now().Add(w.every).UnixNano()) {
		return
	}
	if err := w.reload(false); err != nil {
		w.log.Error("CRL reload failed; keeping the previous CRL", "error", err)
	}
}

// reload re-reads the files whose mtime or size changed (all when force).
func (w *crlWatcher) reload(force bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.state.Load()
	st := &crlState{files: slices.Clone(old.files)}
	changed := false
	var errs []error
	for i, f := range st.files {
		if !force {
			info, err := os.Stat(f.path)
			if err == nil && info.ModTime().Equal(f.modTime) && info.Size() == f.size {
				continue
			}
		}
		nf, issuer, err := w.load(f.path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if issuer != f.issuerKey() {
			errs = append(errs, fmt.Errorf("pki: CRL %s changed issuer", f.path))
			continue
		}
		st.files[i] = nf
		changed = true
	}
	if changed {
		st.index()
		w.state.Store(st)
		w.gen.Add(1)
	}
	return errors.Join(errs...)
}

// check applies the CRLs to every certificate of peer's chain but the root.
func (w *crlWatcher) check(peer *Peer, now time.Time, failClosed, requireCRL bool) error {
	st := w.state.Load()
	chain := peer.Chain
	if peer.Route == RouteCA && len(chain) > 1 {
		chain = chain[:len(chain)-1] // the trust anchor has no CRL above it
	}
	for _, c := range chain {
		f, ok := st.byIssuer[string(c.RawIssuer)]
		if !ok {
			if requireCRL && peer.Route == RouteCA {
				return fmt.Errorf("%w: %q", ErrNoCRL, c.Issuer)
			}
			continue
		}
		if _, revoked := f.revoked[c.SerialNumber.String()]; revoked {
			return fmt.Errorf("%w: %q serial %s", ErrRevokedCertificate, c.Subject.CommonName, c.SerialNumber)
		}
		if now.After(f.next) {
			if failClosed {
				return fmt.Errorf("%w: CRL of %q expired at %s", ErrStaleCRL, c.Issuer, f.next.Format(time.RFC3339))
			}
			// Accepting on an old CRL is the operator's choice, never a silent one.
			if f.staleWarned.CompareAndSwap(false, true) {
				w.log.Warn("CRL is past its nextUpdate; still accepting certificates of its issuer (stalecrl: accept)",
					"crl", f.path, "nextupdate", f.next.Format(time.RFC3339))
			}
		}
	}
	return nil
}

// validUntil is the earliest nextUpdate among the CRLs that apply to chain:
// a cached identification must be redone once a CRL turns stale.
func (w *crlWatcher) validUntil(chain []*x509.Certificate) time.Time {
	until := time.Now().Add(24 * time.Hour * 365 * 100)
	st := w.state.Load()
	for _, c := range chain {
		if f, ok := st.byIssuer[string(c.RawIssuer)]; ok && f.next.Before(until) {
			until = f.next
		}
	}
	return until
}

// fresh reports why peer's chain is not covered by fresh CRLs: every
// certificate but the trust anchor must have its issuer's CRL loaded and
// before its nextUpdate, whatever StaleCRL and RequireCRL say.
func (w *crlWatcher) fresh(peer *Peer, now time.Time) error {
	st := w.state.Load()
	chain := peer.Chain
	if peer.Route == RouteCA && len(chain) > 1 {
		chain = chain[:len(chain)-1]
	}
	for _, c := range chain {
		f, ok := st.byIssuer[string(c.RawIssuer)]
		if !ok {
			return fmt.Errorf("%w: %q", ErrNoCRL, c.Issuer)
		}
		if now.After(f.next) {
			return fmt.Errorf("%w: CRL of %q expired at %s", ErrStaleCRL, c.Issuer, f.next.Format(time.RFC3339))
		}
	}
	return nil
}
