// Package node is the GtK: its listeners (public mTLS for peers, internal for
// the participants' own systems), its participants, and the wiring of the
// FHIR store, authorization server, Notified Pull and audit log.
package node

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// Config is a node's configuration, loaded file → environment → flags.
type Config struct {
	// Name identifies the node in logs and audit records.
	Name string `koanf:"name"`
	// DataDir holds the node's stores.
	DataDir string `koanf:"datadir"`
	// Public is the listener for other GtKs: TLS 1.3, client certificate required.
	Public ListenerConfig `koanf:"public"`
	// Internal is the listener for the participants' own systems.
	Internal ListenerConfig `koanf:"internal"`
	// TLS is the node's certificate (and, for simple setups, the CAs it trusts).
	TLS TLSConfig `koanf:"tls"`
	// Trust is the full trust list: CAs (plateau 3–4), pinned partner
	// certificates (plateau 1–2), CRLs and denied serials. tls.cafiles are
	// added to its CAs.
	Trust pki.TrustConfig `koanf:"trust"`
	// Partners are the agreements with partner organisations: the plateau
	// per generic function that each request is held to.
	Partners plateau.Config `koanf:"partners"`
	// Admission is the admission register partners' proofs of validation
	// are looked up in (admission.go).
	Admission AdmissionConfig `koanf:"admission"`
	// Store selects where all of the node's state is kept: SQLite files in
	// datadir (default) or PostgreSQL, shared by the node's replicas
	// (docs/operations.md, "State on PostgreSQL").
	Store StoreConfig `koanf:"store"`
	// Audit configures the NEN 7513 audit log.
	Audit AuditConfig `koanf:"audit"`
	// Consent names the consent sources the node asks before data is made
	// consultable, one per consent plateau its agreements use (not for
	// referrals, where consent is presumed).
	Consent ConsentConfig `koanf:"consent"`
	// Localization is the referral index the node registers with and asks.
	Localization LocalizationConfig `koanf:"localization"`
	// IndexedPull configures the Indexed Pull the node runs for its
	// participants (POST /internal/indexed-pull).
	IndexedPull IndexedPullConfig `koanf:"indexedpull"`
	// Identity configures signed user identities (authentication plateau
	// 4): where the node obtains them and whose it verifies.
	Identity IdentityConfig `koanf:"identity"`
	// Identification is the BSN verification service (SBV-Z), asked where
	// an agreement's citizen identification plateau requires it.
	Identification IdentificationConfig `koanf:"identification"`
	// SigningKeyFile is the key the authorization server signs access tokens with.
	SigningKeyFile string `koanf:"signingkeyfile"`
	// PreviousSigningKeyFiles are keys this node signed with before a
	// rotation: they stay in the JWKS and keep verifying the tokens they
	// signed. Remove a file once TokenTTL has passed since the rotation.
	PreviousSigningKeyFiles []string `koanf:"previoussigningkeyfiles"`
	// AddressbookURL is the FHIR base of the addressbook, asked live (with a
	// short cache). Set Addressbook.Directories instead to keep local
	// replicas of one or more directories (mCSD ITI-91).
	AddressbookURL string `koanf:"addressbookurl"`
	// Addressbook lists the directories the node replicates, each
	// authoritative for a set of URAs.
	Addressbook addressbook.Config `koanf:"addressbook"`
	// Participants are the organisations this node serves.
	Participants []ParticipantConfig `koanf:"participants"`
	// TokenTTL is the lifetime of access tokens this node issues.
	TokenTTL time.Duration `koanf:"tokenttl"`
	// ClockSkew is the tolerance on peers' assertion times.
	ClockSkew time.Duration `koanf:"clockskew"`
	// ReferralValidity is how long a receiver may pull a referral's data.
	ReferralValidity time.Duration `koanf:"referralvalidity"`
	// Lease is how long a worker holds a unit of work in the node's state
	// (a received referral's pull, a Push message's delivery) between renewals; the holder renews it
	// every third of that while it works. With replicas, the work of a
	// replica that died is taken up by another within about one lease
	// (docs/operations.md, Running replicas). Default 30s.
	Lease time.Duration `koanf:"lease"`
	// Drain is how long the node, told to stop, first answers /healthz and
	// /readyz 503 while it goes on serving, so that a load balancer takes
	// it out of rotation before its connections close; only then does it
	// finish what it has accepted and stop. Behind a balancer, set it to
	// the time the balancer needs to see the failed checks (HAProxy: inter
	// + (fall − 1) × fastinter, and a margin); a node alone needs none.
	// Default 0, at most 5m (docs/operations.md, Running replicas).
	Drain time.Duration `koanf:"drain"`
	// Push is the outbox's delivery of Push messages.
	Push PushConfig `koanf:"push"`
	// MaxBodyBytes limits FHIR request bodies.
	MaxBodyBytes int64 `koanf:"maxbodybytes"`
	// Admin is the admin API, through which agreements and participants
	// change while the node runs (see docs/operations.md).
	Admin AdminConfig `koanf:"admin"`
	// Telemetry is where the node's traces go (docs/operations.md, "Traces").
	Telemetry TelemetryConfig `koanf:"telemetry"`
}

