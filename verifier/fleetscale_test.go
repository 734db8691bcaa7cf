package verifier

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
)

// Fleet scale: how one NATS server carries revocations to a large fleet of
// verifiers. Each verifier is a fleetConsumer: a NATS connection of its
// own that reads the HERALD stream the way a sidecar does, without the
// Pebble denylist (applying to Pebble costs the verifier's machine, not
// the server; BenchmarkCatchUp1M measures it). Two delivery designs:
//
//   - deliverJetStream, what the Follower does today: one ordered
//     JetStream consumer per verifier (bus.Conn.Follow).
//   - deliverRepublish, a prototype: the stream republishes every stored
//     message on a plain subject (herald.live.>) with its stream sequence
//     in the Nats-Sequence header. Verifiers subscribe to it with core
//     NATS, check that sequences are contiguous, and use JetStream only to
//     catch up at start and to repair a gap (a direct message get per
//     missing sequence).
//
// With fleetTraffic, each consumer also makes the rest of a sidecar's
// traffic: a stream-head probe and a HERALD_VERIFIERS heartbeat every two
// seconds, and an announcement (herald.fleet.<id>) per applied delivery.

const (
	deliverJetStream = "jetstream"
	deliverRepublish = "republish"

	// fleetLivePrefix is where the prototype's stream republishes.
	fleetLivePrefix = "herald.live."
	// fleetEvery is a sidecar's probe and heartbeat interval.
	fleetEvery = 2 * time.Second
)

var fleetLog = slog.New(slog.NewTextHandler(io.Discard, nil))

type fleetConfig struct {
	verifiers int
	mode      string // deliverJetStream or deliverRepublish
	// fleetTraffic adds probes, heartbeats and announcements.
	fleetTraffic bool
	// memFleet keeps HERALD_VERIFIERS in memory instead of on disk:
	// heartbeats are rewritten every few seconds and need no fsync.
	memFleet bool
	// dropEvery makes republish consumers ignore every n-th live message,
	// so that the tests exercise gap repair. 0 drops nothing.
	dropEvery int
	// revocations is how many are published, at rate per second.
	revocations int
	rate        float64
}

// fleetConsumer is one lightweight verifier.
type fleetConsumer struct {
	id        string
	conn      *bus.Conn
	dropEvery int

	mu      sync.Mutex
	applied uint64
	recv    []time.Time // recv[seq-1]: when seq was applied
	live    int         // live messages seen (republish)
	dups    int
	gaps    int // gaps found in live messages (republish) or sequence jumps (jetstream)
	fetched int // messages fetched to repair gaps
	errs    []error
	onApply func() // announcement, with fleetTraffic

	stops []func()
}

func (c *fleetConsumer) applyLocked(seq uint64) {
	if seq <= c.applied {
		c.dups++
		return
	}
	if seq != c.applied+1 {
		c.gaps++ // jetstream only: republish consumers repair before they apply
	}
	c.applied = seq
	if int(seq) <= len(c.recv) {
		c.recv[seq-1] = time.Now()
	}
	if c.onApply != nil {
		c.onApply()
	}
}

func (c *fleetConsumer) fail(err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

// repairLocked fetches and applies every message after applied up to
// through from the stream, one direct get each.
func (c *fleetConsumer) repairLocked(ctx context.Context, through uint64) error {
	if through <= c.applied {
		return nil
	}
	s, err := c.conn.JetStream().Stream(ctx, bus.StreamRevocations)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	for seq := c.applied + 1; seq <= through; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return fmt.Errorf("repair %d: %w", seq, err)
		}
		if _, err := bus.Decode(m.Data); err != nil {
			return fmt.Errorf("repair %d: %w", seq, err)
		}
		c.fetched++
		c.applyLocked(seq)
	}
	return nil
}

