package testutil

import (
	"io"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Metrics is one scrape of a Prometheus text exposition, parsed.
type Metrics map[string]*dto.MetricFamily

// ParseMetrics parses a GET /metrics body; a malformed exposition fails t.
func ParseMetrics(t testing.TB, body io.Reader) Metrics {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(body)
	require.NoError(t, err, "the exposition parses")
	return fams
}

// Value is the value of the sample of name whose labels include labels
// (a counter's or gauge's value, a histogram's or summary's count); ok is
// false when no such sample exists.
func (m Metrics) Value(name string, labels map[string]string) (v float64, ok bool) {
	fam, found := m[name]
	if !found {
		return 0, false
	}
	for _, s := range fam.GetMetric() {
		if !hasLabels(s, labels) {
			continue
		}
		switch {
		case s.GetCounter() != nil:
			return s.GetCounter().GetValue(), true
		case s.GetGauge() != nil:
			return s.GetGauge().GetValue(), true
		case s.GetHistogram() != nil:
			return float64(s.GetHistogram().GetSampleCount()), true
		case s.GetSummary() != nil:
			return float64(s.GetSummary().GetSampleCount()), true
		case s.GetUntyped() != nil:
			return s.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func hasLabels(s *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range s.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
