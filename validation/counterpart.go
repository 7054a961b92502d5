package validation

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// ScopePush is the scope a Push sender asks the receiver's authorization
// server for (client_credentials) before it posts a message
// (docs/protocols.md "Push").
const ScopePush = "twiin-ta-push"

// ScopeNotify is the scope a sender asks the receiver's authorization
// server for before it posts a notification Task (Schakel's name for it;
// the agreement leaves it open, docs/protocols.md).
const ScopeNotify = "twiin-ta-notification"

// Counterpart is the kit's own GtK side: an authorization server, a client
// JWKS, a notification Task endpoint and a FHIR endpoint serving the care
// application's record. Every request the node under test makes to it is
// kept as an Inbound for the cases to judge.
type Counterpart struct {
	URL  string // https base, as listed in the addressbook
	Base string // FHIR STU3 base of the kit's participant: its Tasks
	// DataBase is the FHIR base of the care application's data: Base for
	// an STU3 application, /fhir/r4/{ura} for an R4 one.
	DataBase string
	URA      string
	// PatientBSN is the patient of the record the counterpart holds.
	PatientBSN string

	kit   Identity
	app   Application
	as    *oauth.Server
	store store.Store // STU3: the Tasks, and an STU3 application's record
	api   *rest.Server
	// data and dataAPI serve the record of an application of another
	// version than STU3; nil for an STU3 one.
	data    store.Store
	dataAPI *rest.Server
	srv     *http.Server
	ln      net.Listener
	dir     string
	red     *redactor
	// service is the application's own holder endpoints (Application.Serve).
	service Service

	mu      sync.Mutex
	inbound []Inbound
	grants  []oauth.GrantRequest
	offers  map[string]Offer
	// answer, when set, answers the node's FHIR searches in place of the
	// record (a case that plays a holder answering wrongly).
	answer func(r *http.Request, path string) (status int, body []byte, ok bool)
	// messages answers the node's Push messages ($process-message).
	messages func(in *Inbound) (status int, body []byte)
	changed  chan struct{}
	serveErr chan error
	// started is when the counterpart began: its Push endpoint takes only
	// tokens its authorization server issued since.
	started time.Time
}

// Inbound is one request of the node under test to the counterpart.
type Inbound struct {
	Time          time.Time
	Method, Path  string
	Query         string
	PeerURA       string
	ContentType   string
	Authorization string
	Body          []byte
	// Token is the verified access token of a FHIR request; TokenErr why
	// it was refused.
	Token    *oauth.AccessToken
	TokenErr string
	// Accept is the request's Accept header.
	Accept string
	Status int
	Answer []byte
	// AnswerType is the answer's Content-Type.
	AnswerType string
}

// Exchange renders the request for the report.
func (in Inbound) exchange(red *redactor) Exchange {
	u := in.Path
	if in.Query != "" {
		u += "?" + in.Query
	}
	h := http.Header{}
	h.Set("Content-Type", in.ContentType)
	h.Set("Authorization", in.Authorization)
	h.Set("Accept", in.Accept)
	answerType := in.AnswerType
	if answerType == "" {
		answerType = "application/json"
	}
	return Exchange{Direction: NodeToKit, Method: in.Method, URL: red.text(u), RequestHeaders: red.headers(h),
		RequestBody: red.body(in.ContentType, in.Body), Status: in.Status, ResponseBody: red.body(answerType, in.Answer)}
}

// Offer is what a notification made available: a token asked with its
// authorization base is limited to it.
type Offer struct {
	Patient      string
	WorkflowTask string
	Scope        string
	Expires      time.Time
}

type inboundKey struct{}

