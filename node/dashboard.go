package node

import (
	"context"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/plateau"
)

// The node's own dashboard (docs/operations.md, "Dashboard"): what an
// operator checks first, on the internal listener. Counts and identifiers
// of organisations only — never a patient: refusals are read from the
// audit log but only their status, interaction and partner are shown.

//go:embed dashboard.html
var dashboardHTML string

var dashboardTmpl = template.Must(template.New("dashboard").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"left": func(t time.Time) string {
		d := time.Until(t).Round(time.Minute)
		if d < 0 {
			return "EXPIRED " + (-d).String() + " ago"
		}
		return d.String()
	},
}).Parse(dashboardHTML))

// dashboardRefusals is how many recent refused records are counted.
const dashboardRefusals = 500

type dashboardView struct {
	Node         string
	Operator     string // who is looking: an operator, or a participant (then only its own)
	Participant  string // set when a participant looks
	Generated    time.Time
	Ready        bool
	Checks       []dashCheck
	Participants []dashParticipant
	Functions    []plateau.Function
	Agreements   []dashAgreement
	Certificates []dashCert
	CRLs         []dashCert
	Depth        *dashDepth
	Audit        *dashAudit
	Refusals     []dashRefusal
	RefusalsOf   int // records read
}

type dashCheck struct{ Name, Result string }

type dashParticipant struct {
	URA, Name, FacilityType string
	OwnCertificate, Proxy   bool
}

type dashAgreement struct {
	Partner, Name string
	Plateaus      []string // in Functions' order; "—" when not agreed
}

type dashCert struct {
	What, Subject string
	Expires       time.Time
}

type dashDepth struct {
	Inbox, Outbox int
	Err           string
}

type dashAudit struct {
	Seq                int64
	Checkpoint         bool
	CheckpointSeq      int64
	CheckpointHead     string
	CheckpointTime     time.Time
	Committed, Batches int64
	Err                string
}

type dashRefusal struct {
	Status               int
	Interaction, Partner string
	Count                int
}

// dashboard renders the page for an operator (admin.tokenfile) or a
// participant (its internal API token: its own participant, certificate
// and refusals only).
func (n *Node) dashboard(w http.ResponseWriter, r *http.Request) {
	view := dashboardView{Node: n.cfg.Name, Generated: time.Now(), Functions: plateau.Functions}
	var only *participant
	token, bearer := bearerCredentials(r.Header.Get("Authorization"))
	if op, ok := n.operator(r); ok {
		view.Operator = op
	} else if p := n.participantByToken(token); p != nil && bearer {
		only, view.Participant = p, p.URA
	} else {
		n.refuseInternal(w, r, p, token != "")
		return
	}
	ctx := r.Context()
	view.Ready, view.Checks = n.readiness(ctx)
	for _, p := range n.parts.all() {
		if only != nil && p != only {
			continue
		}
		view.Participants = append(view.Participants, dashParticipant{URA: p.URA, Name: p.Name, FacilityType: p.FacilityType,
			OwnCertificate: p.CertFile != "", Proxy: p.EHR.URL != ""})
		if p.CertFile != "" {
			view.Certificates = append(view.Certificates, certOf("participant "+p.URA, p.cert.Certificate[0]))
		}
	}
	sort.Slice(view.Participants, func(i, j int) bool { return view.Participants[i].URA < view.Participants[j].URA })
	for _, a := range n.snapshot().Partners.Agreements {
		ag := dashAgreement{Partner: a.URA, Name: a.Name}
		if a.URA == "" {
			ag.Partner = "collaboration of " + strconv.Itoa(len(a.Collaboration))
		}
		for _, f := range plateau.Functions {
			v := "—"
			if p, ok := a.Plateaus[f]; ok {
				v = strconv.Itoa(p)
			}
			ag.Plateaus = append(ag.Plateaus, v)
		}
		view.Agreements = append(view.Agreements, ag)
	}
	if only == nil {
		view.Certificates = append([]dashCert{certOf("tls (the node's)", n.cert.Certificate[0])}, view.Certificates...)
		for _, c := range n.trust.CRLs() {
			view.CRLs = append(view.CRLs, dashCert{What: "CRL", Subject: c.Issuer, Expires: c.NextUpdate})
		}
		view.Depth = &dashDepth{}
		if d, err := n.npDB.Depth(ctx); err != nil {
			view.Depth.Err = "the exchange store did not answer"
			n.log.WarnContext(ctx, "dashboard: depth", "err", err)
		} else {
			view.Depth.Inbox, view.Depth.Outbox = d.Inbox, d.Outbox
		}
		view.Audit = n.auditHead(ctx)
	}
	view.Refusals, view.RefusalsOf = n.refusals(ctx, only)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := dashboardTmpl.Execute(w, view); err != nil {
		n.log.WarnContext(ctx, "dashboard: render", "err", err)
	}
}

