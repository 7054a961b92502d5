package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/plateau"
)

// The admin API changes agreements and participants while the node runs.
//
// It listens on its own plain-HTTP listener (admin.addr), which must be a
// loopback address: it is an operator's tool on the node's own host
// (reached from elsewhere through SSH), never a peer's, so it is kept off
// both the public mTLS listener and the participants' internal one. Each
// request carries an operator's bearer token from admin.tokenfile; a
// token names its operator, whose name goes in the audit record of every
// change. A token rather than an operator certificate: the node's PKI is
// the UZI register's, which issues no operator certificates, and a file
// readable by the operator account alone is what the host already
// protects the node's keys with.

// OverlayFile is where the node keeps the changes made through the admin
// API, in its datadir: read at start after the configuration file, whose
// entries it overrides by key (an agreement's URA or a collaboration's
// name, a participant's URA); null withdraws an entry of the file.
const OverlayFile = "runtime-changes.json"

// minAdminToken is the shortest operator token accepted.
const minAdminToken = 32

func (a AdminConfig) validate() []error {
	if a.Addr == "" && a.TokenFile == "" {
		return nil
	}
	var errs []error
	if a.Addr == "" || a.TokenFile == "" {
		errs = append(errs, errors.New("admin.addr and admin.tokenfile go together"))
	}
	if a.Addr != "" {
		host, _, err := net.SplitHostPort(a.Addr)
		switch ip := net.ParseIP(host); {
		case err != nil:
			errs = append(errs, fmt.Errorf("admin.addr: %w", err))
		case host != "localhost" && (ip == nil || !ip.IsLoopback()):
			errs = append(errs, fmt.Errorf("admin.addr %s: the admin API is plain HTTP and listens on a loopback address only (127.0.0.1 or ::1); reach it from elsewhere through SSH", a.Addr))
		}
	}
	return errs
}

// loadOperators reads admin.tokenfile: one "<operator> <token>" a line
// (a line with a token alone is operator "admin"); blank lines and lines
// starting with # are skipped. The file must not be readable by others.
func loadOperators(file string) (map[[32]byte]string, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("admin.tokenfile: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("admin.tokenfile %s: readable by others (mode %04o); chmod 600 it", file, fi.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("admin.tokenfile: %w", err)
	}
	ops := map[[32]byte]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		name, token := "admin", f[0]
		switch len(f) {
		case 1:
		case 2:
			name, token = f[0], f[1]
		default:
			return nil, fmt.Errorf("admin.tokenfile %s line %d: want \"<operator> <token>\"", file, line)
		}
		if len(token) < minAdminToken {
			return nil, fmt.Errorf("admin.tokenfile %s line %d: the token must be at least %d characters", file, line, minAdminToken)
		}
		h := sha256.Sum256([]byte(token))
		if _, dup := ops[h]; dup {
			return nil, fmt.Errorf("admin.tokenfile %s line %d: token given twice", file, line)
		}
		ops[h] = name
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("admin.tokenfile %s: no token", file)
	}
	return ops, nil
}

// overlay is the content of OverlayFile: entries by key, nil for one
// withdrawn from the configuration file.
type overlay struct {
	Agreements   map[string]*plateau.PartnerConfig
	Participants map[string]*ParticipantConfig
}

func (o overlay) empty() bool { return len(o.Agreements) == 0 && len(o.Participants) == 0 }

func (o overlay) clone() overlay {
	out := emptyOverlay()
	for k, v := range o.Agreements {
		out.Agreements[k] = v
	}
	for k, v := range o.Participants {
		out.Participants[k] = v
	}
	return out
}

// agreementKey names an agreement in the admin API and the overlay: the
// partner's URA, or the collaboration's name.
func agreementKey(a plateau.PartnerConfig) string {
	if a.URA != "" {
		return a.URA
	}
	return a.Name
}

