package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/pki"
)

// ExportType is the typ header and the "typ" claim of a partner's signed
// export of its own audit records (logging plateau 1–2: the own NEN 7513
// log, available on request).
const ExportType = "schakel-audit-export+jwt"

// MaxExportRecords bounds one export; a partner continues with after = the
// last seq it got while More is set.
const MaxExportRecords = 1000

// ErrInvalidExport is wrapped by VerifyExport for every reason an export is
// not to be believed.
var ErrInvalidExport = errors.New("invalid audit export")

// Export is the signed content of an export: the records of one requesting
// organisation (ActorURA) as the chain holds them, and the node's newest
// checkpoint, so that each record's hash can be placed against a signed
// chain head (by the node's own Verify, or the central log at plateau 3–4).
type Export struct {
	Typ   string  `json:"typ"`
	Node  string  `json:"node"`
	URA   string  `json:"ura"`   // the requesting organisation the records are of
	After int64   `json:"after"` // records after this seq
	More  bool    `json:"more"`  // more records follow the last one: ask again with after = its seq
	IAT   int64   `json:"iat"`
	Items []Entry `json:"records"`
	// Checkpoint is the newest signed checkpoint when the export was made
	// (empty before the first); records after its seq are not anchored yet.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// Export signs, with the checkpoint key, the records whose requesting
// organisation is ura, after seq after, at most limit (≤ MaxExportRecords).
func (s *Store) Export(ctx context.Context, ura string, after int64, limit int) (string, error) {
	if s.sign == nil {
		return "", fmt.Errorf("%w: the store has no signing key (read-only)", ErrUnavailable)
	}
	if ura == "" {
		return "", errors.New("audit export: no organisation")
	}
	if limit <= 0 || limit > MaxExportRecords {
		limit = MaxExportRecords
	}
	// One more than asked tells whether more follow.
	entries, err := s.Entries(ctx, Filter{ActorURA: ura, AfterSeq: after, Limit: limit + 1})
	if err != nil {
		return "", err
	}
	ex := Export{Typ: ExportType, Node: s.cfg.Node, URA: ura, After: after, IAT: s.now().Unix(), Items: entries}
	if len(entries) > limit {
		ex.Items, ex.More = entries[:limit], true
	}
	if ex.Items == nil {
		ex.Items = []Entry{}
	}
	cp, ok, err := s.LastCheckpoint(ctx)
	if err != nil {
		return "", err
	}
	if ok {
		ex.Checkpoint = cp.JWS
	}
	payload, err := json.Marshal(ex)
	if err != nil {
		return "", fmt.Errorf("audit export: %w", err)
	}
	return signWith(s.cfg.Key, ExportType, payload)
}

// signWith signs payload as a compact JWS with key (its alg and kid) and typ.
func signWith(key jwk.Key, typ string, payload []byte) (string, error) {
	a, ok := key.Algorithm()
	if !ok {
		return "", errors.New("signing key has no alg")
	}
	alg, ok := jwa.LookupSignatureAlgorithm(a.String())
	if !ok || alg == jwa.NoSignature() || alg.IsSymmetric() {
		return "", fmt.Errorf("key alg %s cannot sign", a)
	}
	kid, _ := key.KeyID()
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, typ); err != nil {
		return "", err
	}
	if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
		return "", err
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", typ, err)
	}
	return string(out), nil
}

// VerifiedExport is an export whose signature, records and checkpoint
// verified.
type VerifiedExport struct {
	Export
	Records []Record // the decoded records, Seq set
	// AnchoredThrough is the seq the export's checkpoint signs the chain
	// head of (0 without one): records up to it are covered by a signed
	// head the node can no longer rewrite unnoticed.
	AnchoredThrough int64
}