func certOf(what string, der []byte) dashCert {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return dashCert{What: what, Subject: "unreadable: " + err.Error()}
	}
	return dashCert{What: what, Subject: leaf.Subject.CommonName, Expires: leaf.NotAfter}
}

// readiness runs /readyz's checks.
func (n *Node) readiness(ctx context.Context) (bool, []dashCheck) {
	checks := n.readyChecks()
	out := make([]dashCheck, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			res := "ok"
			if err := c.check(cctx); err != nil {
				res = err.Error()
			}
			out[i] = dashCheck{c.name, res}
		})
	}
	wg.Wait()
	ready := true
	for _, c := range out {
		ready = ready && c.Result == "ok"
	}
	return ready, out
}

func (n *Node) auditHead(ctx context.Context) *dashAudit {
	st := n.auditLog.Stats()
	a := &dashAudit{Seq: n.auditLog.LastSeq(), Committed: st.Records, Batches: st.Batches}
	cp, ok, err := n.auditLog.LastCheckpoint(ctx)
	switch {
	case err != nil:
		a.Err = "the audit log did not answer"
		n.log.WarnContext(ctx, "dashboard: last checkpoint", "err", err)
	case ok:
		a.Checkpoint, a.CheckpointSeq, a.CheckpointTime = true, cp.Seq, cp.Time
		a.CheckpointHead = hex.EncodeToString(cp.Head)
	}
	return a
}

// refusals counts the recent refused records (4xx outcomes) by status,
// interaction and partner: what was refused and to whom, never which
// patient (the records' patient, query and reason text are not read
// into the page). A participant sees those about or by itself.
func (n *Node) refusals(ctx context.Context, only *participant) ([]dashRefusal, int) {
	filters := []audit.Filter{{Outcome: []string{"4"}, Newest: true, Limit: dashboardRefusals}}
	if only != nil {
		filters = []audit.Filter{
			{Outcome: []string{"4"}, Newest: true, Limit: dashboardRefusals, Tenant: only.URA},
			{Outcome: []string{"4"}, Newest: true, Limit: dashboardRefusals, ActorURA: only.URA},
		}
	}
	type key struct {
		status               int
		interaction, partner string
	}
	counts := map[key]int{}
	seen := map[string]bool{}
	for _, f := range filters {
		recs, err := n.auditLog.List(ctx, f)
		if err != nil {
			n.log.WarnContext(ctx, "dashboard: refusals", "err", err)
			continue
		}
		for _, rec := range recs {
			if seen[rec.EventID] {
				continue
			}
			seen[rec.EventID] = true
			partner := rec.ActorURA
			if partner == "" {
				partner = "(unidentified)"
			}
			counts[key{rec.Outcome, rec.Interaction, partner}]++
		}
	}
	out := make([]dashRefusal, 0, len(counts))
	for k, c := range counts {
		out = append(out, dashRefusal{Status: k.status, Interaction: k.interaction, Partner: k.partner, Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		a, b := out[i], out[j]
		return strconv.Itoa(a.Status)+a.Interaction+a.Partner < strconv.Itoa(b.Status)+b.Interaction+b.Partner
	})
	return out, len(seen)
}