// apply merges o into the configuration file's entries: an entry the
// overlay names is replaced (or, nil, dropped) where it stands; entries
// only in the overlay follow, ordered by key.
func (o overlay) apply(cfg Config) Config {
	var agreements []plateau.PartnerConfig
	seen := map[string]bool{}
	for _, a := range cfg.Partners.Agreements {
		k := agreementKey(a)
		seen[k] = true
		if v, ok := o.Agreements[k]; ok && k != "" {
			if v != nil {
				agreements = append(agreements, *v)
			}
			continue
		}
		agreements = append(agreements, a)
	}
	for _, k := range sortedKeys(o.Agreements) {
		if v := o.Agreements[k]; !seen[k] && v != nil {
			agreements = append(agreements, *v)
		}
	}
	var parts []ParticipantConfig
	seen = map[string]bool{}
	for _, p := range cfg.Participants {
		seen[p.URA] = true
		if v, ok := o.Participants[p.URA]; ok {
			if v != nil {
				parts = append(parts, *v)
			}
			continue
		}
		parts = append(parts, p)
	}
	for _, k := range sortedKeys(o.Participants) {
		if v := o.Participants[k]; !seen[k] && v != nil {
			parts = append(parts, *v)
		}
	}
	cfg.Partners.Agreements = agreements
	cfg.Participants = parts
	return cfg
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// emptyOverlay is an overlay without changes.
func emptyOverlay() overlay {
	return overlay{Agreements: map[string]*plateau.PartnerConfig{}, Participants: map[string]*ParticipantConfig{}}
}

// readOverlay reads <dataDir>/OverlayFile; none is an empty overlay.
func readOverlay(dataDir string) (overlay, error) {
	if dataDir == "" {
		return emptyOverlay(), nil
	}
	path := filepath.Join(dataDir, OverlayFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return emptyOverlay(), nil
	}
	if err != nil {
		return emptyOverlay(), fmt.Errorf("datadir: run-time changes: %w", err)
	}
	return decodeOverlay(b, "datadir: run-time changes "+path)
}

// decodeOverlay reads the overlay document b; where names it in errors.
func decodeOverlay(b []byte, where string) (overlay, error) {
	o := emptyOverlay()
	var raw struct {
		Agreements   map[string]any `json:"agreements"`
		Participants map[string]any `json:"participants"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return o, fmt.Errorf("%s: %w", where, err)
	}
	for k, v := range raw.Agreements {
		if v == nil {
			o.Agreements[k] = nil
			continue
		}
		var a plateau.PartnerConfig
		if err := fromKoanfShape(v, &a); err != nil {
			return o, fmt.Errorf("%s: agreements.%s: %w", where, k, err)
		}
		o.Agreements[k] = &a
	}
	for k, v := range raw.Participants {
		if v == nil {
			o.Participants[k] = nil
			continue
		}
		var p ParticipantConfig
		if err := fromKoanfShape(v, &p); err != nil {
			return o, fmt.Errorf("%s: participants.%s: %w", where, k, err)
		}
		o.Participants[k] = &p
	}
	return o, nil
}

// encode is the overlay document: what decodeOverlay reads.
func (o overlay) encode() ([]byte, error) {
	doc := map[string]map[string]any{"agreements": {}, "participants": {}}
	for k, v := range o.Agreements {
		doc["agreements"][k] = koanfShape(v)
	}
	for k, v := range o.Participants {
		doc["participants"][k] = koanfShape(v)
	}
	return json.MarshalIndent(doc, "", "  ")
}

// write replaces <dataDir>/OverlayFile atomically: a crash leaves the old
// file or the new one, never a torn one.
func (o overlay) write(dataDir string) error {
	b, err := o.encode()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dataDir, OverlayFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dataDir, OverlayFile)); err != nil {
		return err
	}
	// The rename is durable once the directory is.
	d, err := os.Open(dataDir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// adminState is what the admin API changes, and what it changes from.
type adminState struct {
	mu        sync.Mutex // one change at a time
	seed      Config     // the configuration file's agreements and participants, before the overlay
	ov        overlay
	current   Config // seed with the overlay applied, validated: what the node runs with
	operators map[[32]byte]string
	store     overlayStore // where ov is kept
	version   int64        // the store's version of ov
}

// adminChange is one change: the entry under key set to value, or
// withdrawn when value is nil.
type adminChange struct {
	kind      string // "agreement" or "participant"
	key       string
	agreement *plateau.PartnerConfig
	part      *ParticipantConfig
}

func (c adminChange) withdraw() bool { return c.agreement == nil && c.part == nil }

// adminError is a refused change: the status and what the operator is told.
type adminError struct {
	status int
	typ    string
	detail string
}

func (e *adminError) Error() string { return e.detail }

func refuse(status int, typ, format string, args ...any) *adminError {
	return &adminError{status: status, typ: typ, detail: fmt.Sprintf(format, args...)}
}

// change applies c: the node's configuration with c must pass the same
// Validate as a start-up, the participant's credentials must load, the
// overlay is made durable and the change audited before the enforcer's
// agreements and the participants are swapped. A refused change changes
// nothing. It returns the entry before and after, in the configuration's
// shape, and whether the entry is new.
func (n *Node) change(ctx context.Context, operator, remote string, c adminChange) (before, after any, created bool, err error) {
	st := n.admin
	st.mu.Lock()
	defer st.mu.Unlock()

	var exists bool
	switch c.kind {
	case "agreement":
		for _, a := range st.current.Partners.Agreements {
			if agreementKey(a) == c.key {
				before, exists = koanfShape(a), true
			}
		}
	default:
		for _, p := range st.current.Participants {
			if p.URA == c.key {
				before, exists = koanfShape(redactParticipant(p)), true
			}
		}
	}
	record := func(status int, detail string) error {
		rec := audit.Record{Type: "admin", Interaction: c.kind, Outcome: status, OutcomeText: detail,
			ActorSystem: "admin API", ActorName: operator, Address: remote,
			Resources: []string{c.kind + "/" + c.key}, Query: summary(before, after),
			Checks: []string{"admin: operator token from admin.tokenfile"}}
		switch {
		case c.withdraw():
			rec.Action = audit.ActionDelete
		case exists:
			rec.Action = audit.ActionUpdate
		default:
			rec.Action = audit.ActionCreate
		}
		if c.kind == "participant" {
			rec.Tenant = c.key
		}
		return n.auditLog.Append(ctx, rec)
	}
	fail := func(e *adminError) (any, any, bool, error) {
		if aerr := record(e.status, e.detail); aerr != nil {
			n.log.Error("admin: refused change not audited", "err", aerr)
		}
		return before, nil, false, e
	}
	if c.withdraw() && !exists {
		return fail(refuse(http.StatusNotFound, "not-found", "no %s %s on this node", c.kind, c.key))
	}

	ov := st.ov.clone()
	inSeed := false
	if c.kind == "agreement" {
		for _, a := range st.seed.Partners.Agreements {
			inSeed = inSeed || agreementKey(a) == c.key
		}
		switch {
		case !c.withdraw():
			ov.Agreements[c.key] = c.agreement
		case inSeed:
			ov.Agreements[c.key] = nil
		default:
			delete(ov.Agreements, c.key)
		}
	} else {
		for _, p := range st.seed.Participants {
			inSeed = inSeed || p.URA == c.key
		}
		switch {
		case !c.withdraw():
			ov.Participants[c.key] = c.part
		case inSeed:
			ov.Participants[c.key] = nil
		default:
			delete(ov.Participants, c.key)
		}
	}
	next := ov.apply(st.seed)
	if err := next.Validate(); err != nil {
		return fail(refuse(http.StatusUnprocessableEntity, "invalid-configuration",
			"the node could not start with this change:\n%v", err))
	}
	var p *participant
	if c.part != nil {
		for i, pc := range next.Participants {
			if pc.URA != c.key {
				continue
			}
			if p, err = n.loadParticipant(fmt.Sprintf("participants[%d]", i), pc); err != nil {
				return fail(refuse(http.StatusUnprocessableEntity, "invalid-configuration", "%v", err))
			}
			if n.cfg.Localization.URL != "" {
				if err := n.attachIndex(p); err != nil {
					return fail(refuse(http.StatusUnprocessableEntity, "invalid-configuration", "%v", err))
				}
			}
		}
		after = koanfShape(redactParticipant(*c.part))
	} else if c.agreement != nil {
		after = koanfShape(*c.agreement)
	}
	version, err := st.store.save(ctx, ov, st.version)
	if errors.Is(err, errOverlayMoved) {
		// Another replica saved a change since this one read the changes:
		// it takes that change up within a poll; the operator tries again.
		return fail(refuse(http.StatusConflict, "conflict", "another replica of this node changed its agreements or participants meanwhile; nothing changed, try again in a few seconds"))
	}
	if err != nil {
		n.log.Error("admin: run-time changes not saved", "store", st.store, "err", err)
		return fail(refuse(http.StatusInternalServerError, "internal-error", "the change could not be saved in %s; nothing changed", st.store))
	}
	// No change without its audit record: when the record cannot be
	// written, the saved overlay is put back and nothing changes.
	if err := record(http.StatusOK, ""); err != nil {
		if _, rerr := st.store.save(context.WithoutCancel(ctx), st.ov, version); rerr != nil {
			n.log.Error("admin: run-time changes not restored after an audit failure", "store", st.store, "err", rerr)
		}
		return before, nil, false, refuse(http.StatusServiceUnavailable, "audit-unavailable", "the change could not be audited; nothing changed")
	}
	var loaded []*participant
	if p != nil {
		loaded = append(loaded, p)
	}
	if err := n.install(ov, next, version, loaded); err != nil {
		// Validate above checked the same configuration.
		return before, nil, false, fmt.Errorf("admin: agreements validated but refused by the enforcer: %w", err)
	}
	n.log.Info("admin: changed", "operator", operator, "kind", c.kind, "key", c.key, "withdrawn", c.withdraw(),
		"before", summaryJSON(before), "after", summaryJSON(after))
	return before, after, !exists, nil
}

// redactParticipant leaves the internal token out of what is shown and
// audited.
func redactParticipant(p ParticipantConfig) ParticipantConfig {
	if p.InternalToken != "" {
		p.InternalToken = redacted
	}
	return p
}

func summaryJSON(v any) string {
	if v == nil {
		return "none"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// summary is the before/after of a change for its audit record.
func summary(before, after any) string {
	return "before: " + summaryJSON(before) + "; after: " + summaryJSON(after)
}

// adminRoutes serve the admin API; every route needs an operator token.
func (n *Node) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/agreements", n.adminListAgreements)
	mux.HandleFunc("GET /admin/agreements/{key}", n.adminGetAgreement)
	mux.HandleFunc("PUT /admin/agreements/{key}", n.adminSetAgreement)
	mux.HandleFunc("DELETE /admin/agreements/{key}", n.adminDelete("agreement"))
	mux.HandleFunc("GET /admin/participants", n.adminListParticipants)
	mux.HandleFunc("GET /admin/participants/{key}", n.adminGetParticipant)
	mux.HandleFunc("PUT /admin/participants/{key}", n.adminSetParticipant)
	mux.HandleFunc("DELETE /admin/participants/{key}", n.adminDelete("participant"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not-found", "no such admin API route: "+r.Method+" "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		operator, ok := n.operator(r)
		if !ok {
			// A refused attempt at a change is audited with what it named.
			if r.Method != http.MethodGet {
				rec := audit.Record{Action: audit.ActionExecute, Type: "admin", Interaction: "refused", Outcome: http.StatusUnauthorized,
					OutcomeText: "no valid operator token", ActorSystem: "admin API", Address: r.RemoteAddr, Query: r.Method + " " + r.URL.Path}
				if err := n.auditLog.Append(r.Context(), rec); err != nil {
					n.log.Error("admin: refusal not audited", "err", err)
				}
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="schakel-admin"`)
			writeProblem(w, http.StatusUnauthorized, "unauthorized", "an operator token from admin.tokenfile is required (Authorization: Bearer …)")
			return
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorKey{}, operator)))
	})
}