// VerifyExport checks an export against the node's checkpoint keys: the
// JWS signature, every record's hash against its link and body, that every
// record is ura's own (when ura is set) and in chain order after After, and
// the checkpoint's signature. Errors wrap ErrInvalidExport.
func VerifyExport(compact string, keys jwk.Set, ura string) (*VerifiedExport, error) {
	if keys == nil {
		return nil, fmt.Errorf("%w: no keys to verify it with", ErrInvalidExport)
	}
	msg, err := jws.Parse([]byte(strings.TrimSpace(compact)))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalidExport)
	}
	if typ, _ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != ExportType {
		return nil, fmt.Errorf("%w: typ %q, want %s", ErrInvalidExport, typ, ExportType)
	}
	payload, err := jws.Verify([]byte(strings.TrimSpace(compact)), jws.WithKeySet(keys, jws.WithInferAlgorithmFromKey(true)))
	if err != nil {
		return nil, fmt.Errorf("%w: signature does not verify with the node's keys", ErrInvalidExport)
	}
	var ex Export
	if err := json.Unmarshal(payload, &ex); err != nil || ex.Typ != ExportType {
		return nil, fmt.Errorf("%w: payload is not a Schakel audit export", ErrInvalidExport)
	}
	if ura != "" && ex.URA != ura {
		return nil, fmt.Errorf("%w: export is for URA %s, not %s", ErrInvalidExport, ex.URA, ura)
	}
	v := &VerifiedExport{Export: ex}
	last := ex.After
	for _, e := range ex.Items {
		if e.Seq <= last {
			return nil, fmt.Errorf("%w: seq %d out of chain order", ErrInvalidExport, e.Seq)
		}
		last = e.Seq
		r, err := e.Check()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidExport, err)
		}
		if r.ActorURA != ex.URA {
			return nil, fmt.Errorf("%w: seq %d is a record of URA %q, not %s", ErrInvalidExport, e.Seq, r.ActorURA, ex.URA)
		}
		v.Records = append(v.Records, r)
	}
	if ex.Checkpoint != "" {
		cp, err := parseCheckpoint(ex.Checkpoint, keys)
		if err != nil {
			return nil, fmt.Errorf("%w: checkpoint: %w", ErrInvalidExport, err)
		}
		if cp.Node != ex.Node {
			return nil, fmt.Errorf("%w: checkpoint of node %q in an export of %q", ErrInvalidExport, cp.Node, ex.Node)
		}
		v.AnchoredThrough = cp.Seq
	}
	return v, nil
}

// ExportPath and ExportKeysPath are where a node serves exports and the
// public half of its checkpoint key, on its public (mTLS) listener.
const (
	ExportPath     = "/audit/export"
	ExportKeysPath = "/audit/jwks"
)

// FetchExport asks the node at base (its public URL) for the export of the
// caller's own records after seq after; hc presents the caller's UZI server
// certificate, whose URA decides whose records come back.
func FetchExport(ctx context.Context, hc *http.Client, base string, after int64) (string, error) {
	u := strings.TrimSuffix(base, "/") + ExportPath + "?after=" + strconv.FormatInt(after, 10)
	body, err := get(ctx, hc, u, "application/jose")
	if err != nil {
		return "", fmt.Errorf("audit export from %s: %w", base, err)
	}
	return string(body), nil
}

// FetchExportKeys reads the node's published checkpoint keys (JWKS). Over
// mTLS the answer comes from the node its server certificate names; pin
// the keys out of band where that is not enough.
func FetchExportKeys(ctx context.Context, hc *http.Client, base string) (jwk.Set, error) {
	body, err := get(ctx, hc, strings.TrimSuffix(base, "/")+ExportKeysPath, "application/jwk-set+json")
	if err != nil {
		return nil, fmt.Errorf("audit keys from %s: %w", base, err)
	}
	set, err := jwk.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("audit keys from %s: %w", base, err)
	}
	return set, nil
}

func get(ctx context.Context, hc *http.Client, u, accept string) ([]byte, error) {
	if _, err := url.Parse(u); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 500)])))
	}
	return body, nil
}

// PublicKeys is the public half of the checkpoint key, which verifies the
// store's checkpoints and exports: what the node publishes at ExportKeysPath.
func (s *Store) PublicKeys() (jwk.Set, error) {
	if s.cfg.Key == nil {
		return nil, errors.New("audit store: no checkpoint key (read-only)")
	}
	return pki.PublicJWKS(s.cfg.Key)
}
