package monitor

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/plateau"
)

//go:embed web
var webFS embed.FS

// pages are the templates, one set per page: the layout and the page, whose
// "live" template is also served alone for the live updates.
type pages struct {
	sets map[string]*template.Template
}

var pageNames = []string{"overview", "agreements", "exchanges", "node", "login"}

func parsePages() (*pages, error) {
	funcs := template.FuncMap{
		"rate":    formatRate,
		"seconds": formatSeconds,
		"count": func(v float64) string {
			if math.IsNaN(v) {
				return "—"
			}
			return strconv.FormatFloat(v, 'f', -1, 64)
		},
		"date": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.Format(time.DateOnly)
		},
		"clock": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.Local().Format("15:04:05")
		},
		"join":      strings.Join,
		"function":  func(f plateau.Function) string { return string(f) },
		"functions": func() []plateau.Function { return plateau.Functions },
		"or": func(s, alt string) string {
			if s == "" {
				return alt
			}
			return s
		},
	}
	p := &pages{sets: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(webFS, "web/layout.html", "web/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("monitor templates: %w", err)
		}
		p.sets[name] = t
	}
	return p, nil
}

// view is what a page template gets.
type view struct {
	Title    string
	Page     string
	Fragment string // the URL of the page's live part
	Operator *Operator
	CSRF     string
	Snap     *Snapshot
	Node     *NodeView
	Logins   []LoginProvider
	Error    string
	Now      time.Time
}

// Handler serves the monitor's pages.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login/{id}", s.loginPost)
	mux.HandleFunc("GET /login/{id}/start", s.loginStart)
	mux.HandleFunc("GET /login/{id}/callback", s.loginCallback)
	mux.HandleFunc("POST /logout", s.authed(s.logout))
	mux.HandleFunc("GET /{$}", s.authed(s.page("overview", "Participants and validation")))
	mux.HandleFunc("GET /agreements", s.authed(s.page("agreements", "Agreed plateaus")))
	mux.HandleFunc("GET /exchanges", s.authed(s.page("exchanges", "Exchanges")))
	mux.HandleFunc("GET /nodes/{name}", s.authed(s.page("node", "Node")))
	mux.HandleFunc("GET /live/{page}", s.authed(s.live))
	mux.HandleFunc("GET /live/node/{name}", s.authed(s.live))
	mux.HandleFunc("GET /events", s.authed(s.events))
	return securityHeaders(mux)
}

// securityHeaders: no framing, no inline script, nothing cached. The
// pages hold no patient data, but they do describe the network.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: under no-referrer a browser sends
		// "Origin: null" with the login form, which sameOrigin must refuse.
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

type authedHandler func(w http.ResponseWriter, r *http.Request, ss *session)

// authed admits a request with a live session; a page request without one
// is sent to the login page, anything else gets 401.
func (s *Server) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ss *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			ss = s.sessions.get(c.Value)
		}
		if ss == nil {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/live/") && r.URL.Path != "/events" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		h(w, r, ss)
	}
}

func (s *Server) render(w http.ResponseWriter, status int, page, tmpl string, v view) {
	var buf bytes.Buffer
	if err := s.pages.sets[page].ExecuteTemplate(&buf, tmpl, v); err != nil {
		s.log.Error("monitor page", "page", page, "err", err)
		http.Error(w, "the page could not be rendered; the monitor's log has the details", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) page(name, title string) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		snap, _ := s.Snapshot()
		v := view{Title: title, Page: name, Fragment: "/live/" + name, Operator: &ss.op, CSRF: ss.csrf, Snap: snap, Now: s.cfg.Now()}
		if name == "node" {
			v.Node = snap.Node(r.PathValue("name"))
			if v.Node == nil {
				http.Error(w, "no node of that name is monitored", http.StatusNotFound)
				return
			}
			v.Title = "Node " + v.Node.Name
			v.Fragment = "/live/node/" + v.Node.Name
		}
		s.render(w, http.StatusOK, name, "layout", v)
	}
}

// live serves a page's live part alone; the page's script fetches it at
// every update the event stream announces.
func (s *Server) live(w http.ResponseWriter, r *http.Request, ss *session) {
	snap, _ := s.Snapshot()
	v := view{Operator: &ss.op, Snap: snap, Now: s.cfg.Now()}
	page := r.PathValue("page")
	if name := r.PathValue("name"); name != "" {
		page = "node"
		if v.Node = snap.Node(name); v.Node == nil {
			http.Error(w, "no node of that name is monitored", http.StatusNotFound)
			return
		}
	}
	if _, ok := s.pages.sets[page]; !ok || page == "login" {
		http.Error(w, "no such page", http.StatusNotFound)
		return
	}
	s.render(w, http.StatusOK, page, "live", v)
}

