package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
)

// Where the verifiers of a scenario run.
const (
	// ModeInProc runs verifier sidecars in the bench's own process.
	ModeInProc = "inproc"
	// ModeProcs runs each verifier as its own `herald verifier` process.
	ModeProcs = "procs"
)

// Defaults for PropagationConfig.
const (
	DefaultVerifiers   = 50
	DefaultRevocations = 200
	// DefaultSettleTimeout bounds how long one revocation may take to
	// reach every verifier.
	DefaultSettleTimeout = 30 * time.Second
)

// PropagationConfig configures Propagation.
type PropagationConfig struct {
	// Mode is ModeInProc (the default) or ModeProcs.
	Mode string
	// Verifiers is how many verifiers (and raw consumers). Default DefaultVerifiers.
	Verifiers int
	// Revocations is how many revocations (and raw messages) are measured.
	// Default DefaultRevocations.
	Revocations int
	// Dir holds all data. Required.
	Dir string
	// Command starts child processes. Required in ModeProcs.
	Command *Command
	// SettleTimeout bounds one revocation. Default DefaultSettleTimeout.
	SettleTimeout time.Duration
	// Progress, if not nil, receives progress lines.
	Progress *Progress
}

func (c *PropagationConfig) setDefaults() {
	if c.Mode == "" {
		c.Mode = ModeInProc
	}
	if c.Verifiers <= 0 {
		c.Verifiers = DefaultVerifiers
	}
	if c.Revocations <= 0 {
		c.Revocations = DefaultRevocations
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = DefaultSettleTimeout
	}
}

