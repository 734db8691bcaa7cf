package bench

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(samples)
	if s.N != 100 || s.P50 != 50*time.Millisecond || s.P90 != 90*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Fatalf("Summarize = %+v", s)
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Fatalf("Summarize(nil) = %+v", got)
	}
}

func TestPropagation_Small(t *testing.T) {
	res, err := Propagation(t.Context(), PropagationConfig{Verifiers: 2, Revocations: 20, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Herald.N != 40 || res.RawFanOut.N != 40 {
		t.Fatalf("samples: herald %d, raw %d; want 40 each", res.Herald.N, res.RawFanOut.N)
	}
}

// BenchmarkPropagation measures revocation-to-rejection on three verifiers
// over 200 revocations, with raw JetStream fan-out to three consumers in
// the same run as the floor. Latencies are reported as custom metrics.
func BenchmarkPropagation(b *testing.B) {
	for b.Loop() {
		res, err := Propagation(b.Context(), PropagationConfig{Verifiers: 3, Revocations: 200, Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.Herald.P50.Microseconds()), "herald-p50-µs")
		b.ReportMetric(float64(res.Herald.P99.Microseconds()), "herald-p99-µs")
		b.ReportMetric(float64(res.HeraldAfterReturn.P99.Microseconds()), "herald-after-return-p99-µs")
		b.ReportMetric(float64(res.RawFanOut.P50.Microseconds()), "raw-p50-µs")
		b.ReportMetric(float64(res.RawFanOut.P99.Microseconds()), "raw-p99-µs")
		b.ReportMetric(float64(res.Herald.P99)/float64(res.RawFanOut.P99), "p99-ratio")
	}
}