// maxStream bounds one event stream; the browser's EventSource reconnects.
const maxStream = 10 * time.Minute

// events is a server-sent event stream (text/event-stream): an "update"
// event carrying the snapshot's version whenever a new one is published.
func (s *Server) events(w http.ResponseWriter, r *http.Request, _ *session) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithTimeout(r.Context(), maxStream)
	defer cancel()
	for {
		snap, changed := s.Snapshot()
		if _, err := fmt.Fprintf(w, "event: update\ndata: %d\n\n", snap.Version); err != nil {
			return
		}
		fl.Flush()
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-changed:
		}
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	token := randomToken(24)
	setCookie(w, r, loginCookie, token, 30*time.Minute)
	s.render(w, http.StatusOK, "login", "layout", view{Title: "Log in", Page: "login", CSRF: token, Logins: s.cfg.Logins,
		Snap: &Snapshot{}, Error: r.URL.Query().Get("error")})
}

func (s *Server) provider(id string) LoginProvider {
	for _, l := range s.cfg.Logins {
		if l.ID() == id {
			return l
		}
	}
	return nil
}

// loginPost takes a form login. The form carries the token of the login
// cookie (double submit) and must come from this origin.
func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	p := s.provider(r.PathValue("id"))
	if p == nil || !p.Form() {
		http.Error(w, "no such login", http.StatusNotFound)
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || !tokensEqual(c.Value, r.PostFormValue("csrf")) {
		s.log.Warn("monitor login refused: cross-site or stale form", "remote", r.RemoteAddr)
		http.Error(w, "the login form is stale or came from another site; reload the login page", http.StatusForbidden)
		return
	}
	op, err := p.Authenticate(r)
	if err != nil {
		s.log.Warn("monitor login failed", "provider", p.ID(), "remote", r.RemoteAddr)
		msg := ErrLogin.Error()
		if !errors.Is(err, ErrLogin) {
			msg = "the login could not be checked"
		}
		s.render(w, http.StatusUnauthorized, "login", "layout", view{Title: "Log in", Page: "login", CSRF: c.Value,
			Logins: s.cfg.Logins, Snap: &Snapshot{}, Error: msg})
		return
	}
	s.startSession(w, r, op)
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request, op Operator) {
	clearCookie(w, r, loginCookie)
	id, _ := s.sessions.create(op)
	setCookie(w, r, sessionCookie, id, s.cfg.SessionTTL)
	s.log.Info("monitor login", "provider", op.Provider, "operator", op.Subject, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// loginStart begins a redirect login with a fresh state.
func (s *Server) loginStart(w http.ResponseWriter, r *http.Request) {
	p := s.provider(r.PathValue("id"))
	if p == nil || p.Form() {
		http.Error(w, "no such login", http.StatusNotFound)
		return
	}
	state := randomToken(24)
	// Lax, not Strict: the provider's redirect back is a cross-site navigation.
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: state, Path: "/login/" + p.ID() + "/callback", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode, MaxAge: 600})
	p.Start(w, r, state)
}

// loginCallback takes the provider's redirect back, checking its state.
func (s *Server) loginCallback(w http.ResponseWriter, r *http.Request) {
	p := s.provider(r.PathValue("id"))
	if p == nil || p.Form() {
		http.Error(w, "no such login", http.StatusNotFound)
		return
	}
	c, err := r.Cookie(stateCookie)
	if err != nil || !tokensEqual(c.Value, r.URL.Query().Get("state")) {
		http.Error(w, "the login's state does not match; start the login again", http.StatusForbidden)
		return
	}
	op, err := p.Authenticate(r)
	if err != nil {
		s.log.Warn("monitor login failed", "provider", p.ID(), "remote", r.RemoteAddr, "err", err)
		http.Redirect(w, r, "/login?error="+url.QueryEscape("the login at "+p.Title()+" did not succeed"), http.StatusSeeOther)
		return
	}
	s.startSession(w, r, op)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !sameOrigin(r) || !tokensEqual(ss.csrf, r.PostFormValue("csrf")) {
		http.Error(w, "the logout form is stale or came from another site", http.StatusForbidden)
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.remove(c.Value)
	}
	clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