type operatorKey struct{}

// operator is the operator whose token the request carries.
func (n *Node) operator(r *http.Request) (string, bool) {
	token, ok := bearerCredentials(r.Header.Get("Authorization"))
	if !ok || token == "" {
		return "", false
	}
	name, ok := n.admin.operators[sha256.Sum256([]byte(token))]
	return name, ok
}

func (n *Node) snapshot() Config {
	n.admin.mu.Lock()
	defer n.admin.mu.Unlock()
	return n.admin.current
}

func (n *Node) adminListAgreements(w http.ResponseWriter, r *http.Request) {
	cur := n.snapshot()
	list := make([]any, 0, len(cur.Partners.Agreements))
	for _, a := range cur.Partners.Agreements {
		list = append(list, koanfShape(a))
	}
	out := map[string]any{"agreements": list}
	if cur.Partners.Default != nil {
		out["default"] = koanfShape(cur.Partners.Default)
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) adminGetAgreement(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	for _, a := range n.snapshot().Partners.Agreements {
		if agreementKey(a) == key {
			writeJSON(w, http.StatusOK, koanfShape(a))
			return
		}
	}
	writeProblem(w, http.StatusNotFound, "not-found", "no agreement "+key+" on this node")
}

func (n *Node) adminListParticipants(w http.ResponseWriter, r *http.Request) {
	cur := n.snapshot()
	list := make([]any, 0, len(cur.Participants))
	for _, p := range cur.Participants {
		list = append(list, koanfShape(redactParticipant(p)))
	}
	writeJSON(w, http.StatusOK, map[string]any{"participants": list})
}

func (n *Node) adminGetParticipant(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	for _, p := range n.snapshot().Participants {
		if p.URA == key {
			writeJSON(w, http.StatusOK, koanfShape(redactParticipant(p)))
			return
		}
	}
	writeProblem(w, http.StatusNotFound, "not-found", "no participant "+key+" on this node")
}

// readShaped decodes a JSON body in the configuration's shape into out.
func readShaped(r *http.Request, out any) *adminError {
	var raw map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&raw); err != nil || raw == nil {
		return refuse(http.StatusBadRequest, "invalid-body", "expected a JSON object in the shape of the configuration file's entry")
	}
	if err := fromKoanfShape(raw, out); err != nil {
		return refuse(http.StatusBadRequest, "invalid-body", "%v", err)
	}
	return nil
}

