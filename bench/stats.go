package bench

import (
	"fmt"
	"slices"
	"time"
)

// Summary describes a latency distribution: its percentiles (nearest rank)
// and enough quantiles to draw its CDF.
type Summary struct {
	N    int           `json:"n"`
	Mean time.Duration `json:"mean_ns"`
	Min  time.Duration `json:"min_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	// CDF holds the distribution at the quantiles of cdfQuantiles, for plots.
	CDF []Quantile `json:"cdf,omitempty"`
}

// Quantile is one point of a CDF: a fraction Q of the samples took at most D.
type Quantile struct {
	Q float64       `json:"q"`
	D time.Duration `json:"ns"`
}

// cdfQuantiles are the points a Summary keeps of its distribution: every
// percent, and a finer tail.
var cdfQuantiles = func() []float64 {
	var qs []float64
	for i := 0; i <= 100; i++ {
		qs = append(qs, float64(i)/100)
	}
	qs = append(qs, 0.995, 0.999)
	slices.Sort(qs)
	return qs
}()

// Summarize returns the distribution of samples. It sorts samples.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	var total time.Duration
	for _, s := range samples {
		total += s
	}
	s := Summary{
		N: len(samples), Mean: total / time.Duration(len(samples)), Min: samples[0],
		P50: quantile(samples, 0.50), P90: quantile(samples, 0.90), P99: quantile(samples, 0.99),
		Max: samples[len(samples)-1],
	}
	for _, q := range cdfQuantiles {
		s.CDF = append(s.CDF, Quantile{Q: q, D: quantile(samples, q)})
	}
	return s
}

// quantile returns the nearest-rank q-quantile of sorted samples.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// String returns the summary on one line, for logs.
func (s Summary) String() string {
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s max=%s", s.N, s.P50, s.P90, s.P99, s.Max)
}

// ratio returns a/b, or 0 when b is zero, so that JSON never holds Inf.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
