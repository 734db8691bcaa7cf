package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Micro is the cost of one in-process operation.
type Micro struct {
	// NsPerOp is the cost of a call: the median over microRounds rounds of
	// each round's mean, from batches timed as a whole (no timer
	// overhead). The median keeps a burst of other work on the machine
	// out of the figure.
	NsPerOp float64 `json:"ns_per_op"`
	// Ops is how many calls the rounds made.
	Ops int `json:"ops"`
	// Latency is the distribution of individually timed calls. Each sample
	// includes reading the clock twice (TimerOverhead in the same report).
	Latency Summary `json:"latency"`
}

// microRounds is how many rounds a Micro's mean is measured in.
const microRounds = 10

// maxLatencySamples bounds the individually timed calls of a Micro.
const maxLatencySamples = 200_000

// measureMicro measures fn alone, as compareMicros does.
func measureMicro(ctx context.Context, d time.Duration, fn func(i int) error) (Micro, error) {
	ms, err := compareMicros(ctx, d, fn)
	if err != nil {
		return Micro{}, err
	}
	return ms[0], nil
}

// compareMicros measures fns, each called with 0, 1, 2, ...: a warm-up of
// d/10 each, then microRounds rounds in which every fn in turn runs
// batches for d/microRounds (the cost per call, so that a burst of other
// work on the machine hits them all alike), then up to d/2 each of
// individually timed calls (the distribution). fns must not block.
func compareMicros(ctx context.Context, d time.Duration, fns ...func(i int) error) ([]Micro, error) {
	const batch = 64
	calls := make([]int, len(fns))
	run := func(f int, until time.Time) (int, error) {
		n := 0
		for time.Now().Before(until) {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			for range batch {
				if err := fns[f](calls[f]); err != nil {
					return n, err
				}
				calls[f]++
			}
			n += batch
		}
		return n, nil
	}
	for f := range fns {
		if _, err := run(f, time.Now().Add(d/10)); err != nil {
			return nil, err
		}
	}
	runtime.GC()
	ms := make([]Micro, len(fns))
	rounds := make([][]float64, len(fns))
	for range microRounds {
		for f := range fns {
			start := time.Now()
			n, err := run(f, start.Add(d/microRounds))
			if err != nil {
				return nil, err
			}
			rounds[f] = append(rounds[f], float64(time.Since(start).Nanoseconds())/float64(n))
			ms[f].Ops += n
		}
	}
	for f := range fns {
		r := rounds[f]
		slices.Sort(r)
		ms[f].NsPerOp = (r[(len(r)-1)/2] + r[len(r)/2]) / 2
	}

	for f, fn := range fns {
		runtime.GC()
		samples := make([]time.Duration, 0, min(maxLatencySamples, max(1000, int(float64(d/2)/ms[f].NsPerOp))))
		until := time.Now().Add(d / 2)
		for len(samples) < cap(samples) {
			if len(samples)%batch == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if time.Now().After(until) {
					break
				}
			}
			t0 := time.Now()
			if err := fn(calls[f]); err != nil {
				return nil, err
			}
			samples = append(samples, time.Since(t0))
			calls[f]++
		}
		ms[f].Latency = Summarize(samples)
	}
	return ms, nil
}

// timerOverhead measures an empty call: its Latency is what timing a call
// individually adds to each sample (reading the clock twice).
func timerOverhead(ctx context.Context) (Micro, error) {
	return measureMicro(ctx, 100*time.Millisecond, func(int) error { return nil })
}

// Rate is the throughput of an operation run by concurrent workers, with
// the latency of each call.
type Rate struct {
	// PerSecond is how many calls completed per second of the measured windows.
	PerSecond float64 `json:"per_second"`
	// N is how many calls the windows hold.
	N int `json:"n"`
	// Workers is how many goroutines called concurrently.
	Workers int `json:"workers"`
	// Seconds is the length of the measured windows together.
	Seconds float64 `json:"seconds"`
	// Rounds is how many windows, interleaved with the other operations
	// of the same comparison.
	Rounds int `json:"rounds"`
	// Latency is the distribution of the calls' durations.
	Latency Summary `json:"latency"`
}

// rateSpec is one operation of a comparison of rates.
type rateSpec struct {
	what    string
	workers int
	// fn makes one call; it gets the worker number and its call count.
	fn func(ctx context.Context, worker, i int) error
}

// Rounds of interleaved rate measurements.
const (
	// DefaultRounds is how many rounds a comparison of rates takes: each
	// operation is measured in turn, round after round, so that a burst
	// of other work on the machine hits them all alike.
	DefaultRounds = 5
	// roundWarmup runs before every round's window.
	roundWarmup = 200 * time.Millisecond
)

// compareRates measures specs in turn, rounds times, each for d/rounds
// after a short warm-up per round (and warmup more before its first), and
// merges each operation's rounds into one Rate.
func compareRates(ctx context.Context, rounds int, warmup, d time.Duration, p *Progress, specs ...rateSpec) ([]Rate, error) {
	rounds = max(1, rounds)
	type acc struct {
		n       int
		seconds float64
		samples []time.Duration
	}
	accs := make([]acc, len(specs))
	for r := range rounds {
		for i, s := range specs {
			w := roundWarmup
			if r == 0 {
				w += warmup
			}
			p.Phasef("  %s: round %d of %d, %d workers", s.what, r+1, rounds, s.workers)
			samples, seconds, err := runRate(ctx, s.workers, w, d/time.Duration(rounds), s.fn)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.what, err)
			}
			accs[i].n += len(samples)
			accs[i].seconds += seconds
			accs[i].samples = append(accs[i].samples, samples...)
		}
	}
	out := make([]Rate, len(specs))
	for i, a := range accs {
		out[i] = Rate{PerSecond: float64(a.n) / a.seconds, N: a.n, Workers: specs[i].workers, Seconds: a.seconds,
			Rounds: rounds, Latency: Summarize(a.samples)}
	}
	return out, nil
}

// runRate runs fn from workers goroutines for warmup+d and returns the
// durations of the calls that started after the warm-up and finished
// within d, and d in seconds. On a machine so loaded that no call
// finishes within d, the window stretches until the first one does, and
// the seconds returned are the window's real length: a rate is never
// measured from no call at all. The first error stops every worker and is
// returned.
func runRate(ctx context.Context, workers int, warmup, d time.Duration, fn func(ctx context.Context, worker, i int) error) ([]time.Duration, float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+d)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		all      []time.Duration
		measured atomic.Int64 // calls that started after the warm-up and finished
		end      = until      // the window's end: until, or when the first call finished if later
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for i := 0; ; i++ {
				t0 := time.Now()
				if (!t0.Before(until) && measured.Load() > 0) || ctx.Err() != nil {
					break
				}
				if err := fn(ctx, w, i); err != nil {
					mu.Lock()
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					break
				}
				t1 := time.Now()
				switch {
				case t0.Before(from):
				case !t1.After(until):
					local = append(local, t1.Sub(t0))
					measured.Add(1)
				case measured.CompareAndSwap(0, 1): // the first call of an overrun window
					local = append(local, t1.Sub(t0))
					mu.Lock()
					end = t1
					mu.Unlock()
				}
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return all, end.Sub(from).Seconds(), nil
}