func newCounterpart(ctx context.Context, cfg Config, app Application, red *redactor, client *http.Client) (cp *Counterpart, err error) {
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("validation: the kit's counterpart cannot listen on %s: %w", cfg.Listen, err)
		}
	}
	cp = &Counterpart{URL: "https://" + ln.Addr().String(), URA: cfg.Kit.URA, kit: cfg.Kit, app: app, ln: ln, red: red,
		offers: map[string]Offer{}, changed: make(chan struct{}), serveErr: make(chan error, 1), started: time.Now()}
	cp.Base = cp.URL + "/fhir/stu3/" + cp.URA
	cp.DataBase = cp.URL + "/fhir/" + string(app.Version()) + "/" + cp.URA
	defer func() {
		if err != nil {
			cp.Close()
		}
	}()
	if cp.dir, err = os.MkdirTemp("", "schakel-validation-"); err != nil {
		return nil, err
	}
	if cp.store, err = sqlite.Open(ctx, filepath.Join(cp.dir, "counterpart.db"), fhir.STU3); err != nil {
		return nil, fmt.Errorf("validation: counterpart store: %w", err)
	}
	cp.api = rest.New(rest.Config{Store: cp.store, Version: fhir.STU3, Logger: cfg.Logger})
	records := cp.store
	if v := app.Version(); v != fhir.STU3 {
		if cp.data, err = sqlite.Open(ctx, filepath.Join(cp.dir, "counterpart-"+string(v)+".db"), v); err != nil {
			return nil, fmt.Errorf("validation: counterpart %s store: %w", v, err)
		}
		cp.dataAPI = rest.New(rest.Config{Store: cp.data, Version: v, Logger: cfg.Logger})
		records = cp.data
	}
	bsn, bundles, err := app.Record()
	if err != nil {
		return nil, fmt.Errorf("validation: %s record: %w", app.Name, err)
	}
	cp.PatientBSN = bsn
	im, err := importer.New(importer.Config{Store: records, Version: app.Version(), Tenant: cp.URA})
	if err != nil {
		return nil, err
	}
	sum := &importer.Summary{Types: map[string]importer.Counts{}}
	for i, b := range bundles {
		if err := im.Import(ctx, fmt.Sprintf("%s record %d", app.Name, i), b, sum); err != nil {
			return nil, fmt.Errorf("validation: load %s record: %w", app.Name, err)
		}
	}
	cp.as, err = oauth.NewServer(oauth.ServerConfig{
		Issuer: cp.URL, SigningKey: cfg.Kit.ServerKey, PeerURA: pki.PeerURA, Logger: cfg.Logger,
		Clients: &clientKeys{book: &addressbook.Client{Base: cfg.Addressbook, HTTP: client}, http: client},
		Grants:  oauth.GrantResolverFunc(cp.resolveGrant),
	})
	if err != nil {
		return nil, fmt.Errorf("validation: counterpart authorization server: %w", err)
	}
	mux := http.NewServeMux()
	cp.as.Routes(mux)
	mux.HandleFunc("GET /jwks/{ura}", cp.serveJWKS)
	mux.HandleFunc("/fhir/stu3/{ura}", cp.serveFHIR)
	mux.HandleFunc("/fhir/stu3/{ura}/{path...}", cp.serveFHIR)
	if cp.data != nil {
		mux.HandleFunc("/fhir/"+string(app.Version())+"/{ura}", cp.serveData)
		mux.HandleFunc("/fhir/"+string(app.Version())+"/{ura}/{path...}", cp.serveData)
	}
	if app.Serve != nil {
		if cp.service, err = app.Serve(cp); err != nil {
			return nil, fmt.Errorf("validation: %s endpoints of the counterpart: %w", app.Name, err)
		}
		cp.service.Routes(mux)
	}
	cp.srv = &http.Server{Handler: cp.record(mux), TLSConfig: pki.ServerTLSConfig(cfg.Kit.Cert, cfg.Kit.Roots),
		ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	go func() {
		if err := cp.srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			cp.serveErr <- err
		}
	}()
	return cp, nil
}

// Close stops the counterpart and removes its store.
func (cp *Counterpart) Close() {
	if cp.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = cp.srv.Shutdown(ctx)
		cancel()
	} else if cp.ln != nil {
		cp.ln.Close()
	}
	if cp.store != nil {
		cp.store.Close()
	}
	if cp.data != nil {
		cp.data.Close()
	}
	if cp.dir != "" {
		os.RemoveAll(cp.dir)
	}
}