// AdminConfig is the admin listener: plain HTTP on a loopback address,
// each request authenticated with an operator's bearer token.
type AdminConfig struct {
	// Addr is the loopback host:port to listen on; empty: no admin API.
	Addr string `koanf:"addr"`
	// TokenFile holds the operators' tokens, one "<operator> <token>" a
	// line (mode 0600); the operator's name goes in the audit records of
	// the changes made with its token.
	TokenFile string `koanf:"tokenfile"`
}

// EHRConfig is a participant's own FHIR server, for proxy mode.
type EHRConfig struct {
	// URL is the EHR's FHIR STU3 base (https, or http on a private network).
	URL string `koanf:"url"`
	// CAFiles verify the EHR's server certificate (system roots when empty).
	CAFiles []string `koanf:"cafiles"`
	// Timeout bounds one request to the EHR (default 10s).
	Timeout time.Duration `koanf:"timeout"`
}

// StoreConfig selects the backend of every store the node keeps: the FHIR
// store, exchange state, Push outbox and inbox, audit log, replay cache,
// local consent registry, addressbook replicas and localization hits.
type StoreConfig struct {
	// Postgres is a PostgreSQL DSN; empty keeps the embedded SQLite stores.
	// A secret when it holds a password: set it through the environment
	// (SCHAKEL_STORE_POSTGRES), never a flag.
	Postgres string `koanf:"postgres"`
	// Schema is the PostgreSQL schema (created if missing); default public.
	Schema string `koanf:"schema"`
}

// AuditConfig configures the audit log.
type AuditConfig struct {
	// CheckpointKeyFile signs the log's checkpoints (created if absent;
	// default <datadir>/audit-checkpoint-key.pem).
	CheckpointKeyFile string `koanf:"checkpointkeyfile"`
	// Central is the central log and monitoring service the node ships its
	// log to (logging plateau 3–4).
	Central CentralLogConfig `koanf:"central"`
}

// CentralLogConfig points at the central log service (`schakel logcentral
// serve`); the node's certificate identifies it there.
type CentralLogConfig struct {
	// URL is the service's https base; empty: no shipping.
	URL string `koanf:"url"`
}

// ConsentConfig names the node's consent sources. The node may have several
// at once and asks, per request, the one the consent plateau agreed with the
// partner in question requires (see docs/consent.md): plateau 1 the local
// registry, plateau 2 the regional consent portal, plateau 3–4 Mitz.
// Referrals (Notified Pull) never ask: there consent is presumed.
type ConsentConfig struct {
	// Local keeps a consent registry in the node (<datadir>/consent.db),
	// registered through the internal API: plateau 1, consent recorded in
	// the provider's own system.
	Local bool `koanf:"local"`
	// Regional is a regional consent portal's service: plateau 2.
	Regional RegionalConsentConfig `koanf:"regional"`
	// URL is the base of Mitz, the national consent service (or a service
	// that speaks its protocol): plateau 3–4. The closed question is asked
	// at URL/geslotenautorisatievraag/xacml3, subscriptions at
	// URL/abonnementen/fhir.
	URL string `koanf:"url"`
	// Timeout bounds one question (default 5s): a slow service means no access.
	Timeout time.Duration `koanf:"timeout"`
	// CacheTTL keeps answers this long (default 5s; keep it short).
	CacheTTL time.Duration `koanf:"cachettl"`
	// Subscribe makes the node subscribe at Mitz (URL) to consent changes
	// of every patient whose holding it registers at the referral index,
	// and act on the notifications (localization at plateau 4). Needs URL,
	// localization.url and NotifierURA.
	Subscribe bool `koanf:"subscribe"`
	// NotifierURA is the URA in the certificate Mitz delivers notifications
	// with; the notification endpoint refuses every other peer.
	NotifierURA string `koanf:"notifierura"`
	// GatewaySystem and SourceSystem are the OIDs (urn:oid:…) subscriptions
	// carry for Mitz: the GtK (gateway) and the source system. Optional for
	// Schakel's own consent service.
	GatewaySystem string `koanf:"gatewaysystem"`
	SourceSystem  string `koanf:"sourcesystem"`
}

