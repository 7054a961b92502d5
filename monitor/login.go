package monitor

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Operator is who is logged in to the monitor.
type Operator struct {
	Subject  string // stable identifier at the provider
	Name     string
	Provider string
}

// ErrLogin is a login that did not succeed; its text is shown on the login
// page, so it never says which part was wrong.
var ErrLogin = errors.New("unknown user or wrong password")

// LoginProvider proves who an operator is. The local account checks a
// username and password posted to the login page; an OpenID Connect
// provider implements the same interface with Form false, sends the
// browser to its issuer in Start and verifies the answer (the ID token,
// against state and nonce) in Authenticate, at /login/{id}/callback.
type LoginProvider interface {
	// ID names the provider in its routes: /login/{id}.
	ID() string
	// Title is what the login page shows for it.
	Title() string
	// Form reports whether the login page shows a username and password
	// form for it (posted to /login/{id}); otherwise a link to /login/{id}/start.
	Form() bool
	// Start sends the browser to the provider; state is the value the
	// callback must carry back. Form providers never get it.
	Start(w http.ResponseWriter, r *http.Request, state string)
	// Authenticate verifies a login: the posted form for a Form provider,
	// the callback request otherwise (its state already checked).
	Authenticate(r *http.Request) (Operator, error)
}

// LocalAccount is one operator account with a password kept in a file: the
// development login. The password is compared by its SHA-256 in constant
// time; it is generated at random (LoadOrCreatePassword), so there is no
// dictionary to slow down against.
type LocalAccount struct {
	User     string
	password [32]byte
}

// NewLocalAccount is an account of user with password.
func NewLocalAccount(user, password string) (*LocalAccount, error) {
	if user == "" || len(password) < 16 {
		return nil, errors.New("monitor: a local account needs a user and a password of at least 16 characters")
	}
	return &LocalAccount{User: user, password: sha256.Sum256([]byte(password))}, nil
}

// LoadOrCreatePassword reads the password in path, or writes a new random
// one there (mode 0600) when the file does not exist.
func LoadOrCreatePassword(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		pw := strings.TrimSpace(string(b))
		if len(pw) < 16 {
			return "", fmt.Errorf("monitor: the password in %s is shorter than 16 characters", path)
		}
		return pw, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	pw := randomToken(18)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	return pw, nil
}

func (a *LocalAccount) ID() string    { return "local" }
func (a *LocalAccount) Title() string { return "Local operator account" }
func (a *LocalAccount) Form() bool    { return true }

// Start is never called for a form provider.
func (a *LocalAccount) Start(w http.ResponseWriter, r *http.Request, _ string) {
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (a *LocalAccount) Authenticate(r *http.Request) (Operator, error) {
	user, pw := r.PostFormValue("username"), r.PostFormValue("password")
	h := sha256.Sum256([]byte(pw))
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(a.User)) == 1
	pwOK := subtle.ConstantTimeCompare(h[:], a.password[:]) == 1
	if !userOK || !pwOK {
		return Operator{}, ErrLogin
	}
	return Operator{Subject: a.User, Name: a.User, Provider: a.ID()}, nil
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Cookie names. The session cookie is HttpOnly and SameSite=Strict, and
// Secure whenever the monitor is served over TLS.
const (
	sessionCookie = "schakel_monitor_session"
	loginCookie   = "schakel_monitor_login" // the login form's CSRF token, before there is a session
	stateCookie   = "schakel_monitor_state" // a redirect login's state
)

type session struct {
	op      Operator
	csrf    string
	expires time.Time
}

// sessions are kept in memory: a restarted monitor asks the operator to
// log in again, which is what a monitor restart should cost.
type sessions struct {
	mu    sync.Mutex
	m     map[[32]byte]*session
	ttl   time.Duration
	now   func() time.Time
	limit int
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[[32]byte]*session{}, ttl: ttl, now: now, limit: 10000}
}

// create stores a new session and returns its cookie value. Only the
// value's hash is kept, so a memory dump yields no usable cookie.
func (s *sessions) create(op Operator) (string, *session) {
	id := randomToken(32)
	ss := &session{op: op, csrf: randomToken(24), expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.limit {
		s.expire()
	}
	s.m[sha256.Sum256([]byte(id))] = ss
	return id, ss
}

func (s *sessions) expire() {
	now := s.now()
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
	for k := range s.m { // still full: the oldest cannot be told cheaply, drop any
		if len(s.m) < s.limit {
			break
		}
		delete(s.m, k)
	}
}

func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sha256.Sum256([]byte(id))
	ss := s.m[k]
	if ss == nil {
		return nil
	}
	if !s.now().Before(ss.expires) {
		delete(s.m, k)
		return nil
	}
	return ss
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(maxAge.Seconds())})
}

func clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// sameOrigin refuses a state-changing request that a browser says comes
// from another origin (Sec-Fetch-Site, then Origin). Together with the
// CSRF token and SameSite=Strict it keeps another site from posting a
// login or logout.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return origin == ""
	}
	o := strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")
	return o == r.Host
}

func tokensEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
