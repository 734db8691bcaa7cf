package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
)

// PropagationConfig configures Propagation.
type PropagationConfig struct {
	// Verifiers is how many in-process verifier sidecars (and raw consumers). Default 3.
	Verifiers int
	// Revocations is how many revocations are measured. Default 200.
	Revocations int
	// Dir holds all data. Required.
	Dir string
	// Progress, if not nil, receives a line every 10% of the revocations.
	Progress io.Writer
}

// PropagationResult holds both measurements of one run.
type PropagationResult struct {
	// Herald is the time from the revoke call to each verifier refusing the
	// revoked token, one sample per revocation and verifier.
	Herald Summary `json:"herald"`
	// HeraldAfterReturn counts from the revoke call returning instead:
	// zero where the verifier refused the token before the call returned.
	HeraldAfterReturn Summary `json:"herald_after_return"`
	// RawFanOut is the time from a JetStream publish call to each of as
	// many plain ordered consumers receiving the message: the floor.
	RawFanOut Summary `json:"raw_jetstream_fanout"`
	// RawAfterAck counts from the publish acknowledgement instead.
	RawAfterAck Summary `json:"raw_jetstream_after_ack"`
}

// Propagation runs an embedded NATS server, an issuer and cfg.Verifiers
// sidecars in this process, revokes cfg.Revocations tokens one after
// another, and measures how long each takes to be refused everywhere. It
// then measures raw JetStream fan-out to as many consumers on the same
// server, as the floor.
func Propagation(ctx context.Context, cfg PropagationConfig) (*PropagationResult, error) {
	if cfg.Verifiers <= 0 {
		cfg.Verifiers = 3
	}
	if cfg.Revocations <= 0 {
		cfg.Revocations = 200
	}
	if cfg.Dir == "" {
		return nil, errors.New("propagation: dir is required")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := bus.StartServer(ctx, bus.ServerConfig{Listen: "127.0.0.1:0", StoreDir: filepath.Join(cfg.Dir, "nats")})
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	connect := func(name string) (*bus.Conn, error) {
		return bus.Connect(ctx, bus.Config{URL: srv.ClientURL(), Name: name, Logger: quiet})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = run(ctx) // returns when ctx ends
		}()
	}

	ic, err := connect("bench-issuer")
	if err != nil {
		return nil, err
	}
	defer ic.Close()
	svc, err := issuer.Open(ctx, issuer.Config{
		DataDir: filepath.Join(cfg.Dir, "issuer"), HTTPAddr: "127.0.0.1:0",
		AdminToken: "bench", IssuerURL: "https://bench.test", Logger: quiet,
	}, ic)
	if err != nil {
		return nil, err
	}
	defer svc.Close()
	start(svc.Run)

	scs := make([]*verifier.Sidecar, cfg.Verifiers)
	for i := range scs {
		c, err := connect(fmt.Sprintf("bench-verifier-%d", i))
		if err != nil {
			return nil, err
		}
		defer c.Close()
		sc, err := verifier.OpenSidecar(verifier.SidecarConfig{
			Verifier: verifier.Config{Issuer: "https://bench.test", Audience: issuer.DefaultAudience},
			DataDir:  filepath.Join(cfg.Dir, fmt.Sprintf("verifier-%d", i)), HTTPAddr: "127.0.0.1:0", Logger: quiet,
		}, c)
		if err != nil {
			return nil, err
		}
		defer sc.Close()
		scs[i] = sc
		start(sc.Run)
	}
	for _, sc := range scs {
		if err := waitUntil(ctx, 30*time.Second, sc.Ready); err != nil {
			return nil, fmt.Errorf("propagation: verifier not ready: %w", err)
		}
	}

	tokens := make([]string, cfg.Revocations)
	sids := make([]string, cfg.Revocations)
	for i := range tokens {
		s, err := svc.CreateSession(ctx, issuer.SessionRequest{Subject: fmt.Sprintf("bench-%d", i)}, "bench")
		if err != nil {
			return nil, err
		}
		tokens[i], sids[i] = s.AccessToken, s.SessionID
	}
	_, base, err := ic.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		return nil, err
	}

	// Each verifier records when it first refuses revocation i.
	refused := make([][]time.Time, len(scs))
	errc := make(chan error, len(scs))
	var wwg sync.WaitGroup
	for v, sc := range scs {
		refused[v] = make([]time.Time, cfg.Revocations)
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for i := range cfg.Revocations {
				if err := sc.WaitApplied(ctx, base+uint64(i)+1); err != nil {
					errc <- err
					return
				}
				if _, err := sc.Verifier().Verify(ctx, tokens[i]); !errors.Is(err, verifier.ErrRevoked) {
					errc <- fmt.Errorf("verifier %d, revocation %d: verify = %v, want revoked", v, i, err)
					return
				}
				refused[v][i] = time.Now()
			}
		}()
	}
	called := make([]time.Time, cfg.Revocations)
	returned := make([]time.Time, cfg.Revocations)
	for i := range cfg.Revocations {
		called[i] = time.Now()
		res, err := svc.Revoke(ctx, issuer.RevocationRequest{Kind: "session", Value: sids[i]}, "bench", "bench")
		if err != nil {
			return nil, err
		}
		returned[i] = time.Now()
		if res.Seq != base+uint64(i)+1 {
			return nil, fmt.Errorf("propagation: revocation %d has seq %d, want %d", i, res.Seq, base+uint64(i)+1)
		}
		progress(cfg.Progress, "herald", i, cfg.Revocations)
	}
	wwg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	result := &PropagationResult{
		Herald:            Summarize(latencies(called, refused)),
		HeraldAfterReturn: Summarize(latencies(returned, refused)),
	}
	result.RawFanOut, result.RawAfterAck, err = rawFanOut(ctx, srv, cfg, quiet)
	if err != nil {
		return nil, err
	}
	return result, nil
}