// RegionalConsentConfig is a regional consent portal's service: it answers
// the same closed question as Mitz (Schakel's `schakel consent serve` fed by
// its portal API is one).
type RegionalConsentConfig struct {
	// URL is the service base (closed question at URL/geslotenautorisatievraag/xacml3).
	URL string `koanf:"url"`
}

// LocalizationConfig points at a referral index.
type LocalizationConfig struct {
	// URL is the index's FHIR base.
	URL string `koanf:"url"`
}

// IndexedPullConfig configures the Indexed Pull.
type IndexedPullConfig struct {
	// HolderTimeout is each holder's deadline (default 20s): a holder that
	// has not answered by then is reported as timed out, and the others'
	// answers are returned without waiting for it.
	HolderTimeout time.Duration `koanf:"holdertimeout"`
}

// maxHolderTimeout bounds indexedpull.holdertimeout: the participant's
// system waits for the slowest holder, and a consult token lives 5 minutes.
const maxHolderTimeout = 2 * time.Minute

// The bounds of Config.Lease: renewed every third, a shorter lease would
// keep the database busy renewing and be lost to a pause of the process;
// a longer one leaves a dead replica's work waiting long.
const (
	minLease = time.Second
	maxLease = 10 * time.Minute
)

// maxDrain bounds Config.Drain: a stop that waits longer is likely a
// mistaken unit, and process supervisors kill what has not stopped by then.
const maxDrain = 5 * time.Minute

// Validate checks the holder deadline.
func (c IndexedPullConfig) Validate() error {
	if c.HolderTimeout < 0 || c.HolderTimeout > maxHolderTimeout {
		return fmt.Errorf("indexedpull.holdertimeout: %s is outside 0 (the default, 20s) to %s", c.HolderTimeout, maxHolderTimeout)
	}
	return nil
}

// ListenerConfig is one HTTP listener.
type ListenerConfig struct {
	// Addr is host:port to listen on; port 0 picks a free port.
	Addr string `koanf:"addr"`
	// URL is the address peers use, when it differs from https://Addr.
	URL string `koanf:"url"`
	// ProxyProtocol lists the load balancers (addresses or CIDR ranges)
	// that pass connections through at layer 4 and send a PROXY protocol
	// header (v1 or v2) before TLS: a connection from one of them must
	// start with the header, whose source address the node then logs and
	// audits as the client's. A connection from anywhere else is taken as
	// it is (its peer is the client); a header it sends is not honoured.
	// Empty (the default): no header is read.
	ProxyProtocol []string `koanf:"proxyprotocol"`
}

// TLSConfig names PEM files.
type TLSConfig struct {
	CertFile string   `koanf:"certfile"`
	KeyFile  string   `koanf:"keyfile"`
	CAFiles  []string `koanf:"cafiles"`
}

// ParticipantConfig is one Deelnemer served by the node.
type ParticipantConfig struct {
	URA  string `koanf:"ura"`
	Name string `koanf:"name"`
	// SystemUZI is the UZI number of the participant's system (requester.agent).
	SystemUZI string `koanf:"systemuzi"`
	// CertFile/KeyFile: the participant's UZI server certificate, presented
	// when the node acts for it; the node's certificate when empty.
	CertFile string `koanf:"certfile"`
	KeyFile  string `koanf:"keyfile"`
	// SigningKeyFile is the key the participant's client assertions are signed with.
	SigningKeyFile string `koanf:"signingkeyfile"`
	// InternalToken authenticates the participant's systems on the internal
	// listener. A secret: set it through the environment or a file, never a flag.
	InternalToken string `koanf:"internaltoken"`
	// InternalTokenFile holds the token instead (read at start).
	InternalTokenFile string `koanf:"internaltokenfile"`
	// EHR, when its URL is set, is the participant's own FHIR server: the
	// node answers data requests from it (proxy mode) instead of holding a
	// copy; only the exchange's Tasks and received data stay in the node.
	EHR EHRConfig `koanf:"ehr"`
	// PACS, when its URL is set, is the participant's PACS (DICOMweb), for
	// Beeldbeschikbaarheid (pacs.go; package beeld).
	PACS PACSConfig `koanf:"pacs"`
	// FacilityType is the participant's provider type (zorgaanbiedertype,
	// 2.16.840.1.113883.2.4.15.1060, e.g. Z3 hospital), used in consent
	// questions and localization registrations.
	FacilityType string `koanf:"facilitytype"`
}

