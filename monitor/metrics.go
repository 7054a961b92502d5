package monitor

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/schakel-nl/schakel/nl"
)

// maxMetricsBytes bounds one scrape: a node's /metrics is a few hundred
// series, a multi-megabyte answer is not a node's.
const maxMetricsBytes = 8 << 20

// Sample is one scrape of a node's /metrics: every family by name.
type Sample struct {
	At       time.Time
	Families map[string]*dto.MetricFamily
}

// scrape reads a node's Prometheus text exposition.
func scrape(ctx context.Context, client *http.Client, url string) (*Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return parseMetrics(io.LimitReader(resp.Body, maxMetricsBytes), time.Now())
}

func parseMetrics(r io.Reader, at time.Time) (*Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("not Prometheus text: %w", err)
	}
	return &Sample{At: at, Families: fams}, nil
}

// merge is the samples of a node's replicas as one: every family holds
// the series of all of them, so that the sums the figures take run over
// the replicas too. The samples are not changed; At is the latest.
func merge(samples []*Sample) *Sample {
	if len(samples) == 1 {
		return samples[0]
	}
	out := &Sample{Families: map[string]*dto.MetricFamily{}}
	for _, s := range samples {
		if s.At.After(out.At) {
			out.At = s.At
		}
		for name, f := range s.Families {
			m := out.Families[name]
			if m == nil {
				m = &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type, Unit: f.Unit}
				out.Families[name] = m
			}
			m.Metric = append(m.Metric, f.Metric...)
		}
	}
	return out
}

// counted is everything a sample's counters and histograms counted: it
// falls when the process that exposes them started again.
func counted(s *Sample) float64 {
	var n float64
	for _, f := range s.Families {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				n += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				n += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return n
}

// countersOf is s with only its counters and histograms: what a restarted
// replica had counted, kept in its node's sums (a gauge is a state, not a
// count, and ends with the process).
func countersOf(s *Sample) *Sample {
	out := &Sample{At: s.At, Families: map[string]*dto.MetricFamily{}}
	for name, f := range s.Families {
		if t := f.GetType(); t == dto.MetricType_COUNTER || t == dto.MetricType_HISTOGRAM {
			out.Families[name] = f
		}
	}
	return out
}

// addCounters is what the counters and histograms of sum (nil: nothing yet)
// and s counted together, one series per label set: a node's replicas that
// started again leave one sum behind, however often they restart. A
// histogram whose buckets differ from the sum's (another release's) stays a
// series of its own.
func addCounters(sum, s *Sample) *Sample {
	if sum == nil {
		sum = &Sample{}
	}
	out := &Sample{At: sum.At, Families: map[string]*dto.MetricFamily{}}
	if s.At.After(out.At) {
		out.At = s.At
	}
	series := map[string]map[string]*dto.Metric{} // family → label set → its sum
	for _, from := range []*Sample{sum, s} {
		for name, f := range countersOf(from).Families {
			fam := out.Families[name]
			if fam == nil {
				fam = &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type, Unit: f.Unit}
				out.Families[name] = fam
				series[name] = map[string]*dto.Metric{}
			}
			for _, m := range f.GetMetric() {
				key := labelKey(m)
				if sum := series[name][key]; sum != nil && addInto(sum, m) {
					continue
				}
				c := copyCounts(m)
				if c == nil {
					continue
				}
				series[name][key] = c
				fam.Metric = append(fam.Metric, c)
			}
		}
	}
	return out
}

// labelKey identifies a series by its labels, in name order.
func labelKey(m *dto.Metric) string {
	pairs := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		pairs = append(pairs, l.GetName()+"\x00"+l.GetValue())
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "\x01")
}