// record keeps every request with its answer.
func (cp *Counterpart) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		in := &Inbound{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			ContentType: r.Header.Get("Content-Type"), Authorization: r.Header.Get("Authorization"), Accept: r.Header.Get("Accept"), Body: body}
		in.PeerURA, _ = pki.PeerURA(r.TLS)
		rw := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), inboundKey{}, in)))
		in.Status, in.Answer, in.AnswerType = rw.status, rw.body.Bytes(), rw.Header().Get("Content-Type")
		cp.mu.Lock()
		cp.inbound = append(cp.inbound, *in)
		close(cp.changed)
		cp.changed = make(chan struct{})
		cp.mu.Unlock()
	})
}

type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }

func (r *recorder) Write(b []byte) (int, error) {
	if r.body.Len() < 64<<10 {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

func (cp *Counterpart) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("ura") != cp.URA {
		http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
		return
	}
	set, err := pki.PublicJWKS(cp.kit.Signing)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_ = json.NewEncoder(w).Encode(set)
}

// serveFHIR answers the node: notification Tasks (receiver side of the
// kit) and the record (sender and holder side), all behind the kit's
// certificate-bound access tokens.
func (cp *Counterpart) serveFHIR(w http.ResponseWriter, r *http.Request) {
	in, _ := r.Context().Value(inboundKey{}).(*Inbound)
	if r.PathValue("ura") != cp.URA {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such participant here")
		return
	}
	path := r.PathValue("path")
	tok, err := cp.as.Verify(r, cp.Base)
	if err != nil {
		in.TokenErr = err.Error()
		writeOutcome(w, http.StatusUnauthorized, "login", "a valid access token of this authorization server is required")
		return
	}
	in.Token = tok
	switch {
	case path == "Task" && r.Method == http.MethodPost:
		// A notification: kept as the request for the cases to judge.
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(in.Body)
	case path == "Task" && r.Method == http.MethodPut && r.URL.Query().Has("identifier"):
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write(in.Body)
	case path == "$process-message" && r.Method == http.MethodPost:
		cp.mu.Lock()
		messages := cp.messages
		cp.mu.Unlock()
		if messages == nil {
			writeOutcome(w, http.StatusNotFound, "not-supported", "this run takes no Push messages")
			return
		}
		// A token of an earlier run is no longer taken (as after a key
		// rotation): the sender must ask for a fresh one, which the run
		// then judges.
		if iat, _ := tok.Claims["iat"].(float64); int64(iat) < cp.started.Unix() {
			in.TokenErr = "issued before this run"
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeOutcome(w, http.StatusUnauthorized, "login", "the access token was issued before this authorization server's current key period; ask for a fresh one")
			return
		}
		status, body := messages(in)
		w.Header().Set("Content-Type", "application/fhir+json; fhirVersion=3.0")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	case cp.data != nil && path != "Task" && !strings.HasPrefix(path, "Task/"):
		// The data of an application of another version is on its own
		// base; here are only the Tasks of the technical agreement.
		writeOutcome(w, http.StatusBadRequest, "not-supported", fmt.Sprintf("care application %s exchanges FHIR %s: this is the FHIR STU3 base; ask its data at %s", cp.app.Name, cp.app.Version(), cp.DataBase))
	default:
		if cp.answered(w, r, path) {
			return
		}
		cp.api.Serve(w, r, cp.URA, cp.Base, path)
	}
}

// Messages makes the counterpart answer the node's Push messages (POST
// [base]/$process-message, after the token is checked) with fn; nil
// refuses them. The request is kept as an Inbound like every other.
func (cp *Counterpart) Messages(fn func(in *Inbound) (status int, body []byte)) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.messages = fn
}

