package identity

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// Server is the development stand-in for an identity issuer service (the
// Dezi role): it signs a user identity for whatever user an organisation's
// node names, for that organisation only (the URA of its mTLS client
// certificate). It has no user login: never trust it outside development.
type Server struct {
	Signer *Signer
	Logger *slog.Logger
}

var (
	uziNumber = regexp.MustCompile(`^[0-9]{1,20}$`)
	roleCode  = regexp.MustCompile(`^[0-9]{2}\.[0-9]{3}$`)
)

// Handler serves POST Path and GET JWKSPath.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, s.issue)
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, _ *http.Request) {
		set, err := pki.PublicJWKS(s.Signer.Key)
		if err != nil {
			problem(w, http.StatusInternalServerError, "the issuer's keys cannot be published")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	return mux
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request) {
	ura, err := pki.PeerURA(r.TLS)
	if err != nil {
		problem(w, http.StatusUnauthorized, "a client certificate with the organisation's URA is required")
		return
	}
	var req Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil {
		problem(w, http.StatusBadRequest, `expected JSON {"dezi_nummer", "rol_code", "abonnee_nummer", "loa_authn", "aud"}`)
		return
	}
	u, _ := url.Parse(req.Audience)
	_, loaErr := oauth.ParseAssurance(req.LoA)
	var why string
	switch {
	case !uziNumber.MatchString(req.UZI):
		why = "dezi_nummer must be the user's UZI number"
	case !roleCode.MatchString(req.Role):
		why = "rol_code must be an UZI role code (NN.NNN)"
	case nl.ValidateURA(req.URA) != nil:
		why = "abonnee_nummer must be a URA"
	case req.URA != ura:
		problem(w, http.StatusForbidden, "abonnee_nummer "+req.URA+" is not the organisation of the client certificate ("+ura+")")
		return
	case loaErr != nil:
		why = "loa_authn must be low, substantial or high (or its eIDAS URI)"
	case u == nil || u.Scheme != "https" || u.Host == "":
		why = "aud must be the https token endpoint where the identity is verified"
	}
	if why != "" {
		problem(w, http.StatusBadRequest, why)
		return
	}
	tok, err := s.Signer.IssueIdentity(r.Context(), plateau.IdentityRequest{UZI: req.UZI, Role: req.Role, URA: req.URA, LoA: req.LoA, Audience: req.Audience})
	if err != nil {
		if s.Logger != nil {
			s.Logger.Error("identity issuer: sign", "err", err)
		}
		problem(w, http.StatusInternalServerError, "the identity could not be signed")
		return
	}
	ttl := s.Signer.TTL
	if ttl <= 0 {
		ttl = oauth.DefaultUserIdentityTTL
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(Response{IdentityToken: tok, ExpiresIn: int64(ttl.Seconds())})
}

// problem answers with RFC 9457 problem details.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(status), "status": status, "detail": detail})
}