// copyCounts is a new series with m's labels and counts; nil when m is
// neither a counter nor a histogram.
func copyCounts(m *dto.Metric) *dto.Metric {
	out := &dto.Metric{Label: m.GetLabel()}
	switch {
	case m.GetCounter() != nil:
		v := m.GetCounter().GetValue()
		out.Counter = &dto.Counter{Value: &v}
	case m.GetHistogram() != nil:
		h := m.GetHistogram()
		n, sum := h.GetSampleCount(), h.GetSampleSum()
		out.Histogram = &dto.Histogram{SampleCount: &n, SampleSum: &sum}
		for _, b := range h.GetBucket() {
			c, le := b.GetCumulativeCount(), b.GetUpperBound()
			out.Histogram.Bucket = append(out.Histogram.Bucket, &dto.Bucket{CumulativeCount: &c, UpperBound: &le})
		}
	default:
		return nil
	}
	return out
}

// addInto adds m's counts to sum (a series copyCounts made); false when
// they cannot be added: another kind, or histogram buckets that differ.
func addInto(sum, m *dto.Metric) bool {
	switch {
	case sum.Counter != nil && m.GetCounter() != nil:
		*sum.Counter.Value += m.GetCounter().GetValue()
		return true
	case sum.Histogram != nil && m.GetHistogram() != nil:
		h, add := sum.Histogram, m.GetHistogram()
		if len(h.Bucket) != len(add.GetBucket()) {
			return false
		}
		for i, b := range add.GetBucket() {
			if h.Bucket[i].GetUpperBound() != b.GetUpperBound() {
				return false
			}
		}
		*h.SampleCount += add.GetSampleCount()
		*h.SampleSum += add.GetSampleSum()
		for i, b := range add.GetBucket() {
			*h.Bucket[i].CumulativeCount += b.GetCumulativeCount()
		}
		return true
	}
	return false
}

// value is a counter's, gauge's or untyped metric's value.
func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// label is a label's value, redacted: it is shown on a page. A name of
// the form "a|b" takes the first of the labels present.
func label(m *dto.Metric, name string) string {
	for _, n := range strings.Split(name, "|") {
		for _, l := range m.GetLabel() {
			if l.GetName() == n {
				return redact(l.GetValue())
			}
		}
	}
	return ""
}

func hasLabel(f *dto.MetricFamily, name string) bool {
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return true
			}
		}
	}
	return false
}

// Count is a counter summed over some label set: its total since the node
// started and its rate over the last scrape interval (per second; NaN when
// there is no earlier scrape to compare with).
type Count struct {
	Key   []string // the label values that identify it
	Total float64
	Rate  float64
}

// sumBy sums a counter family's series by the values of labels; keep, when
// set, selects the series.
func sumBy(s *Sample, family string, labels []string, keep func(*dto.Metric) bool) map[string]*Count {
	out := map[string]*Count{}
	if s == nil {
		return out
	}
	f := s.Families[family]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		if keep != nil && !keep(m) {
			continue
		}
		key := make([]string, len(labels))
		for i, l := range labels {
			key[i] = label(m, l)
		}
		k := strings.Join(key, "\x00")
		c := out[k]
		if c == nil {
			c = &Count{Key: key}
			out[k] = c
		}
		c.Total += value(m)
	}
	return out
}

// counts is sumBy with rates against the previous sample, sorted by key.
func counts(cur, prev *Sample, family string, labels []string, keep func(*dto.Metric) bool) []Count {
	now := sumBy(cur, family, labels, keep)
	var before map[string]*Count
	var dt float64
	if prev != nil && cur != nil {
		before = sumBy(prev, family, labels, keep)
		dt = cur.At.Sub(prev.At).Seconds()
	}
	out := make([]Count, 0, len(now))
	for k, c := range now {
		c.Rate = math.NaN()
		if b, ok := before[k]; ok && dt > 0 && c.Total >= b.Total {
			c.Rate = (c.Total - b.Total) / dt
		} else if before != nil && !ok && dt > 0 {
			c.Rate = c.Total / dt // a series that appeared since the last scrape
		}
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.Join(out[i].Key, "\x00") < strings.Join(out[j].Key, "\x00")
	})
	return out
}