// serveData answers the node's reads and searches of the record of an
// application whose version is not STU3, on its own FHIR base. A token
// the kit issued for its STU3 base (a Notified Pull's, whose workflow
// Task is there) holds here too, as on a node.
func (cp *Counterpart) serveData(w http.ResponseWriter, r *http.Request) {
	in, _ := r.Context().Value(inboundKey{}).(*Inbound)
	if r.PathValue("ura") != cp.URA {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such participant here")
		return
	}
	tok, err := cp.as.Verify(r, cp.DataBase)
	if err != nil {
		if t, serr := cp.as.Verify(r, cp.Base); serr == nil {
			tok, err = t, nil
		}
	}
	if err != nil {
		in.TokenErr = err.Error()
		writeOutcome(w, http.StatusUnauthorized, "login", "a valid access token of this authorization server is required")
		return
	}
	in.Token = tok
	path := r.PathValue("path")
	if cp.answered(w, r, path) {
		return
	}
	cp.dataAPI.Serve(w, r, cp.URA, cp.DataBase, path)
}

// answered answers a read or search from the script Answer set, if any.
func (cp *Counterpart) answered(w http.ResponseWriter, r *http.Request, path string) bool {
	cp.mu.Lock()
	answer := cp.answer
	cp.mu.Unlock()
	if answer == nil || r.Method != http.MethodGet {
		return false
	}
	status, body, ok := answer(r, path)
	if !ok {
		return false
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion="+cp.app.Version().MimeVersion())
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return true
}

// Answer makes the counterpart answer the node's FHIR reads and searches
// with fn where fn says ok (after the token is checked), and from its
// record otherwise; nil restores the record. Cases that set it clear it
// before they return: the cases of a run take turns.
func (cp *Counterpart) Answer(fn func(r *http.Request, path string) (status int, body []byte, ok bool)) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.answer = fn
}

func writeOutcome(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_, _ = w.Write(fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: code, Diagnostics: msg}))
}

// Service is a care application's own holder endpoints on the counterpart
// (Application.Serve): its routes, and the decision on the token requests
// for them, as the application's holder on a node decides them.
type Service interface {
	// Routes mounts the endpoints on the counterpart's mux; the
	// counterpart keeps every request to them as an Inbound.
	Routes(mux *http.ServeMux)
	// ResolveGrant decides a jwt-bearer token request without
	// authorization_base (Direct Pull) in place of the counterpart.
	ResolveGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error)
}

// Service is the application's own holder endpoints of this run; nil
// when the application has none.
func (cp *Counterpart) Service() Service { return cp.service }

// Verify checks the access token of a request to an endpoint of the
// counterpart at audience (signature, issuer, audience, expiry and the
// binding to the client certificate) and keeps the outcome in the
// request's Inbound.
func (cp *Counterpart) Verify(r *http.Request, audience string) (*oauth.AccessToken, error) {
	tok, err := cp.as.Verify(r, audience)
	if in, ok := r.Context().Value(inboundKey{}).(*Inbound); ok {
		if err != nil {
			in.TokenErr = err.Error()
		} else {
			in.Token = tok
		}
	}
	return tok, err
}

// WriteOutcome answers a request with an OperationOutcome of one issue.
func WriteOutcome(w http.ResponseWriter, status int, code, msg string) {
	writeOutcome(w, status, code, msg)
}

// resolveGrant issues the kit's tokens: a notification token, a token for
// an offer's authorization base (Notified Pull), or a consult token for
// the kit's FHIR base (Direct Pull), which the application's Service
// decides where it has one.
func (cp *Counterpart) resolveGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	cp.mu.Lock()
	cp.grants = append(cp.grants, req)
	offer, ok := cp.offers[req.AuthorizationBase]
	cp.mu.Unlock()
	switch {
	case req.GrantType == oauth.GrantTypeClientCredentials:
		if len(req.Scope) != 1 || (req.Scope[0] != ScopeNotify && req.Scope[0] != ScopePush) {
			return oauth.Grant{}, fmt.Errorf("%w: client_credentials gives only %s or %s", oauth.ErrInvalidScope, ScopeNotify, ScopePush)
		}
		return oauth.Grant{Audience: cp.Base, Scope: req.Scope}, nil
	case req.AuthorizationBase != "":
		if !ok {
			return oauth.Grant{}, oauth.RefuseGrant("authorization_base is not one of a notification of this sender", nil)
		}
		return oauth.Grant{Audience: cp.Base, Scope: []string{offer.Scope}, NotAfter: offer.Expires}, nil
	case cp.service != nil:
		return cp.service.ResolveGrant(ctx, req)
	case req.Resource != cp.DataBase:
		return oauth.Grant{}, oauth.RefuseTarget("resource must be this holder's FHIR base", nil)
	}
	return oauth.Grant{Audience: cp.DataBase, Scope: req.Scope}, nil
}