// start begins following the stream with cfg's design.
func (c *fleetConsumer) start(ctx context.Context, cfg fleetConfig) error {
	switch cfg.mode {
	case deliverJetStream:
		stop, err := c.conn.Follow(ctx, bus.StreamRevocations, 0, func(d bus.Delivery) {
			if _, err := bus.Decode(d.Data); err != nil {
				c.fail(err)
			}
			c.mu.Lock()
			c.applyLocked(d.Seq)
			c.mu.Unlock()
		})
		if err != nil {
			return err
		}
		c.stops = append(c.stops, stop)
	case deliverRepublish:
		nc := c.conn.NATS()
		sub, err := nc.Subscribe(fleetLivePrefix+">", func(m *nats.Msg) {
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil {
				c.fail(fmt.Errorf("live message without sequence: %w", err))
				return
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			c.live++
			if c.dropEvery > 0 && c.live%c.dropEvery == 0 {
				return // lost on the way
			}
			if seq > c.applied+1 {
				c.gaps++
				if err := c.repairLocked(ctx, seq-1); err != nil {
					c.errs = append(c.errs, err)
					return // the next message retries
				}
			}
			if _, err := bus.Decode(m.Data); err != nil {
				c.errs = append(c.errs, err)
			}
			c.applyLocked(seq)
		})
		if err != nil {
			return err
		}
		if err := nc.Flush(); err != nil {
			return err
		}
		c.stops = append(c.stops, func() { _ = sub.Unsubscribe() })
		// Catch up with what the stream held before the subscription.
		if err := c.catchUp(ctx); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown delivery %q", cfg.mode)
	}
	return nil
}

// catchUp repairs up to the stream head: at start, and where a sidecar's
// periodic probe finds the head ahead of what it applied.
func (c *fleetConsumer) catchUp(ctx context.Context) error {
	_, last, err := c.conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.repairLocked(ctx, last)
}

// fleetTraffic runs a sidecar's periodic traffic until ctx ends: a head
// probe and a heartbeat every fleetEvery, from a random offset.
func (c *fleetConsumer) fleetTraffic(ctx context.Context, fleet *bus.Fleet, wg *sync.WaitGroup) {
	c.onApply = func() {
		_ = c.conn.Announce(&bus.Heartbeat{ID: c.id, AppliedSeq: c.applied, Time: time.Now(), EveryMS: fleetEvery.Milliseconds()})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(rand.N(fleetEvery)):
		}
		t := time.NewTicker(fleetEvery)
		defer t.Stop()
		for {
			pctx, cancel := context.WithTimeout(ctx, fleetEvery)
			_, _, _ = c.conn.StreamHead(pctx, bus.StreamRevocations)
			c.mu.Lock()
			applied := c.applied
			c.mu.Unlock()
			_ = fleet.Beat(pctx, &bus.Heartbeat{ID: c.id, Host: "bench", AppliedSeq: applied, Ready: true,
				Started: time.Now(), Time: time.Now(), EveryMS: fleetEvery.Milliseconds()})
			cancel()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (c *fleetConsumer) appliedSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}

// fleet is cfg.verifiers consumers on one server.
type fleet struct {
	cfg       fleetConfig
	consumers []*fleetConsumer
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// startFleet connects cfg.verifiers consumers to url, each with its own
// connection, and starts them; stop them with close.
func startFleet(tb testing.TB, url string, cfg fleetConfig) *fleet {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{cfg: cfg, cancel: cancel, consumers: make([]*fleetConsumer, cfg.verifiers)}
	tb.Cleanup(f.close)
	var (
		fl     *bus.Fleet
		errsMu sync.Mutex
		errs   []error
	)
	sem := make(chan struct{}, 32) // connections opened at once
	var wg sync.WaitGroup
	for i := range f.consumers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			defer ccancel()
			conn, err := bus.Connect(cctx, bus.Config{URL: url, Name: fmt.Sprintf("fleet-%d", i), Logger: fleetLog})
			if err == nil {
				c := &fleetConsumer{id: fmt.Sprintf("fleet-%04d", i), conn: conn, dropEvery: cfg.dropEvery,
					recv: make([]time.Time, cfg.revocations)}
				f.consumers[i] = c
				err = c.start(ctx, cfg)
			}
			if err != nil {
				errsMu.Lock()
				errs = append(errs, fmt.Errorf("consumer %d: %w", i, err))
				errsMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
	if cfg.fleetTraffic {
		var err error
		if fl, err = f.consumers[0].conn.OpenFleet(ctx, true, bus.FleetConfig{}); err != nil {
			tb.Fatal(err)
		}
		for _, c := range f.consumers {
			c.mu.Lock()
			c.fleetTraffic(ctx, fl, &f.wg)
			c.mu.Unlock()
		}
	}
	return f
}

func (f *fleet) close() {
	f.cancel()
	f.wg.Wait()
	for _, c := range f.consumers {
		if c == nil {
			continue
		}
		for _, stop := range c.stops {
			stop()
		}
		c.conn.Close()
	}
}

// waitApplied waits until every consumer has applied seq. Republish
// consumers whose last live messages were lost catch up after a second, as
// a sidecar's periodic head probe would make them.
func (f *fleet) waitApplied(tb testing.TB, seq uint64, timeout time.Duration) {
	tb.Helper()
	start := time.Now()
	bustest.WaitFor(tb, timeout, func() error {
		behind := 0
		for _, c := range f.consumers {
			if c.appliedSeq() >= seq {
				continue
			}
			behind++
			if f.cfg.mode == deliverRepublish && time.Since(start) > time.Second {
				if err := c.catchUp(context.Background()); err != nil {
					return err
				}
			}
		}
		if behind > 0 {
			return fmt.Errorf("%d of %d verifiers have not applied %d", behind, len(f.consumers), seq)
		}
		return nil
	})
}

// publishFleetRevocations publishes n token revocations at rate per second
// and returns when each was first sent (sent[seq-1]) and how many publishes
// had to be retried; the stream is fresh, so the i-th revocation gets
// sequence i+1. A publish not acknowledged within 5 s is retried with the
// same event id, as the issuer's outbox does, and stored once.
func publishFleetRevocations(tb testing.TB, conn *bus.Conn, n int, rate float64) (sent []time.Time, retries int) {
	tb.Helper()
	sent = make([]time.Time, n)
	every := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for i := range n {
		if d := time.Until(next); d > 0 {
			time.Sleep(d) // pacing the load, not synchronisation
		}
		next = next.Add(every)
		now := time.Now()
		e := &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "fleet-bench",
			Revocation: &bus.Revocation{Kind: bus.KindToken, Value: fmt.Sprintf("fleet-jti-%d", i), At: now, Until: now.Add(20 * time.Minute)}}
		sent[i] = now
		var seq uint64
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			ctx, cancel := context.WithTimeout(tb.Context(), 5*time.Second)
			seq, err = conn.Publish(ctx, e)
			cancel()
			if err == nil {
				break
			}
			retries++
		}
		if err != nil {
			tb.Fatal(err)
		}
		if seq != uint64(i+1) {
			tb.Fatalf("revocation %d got sequence %d; the stream is not fresh", i, seq)
		}
	}
	return sent, retries
}

// fleetResult is what one run measured.
type fleetResult struct {
	deliveries    int
	p50, p99, max time.Duration
	gaps, fetched int
}

// collect checks that every consumer applied every revocation exactly
// once, in order, and returns the propagation latencies.
func (f *fleet) collect(tb testing.TB, sent []time.Time) fleetResult {
	tb.Helper()
	var r fleetResult
	lat := make([]time.Duration, 0, len(sent)*len(f.consumers))
	for _, c := range f.consumers {
		c.mu.Lock()
		if len(c.errs) > 0 {
			tb.Errorf("consumer %s: %v", c.id, errors.Join(c.errs...))
		}
		if c.dups > 0 && f.cfg.mode == deliverJetStream {
			tb.Errorf("consumer %s: %d duplicate deliveries", c.id, c.dups)
		}
		r.gaps += c.gaps
		r.fetched += c.fetched
		for i, at := range c.recv {
			if at.IsZero() {
				tb.Errorf("consumer %s never applied revocation %d", c.id, i+1)
				continue
			}
			lat = append(lat, at.Sub(sent[i]))
		}
		c.mu.Unlock()
	}
	if f.cfg.mode == deliverJetStream && r.gaps > 0 {
		tb.Errorf("%d sequence gaps on ordered consumers", r.gaps)
	}
	slices.Sort(lat)
	r.deliveries = len(lat)
	if len(lat) > 0 {
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return r
}

// setupFleetStreams creates Herald's streams on url; for the republish
// prototype HERALD also republishes to herald.live.>.
func setupFleetStreams(tb testing.TB, url string, cfg fleetConfig) *bus.Conn {
	tb.Helper()
	conn := bustest.ConnectURL(tb, url)
	ctx := context.Background()
	if err := conn.EnsureStreams(ctx, bus.StreamConfig{RevocationMaxAge: time.Hour}); err != nil {
		tb.Fatal(err)
	}
	if cfg.memFleet {
		_, err := conn.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bus.BucketVerifiers, History: 1, TTL: bus.DefaultFleetTTL, Storage: jetstream.MemoryStorage})
		if err != nil {
			tb.Fatal(err)
		}
	} else if err := conn.EnsureFleet(ctx, bus.FleetConfig{}); err != nil {
		tb.Fatal(err)
	}
	if cfg.mode == deliverRepublish {
		s, err := conn.JetStream().Stream(ctx, bus.StreamRevocations)
		if err != nil {
			tb.Fatal(err)
		}
		sc := s.CachedInfo().Config
		sc.RePublish = &jetstream.RePublish{Source: ">", Destination: fleetLivePrefix + ">"}
		if _, err := conn.JetStream().UpdateStream(ctx, sc); err != nil {
			tb.Fatal(err)
		}
	}
	return conn
}

// TestFleet_EveryConsumerGetsEveryRevocation runs 100 verifiers on one
// server with both delivery designs; the republish consumers lose every
// seventh live message and must repair each gap from the stream.
func TestFleet_EveryConsumerGetsEveryRevocation(t *testing.T) {
	for _, cfg := range []fleetConfig{
		{mode: deliverJetStream},
		{mode: deliverRepublish, dropEvery: 7},
	} {
		t.Run(cfg.mode, func(t *testing.T) {
			cfg.verifiers, cfg.revocations, cfg.rate = 100, 30, 200
			s := bustest.RunServer(t)
			conn := setupFleetStreams(t, s.ClientURL(), cfg)
			f := startFleet(t, s.ClientURL(), cfg)
			sent, _ := publishFleetRevocations(t, conn, cfg.revocations, cfg.rate)
			f.waitApplied(t, uint64(cfg.revocations), 30*time.Second)
			r := f.collect(t, sent)
			if got, want := r.deliveries, cfg.verifiers*cfg.revocations; got != want {
				t.Fatalf("deliveries = %d, want %d", got, want)
			}
			if cfg.dropEvery > 0 && r.fetched == 0 {
				t.Fatal("live messages were dropped but nothing was repaired from the stream")
			}
			t.Logf("%s: %d deliveries, p50 %s, p99 %s; gaps repaired %d (%d messages fetched)",
				cfg.mode, r.deliveries, r.p50, r.p99, r.gaps, r.fetched)
		})
	}
}

// fleetServerEnv names the store directory of the helper server process.
const fleetServerEnv = "HERALD_FLEET_SERVER_DIR"

// TestFleetServerProcess is not a test: BenchmarkFleet runs the test
// binary again with it to get a NATS server (Herald's embedded one, every
// write synced) in a process of its own, whose CPU time it reads from
// /proc apart from the verifiers'. It prints the client URL and runs until
// its standard input closes.
func TestFleetServerProcess(t *testing.T) {
	dir := os.Getenv(fleetServerEnv)
	if dir == "" {
		t.Skip("helper process of BenchmarkFleet")
	}
	s, err := natsserver.Start(context.Background(), natsserver.Config{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("nats %s\n", s.ClientURL())
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // until EOF
	s.Shutdown()
}

// fleetServer is the helper server process.
type fleetServer struct {
	url string
	pid int
}

func runFleetServer(b *testing.B) *fleetServer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFleetServerProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(), fleetServerEnv+"="+filepath.Join(b.TempDir(), "nats"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	rd := bufio.NewReader(stdout)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "nats ") {
		b.Fatalf("helper server: %q %v", line, err)
	}
	go func() { _, _ = rd.WriteTo(io.Discard) }() // the rest of the helper's output, until it exits
	return &fleetServer{url: strings.TrimSpace(strings.TrimPrefix(line, "nats ")), pid: cmd.Process.Pid}
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times on Linux.
const clockTicks = 100

// cpuTime returns the user+system CPU time of process pid ("self" for
// this one) and its resident set size.
func cpuTime(pid string) (cpu time.Duration, rss uint64, err error) {
	data, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, utime 14, stime 15, rss (pages) 24.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 22 {
		return 0, 0, fmt.Errorf("short /proc/%s/stat", pid)
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	pages, _ := strconv.ParseUint(f[21], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, pages * uint64(os.Getpagesize()), nil
}

// cpuMeter measures a process's CPU use over a stretch of wall time.
type cpuMeter struct {
	pid  string
	cpu0 time.Duration
	t0   time.Time
}

func startCPU(b *testing.B, pid string) cpuMeter {
	cpu, _, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	return cpuMeter{pid: pid, cpu0: cpu, t0: time.Now()}
}

// stop returns the CPU time used and the share of one core it is.
func (m cpuMeter) stop(b *testing.B) (time.Duration, float64) {
	cpu, _, err := cpuTime(m.pid)
	if err != nil {
		b.Fatal(err)
	}
	used := cpu - m.cpu0
	return used, 100 * used.Seconds() / time.Since(m.t0).Seconds()
}

func envInt(b *testing.B, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive number", name, s)
		}
		return n
	}
	return def
}

// BenchmarkFleet runs 1,000 verifiers (HERALD_FLEET_VERIFIERS) against one
// NATS server in a process of its own, publishes 200 revocations
// (HERALD_FLEET_REVOCATIONS) at 20 per second (HERALD_FLEET_RATE), and
// reports propagation from publish to each verifier (p50, p99, max) and the
// server's CPU: idle with the fleet connected, and while revocations flow.
// Sub-benchmarks: the per-verifier JetStream consumer with and without the
// rest of a sidecar's traffic (with HERALD_VERIFIERS on disk, as today,
// and in memory), and the republish prototype. Run it alone:
//
//	go test -run '^$' -bench Fleet -benchtime 1x -timeout 30m ./verifier
//
// The verifiers and the publisher share this process; the server has its
// own, on the same cores.
func BenchmarkFleet(b *testing.B) {
	if _, _, err := cpuTime("self"); err != nil {
		b.Skipf("needs /proc: %v", err)
	}
	n := envInt(b, "HERALD_FLEET_VERIFIERS", 1000)
	revs := envInt(b, "HERALD_FLEET_REVOCATIONS", 200)
	rate := float64(envInt(b, "HERALD_FLEET_RATE", 20))
	const idle = 10 * time.Second
	for _, cfg := range []fleetConfig{
		{mode: deliverJetStream},
		{mode: deliverJetStream, fleetTraffic: true},
		{mode: deliverJetStream, fleetTraffic: true, memFleet: true},
		{mode: deliverRepublish},
		{mode: deliverRepublish, fleetTraffic: true},
	} {
		name := cfg.mode
		if cfg.fleetTraffic {
			name += "+fleet"
		}
		if cfg.memFleet {
			name += "-mem"
		}
		cfg.verifiers, cfg.revocations, cfg.rate = n, revs, rate
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				srv := runFleetServer(b)
				pid := strconv.Itoa(srv.pid)
				conn := setupFleetStreams(b, srv.url, cfg)
				start := time.Now()
				f := startFleet(b, srv.url, cfg)
				setup := time.Since(start)
				_, rss, _ := cpuTime(pid)

				m := startCPU(b, pid)
				time.Sleep(idle) // measuring the idle fleet, not waiting for anything
				_, idlePct := m.stop(b)

				m, self := startCPU(b, pid), startCPU(b, "self")
				start = time.Now()
				sent, retries := publishFleetRevocations(b, conn, cfg.revocations, cfg.rate)
				f.waitApplied(b, uint64(cfg.revocations), 2*time.Minute)
				elapsed := time.Since(start)
				busy, busyPct := m.stop(b)
				_, selfPct := self.stop(b)
				r := f.collect(b, sent)

				perDelivery := busy / time.Duration(max(r.deliveries, 1))
				b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(r.max.Microseconds())/1000, "max-ms")
				b.ReportMetric(idlePct, "server-idle-cpu-%")
				b.ReportMetric(busyPct, "server-cpu-%")
				b.ReportMetric(float64(perDelivery.Nanoseconds())/1000, "server-µs/delivery")
				b.ReportMetric(float64(rss)/(1<<20), "server-rss-MiB")
				b.Logf("%s, %d verifiers: connected in %s, server RSS %.0f MiB; idle server CPU %.1f%% of a core; "+
					"%d revocations at %.0f/s in %s = %d deliveries: p50 %s, p99 %s, max %s; server CPU %.1f%% (%s per delivery), verifiers+publisher CPU %.1f%%; gaps %d, repaired by fetching %d; publishes retried %d",
					name, n, setup.Round(time.Millisecond), float64(rss)/(1<<20), idlePct,
					cfg.revocations, cfg.rate, elapsed.Round(time.Millisecond), r.deliveries,
					r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond),
					busyPct, perDelivery, selfPct, r.gaps, r.fetched, retries)
				f.close()
			}
		})
	}
}