// Latency is a histogram's mean and 95th percentile, over the last scrape
// interval when something was observed in it, else since the node started.
type Latency struct {
	Key       []string
	Count     uint64
	Mean, P95 float64 // seconds
	Window    string  // "last interval" or "since start"
}

type hist struct {
	count   uint64
	sum     float64
	buckets map[float64]uint64 // upper bound → cumulative count
}

func histBy(s *Sample, family string, labels []string) map[string]*hist {
	out := map[string]*hist{}
	if s == nil || s.Families[family] == nil {
		return out
	}
	for _, m := range s.Families[family].GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		key := make([]string, len(labels))
		for i, l := range labels {
			key[i] = label(m, l)
		}
		k := strings.Join(key, "\x00")
		a := out[k]
		if a == nil {
			a = &hist{buckets: map[float64]uint64{}}
			out[k] = a
		}
		a.count += h.GetSampleCount()
		a.sum += h.GetSampleSum()
		for _, b := range h.GetBucket() {
			a.buckets[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
	return out
}

// latencies reads a histogram family summed by labels.
func latencies(cur, prev *Sample, family string, labels []string) []Latency {
	now := histBy(cur, family, labels)
	before := histBy(prev, family, labels)
	var out []Latency
	for k, h := range now {
		window := "since start"
		if b, ok := before[k]; ok && h.count > b.count {
			d := &hist{count: h.count - b.count, sum: h.sum - b.sum, buckets: map[float64]uint64{}}
			for ub, c := range h.buckets {
				d.buckets[ub] = c - min(c, b.buckets[ub])
			}
			h, window = d, "last interval"
		}
		if h.count == 0 {
			continue
		}
		out = append(out, Latency{Key: strings.Split(k, "\x00"), Count: h.count, Mean: h.sum / float64(h.count),
			P95: quantile(0.95, h), Window: window})
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.Join(out[i].Key, "\x00") < strings.Join(out[j].Key, "\x00")
	})
	return out
}

// quantile estimates a quantile from cumulative buckets as Prometheus'
// histogram_quantile does: linear within the bucket it falls in.
func quantile(q float64, h *hist) float64 {
	bounds := make([]float64, 0, len(h.buckets))
	for ub := range h.buckets {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	rank := q * float64(h.count)
	lower, below := 0.0, uint64(0)
	for _, ub := range bounds {
		c := h.buckets[ub]
		if float64(c) >= rank {
			if math.IsInf(ub, 1) {
				return lower // beyond the last finite bound: its bound is the best estimate
			}
			if c == below {
				return ub
			}
			return lower + (ub-lower)*(rank-float64(below))/float64(c-below)
		}
		lower, below = ub, c
	}
	return lower
}

// formatRate shows a per-second rate per minute, which reads better at the
// low volumes of one node.
func formatRate(r float64) string {
	if math.IsNaN(r) {
		return "—"
	}
	return strconv.FormatFloat(r*60, 'f', 1, 64) + "/min"
}

func formatSeconds(s float64) string {
	switch {
	case s < 0.001:
		return strconv.FormatFloat(s*1e6, 'f', 0, 64) + " µs"
	case s < 1:
		return strconv.FormatFloat(s*1e3, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(s, 'f', 2, 64) + " s"
}

// redact blanks every run of nine digits that is a valid BSN. Metric
// labels should never carry one, but the monitor shows label values of
// nodes it does not control, and it shows no patient data, ever.
func redact(s string) string {
	var out strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		switch {
		case j == i:
			out.WriteByte(s[i])
			i++
		case j-i == 9 && nl.ValidateBSN(s[i:j]) == nil:
			out.WriteString("[no BSN]")
			i = j
		default:
			out.WriteString(s[i:j])
			i = j
		}
	}
	return out.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
