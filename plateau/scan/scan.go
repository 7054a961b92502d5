package scan

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/policy"
)

// Report is the outcome of a scan.
type Report struct {
	Node       string            `json:"node"`
	ConfigFile string            `json:"configFile"`
	Generated  time.Time         `json:"generated"`
	Functions  []FunctionReport  `json:"functions"`
	Agreements []AgreementReport `json:"agreements"`
	Probe      *Probe            `json:"probe,omitempty"`
}

// FunctionReport is one generic function.
type FunctionReport struct {
	Function plateau.Function `json:"function"`
	Title    string           `json:"title"`
	Reached  int              `json:"reached"`
	// Characteristic is the growth model's wording of the reached plateau.
	Characteristic string     `json:"characteristic"`
	Evidence       []Evidence `json:"evidence"`
	Next           *Next      `json:"next,omitempty"`
	// Confirm are the organisational parts of the reached plateau that no
	// scan can see; the organisation confirms them itself.
	Confirm []string `json:"confirm,omitempty"`
}

// Evidence is one criterion and what was found.
type Evidence struct {
	Plateau int    `json:"plateau"`
	Source  string `json:"source"` // configuration, observed, built-in
	Met     bool   `json:"met"`
	Text    string `json:"text"`
}

// Next is the way to the next plateau.
type Next struct {
	Plateau        int      `json:"plateau"`
	Characteristic string   `json:"characteristic"`
	Steps          []string `json:"steps"`
}

// AgreementReport is one partner agreement against what the node reaches.
type AgreementReport struct {
	Name     string           `json:"name"`
	URAs     []string         `json:"uras"`
	Plateaus plateau.Plateaus `json:"plateaus"`
	Warnings []string         `json:"warnings,omitempty"`
}

// criterion is one requirement of a plateau the scan can judge.
type criterion struct {
	plateau int
	judge   func(*inputs) (met bool, source, text string)
	step    string // what to do when it is not met
}

type inputs struct {
	cfg      *NodeConfig
	probe    *Probe
	leaf     error // error reading the node certificate, if any
	uziURA   string
	policies policy.Set
	polErr   error
	agreed   map[plateau.Function]int // highest plateau agreed with any partner
	cfgErr   error
}

// Run scans cfg (read from file) with the optional probe result.
func Run(cfg *NodeConfig, file string, probe *Probe) *Report {
	in := &inputs{cfg: cfg, probe: probe, agreed: map[plateau.Function]int{}}
	in.cfgErr = cfg.Partners.Validate()
	if cfg.TLS.CertFile != "" {
		leaf, err := leafCertificate(cfg.TLS.CertFile)
		if err == nil {
			var id pki.UZIServerID
			if id, err = pki.ParseUZIServerID(leaf); err == nil {
				in.uziURA = id.URA
			}
		}
		in.leaf = err
	}
	in.policies, in.polErr = policy.Load(cfg.Partners.PolicyDir)
	for _, a := range cfg.Partners.Agreements {
		for f, p := range a.Plateaus {
			in.agreed[f] = max(in.agreed[f], p)
		}
	}
	for f, p := range cfg.Partners.Default {
		in.agreed[f] = max(in.agreed[f], p)
	}

	r := &Report{Node: cfg.Name, ConfigFile: file, Generated: time.Now().UTC().Truncate(time.Second), Probe: probe}
	reached := map[plateau.Function]int{}
	for _, f := range plateau.Functions {
		fr := assess(f, criteria[f], in)
		reached[f] = fr.Reached
		r.Functions = append(r.Functions, fr)
	}
	for _, a := range cfg.Partners.Agreements {
		ar := AgreementReport{Name: a.Name, URAs: a.URAs(), Plateaus: a.Plateaus}
		for _, f := range plateau.Functions {
			if p, ok := a.Plateaus[f]; ok && p > reached[f] {
				ar.Warnings = append(ar.Warnings, fmt.Sprintf("%s is agreed at plateau %d, but the node reaches plateau %d", f, p, reached[f]))
			}
		}
		r.Agreements = append(r.Agreements, ar)
	}
	return r
}