// Validate reports every problem with c at once.
func (c *PropagationConfig) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir is required"))
	}
	switch c.Mode {
	case ModeInProc:
	case ModeProcs:
		if c.Command == nil {
			errs = append(errs, errors.New("procs mode needs a command to start verifiers with"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode %q: want %s or %s", c.Mode, ModeInProc, ModeProcs))
	}
	return errors.Join(errs...)
}

// PropagationResult holds both measurements of one run.
type PropagationResult struct {
	Mode        string `json:"mode"`
	Verifiers   int    `json:"verifiers"`
	Revocations int    `json:"revocations"`
	// Detection says how a verifier's rejection was observed.
	Detection string `json:"detection"`
	// Herald is the time from the revoke call to each verifier refusing
	// the revoked token, one sample per revocation and verifier.
	Herald Summary `json:"herald"`
	// HeraldAfterReturn counts from the revoke call returning instead:
	// zero where the verifier refused the token before the call returned.
	HeraldAfterReturn Summary `json:"herald_after_return"`
	// RevokeCall is how long the revoke call took: the issuer's commit,
	// the publish of the revocation and its acknowledgement (overlapping
	// the commit's sync), and the wait for the revocation's millisecond to
	// pass. Its audit event and HERALD_SESSIONS records follow the answer.
	RevokeCall Summary `json:"revoke_call"`
	// RawFanOut is the time from a JetStream publish call to each of as
	// many plain ordered consumers receiving the message: the floor.
	RawFanOut Summary `json:"raw_jetstream_fanout"`
	// RawAfterAck counts from the publish acknowledgement instead.
	RawAfterAck Summary `json:"raw_jetstream_after_ack"`
	// PublishCall is how long the raw publish call took.
	PublishCall Summary `json:"publish_call"`
	// P99Ratio is HeraldAfterReturn's p99 over RawFanOut's.
	P99Ratio float64 `json:"p99_ratio"`
	// P50RatioFromCall and P99RatioFromCall are Herald's p50 and p99 over
	// RawFanOut's: the revoke call itself included, as a security team
	// waits for it. The target is at most 1.5 for the p99.
	P50RatioFromCall float64 `json:"p50_ratio_from_call"`
	P99RatioFromCall float64 `json:"p99_ratio_from_call"`
	// CallP50Ratio and CallP99Ratio are RevokeCall's p50 and p99 over
	// PublishCall's: what the revoke call costs beyond making the
	// revocation durable on the bus. The target is at most 1.5 for both.
	CallP50Ratio float64 `json:"revoke_call_p50_ratio"`
	CallP99Ratio float64 `json:"revoke_call_p99_ratio"`
}

// Propagation runs an embedded NATS server, an issuer and cfg.Verifiers
// verifier sidecars, revokes cfg.Revocations sessions one after another,
// and measures how long each takes to be refused by every verifier. After
// each revocation it publishes a message of the same size to a plain
// stream on the same server read by as many plain consumers, in the same
// kind of process: raw JetStream fan-out, the floor.
//
// Revocations are paced: each starts once every verifier has refused the
// previous one and every consumer has received the raw message after it,
// so no sample waits behind the bench's own backlog, and a burst of other
// work on the machine hits Herald and the floor alike.
//
// In ModeInProc the verifiers are sidecars in this process: each has a
// goroutine that waits for the revocation's stream sequence to be applied
// and then checks that Verify refuses the token. In ModeProcs each is a
// `herald verifier` process in proxy mode in front of a bench upstream;
// before each revocation the bench opens one long request per verifier
// with the token about to be revoked, and a verifier's rejection is the
// moment that request is cut, which the sidecar does once the revocation
// is committed to its denylist. A GET /v1/verify on every verifier then
// checks that the token is refused (401, revoked).
func Propagation(ctx context.Context, cfg PropagationConfig) (*PropagationResult, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("propagation: %w", err)
	}
	p := cfg.Progress
	c, err := startCore(ctx, cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("propagation: %w", err)
	}
	defer c.Close()

	var fleet propagationFleet
	if cfg.Mode == ModeProcs {
		fleet, err = startProcFleet(ctx, c, cfg)
	} else {
		fleet, err = startInProcFleet(ctx, c, cfg)
	}
	defer fleet.Close()
	if err != nil {
		return nil, fmt.Errorf("propagation: %w", err)
	}
	var cmd *Command
	if cfg.Mode == ModeProcs {
		cmd = cfg.Command
	}
	p.Phasef("propagation (%s): starting %d raw JetStream consumers", cfg.Mode, cfg.Verifiers)
	raw, err := startFanout(ctx, c, cfg.Verifiers, cfg.Revocations, cmd, p)
	if err != nil {
		return nil, fmt.Errorf("propagation: %w", err)
	}
	defer raw.Close()

	p.Phasef("propagation (%s): creating %d sessions", cfg.Mode, cfg.Revocations)
	sessions, err := c.sessions(ctx, cfg.Revocations, "bench-propagation", p)
	if err != nil {
		return nil, fmt.Errorf("propagation: %w", err)
	}
	_, base, err := c.conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		return nil, fmt.Errorf("propagation: %w", err)
	}

	p.Phasef("propagation (%s): %d revocations to %d verifiers, each followed by a raw message to %d consumers",
		cfg.Mode, cfg.Revocations, cfg.Verifiers, cfg.Verifiers)
	refused := make([][]time.Time, cfg.Verifiers)
	for v := range refused {
		refused[v] = make([]time.Time, cfg.Revocations)
	}
	called := make([]time.Time, cfg.Revocations)
	returned := make([]time.Time, cfg.Revocations)
	for i, s := range sessions {
		seq := base + uint64(i) + 1
		wait, err := fleet.Arm(ctx, s.AccessToken, seq)
		if err != nil {
			return nil, fmt.Errorf("propagation: revocation %d: %w", i, err)
		}
		called[i] = time.Now()
		res, err := c.svc.Revoke(ctx, issuer.RevocationRequest{Kind: "session", Value: s.SessionID}, "bench", "bench")
		returned[i] = time.Now()
		if err != nil {
			return nil, fmt.Errorf("propagation: revoke %d: %w", i, err)
		}
		if res.Seq != seq {
			return nil, fmt.Errorf("propagation: revocation %d has seq %d, want %d", i, res.Seq, seq)
		}
		times, err := wait(cfg.SettleTimeout)
		if err != nil {
			return nil, fmt.Errorf("propagation: revocation %d: %w", i, err)
		}
		for v, t := range times {
			refused[v][i] = t
		}
		if err := fleet.Confirm(ctx, s.AccessToken); err != nil {
			return nil, fmt.Errorf("propagation: revocation %d: %w", i, err)
		}
		if err := raw.publish(ctx, i, cfg.SettleTimeout); err != nil {
			return nil, fmt.Errorf("propagation: %w", err)
		}
		p.Step("revocations and raw messages", i+1, cfg.Revocations)
	}
	calls := make([]time.Duration, len(called))
	for i := range calls {
		calls[i] = returned[i].Sub(called[i])
	}
	res := &PropagationResult{
		Mode: cfg.Mode, Verifiers: cfg.Verifiers, Revocations: cfg.Revocations, Detection: fleet.Detection(),
		Herald:            Summarize(latencies(called, refused)),
		HeraldAfterReturn: Summarize(latencies(returned, refused)),
		RevokeCall:        Summarize(calls),
	}
	fromCall, fromAck, pubCalls := raw.results()
	res.RawFanOut, res.RawAfterAck, res.PublishCall = Summarize(fromCall), Summarize(fromAck), Summarize(pubCalls)
	res.P99Ratio = ratio(float64(res.HeraldAfterReturn.P99), float64(res.RawFanOut.P99))
	res.P50RatioFromCall = ratio(float64(res.Herald.P50), float64(res.RawFanOut.P50))
	res.P99RatioFromCall = ratio(float64(res.Herald.P99), float64(res.RawFanOut.P99))
	res.CallP50Ratio = ratio(float64(res.RevokeCall.P50), float64(res.PublishCall.P50))
	res.CallP99Ratio = ratio(float64(res.RevokeCall.P99), float64(res.PublishCall.P99))
	if err := errors.Join(raw.Close(), fleet.Close()); err != nil {
		return nil, fmt.Errorf("propagation: stop verifiers and consumers: %w", err)
	}
	return res, nil
}