// AddOffer makes a notification's authorization base redeemable.
func (cp *Counterpart) AddOffer(authBase string, o Offer) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.offers[authBase] = o
	cp.red.add(authBase)
}

// Create stores a resource (e.g. a workflow Task) in the kit's record and
// returns its id.
func (cp *Counterpart) Create(ctx context.Context, body []byte) (string, error) {
	res, err := cp.store.Create(ctx, cp.URA, body)
	return res.ID, err
}

// Read returns a resource of the kit's record.
func (cp *Counterpart) Read(ctx context.Context, typ, id string) ([]byte, error) {
	res, err := cp.store.Read(ctx, cp.URA, typ, id)
	return res.Body, err
}

// Inbound returns the requests received so far, from index from on.
func (cp *Counterpart) Inbound(from int) []Inbound {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if from > len(cp.inbound) {
		from = len(cp.inbound)
	}
	return append([]Inbound(nil), cp.inbound[from:]...)
}

// Mark is the index of the next request to arrive, for Inbound(mark).
func (cp *Counterpart) Mark() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.inbound)
}

// Grants returns the token requests the kit's authorization server
// accepted as authenticated (the assertion verified), in order.
func (cp *Counterpart) Grants() []oauth.GrantRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]oauth.GrantRequest(nil), cp.grants...)
}

// Await waits until done holds for the requests since mark, or until
// timeout; it reports whether done held.
func (cp *Counterpart) Await(ctx context.Context, mark int, timeout time.Duration, done func([]Inbound) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		cp.mu.Lock()
		ok := done(cp.inbound[min(mark, len(cp.inbound)):])
		ch := cp.changed
		cp.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Exchanges renders requests for the report.
func (cp *Counterpart) Exchanges(ins []Inbound) []Exchange {
	out := make([]Exchange, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.exchange(cp.red))
	}
	return out
}

// clientKeys finds the node's assertion keys as a node does
// (node/clientkeys.go): the JWKS its addressbook entry lists.
type clientKeys struct {
	book *addressbook.Client
	http *http.Client
}

func (c *clientKeys) ClientKeySet(ctx context.Context, clientID string) (jwk.Set, error) {
	u, err := c.book.Endpoint(ctx, clientID, addressbook.PayloadClientJWKS, "")
	if err != nil {
		return nil, fmt.Errorf("%w: client %s has no key set in the addressbook", oauth.ErrInvalidClient, clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch key set of %s: %w", clientID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch key set of %s: %s", clientID, resp.Status)
	}
	return jwk.Parse(b)
}

// FormOf parses an inbound form body.
func FormOf(in Inbound) url.Values {
	f, _ := url.ParseQuery(string(in.Body))
	return f
}

// IsToken reports whether in is a token request at the kit.
func IsToken(in Inbound) bool { return in.Method == http.MethodPost && in.Path == oauth.TokenPath }

// IsData reports whether in is a FHIR read or search on one of the kit's
// bases.
func (cp *Counterpart) IsData(in Inbound) bool {
	return in.Method == http.MethodGet && (strings.HasPrefix(in.Path, cp.BasePath()+"/") || strings.HasPrefix(in.Path, cp.DataPath()+"/"))
}

// BasePath and DataPath are the paths of Base and DataBase.
func (cp *Counterpart) BasePath() string { return strings.TrimPrefix(cp.Base, cp.URL) }
func (cp *Counterpart) DataPath() string { return strings.TrimPrefix(cp.DataBase, cp.URL) }
