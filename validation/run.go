package validation

import (
	"context"
	"crypto/tls"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// Report is the outcome of a run. Its JSON form is what a proof of
// validation hashes.
type Report struct {
	Kit         string    `json:"kit"`
	Target      Target    `json:"target"`
	Role        Role      `json:"role"`
	Counterpart Role      `json:"counterpart"`
	Care        string    `json:"care"`
	Plateau     int       `json:"plateau"`
	Vendor      string    `json:"vendor,omitempty"`
	Version     string    `json:"version,omitempty"`
	KitURA      string    `json:"kitUra"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Results     []Result  `json:"results"`
	Summary     Summary   `json:"summary"`
}

// Result is one case's verdict with what it checked.
type Result struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Roles       []Role `json:"roles,omitempty"`
	Application string `json:"application,omitempty"`
	Mandatory   bool   `json:"mandatory"`
	Negative    bool   `json:"negative"`
	Requirement string `json:"requirement"`
	Source      string `json:"source"`
	Verdict
	Millis int64 `json:"millis"`
}

// Summary counts the verdicts.
type Summary struct {
	Total            int  `json:"total"`
	Passed           int  `json:"passed"`
	Failed           int  `json:"failed"`
	Skipped          int  `json:"skipped"`
	Errors           int  `json:"errors"`
	MandatoryNotPass int  `json:"mandatoryNotPassed"`
	Conformant       bool `json:"conformant"` // every mandatory case passed
}

// KitName names this kit in reports and proofs.
const KitName = "Schakel validation kit 1"

// Run validates the node cfg.Target in cfg.Role for cfg.Care: it starts the
// kit's counterpart, finds the target, runs every case the registry holds
// for that role, application and plateau, and returns the report. An
// error means the run itself could not take place; a non-conformant node
// is a report whose Summary says so.
func Run(ctx context.Context, cfg Config, reg *Registry) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := reg.Runnable(cfg.Role, cfg.Care, cfg.Plateau); err != nil {
		return nil, err
	}
	app := reg.apps[cfg.Care]
	client := func(cert tls.Certificate) *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: pki.ClientTLSConfig(cert, cfg.Kit.Roots), ForceAttemptHTTP2: true}}
	}
	env := &Env{Config: cfg, App: app, Driver: cfg.Driver, red: &redactor{}, memo: map[string]*memo{},
		HTTP: client(cfg.Kit.Cert), AltHTTP: client(cfg.Kit.AltCert), StrangerHTTP: client(cfg.Kit.Stranger)}
	defer env.HTTP.CloseIdleConnections()
	env.OAuth = &oauth.Client{ClientID: cfg.Kit.URA, Key: cfg.Kit.Signing, HTTP: env.HTTP}
	env.started = time.Now().UTC()
	rep := &Report{Kit: KitName, Role: cfg.Role, Counterpart: cfg.Role.Counterpart(), Care: cfg.Care, Plateau: cfg.Plateau,
		Vendor: cfg.Vendor, Version: cfg.Version, KitURA: cfg.Kit.URA, Started: env.started}
	var err error
	if env.Target, err = discover(ctx, cfg, app, env.HTTP); err != nil {
		return nil, err
	}
	rep.Target = env.Target
	if env.Counterpart, err = newCounterpart(ctx, cfg, app, env.red, env.HTTP); err != nil {
		return nil, err
	}
	defer env.Counterpart.Close()

	cases := reg.Select(cfg.Role, cfg.Care, cfg.Plateau)
	for i := range cases {
		c := &cases[i]
		if cfg.Progress != nil {
			cfg.Progress(i, len(cases), c)
		}
		rep.Results = append(rep.Results, runCase(ctx, env, c))
	}
	if cfg.Progress != nil {
		cfg.Progress(len(cases), len(cases), nil)
	}
	rep.Finished = time.Now().UTC()
	rep.Summary = summarize(rep.Results)
	return rep, nil
}

// caseTimeout bounds one case, waits included.
const caseTimeout = 2 * time.Minute

func runCase(ctx context.Context, env *Env, c *Case) (res Result) {
	res = Result{ID: c.ID, Title: c.Title, Roles: c.Roles, Application: c.Application, Mandatory: c.Mandatory,
		Negative: c.Negative, Requirement: c.Requirement, Source: c.Source}
	cctx, cancel := context.WithTimeout(ctx, caseTimeout)
	defer cancel()
	p := &Probe{env: env, ctx: cctx}
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			res.Verdict = Error("the kit failed in this case: %v\n%s", r, debug.Stack())
		}
		res.Millis = time.Since(start).Milliseconds()
	}()
	v := c.Run(cctx, p)
	v.Exchanges = append(p.ex, v.Exchanges...)
	if v.Status == "" {
		v.Status = Errored
	}
	res.Verdict = v
	return res
}

func summarize(rs []Result) Summary {
	s := Summary{Total: len(rs)}
	for _, r := range rs {
		switch r.Status {
		case Passed:
			s.Passed++
		case Failed:
			s.Failed++
		case Skipped:
			s.Skipped++
		default:
			s.Errors++
		}
		if r.Mandatory && r.Status != Passed {
			s.MandatoryNotPass++
		}
	}
	s.Conformant = s.Total > 0 && s.MandatoryNotPass == 0
	return s
}