// trust is the trust list with tls.cafiles included.
func (c Config) trust() pki.TrustConfig {
	t := c.Trust
	t.CAFiles = append(append([]string(nil), c.TLS.CAFiles...), t.CAFiles...)
	return t
}

// Redacted returns a copy safe to print: the PostgreSQL password, the
// internal tokens and passwords in EHR URLs are replaced. A token read from
// internaltokenfile is dropped instead, so the copy, read back as a
// configuration, reads the file again.
func (c Config) Redacted() Config {
	out := c
	out.Participants = append([]ParticipantConfig(nil), c.Participants...)
	out.Store.Postgres = redactDSN(c.Store.Postgres)
	for i := range out.Participants {
		p := &out.Participants[i]
		switch {
		case p.InternalTokenFile != "":
			p.InternalToken = ""
		case p.InternalToken != "":
			p.InternalToken = redacted
		}
		if u, err := url.Parse(p.EHR.URL); err == nil && u.User != nil {
			p.EHR.URL = u.Redacted()
		}
		if u, err := url.Parse(p.PACS.URL); err == nil && u.User != nil {
			p.PACS.URL = u.Redacted()
		}
	}
	return out
}

// redacted stands in for a secret in printed configuration.
const redacted = "[redacted]"

// dsnPassword is the password in a key=value PostgreSQL DSN.
var dsnPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redactDSN hides the password of a PostgreSQL DSN, URL or key=value form,
// and keeps the rest (host, database, options) readable.
func redactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if !strings.Contains(dsn, "://") {
		return dsnPassword.ReplaceAllString(dsn, "${1}xxxxx")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return redacted // unparseable: nothing in it can be shown safely
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Validate checks the configuration before anything starts.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("datadir is required"))
	}
	if _, _, err := net.SplitHostPort(c.Public.Addr); err != nil {
		errs = append(errs, fmt.Errorf("public.addr: %w", err))
	}
	if _, _, err := net.SplitHostPort(c.Internal.Addr); err != nil {
		errs = append(errs, fmt.Errorf("internal.addr: %w", err))
	}
	if _, err := proxyPolicy(c.Public.ProxyProtocol); err != nil {
		errs = append(errs, fmt.Errorf("public.proxyprotocol: %w", err))
	}
	if _, err := proxyPolicy(c.Internal.ProxyProtocol); err != nil {
		errs = append(errs, fmt.Errorf("internal.proxyprotocol: %w", err))
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		errs = append(errs, errors.New("tls.certfile and tls.keyfile are required"))
	}
	trust := c.trust()
	if err := trust.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Partners.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Telemetry.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Identity.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.IndexedPull.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SigningKeyFile == "" {
		errs = append(errs, errors.New("signingkeyfile is required"))
	}
	if len(c.Addressbook.Directories) > 0 {
		if c.AddressbookURL != "" {
			errs = append(errs, errors.New("set either addressbookurl or addressbook.directories, not both"))
		}
		if err := c.Addressbook.Validate(); err != nil {
			errs = append(errs, err)
		}
	} else if c.AddressbookURL != "" {
		if !strings.HasPrefix(c.AddressbookURL, "https://") {
			errs = append(errs, errors.New("addressbookurl must be an https URL (or configure addressbook.directories)"))
		}
	} else {
		errs = append(errs, c.validateOwnAddressing()...)
	}
	if len(c.Participants) == 0 {
		errs = append(errs, errors.New("at least one participant is required"))
	}
	seen := map[string]bool{}
	tokens := map[string]bool{}
	for i := range c.Participants {
		p := &c.Participants[i]
		if p.InternalToken == "" && p.InternalTokenFile != "" {
			b, err := os.ReadFile(p.InternalTokenFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("participants[%d].internaltokenfile: %w", i, err))
			}
			p.InternalToken = strings.TrimSpace(string(b))
		}
		if err := nl.ValidateURA(p.URA); err != nil {
			errs = append(errs, fmt.Errorf("participants[%d].ura: %w", i, err))
		}
		if seen[p.URA] {
			errs = append(errs, fmt.Errorf("participants[%d]: URA %s listed twice", i, p.URA))
		}
		seen[p.URA] = true
		if p.SigningKeyFile == "" {
			errs = append(errs, fmt.Errorf("participants[%d].signingkeyfile is required", i))
		}
		if len(p.InternalToken) < 16 {
			errs = append(errs, fmt.Errorf("participants[%d].internaltoken must be at least 16 characters", i))
		}
		if tokens[p.InternalToken] {
			errs = append(errs, fmt.Errorf("participants[%d].internaltoken is shared with another participant", i))
		}
		tokens[p.InternalToken] = true
		if (p.CertFile == "") != (p.KeyFile == "") {
			errs = append(errs, fmt.Errorf("participants[%d]: certfile and keyfile go together", i))
		}
	}
	for _, u := range []struct{ key, v string }{{"consent.url", c.Consent.URL}, {"consent.regional.url", c.Consent.Regional.URL},
		{"localization.url", c.Localization.URL}} {
		if u.v != "" && !strings.HasPrefix(u.v, "https://") {
			errs = append(errs, fmt.Errorf("%s must be an https URL", u.key))
		}
	}
	errs = append(errs, c.validateConsent()...)
	errs = append(errs, c.Admin.validate()...)
	errs = append(errs, c.Identification.validate(c.Partners)...)
	errs = append(errs, c.validateLogging()...)
	errs = append(errs, c.validatePACS()...)
	if c.Localization.URL != "" || c.Consent.URL != "" || c.Consent.Regional.URL != "" {
		for i, p := range c.Participants {
			if p.FacilityType == "" {
				errs = append(errs, fmt.Errorf("participants[%d].facilitytype is required with consent or localization", i))
			}
		}
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = 5 * time.Minute
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = 30 * time.Second
	}
	if c.ReferralValidity == 0 {
		c.ReferralValidity = 7 * 24 * time.Hour
	}
	switch {
	case c.Lease == 0:
		c.Lease = 30 * time.Second
	case c.Lease < minLease || c.Lease > maxLease:
		errs = append(errs, fmt.Errorf("lease (%s) must be from %s to %s", c.Lease, minLease, maxLease))
	}
	if c.Drain < 0 || c.Drain > maxDrain {
		errs = append(errs, fmt.Errorf("drain (%s) must be from 0 to %s", c.Drain, maxDrain))
	}
	if err := c.Push.validate(); err != nil {
		errs = append(errs, err)
	}
	// An explicit requirevalidation needs the register; the default of
	// network plateau 3–4 applies once one is configured (admission.go).
	required := false
	for _, a := range c.Partners.Agreements {
		required = required || (a.RequireValidation != nil && *a.RequireValidation)
	}
	if err := c.Admission.validate(required); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// oidValue is an OID in the urn:oid form Mitz subscriptions carry.