// propagationFleet is the verifiers of a propagation run.
type propagationFleet interface {
	// Arm prepares every verifier to report when it refuses token, which
	// the revocation with stream sequence seq revokes. The returned wait
	// blocks until every verifier has, and returns when each did.
	Arm(ctx context.Context, token string, seq uint64) (wait func(timeout time.Duration) ([]time.Time, error), err error)
	// Confirm checks that every verifier refuses token as revoked.
	Confirm(ctx context.Context, token string) error
	// Detection says how rejection is observed, for the report.
	Detection() string
	// Close stops the verifiers. It is safe to call more than once.
	Close() error
}

var (
	_ propagationFleet = (*inProcFleet)(nil)
	_ propagationFleet = (*procFleet)(nil)
)

// inProcFleet is verifier sidecars in this process.
type inProcFleet struct {
	sidecars []*benchSidecar
	once     sync.Once
	err      error
}

func startInProcFleet(ctx context.Context, c *core, cfg PropagationConfig) (*inProcFleet, error) {
	f := &inProcFleet{}
	cfg.Progress.Phasef("propagation (%s): starting %d verifier sidecars", cfg.Mode, cfg.Verifiers)
	for i := range cfg.Verifiers {
		sc, err := c.startSidecar(ctx, fmt.Sprintf("bench-verifier-%d", i), filepath.Join(cfg.Dir, fmt.Sprintf("verifier-%d", i)), false)
		if err != nil {
			return f, err
		}
		f.sidecars = append(f.sidecars, sc)
	}
	for i, sc := range f.sidecars {
		if err := waitUntil(ctx, time.Minute, sc.Ready); err != nil {
			return f, fmt.Errorf("verifier %d not ready: %w", i, err)
		}
		cfg.Progress.Step("verifiers ready", i+1, len(f.sidecars))
	}
	return f, nil
}

// Arm starts a watcher per sidecar that waits for seq to be applied and
// checks that Verify then refuses token.
func (f *inProcFleet) Arm(ctx context.Context, token string, seq uint64) (func(time.Duration) ([]time.Time, error), error) {
	ctx, cancel := context.WithCancel(ctx)
	times := make([]time.Time, len(f.sidecars))
	errs := make([]error, len(f.sidecars))
	var wg sync.WaitGroup
	for v, sc := range f.sidecars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sc.WaitApplied(ctx, seq); err != nil {
				errs[v] = err
				return
			}
			if _, err := sc.Verifier().Verify(ctx, token); !errors.Is(err, verifier.ErrRevoked) {
				errs[v] = fmt.Errorf("verifier %d: verify = %v, want revoked", v, err)
				return
			}
			times[v] = time.Now()
		}()
	}
	return func(timeout time.Duration) ([]time.Time, error) {
		defer cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(timeout):
			cancel()
			<-done
			return nil, fmt.Errorf("not refused by every verifier within %s", timeout)
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return times, nil
	}, nil
}

// Confirm does nothing: Arm's watchers verified the refusal already.
func (f *inProcFleet) Confirm(context.Context, string) error { return nil }

// Detection implements propagationFleet.
func (f *inProcFleet) Detection() string {
	return "in-process sidecars: a goroutine per verifier waits for the revocation's sequence to be applied, then Verify must return ErrRevoked; the time is taken then"
}

// Close stops every sidecar.
func (f *inProcFleet) Close() error {
	f.once.Do(func() {
		var errs []error
		for _, sc := range f.sidecars {
			errs = append(errs, sc.Close())
		}
		f.err = errors.Join(errs...)
	})
	return f.err
}

// holdPath is the upstream path whose requests the upstream never answers
// in full: they stay open until the verifier in front cuts them.
const holdPath = "/bench/hold"

// procFleet is `herald verifier` processes in proxy mode in front of an
// upstream that holds every request open.
type procFleet struct {
	children []*child
	urls     []string
	upstream *holdServer
	client   *http.Client
	once     sync.Once
	err      error
}