func assess(f plateau.Function, cs []criterion, in *inputs) FunctionReport {
	fr := FunctionReport{Function: f, Title: f.Title()}
	var unmet [plateau.Highest + 1][]string
	var counted [plateau.Highest + 1]int
	for _, c := range cs {
		met, source, text := c.judge(in)
		fr.Evidence = append(fr.Evidence, Evidence{Plateau: c.plateau, Source: source, Met: met, Text: text})
		counted[c.plateau]++
		if !met {
			unmet[c.plateau] = append(unmet[c.plateau], c.step)
		}
	}
	// A plateau is reached when it and every plateau below it have
	// criteria and each has evidence; a plateau without criteria is not.
	for p := plateau.Lowest; p <= plateau.Highest && counted[p] > 0 && len(unmet[p]) == 0; p++ {
		fr.Reached = p
	}
	if fr.Reached >= plateau.Lowest {
		ch, _ := plateau.CharacteristicOf(f, fr.Reached)
		fr.Characteristic = joinCharacteristic(ch)
		fr.Confirm = confirmations(f, fr.Reached)
	}
	if fr.Reached < plateau.Highest {
		n := fr.Reached + 1
		ch, _ := plateau.CharacteristicOf(f, n)
		fr.Next = &Next{Plateau: n, Characteristic: joinCharacteristic(ch), Steps: unmet[n]}
		if counted[n] == 0 {
			fr.Next.Steps = []string{fmt.Sprintf("this scan has no criteria for %s plateau %d, so it cannot be reached here", f, n)}
		}
		if len(fr.Next.Steps) == 0 {
			fr.Next.Steps = confirmations(f, n)
		}
	}
	return fr
}

func joinCharacteristic(c plateau.Characteristic) string {
	if len(c.Bullets) == 0 {
		return c.Text
	}
	return c.Text + " " + strings.Join(c.Bullets, " ")
}

// confirmations are the organisational parts of plateau p of f.
func confirmations(f plateau.Function, p int) []string {
	switch f {
	case plateau.Identification:
		return []string{"the BSN is verified and validated (e.g. against the BRP through SBV-Z) before data is made available, and consent requirements are met"}
	case plateau.Authentication:
		switch p {
		case 1:
			return []string{"user management is in order and users are authenticated locally"}
		case 2:
			return []string{"users authenticate locally with a strong, two-factor means (NEN 7510)"}
		case 4:
			return []string{"users authenticate with an eIDAS high means (NEN 7512)"}
		}
	case plateau.Authorization:
		return []string{"the authorization rules are demonstrably arranged within the communicating parties"}
	case plateau.Consent:
		if p == 1 {
			return []string{"the care professional records the patient's consent in the own information system"}
		}
	case plateau.Logging:
		if p >= 3 {
			return []string{"the national agreements on logging and the procedures for monitoring and checking the log (NEN 7510, 7512, 7513) are followed"}
		}
	case plateau.Network:
		switch p {
		case 2, 3:
			return []string{"intermediaries are held to the same requirements, and performance is agreed with them"}
		case 4:
			return []string{"national performance agreements between exchange parties, care providers and collaborations are in place"}
		}
	}
	return nil
}

func builtIn(text string) func(*inputs) (bool, string, string) {
	return func(*inputs) (bool, string, string) { return true, "built-in", text }
}

// agreedAt judges whether some partner is agreed at plateau p or higher for f.
func agreedAt(f plateau.Function, p int) criterion {
	return criterion{plateau: p, judge: func(in *inputs) (bool, string, string) {
		if in.agreed[f] >= p {
			return true, "configuration", fmt.Sprintf("at least one partner is agreed at %s plateau %d (partners)", f, in.agreed[f])
		}
		return false, "configuration", fmt.Sprintf("no partner is agreed at %s plateau %d or higher", f, p)
	}, step: fmt.Sprintf("agree %s plateau %d with your partners and set partners.agreements[].plateaus.%s: %d", f, p, f, p)}
}

func isLocal(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return true
	}
	h := u.Hostname()
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified())
}

// at is c required at plateau p as well: the growth model keeps most
// requirements on the higher plateaus, and a plateau needs criteria of its
// own to be reached.
func at(p int, c criterion) criterion {
	c.plateau = p
	return c
}