var oidValue = regexp.MustCompile(`^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$`)

// validateOwnAddressing checks a node without an addressbook: it can reach
// only partners whose endpoints its agreements configure, which is the
// addressing of plateaus 1–2.
func (c *Config) validateOwnAddressing() []error {
	const hint = "set addressbookurl or addressbook.directories"
	var errs []error
	if c.Partners.Default != nil {
		errs = append(errs, errors.New("partners.default: a node without an addressbook cannot address partners it has no agreement with; "+hint+", or remove the default"))
	}
	if len(c.Partners.Agreements) == 0 {
		errs = append(errs, errors.New("no addressbook and no partner agreements with endpoints: "+hint+", or configure partners.agreements[].endpoints (addressing plateau 1–2)"))
	}
	for i, a := range c.Partners.Agreements {
		where := plateau.AgreementPath(i, a)
		switch p := c.Partners.Plateau(a, plateau.Addressing); {
		case p > 2:
			errs = append(errs, fmt.Errorf("%s: addressing is agreed at plateau %d, which needs the national addressbook: %s", where, p, hint))
		case a.Endpoints.IsZero():
			errs = append(errs, fmt.Errorf("%s: no endpoints configured and the node has no addressbook: configure endpoints or %s", where, hint))
		}
	}
	return errs
}