func startProcFleet(ctx context.Context, c *core, cfg PropagationConfig) (*procFleet, error) {
	f := &procFleet{
		children: make([]*child, cfg.Verifiers), urls: make([]string, cfg.Verifiers),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}},
	}
	var err error
	if f.upstream, err = startHoldServer(); err != nil {
		return f, err
	}
	cfg.Progress.Phasef("propagation (%s): starting %d verifier processes", cfg.Mode, cfg.Verifiers)
	err = startChildren(ctx, cfg.Verifiers, cfg.Progress, "verifier processes", func(v int) (*child, error) {
		name := fmt.Sprintf("bench-verifier-%d", v)
		ch, err := cfg.Command.start(verifierSpec(name, filepath.Join(cfg.Dir, name), c.natsURL(), f.upstream.URL()))
		if err != nil {
			return nil, err
		}
		f.children[v] = ch
		m, err := ch.waitReady(ctx, time.Minute)
		if err != nil {
			return nil, err
		}
		f.urls[v] = m[1]
		return ch, nil
	})
	return f, err
}

// Arm opens one held request with token per verifier process and waits
// until each is admitted; the returned wait collects when each is cut.
func (f *procFleet) Arm(ctx context.Context, token string, _ uint64) (func(time.Duration) ([]time.Time, error), error) {
	ctx, cancel := context.WithCancel(ctx)
	times := make([]time.Time, len(f.urls))
	errs := make([]error, len(f.urls))
	admitted := make(chan error, len(f.urls))
	var wg sync.WaitGroup
	for v, u := range f.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+holdPath, nil)
			if err != nil {
				admitted <- err
				return
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := f.client.Do(req)
			if err != nil {
				admitted <- fmt.Errorf("verifier %d: open held request: %w", v, err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				admitted <- fmt.Errorf("verifier %d: held request: status %s", v, resp.Status)
				return
			}
			admitted <- nil
			_, _ = io.Copy(io.Discard, resp.Body) // returns when the verifier cuts the request
			times[v] = time.Now()
			if ctx.Err() != nil {
				errs[v] = ctx.Err()
			}
		}()
	}
	stop := func() {
		cancel()
		wg.Wait()
	}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for range f.urls {
		select {
		case err := <-admitted:
			if err != nil {
				stop()
				return nil, err
			}
		case <-t.C:
			stop()
			return nil, errors.New("held requests not admitted within a minute")
		}
	}
	return func(timeout time.Duration) ([]time.Time, error) {
		defer stop()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(timeout):
			stop()
			<-done
			return nil, fmt.Errorf("held requests not cut by every verifier within %s", timeout)
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return times, nil
	}, nil
}

// Confirm asks every verifier process's /v1/verify about token.
func (f *procFleet) Confirm(ctx context.Context, token string) error {
	for v, u := range f.urls {
		if err := expectRefused(ctx, f.client, u+"/v1/verify", token); err != nil {
			return fmt.Errorf("verifier %d: %w", v, err)
		}
	}
	return nil
}

// expectRefused checks that GET url with token answers 401 revoked.
func expectRefused(ctx context.Context, client *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Description string `json:"error_description"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
	if resp.StatusCode != http.StatusUnauthorized || body.Description != "revoked" {
		return fmt.Errorf("verify: %s %q, want 401 revoked", resp.Status, body.Description)
	}
	return nil
}

// Detection implements propagationFleet.
func (f *procFleet) Detection() string {
	return "verifier processes in proxy mode (--upstream) in front of a bench upstream: before each revocation the bench opens one long request per verifier with the token, admitted (200, streaming); a verifier's rejection is the moment it cuts that request, which it does once the revocation is committed to its denylist; then GET /v1/verify on every verifier must answer 401 revoked"
}

// Close stops the verifier processes and the upstream.
func (f *procFleet) Close() error {
	f.once.Do(func() {
		errs := []error{stopAll(f.children)}
		if f.upstream != nil {
			errs = append(errs, f.upstream.Close())
		}
		f.client.CloseIdleConnections()
		f.err = errors.Join(errs...)
	})
	return f.err
}

// holdServer is an upstream that answers every request with a 200 and a
// streaming body that never ends: the request stays open until the client
// (the verifier's proxy) goes away or the server closes.
type holdServer struct {
	ln   net.Listener
	srv  *http.Server
	quit chan struct{}
	done chan error
}

func startHoldServer() (*holdServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("hold upstream: %w", err)
	}
	h := &holdServer{ln: ln, quit: make(chan struct{}), done: make(chan error, 1)}
	h.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-h.quit:
		}
	})}
	go func() { h.done <- h.srv.Serve(ln) }()
	return h, nil
}

// URL returns the upstream's base URL.
func (h *holdServer) URL() string { return "http://" + h.ln.Addr().String() }

// Close ends every request the server holds, waits for their handlers and
// stops the server.
func (h *holdServer) Close() error {
	close(h.quit)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.srv.Shutdown(ctx)
	if serr := <-h.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