var mtls = criterion{plateau: 1, judge: func(in *inputs) (bool, string, string) {
	c := in.cfg.TLS
	if c.CertFile == "" || c.KeyFile == "" || len(c.CAFiles) == 0 {
		return false, "configuration", "tls.certfile, tls.keyfile and tls.cafiles are not all set"
	}
	if _, err := leafCertificate(c.CertFile); err != nil {
		return false, "configuration", "tls.certfile is not a readable certificate: " + err.Error()
	}
	if err := readSigningKey(c.KeyFile); err != nil {
		return false, "configuration", "tls.keyfile is not a readable private key: " + err.Error()
	}
	for _, f := range c.CAFiles {
		if _, err := leafCertificate(f); err != nil {
			return false, "configuration", "tls.cafiles: " + f + " is not a readable certificate: " + err.Error()
		}
	}
	return true, "configuration", fmt.Sprintf("mutual TLS: certificate %s, trusted CAs %s", c.CertFile, strings.Join(c.CAFiles, ", "))
}, step: "configure tls.certfile, tls.keyfile and tls.cafiles (the partners' CAs) with readable PEM files"}

var clientCert = criterion{plateau: 1, judge: func(in *inputs) (bool, string, string) {
	if p := in.probe; p != nil {
		if !p.Reachable {
			return false, "observed", "the node could not be reached at " + p.URL
		}
		return p.AsksCert && p.DemandsCert, "observed", fmt.Sprintf("handshake at %s without a client certificate: certificate requested %t, connection refused %t", p.URL, p.AsksCert, p.DemandsCert)
	}
	return true, "built-in", "the public listener requires a client certificate that chains to tls.cafiles (pki.ServerTLSConfig); not probed"
}, step: "make the public listener require client certificates"}

var tls13 = criterion{plateau: 3, judge: func(in *inputs) (bool, string, string) {
	if p := in.probe; p != nil {
		return p.Reachable && p.TLSVersion == "TLS 1.3" && p.RefusesTLS12, "observed", fmt.Sprintf("negotiated %s; a TLS 1.2 handshake refused: %t", p.TLSVersion, p.RefusesTLS12)
	}
	return true, "built-in", "the public listener speaks TLS 1.3 only (pki.ServerTLSConfig); not probed"
}, step: "allow only TLS 1.3 on the public listener (NEN 7512 channel encryption)"}

// userlessRefused is the probe's behavioural check of user authentication
// plateau 2: a token request without user data, from the probe's own
// identity, must be refused when the configuration holds that identity to
// plateau 2 or higher.
var userlessRefused = criterion{plateau: 2, judge: func(in *inputs) (bool, string, string) {
	p := in.probe
	if p == nil || p.Userless == "" || p.Userless == UserlessInconclusive {
		return true, "built-in", "token requests without the user data the agreed plateau requires are refused (plateau.Enforcer.CheckTokenRequest); not probed"
	}
	agreed := 0
	if a := in.agreementOf(p.ProbeURA); a != nil {
		agreed = a.Plateaus[plateau.Authentication]
		if agreed == 0 {
			agreed = in.cfg.Partners.Default[plateau.Authentication]
		}
	}
	switch {
	case p.Userless == UserlessRefusedAuthn:
		return true, "observed", "a signed token request without user data from " + p.ProbeURA + " was refused for user authentication"
	case p.Userless == UserlessRefusedPartner:
		return true, "built-in", "the probe's URA " + p.ProbeURA + " is no partner, so user authentication was not observed (the bilateral list was)"
	case agreed >= 2:
		return false, "observed", fmt.Sprintf("the configuration holds %s to authentication plateau %d, yet a token request without user data was not refused", p.ProbeURA, agreed)
	}
	return true, "built-in", "the probe's URA " + p.ProbeURA + " is agreed at authentication plateau 1, so a request without user data is rightly not refused for it"
}, step: "refuse token requests that lack the user data of the agreed authentication plateau (is the running node using this configuration?)"}

// policiesCover judges that every rule of every policy in force that
// applies at plateau p names the roles allowed there: the guideline's
// (3) or the protocol's (4) table.
func policiesCover(p int, list string) criterion {
	return criterion{plateau: p, judge: func(in *inputs) (bool, string, string) {
		if in.polErr != nil {
			return false, "configuration", "the access policies do not load: " + firstLine(in.polErr)
		}
		var names []string
		for app, pol := range in.policies {
			n := 0
			for _, r := range pol.Rules {
				if r.From <= p && len(r.Roles(p)) == 0 {
					return false, "configuration", fmt.Sprintf("%s rule %q has no %s roles (%s)", app, r.ID, list, pol.File)
				}
				if r.From <= p {
					n++
				}
			}
			names = append(names, fmt.Sprintf("%s v%d (%d rules, %s)", app, pol.Version, n, pol.File))
		}
		if len(names) == 0 {
			return false, "configuration", "no access policies are in force"
		}
		sort.Strings(names)
		return true, "configuration", fmt.Sprintf("every rule names the UZI roles of the %s: %s", list, strings.Join(names, ", "))
	}, step: fmt.Sprintf("give every policy rule its %s role list (partners.policydir)", list)}
}