// rawFanOut publishes cfg.Revocations messages one after another to a plain
// stream read by cfg.Verifiers ordered consumers, and measures the time from
// each publish call, and from its acknowledgement, to each consumer
// receiving it.
func rawFanOut(ctx context.Context, srv *bus.Server, cfg PropagationConfig, log *slog.Logger) (fromCall, fromAck Summary, err error) {
	c, err := bus.Connect(ctx, bus.Config{URL: srv.ClientURL(), Name: "bench-raw", Logger: log})
	if err != nil {
		return Summary{}, Summary{}, err
	}
	defer c.Close()
	_, err = c.JetStream().CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "BENCH_FANOUT", Subjects: []string{"bench.fanout"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return Summary{}, Summary{}, fmt.Errorf("raw fan-out stream: %w", err)
	}
	received := make([][]time.Time, cfg.Verifiers)
	var mu sync.Mutex
	var got int
	all := make(chan struct{})
	for v := range received {
		received[v] = make([]time.Time, cfg.Revocations)
		cc, err := bus.Connect(ctx, bus.Config{URL: srv.ClientURL(), Name: fmt.Sprintf("bench-raw-%d", v), Logger: log})
		if err != nil {
			return Summary{}, Summary{}, err
		}
		defer cc.Close()
		stop, err := cc.Follow(ctx, "BENCH_FANOUT", 0, func(d bus.Delivery) {
			if d.Seq == 0 || d.Seq > uint64(cfg.Revocations) {
				return
			}
			received[v][d.Seq-1] = time.Now()
			mu.Lock()
			got++
			if got == cfg.Verifiers*cfg.Revocations {
				close(all)
			}
			mu.Unlock()
		})
		if err != nil {
			return Summary{}, Summary{}, err
		}
		defer stop()
	}
	called := make([]time.Time, cfg.Revocations)
	returned := make([]time.Time, cfg.Revocations)
	payload := make([]byte, 300) // about the size of a revocation event
	for i := range cfg.Revocations {
		called[i] = time.Now()
		if _, err := c.JetStream().Publish(ctx, "bench.fanout", payload); err != nil {
			return Summary{}, Summary{}, fmt.Errorf("raw fan-out publish: %w", err)
		}
		returned[i] = time.Now()
		progress(cfg.Progress, "raw jetstream", i, cfg.Revocations)
	}
	select {
	case <-all:
	case <-ctx.Done():
		return Summary{}, Summary{}, ctx.Err()
	case <-time.After(30 * time.Second):
		return Summary{}, Summary{}, errors.New("raw fan-out: not every message arrived within 30s")
	}
	mu.Lock()
	defer mu.Unlock()
	return Summarize(latencies(called, received)), Summarize(latencies(returned, received)), nil
}

// latencies returns, for every event i and receiver v, how long after
// from[i] receiver v got it; a receiver that got it earlier counts as zero.
func latencies(from []time.Time, got [][]time.Time) []time.Duration {
	out := make([]time.Duration, 0, len(from)*len(got))
	for _, g := range got {
		for i, t := range g {
			out = append(out, max(0, t.Sub(from[i])))
		}
	}
	return out
}

func progress(w io.Writer, what string, i, n int) {
	if w == nil || n < 10 || (i+1)%(n/10) != 0 {
		return
	}
	fmt.Fprintf(w, "%s: %d/%d\n", what, i+1, n)
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
