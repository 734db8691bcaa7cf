package bench

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

func TestSummarize(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(samples)
	if s.N != 100 || s.P50 != 50*time.Millisecond || s.P90 != 90*time.Millisecond || s.P99 != 99*time.Millisecond ||
		s.Max != 100*time.Millisecond || s.Min != time.Millisecond {
		t.Fatalf("Summarize = %+v", s)
	}
	if got, want := s.Mean, 50500*time.Microsecond; got != want {
		t.Fatalf("mean = %s, want %s", got, want)
	}
	if got, want := len(s.CDF), len(cdfQuantiles); got != want {
		t.Fatalf("CDF has %d points, want %d", got, want)
	}
	for i, q := range s.CDF {
		if i > 0 && (q.Q < s.CDF[i-1].Q || q.D < s.CDF[i-1].D) {
			t.Fatalf("CDF not monotonic at %d: %+v after %+v", i, q, s.CDF[i-1])
		}
	}
	if first, last := s.CDF[0], s.CDF[len(s.CDF)-1]; first.D != time.Millisecond || last.D != 100*time.Millisecond {
		t.Fatalf("CDF runs from %s to %s, want 1ms to 100ms", first.D, last.D)
	}
	if got := Summarize(nil); got.N != 0 || got.CDF != nil {
		t.Fatalf("Summarize(nil) = %+v", got)
	}
}

func TestPropagation_InProc(t *testing.T) {
	t.Parallel()
	res, err := Propagation(t.Context(), PropagationConfig{Mode: ModeInProc, Verifiers: 2, Revocations: 5, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	checkPropagation(t, res, 2, 5)
}

func TestPropagation_Procs(t *testing.T) {
	t.Parallel()
	res, err := Propagation(t.Context(), PropagationConfig{Mode: ModeProcs, Verifiers: 2, Revocations: 3,
		Dir: t.TempDir(), Command: testCommand(t)})
	if err != nil {
		t.Fatal(err)
	}
	checkPropagation(t, res, 2, 3)
}

func checkPropagation(t *testing.T, res *PropagationResult, verifiers, revocations int) {
	t.Helper()
	want := verifiers * revocations
	for name, s := range map[string]Summary{"herald": res.Herald, "herald after return": res.HeraldAfterReturn,
		"raw": res.RawFanOut, "raw after ack": res.RawAfterAck} {
		if s.N != want {
			t.Errorf("%s: %d samples, want %d", name, s.N, want)
		}
	}
	if res.RevokeCall.N != revocations || res.PublishCall.N != revocations {
		t.Errorf("calls: %d revoke, %d publish; want %d each", res.RevokeCall.N, res.PublishCall.N, revocations)
	}
	if res.Herald.Min <= 0 || res.RawFanOut.Min <= 0 {
		t.Errorf("latencies from the call must be positive: herald %s, raw %s", res.Herald.Min, res.RawFanOut.Min)
	}
	if res.P99Ratio < 0 || res.P99RatioFromCall <= 0 {
		t.Errorf("p99 ratios = %v after return, %v from the call", res.P99Ratio, res.P99RatioFromCall)
	}
}

func TestPropagation_BadConfig(t *testing.T) {
	_, err := Propagation(t.Context(), PropagationConfig{Mode: ModeProcs})
	if err == nil {
		t.Fatal("no error for procs mode without a dir or command")
	}
	if _, err := Propagation(t.Context(), PropagationConfig{Mode: "threads", Dir: t.TempDir()}); err == nil {
		t.Fatal("no error for an unknown mode")
	}
}

// BenchmarkPropagation measures revocation-to-rejection on three
// in-process verifiers over 200 revocations, with raw JetStream fan-out to
// three consumers in the same run as the floor. Latencies are reported as
// custom metrics.
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
		b.ReportMetric(float64(res.RevokeCall.P50.Microseconds()), "revoke-call-p50-µs")
		b.ReportMetric(float64(res.RevokeCall.P99.Microseconds()), "revoke-call-p99-µs")
		b.ReportMetric(float64(res.PublishCall.P50.Microseconds()), "publish-call-p50-µs")
		b.ReportMetric(float64(res.PublishCall.P99.Microseconds()), "publish-call-p99-µs")
		b.ReportMetric(res.P99RatioFromCall, "p99-ratio-from-call")
		b.ReportMetric(res.CallP50Ratio, "revoke-call-p50-ratio")
		b.ReportMetric(res.CallP99Ratio, "revoke-call-p99-ratio")
	}
}

// TestPropagation_NoGoroutineLeft checks that a scenario stops every
// goroutine it started, its servers' included.
func TestPropagation_NoGoroutineLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	if _, err := Propagation(t.Context(), PropagationConfig{Verifiers: 2, Revocations: 2, Dir: t.TempDir(),
		Mode: ModeProcs, Command: testCommand(t)}); err != nil {
		t.Fatal(err)
	}
	// nats-server's setup of a stream source (HERALD_SSF sources HERALD)
	// waits up to 30 s for its consumer's reply, whether or not the
	// server has shut down meanwhile: its goroutine ends by itself then.
	bustest.WaitFor(t, 40*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before:\n%s", n, before, stacks())
		}
		return nil
	})
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