var identificationValidated = builtIn("BSNs are checked (nine digits, 11-proef) before a referral is made or a query answered, and travel as " + nl.SystemBSN)

var criteria = map[plateau.Function][]criterion{
	// The growth model asks the same of citizen identification on every
	// plateau; what the scan can see is the node's own check.
	plateau.Identification: {
		{plateau: 1, judge: identificationValidated},
		{plateau: 2, judge: identificationValidated},
		{plateau: 3, judge: identificationValidated},
		{plateau: 4, judge: identificationValidated},
	},
	plateau.Authentication: {
		mtls, clientCert,
		{plateau: 1, judge: builtIn("token requests authenticate with a signed client assertion (RFC 7523 §2.2) bound to the mTLS certificate; no shared secrets")},
		{plateau: 2, judge: func(in *inputs) (bool, string, string) {
			if in.cfgErr != nil {
				return false, "configuration", "the partners section is invalid: " + firstLine(in.cfgErr)
			}
			return true, "configuration", "the partners section is valid"
		}, step: "fix the partners section (run schakel node --print-config)"},
		userlessRefused,
		agreedAt(plateau.Authentication, 2),
		{plateau: 3, judge: func(in *inputs) (bool, string, string) {
			switch {
			case in.cfg.TLS.CertFile == "":
				return false, "configuration", "tls.certfile is not set, so there is no UZI server certificate"
			case in.leaf != nil:
				return false, "configuration", "the node certificate carries no UZI server identity: " + in.leaf.Error()
			}
			return in.uziURA != "", "configuration", "the node certificate is an UZI server certificate for URA " + in.uziURA
		}, step: "use an UZI server certificate (URA, UZI number, role) on the public listener"},
		{plateau: 3, judge: func(in *inputs) (bool, string, string) {
			if p := in.probe; p != nil && p.Authed {
				ok := p.Metadata && p.PrivateKeyJW && p.JWTBearer && p.RefusesNone
				return ok, "observed", fmt.Sprintf("RFC 8414 metadata %t, private_key_jwt %t, jwt-bearer grant %t, alg none refused %t", p.Metadata, p.PrivateKeyJW, p.JWTBearer, p.RefusesNone)
			}
			return true, "built-in", "the token endpoint accepts organisation-signed grant assertions (jwt-bearer) and refuses alg none and HMAC; not probed"
		}, step: "accept signed grant assertions carrying URA, UZI number and UZI role code at the token endpoint"},
		agreedAt(plateau.Authentication, 3),
		{plateau: 4, judge: func(in *inputs) (bool, string, string) {
			var ok []string
			for _, iss := range in.cfg.Partners.IdentityIssuers {
				if u, err := url.Parse(iss); err == nil && u.Scheme == "https" && u.Host != "" {
					ok = append(ok, iss)
				}
			}
			if len(ok) == 0 {
				return false, "configuration", "no identity issuer (an https URL) is trusted (partners.identityissuers)"
			}
			return true, "configuration", "user identities signed by " + strings.Join(ok, ", ") + " are accepted"
		}, step: "trust the identity issuer of signed user identities (Dezi): set partners.identityissuers"},
		{plateau: 4, judge: func(in *inputs) (bool, string, string) {
			if p := in.probe; p != nil && p.Authed {
				return p.BoundTokens, "observed", fmt.Sprintf("certificate-bound access tokens (RFC 8705): %t", p.BoundTokens)
			}
			return true, "built-in", "access tokens are bound to the client certificate (RFC 8705); not probed"
		}, step: "bind access tokens to the client certificate (RFC 8705)"},
		agreedAt(plateau.Authentication, 4),
	},
	plateau.Authorization: {
		{plateau: 1, judge: func(in *inputs) (bool, string, string) {
			n := len(in.cfg.Partners.Agreements)
			if p := in.probe; p != nil && p.Userless == UserlessRefusedPartner {
				return true, "observed", "the node refused the probe's URA " + p.ProbeURA + " as no partner"
			}
			switch {
			case n == 0 && in.cfg.Partners.Default == nil:
				return false, "configuration", "no partners are listed: every organisation is refused"
			case n == 0:
				return false, "configuration", "no partners are listed; every trusted organisation is admitted at the default plateaus"
			case in.cfg.Partners.Default != nil:
				return true, "configuration", fmt.Sprintf("%d partner agreements; unlisted organisations are admitted at the default plateaus", n)
			}
			return true, "configuration", fmt.Sprintf("%d partner agreements; unlisted organisations are refused", n)
		}, step: "list the partners that may ask in partners.agreements (the bilateral list)"},
		policiesCover(2, "collaboration's rules"),
		{plateau: 2, judge: builtIn("the requesting user's role is written to every audit record (ActorRole)")},
		agreedAt(plateau.Authorization, 2),
		policiesCover(3, "national authorization guideline"),
		agreedAt(plateau.Authorization, 3),
		policiesCover(4, "medical authorization protocol"),
		agreedAt(plateau.Authorization, 4),
	},
	plateau.Consent: {
		{plateau: 1, judge: func(in *inputs) (bool, string, string) {
			if _, v, ok := in.cfg.setting("consent.local"); ok && v == "true" {
				return true, "configuration", "the node keeps the consents its participants record (consent.local: true; POST /internal/consent)"
			}
			return true, "built-in", "the node refers only (consent is presumed on referral) and makes no data consultable without a consent source"
		}},
		{plateau: 2, judge: func(in *inputs) (bool, string, string) {
			k, v, fault := in.cfg.serviceURL("consent.regional.url", "consent.url")
			if fault != "" {
				return false, "configuration", "no consent service the providers query: " + fault
			}
			return true, "configuration", fmt.Sprintf("a consent service the providers query is configured (%s: %s)", k, v)
		}, step: "connect a regional consent portal's service (consent.regional.url), or Mitz directly (consent.url)"},
		{plateau: 3, judge: func(in *inputs) (bool, string, string) {
			k, v, fault := in.cfg.serviceURL("consent.url")
			if fault != "" {
				return false, "configuration", "Mitz is not configured: " + fault
			}
			return true, "configuration", fmt.Sprintf("Mitz is configured (%s: %s)", k, v)
		}, step: "migrate regional consents to Mitz and set consent.url to Mitz"},
		agreedAt(plateau.Consent, 4),
	},
	plateau.Localization: {
		{plateau: 1, judge: builtIn("exchange is targeted (Notified Pull referrals): no localization service is needed")},
		{plateau: 2, judge: func(in *inputs) (bool, string, string) {
			k, v, fault := in.cfg.serviceURL("localization.url")
			if fault != "" {
				return false, "configuration", "no localization service: " + fault
			}
			return true, "configuration", fmt.Sprintf("a localization service is configured (%s: %s)", k, v)
		}, step: "connect a localization service (referral index): set localization.url"},
		{plateau: 3, judge: func(in *inputs) (bool, string, string) {
			if u, err := url.Parse(in.cfg.AddressbookURL); err == nil && u.Scheme == "https" && u.Host != "" {
				return true, "configuration", "direct queries to plateau-3 parties are addressed through " + in.cfg.AddressbookURL
			}
			return false, "configuration", "no addressbook (an https addressbookurl) for direct queries to plateau-3 parties"
		}, step: "set addressbookurl so plateau-3 parties can be queried directly"},
		{plateau: 4, judge: func(in *inputs) (bool, string, string) {
			_, sub, _ := in.cfg.setting("consent.subscribe")
			_, mitz, fault := in.cfg.serviceURL("consent.url")
			_, _, hasNotifier := in.cfg.setting("consent.notifierura")
			switch {
			case sub != "true":
				return false, "configuration", "the node does not subscribe at Mitz (consent.subscribe is not true)"
			case fault != "":
				return false, "configuration", "consent.subscribe is true, but " + fault
			case !hasNotifier:
				return false, "configuration", "consent.subscribe is true, but consent.notifierura (whose notifications to accept) is not set"
			}
			return true, "configuration", "holdings follow the patient's consent through Mitz subscriptions (consent.subscribe at " + mitz + ")"
		}, step: "subscribe at Mitz for every holding: set consent.subscribe: true, consent.url and consent.notifierura"},
	},
	plateau.Addressing: {
		ownAddressing,
		at(2, ownAddressing),
		nationalAddressbook,
		at(4, nationalAddressbook),
		{plateau: 4, judge: builtIn("the node publishes every electronic service of each participant (notification, FHIR, authorization server, client keys) to the addressbook")},
	},
	plateau.Logging: {
		{plateau: 1, judge: func(in *inputs) (bool, string, string) {
			if in.cfg.DataDir == "" {
				return false, "configuration", "datadir is not set, so there is no audit log"
			}
			return true, "configuration", "append-only, hash-chained NEN 7513 audit log in " + in.cfg.DataDir + "/audit.db; every access to patient data is recorded"
		}, step: "set datadir"},
		{plateau: 1, judge: func(in *inputs) (bool, string, string) {
			ok, text := in.cfg.checkpointKey()
			return ok, "configuration", text
		}, step: "point audit.checkpointkeyfile at a readable PEM private key, or leave it out to have the node create one in datadir"},
		{plateau: 2, judge: builtIn("the own log is available on request: GET /internal/audit for the participant, as FHIR AuditEvents")},
		{plateau: 3, judge: func(*inputs) (bool, string, string) {
			return false, "configuration", "the node does not ship its audit log to a central logging and monitoring service"
		}, step: "ship the audit log to the central logging and monitoring service of the national agreements (NEN 7513), in order and without loss"},
		{plateau: 4, judge: func(*inputs) (bool, string, string) {
			return false, "configuration", "no monitoring of the log under the national agreements is configured"
		}, step: "take part in the national monitoring and checking of the log (NEN 7510, 7512, 7513)"},
	},
	plateau.Network: {
		mtls, clientCert,
		at(2, mtls), at(2, clientCert),
		tls13,
		at(4, tls13),
		{plateau: 4, judge: func(in *inputs) (bool, string, string) {
			if in.cfg.Public.URL == "" || isLocal(in.cfg.Public.URL) {
				return false, "configuration", "the public URL is not an address reachable nationally (public.url)"
			}
			return true, "configuration", "public URL " + in.cfg.Public.URL
		}, step: "publish the node at a nationally reachable address on a secure network (public.url)"},
	},
}

