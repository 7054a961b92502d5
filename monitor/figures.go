package monitor

import (
	"fmt"
	"math"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// The series the monitor reads. A node that does not export one shows
// "not reported" where it would appear: the monitor watches nodes of
// other versions and vendors too, and never guesses a figure.
const (
	seriesRequests    = "schakel_http_requests_total"             // {listener, code}
	seriesDuration    = "schakel_http_request_duration_seconds"   // {listener}
	seriesPanics      = "schakel_http_panics_total"               // {listener}
	seriesExchanges   = "schakel_exchanges_total"                 // {application, pattern, outcome, role}
	seriesExchangeDur = "schakel_exchange_duration_seconds"       // {application, pattern}
	seriesTokens      = "schakel_oauth_token_requests_total"      // {outcome: issued or the RFC 6749 error}
	seriesVerify      = "schakel_oauth_token_verifications_total" // {outcome: valid, invalid}
	seriesConsent     = "schakel_consent_decisions_total"         // {source, decision}
	seriesSteps       = "schakel_notifiedpull_steps_total"        // {step}
)

// stepOutcomes are the Notified Pull steps that begin or end an exchange,
// as the outcome they stand for; the steps in between (token, grant,
// query, ...) are not exchanges.
var stepOutcomes = map[string]string{"notify": "sent", "received": "received", "completed": "completed",
	"failed": "failed", "cancel": "cancelled", "withdrawn": "withdrawn"}

// Figures are a node's exchange figures from two successive scrapes.
type Figures struct {
	// Exchanges per care application, pattern and outcome; Source names
	// the series they come from, "" when the node reports none.
	Exchanges       []Count
	ExchangesSource string
	ExchangeLatency []Latency
	// Requests per listener and status class.
	Requests       []Count
	RequestsSource string
	RequestLatency []Latency
	Errors         float64 // 5xx answers and recovered panics
	ErrorsReported bool
	Refusals       []Count // per reason, where the node reports one
	RefusalsSource string
	RefusedAnswers []Count // the 4xx answers per listener, route and code
	RefusalsTotal  float64
	// RefusalsReported is whether the node reports refusals at all.
	RefusalsReported bool
	FamiliesPresent  []Family
}

// Family is one metric family a node exports, for the drill-down.
type Family struct {
	Name, Type, Help string
	Series           int
}

func figures(cur, prev *Sample) Figures {
	var f Figures
	if cur == nil {
		return f
	}
	switch {
	case cur.Families[seriesExchanges] != nil:
		f.Exchanges = counts(cur, prev, seriesExchanges, []string{"application|care", "pattern", "outcome", "role"}, nil)
		f.ExchangesSource = seriesExchanges
		f.ExchangeLatency = latencies(cur, prev, seriesExchangeDur, []string{"application|care", "pattern"})
	case cur.Families[seriesSteps] != nil:
		// A node without exchange series still counts its Notified Pull
		// steps: a referral sent or received is an exchange begun, a
		// completed or failed pull its outcome. The care application is
		// not in these series.
		for _, c := range counts(cur, prev, seriesSteps, []string{"step"}, nil) {
			if o, ok := stepOutcomes[c.Key[0]]; ok {
				f.Exchanges = append(f.Exchanges, Count{Key: []string{"", "notified-pull", o, ""}, Total: c.Total, Rate: c.Rate})
			}
		}
		f.ExchangesSource = seriesSteps
	}
	if cur.Families[seriesRequests] != nil {
		f.RequestsSource = seriesRequests
		f.ErrorsReported = true
		class := func(code string) string {
			if len(code) == 3 {
				return code[:1] + "xx"
			}
			return code
		}
		byCode := counts(cur, prev, seriesRequests, []string{"listener", "code"}, nil)
		merged := map[string]*Count{}
		var order []string
		for _, c := range byCode {
			k := c.Key[0] + "\x00" + class(c.Key[1])
			m := merged[k]
			if m == nil {
				m = &Count{Key: []string{c.Key[0], class(c.Key[1])}, Rate: math.NaN()}
				merged[k] = m
				order = append(order, k)
			}
			m.add(c)
			if strings.HasPrefix(c.Key[1], "5") {
				f.Errors += c.Total
			}
		}
		sort.Strings(order)
		for _, k := range order {
			f.Requests = append(f.Requests, *merged[k])
		}
		f.RequestLatency = latencies(cur, prev, seriesDuration, []string{"listener"})
	}
	if fam := cur.Families[seriesPanics]; fam != nil {
		f.ErrorsReported = true
		for _, m := range fam.GetMetric() {
			f.Errors += value(m)
		}
	}
	f.Refusals, f.RefusalsSource = refusals(cur, prev)
	f.RefusedAnswers = refusedAnswers(cur, prev)
	// Every refusal is an answer 4xx: their count is the total, whatever
	// share of them the node also gives a reason for.
	for _, c := range f.RefusedAnswers {
		f.RefusalsTotal += c.Total
	}
	if f.RefusedAnswers == nil {
		for _, c := range f.Refusals {
			f.RefusalsTotal += c.Total
		}
	}
	f.RefusalsReported = f.RefusalsSource != "" || f.RefusedAnswers != nil
	names := make([]string, 0, len(cur.Families))
	for n := range cur.Families {
		if strings.HasPrefix(n, "schakel_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fam := cur.Families[n]
		f.FamiliesPresent = append(f.FamiliesPresent, Family{Name: n, Type: strings.ToLower(fam.GetType().String()),
			Help: fam.GetHelp(), Series: len(fam.GetMetric())})
	}
	return f
}

// refusals counts refusals by reason: from every counter family whose
// name says it counts refusals and which carries a reason label, and from
// the outcomes of the token endpoint, of access-token checks and of
// consent questions that are refusals.
func refusals(cur, prev *Sample) ([]Count, string) {
	type source struct {
		family, label, prefix string
		keep                  func(*dto.Metric) bool
	}
	var sources []source
	var names []string
	for n, fam := range cur.Families {
		if strings.HasPrefix(n, "schakel_") && strings.Contains(n, "refus") && fam.GetType() == dto.MetricType_COUNTER && hasLabel(fam, "reason") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		sources = append(sources, source{family: n, label: "reason"})
	}
	sources = append(sources,
		source{seriesTokens, "outcome", "token refused: ", func(m *dto.Metric) bool { return label(m, "outcome") != "issued" }},
		source{seriesVerify, "outcome", "access token ", func(m *dto.Metric) bool { return label(m, "outcome") == "invalid" }},
		source{seriesConsent, "decision", "consent ", func(m *dto.Metric) bool { return label(m, "decision") == "Deny" }})
	total := map[string]*Count{}
	var used []string
	for _, src := range sources {
		if cur.Families[src.family] == nil {
			continue
		}
		used = append(used, src.family)
		for _, c := range counts(cur, prev, src.family, []string{src.label}, src.keep) {
			k := src.prefix + c.Key[0]
			t := total[k]
			if t == nil {
				t = &Count{Key: []string{k}, Rate: math.NaN()}
				total[k] = t
			}
			t.add(c)
		}
	}
	if len(used) == 0 {
		return nil, ""
	}
	out := make([]Count, 0, len(total))
	for _, c := range total {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key[0] < out[j].Key[0] })
	return out, strings.Join(used, ", ")
}

// refusedAnswers are the 4xx answers per listener, route (when the node
// labels it) and status code; nil when the node reports no requests.
func refusedAnswers(cur, prev *Sample) []Count {
	if cur.Families[seriesRequests] == nil {
		return nil
	}
	out := []Count{}
	for _, c := range counts(cur, prev, seriesRequests, []string{"listener", "route", "code"}, func(m *dto.Metric) bool {
		return strings.HasPrefix(label(m, "code"), "4")
	}) {
		what := fmt.Sprintf("HTTP %s on the %s listener", c.Key[2], c.Key[0])
		if c.Key[1] != "" {
			what += ", " + c.Key[1]
		}
		out = append(out, Count{Key: []string{what}, Total: c.Total, Rate: c.Rate})
	}
	return out
}

// add sums c into m; a rate unknown for every part stays unknown.
func (m *Count) add(c Count) {
	m.Total += c.Total
	if !math.IsNaN(c.Rate) {
		if math.IsNaN(m.Rate) {
			m.Rate = 0
		}
		m.Rate += c.Rate
	}
}