// validateConsent checks that every agreement's consent plateau has its
// source, and the subscription settings.
func (c *Config) validateConsent() []error {
	var errs []error
	check := func(where string, p int) {
		if p < plateau.Lowest || p > plateau.Highest {
			return // Partners.Validate names it
		}
		if _, missing := c.Consent.source(p); missing != "" {
			errs = append(errs, fmt.Errorf("%s: consent is agreed at plateau %d, which needs %s", where, p, missing))
		}
	}
	// A node with no consent source at all only refers (consent presumed):
	// it makes no data consultable, and Direct Pull and localization
	// answers fail closed. Once it has a source, every agreement needs its.
	if c.Consent.Local || c.Consent.URL != "" || c.Consent.Regional.URL != "" {
		if c.Partners.Default != nil {
			check("partners.default", c.Partners.Default[plateau.Consent])
		}
		for i, a := range c.Partners.Agreements {
			check(plateau.AgreementPath(i, a), c.Partners.Plateau(a, plateau.Consent))
		}
	}
	if !c.Consent.Subscribe {
		for _, k := range []struct{ key, v string }{{"consent.notifierura", c.Consent.NotifierURA},
			{"consent.gatewaysystem", c.Consent.GatewaySystem}, {"consent.sourcesystem", c.Consent.SourceSystem}} {
			if k.v != "" {
				errs = append(errs, fmt.Errorf("%s is set but consent.subscribe is not", k.key))
			}
		}
		return errs
	}
	if c.Consent.URL == "" {
		errs = append(errs, errors.New("consent.subscribe needs consent.url (Mitz, where the node subscribes)"))
	}
	if c.Localization.URL == "" {
		errs = append(errs, errors.New("consent.subscribe needs localization.url (the referral index its notifications act on)"))
	}
	if err := nl.ValidateURA(c.Consent.NotifierURA); err != nil {
		errs = append(errs, fmt.Errorf("consent.notifierura (the URA of the certificate Mitz notifies with) is required with consent.subscribe: %w", err))
	}
	for _, k := range []struct{ key, v string }{{"consent.gatewaysystem", c.Consent.GatewaySystem}, {"consent.sourcesystem", c.Consent.SourceSystem}} {
		if k.v != "" && !oidValue.MatchString(k.v) {
			errs = append(errs, fmt.Errorf("%s must be an OID as urn:oid:1.2.3…, not %q", k.key, k.v))
		}
	}
	if c.Public.URL != "" && !strings.HasPrefix(c.Public.URL, "https://") {
		errs = append(errs, errors.New("public.url must be an https URL with consent.subscribe: Mitz posts notifications there"))
	}
	return errs
}

// consentKind is a kind of consent source.
type consentKind int

const (
	consentLocal consentKind = iota + 1
	consentRegional
	consentMitz
)

// source is the kind of source consent plateau p needs, and the
// configuration key that provides it when it is missing.
func (c ConsentConfig) source(p int) (consentKind, string) {
	switch {
	case p <= 1:
		if !c.Local {
			return consentLocal, "consent.local: true (the node's own registry)"
		}
		return consentLocal, ""
	case p == 2:
		if c.Regional.URL == "" {
			return consentRegional, "consent.regional.url (a regional consent portal's service)"
		}
		return consentRegional, ""
	default:
		if c.URL == "" {
			return consentMitz, "consent.url (Mitz)"
		}
		return consentMitz, ""
	}
}

// PushConfig bounds the delivery of Push messages from the outbox.
type PushConfig struct {
	// Lifetime is how long a message may wait for delivery before it is
	// failed and its sender told (default 72h).
	Lifetime time.Duration `koanf:"lifetime"`
	// RetryBase is the wait after the first failed attempt, doubled after
	// each next one up to RetryMax (defaults 1s and 10m), with jitter.
	RetryBase time.Duration `koanf:"retrybase"`
	RetryMax  time.Duration `koanf:"retrymax"`
}

func (p *PushConfig) validate() error {
	if p.Lifetime == 0 {
		p.Lifetime = 72 * time.Hour
	}
	if p.RetryBase == 0 {
		p.RetryBase = time.Second
	}
	if p.RetryMax == 0 {
		p.RetryMax = 10 * time.Minute
	}
	switch {
	case p.Lifetime < 0 || p.RetryBase < 0 || p.RetryMax < 0:
		return errors.New("push: lifetime, retrybase and retrymax must be positive")
	case p.RetryMax < p.RetryBase:
		return fmt.Errorf("push.retrymax (%s) is below push.retrybase (%s)", p.RetryMax, p.RetryBase)
	case p.Lifetime < p.RetryBase:
		return fmt.Errorf("push.lifetime (%s) is below push.retrybase (%s): no retry would happen", p.Lifetime, p.RetryBase)
	}
	return nil
}