var ownAddressing = criterion{plateau: 1, judge: func(in *inputs) (bool, string, string) {
	if books := in.cfg.addressbooks(); len(books) > 0 {
		return true, "configuration", "endpoints are found in the addressbook at " + strings.Join(books, ", ")
	}
	var own []string
	for _, a := range in.cfg.Partners.Agreements {
		if a.Endpoints.IsZero() {
			return false, "configuration", "no addressbook is configured, and the agreement with " + agreementName(a) + " lists no endpoints"
		}
		own = append(own, agreementName(a))
	}
	if len(own) == 0 {
		return false, "configuration", "no addressbook is configured and no agreement lists endpoints"
	}
	return true, "configuration", "own mechanism: the agreements list the endpoints of " + strings.Join(own, ", ")
}, step: "set addressbookurl (or addressbook.directories), or list each partner's endpoints in its agreement"}

var nationalAddressbook = criterion{plateau: 3, judge: func(in *inputs) (bool, string, string) {
	books := in.cfg.addressbooks()
	if len(books) == 0 {
		return false, "configuration", "no addressbook: partners are addressed by the agreements' own endpoints"
	}
	for _, b := range books {
		if !isLocal(b) {
			return true, "configuration", "the addressbook " + b + " is reachable beyond this network"
		}
	}
	return false, "configuration", "the addressbook " + strings.Join(books, ", ") + " is a local one, not the national addressbook (ZORG-AB)"
}, step: "point addressbookurl (or addressbook.directories) at ZORG-AB and list the GtK endpoint there"}

// agreementOf returns the agreement that covers ura in the configuration,
// the default one, or nil.
func (in *inputs) agreementOf(ura string) *plateau.PartnerConfig {
	for i, a := range in.cfg.Partners.Agreements {
		for _, u := range a.URAs() {
			if u == ura {
				return &in.cfg.Partners.Agreements[i]
			}
		}
	}
	if in.cfg.Partners.Default != nil {
		return &plateau.PartnerConfig{Plateaus: in.cfg.Partners.Default}
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// agreementName names an agreement in evidence.
func agreementName(a plateau.PartnerConfig) string {
	if a.Name != "" {
		return a.Name
	}
	return strings.Join(a.URAs(), ", ")
}