func (n *Node) adminSetAgreement(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	var a plateau.PartnerConfig
	if e := readShaped(r, &a); e != nil {
		writeProblem(w, e.status, e.typ, e.detail)
		return
	}
	switch {
	case len(a.Collaboration) > 0 && a.Name == "":
		a.Name = key
	case len(a.Collaboration) > 0:
	case a.URA == "":
		a.URA = key
	}
	if agreementKey(a) != key {
		writeProblem(w, http.StatusBadRequest, "invalid-body", fmt.Sprintf(
			"the agreement is named by its ura, or a collaboration by its name: %q in the path, %q in the body", key, agreementKey(a)))
		return
	}
	n.answerChange(w, r, adminChange{kind: "agreement", key: key, agreement: &a})
}

func (n *Node) adminSetParticipant(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	var p ParticipantConfig
	if e := readShaped(r, &p); e != nil {
		writeProblem(w, e.status, e.typ, e.detail)
		return
	}
	if p.URA == "" {
		p.URA = key
	}
	switch {
	case p.URA != key:
		writeProblem(w, http.StatusBadRequest, "invalid-body", fmt.Sprintf("participant %q in the path, ura %q in the body", key, p.URA))
		return
	case p.InternalToken != "":
		// The overlay keeps what the API is sent: a token would end up in
		// the data directory.
		writeProblem(w, http.StatusBadRequest, "invalid-body", "internaltoken: give internaltokenfile, a file on the node's host holding the token")
		return
	}
	if p.EHR.URL != "" {
		// The store's routing to EHRs (proxy mode) is fixed when the node
		// starts: every component holds the routed store.
		same := false
		for _, old := range n.snapshot().Participants {
			same = same || old.URA == key && reflect.DeepEqual(old.EHR, p.EHR)
		}
		if !same {
			writeProblem(w, http.StatusUnprocessableEntity, "restart-required",
				"ehr: a participant in proxy mode, or a change of its EHR, takes a restart with the configuration file; the admin API adds participants whose record the node holds")
			return
		}
	}
	n.answerChange(w, r, adminChange{kind: "participant", key: key, part: &p})
}

func (n *Node) adminDelete(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.answerChange(w, r, adminChange{kind: kind, key: r.PathValue("key")})
	}
}

func (n *Node) answerChange(w http.ResponseWriter, r *http.Request, c adminChange) {
	operator, _ := r.Context().Value(operatorKey{}).(string)
	_, after, created, err := n.change(r.Context(), operator, r.RemoteAddr, c)
	var ae *adminError
	switch {
	case errors.As(err, &ae):
		writeProblem(w, ae.status, ae.typ, ae.detail)
	case err != nil:
		n.log.Error("admin: change failed", "err", err)
		writeProblem(w, http.StatusInternalServerError, "internal-error", "internal error; the node's log has the details")
	case c.withdraw():
		w.WriteHeader(http.StatusNoContent)
	case created:
		writeJSON(w, http.StatusCreated, after)
	default:
		writeJSON(w, http.StatusOK, after)
	}
}
