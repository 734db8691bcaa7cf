package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/verifier"
)

// DefaultScaleSizes are the active revocation counts Scale measures.
var DefaultScaleSizes = []int{10_000, 100_000, 1_000_000}

// ScaleConfig configures Scale.
type ScaleConfig struct {
	// Dir holds all data. Required.
	Dir string
	// Sizes are the numbers of active revocations, ascending. Default DefaultScaleSizes.
	Sizes []int
	// Command, if not nil, starts a fresh `herald verifier` process at each
	// size too: its catch-up from exec to its ready line, and its memory.
	Command *Command
	// MicroDuration is how long each lookup is measured. Default DefaultMicroDuration.
	MicroDuration time.Duration
	// SnapshotTail is how many of the revocations at each size come after
	// the denylist snapshot the fresh verifiers may start from, as an
	// issuer publishing one every issuer.DefaultSnapshotEvery events
	// leaves on average. Default min(size/2, DefaultSnapshotEvery/2);
	// negative publishes no snapshot, so verifiers replay every revocation.
	SnapshotTail int
	// Progress, if not nil, receives progress lines.
	Progress *Progress
}

// ScalePoint is the figures at one number of active revocations.
type ScalePoint struct {
	Revocations int `json:"revocations"`
	// PublishSeconds is how long publishing the revocations added at this
	// size took (asynchronously, in windows): setup, not a measurement
	// of Herald.
	PublishSeconds float64 `json:"publish_seconds"`
	// StreamBytes is the size of the HERALD stream.
	StreamBytes uint64 `json:"stream_bytes"`
	// SnapshotSeq is the HERALD sequence of the denylist snapshot published
	// before the fresh verifiers start (0: none), made by
	// verifier.PublishSnapshot from a denylist holding the first
	// SnapshotSeq revocations; the verifiers replay the rest.
	SnapshotSeq uint64 `json:"snapshot_seq,omitempty"`
	// SnapshotSeconds is how long publishing that snapshot took: setup,
	// as an issuer does it in the background.
	SnapshotSeconds float64 `json:"snapshot_seconds,omitempty"`
	// CatchUp is the time a fresh in-process sidecar takes from open to
	// ready: every revocation read from the stream and applied to Pebble.
	CatchUp time.Duration `json:"catch_up_ns"`
	// CatchUpRate is revocations applied per second of CatchUp.
	CatchUpRate float64 `json:"catch_up_per_second"`
	// HeapGrowth is the bench process's live Go heap with the caught-up
	// sidecar over without it (after a collection). Pebble's caches are
	// outside the Go heap; Process.RSS counts everything.
	HeapGrowth int64 `json:"heap_growth_bytes"`
	// Process is a fresh `herald verifier` process catching up, when the
	// bench has a command to start one.
	Process *ScaleProcess `json:"process,omitempty"`
	// DenylistCheck is one token's denylist check (the seven in-memory
	// lookups Verify makes) against a denylist of this size.
	DenylistCheck Micro `json:"denylist_check"`
	// VerifyCached is Verify of tokens seen before on the caught-up
	// sidecar, half of them revoked at this size.
	VerifyCached Micro `json:"verify_cached"`
}

// ScaleProcess is a fresh verifier process catching up.
type ScaleProcess struct {
	// CatchUp is from starting the process to its ready line.
	CatchUp time.Duration `json:"catch_up_ns"`
	// RSS is its resident memory once ready; Peak the most it held.
	RSS  uint64 `json:"rss_bytes"`
	Peak uint64 `json:"peak_rss_bytes"`
}

// ScaleResult is the outcome of Scale.
type ScaleResult struct {
	Points []ScalePoint `json:"points"`
	// TimerOverhead is what each latency sample includes beyond the call.
	TimerOverhead Micro `json:"timer_overhead"`
}

// Scale publishes revocations to a fresh HERALD stream up to each of
// cfg.Sizes, and at each size measures a fresh verifier catching up (in
// process, and as a process when cfg.Command is set), its memory, lookup
// latency against that many entries, and the stream's size. No issuer
// runs: it would follow the stream too and compete for the CPU.
func Scale(ctx context.Context, cfg ScaleConfig) (*ScaleResult, error) {
	if cfg.Dir == "" {
		return nil, errors.New("scale: dir is required")
	}
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = DefaultScaleSizes
	}
	if !slices.IsSorted(cfg.Sizes) || cfg.Sizes[0] <= 0 {
		return nil, fmt.Errorf("scale: sizes %v: want positive and ascending", cfg.Sizes)
	}
	if cfg.MicroDuration <= 0 {
		cfg.MicroDuration = DefaultMicroDuration
	}
	p := cfg.Progress
	wrap := func(err error) error { return fmt.Errorf("scale: %w", err) }
	c, err := startBus(ctx, cfg.Dir)
	if err != nil {
		return nil, wrap(err)
	}
	defer c.Close()
	s, err := newSigner(bus.AlgEdDSA)
	if err != nil {
		return nil, wrap(err)
	}
	if err := c.conn.PublishKey(ctx, s.jwk); err != nil {
		return nil, wrap(fmt.Errorf("publish key: %w", err))
	}

	res := &ScaleResult{}
	if res.TimerOverhead, err = timerOverhead(ctx); err != nil {
		return nil, wrap(err)
	}
	prev := 0
	for _, n := range cfg.Sizes {
		pt := ScalePoint{Revocations: n}
		p.Phasef("scale: publishing revocations %d to %d", prev, n)
		start := time.Now()
		if err := publishRevocationRange(ctx, c.conn, prev, n, "scale", p); err != nil {
			return nil, wrap(err)
		}
		pt.PublishSeconds = time.Since(start).Seconds()
		prev = n
		stream, err := c.conn.JetStream().Stream(ctx, bus.StreamRevocations)
		if err != nil {
			return nil, wrap(err)
		}
		info, err := stream.Info(ctx)
		if err != nil {
			return nil, wrap(err)
		}
		if info.State.Msgs != uint64(n) {
			return nil, wrap(fmt.Errorf("stream holds %d revocations, want %d", info.State.Msgs, n))
		}
		pt.StreamBytes = info.State.Bytes
		if tail := cfg.snapshotTail(n); tail >= 0 {
			p.Phasef("scale: %d revocations: a denylist snapshot of the first %d", n, n-tail)
			start := time.Now()
			if err := publishScaleSnapshot(ctx, c.conn, filepath.Join(cfg.Dir, fmt.Sprintf("snapshot-%d", n)), n-tail); err != nil {
				return nil, wrap(err)
			}
			pt.SnapshotSeq, pt.SnapshotSeconds = uint64(n-tail), time.Since(start).Seconds()
		}

		if err := scaleInProc(ctx, c, s, cfg, &pt); err != nil {
			return nil, wrap(fmt.Errorf("%d revocations: %w", n, err))
		}
		p.Phasef("scale: %d revocations: denylist check, %s", n, cfg.MicroDuration)
		if pt.DenylistCheck, err = denylistCheck(ctx, filepath.Join(cfg.Dir, fmt.Sprintf("denylist-%d", n)), n, cfg.MicroDuration); err != nil {
			return nil, wrap(err)
		}
		if cfg.Command != nil {
			p.Phasef("scale: %d revocations: a fresh verifier process catching up", n)
			if pt.Process, err = scaleProcess(ctx, c, cfg, n); err != nil {
				return nil, wrap(fmt.Errorf("%d revocations: %w", n, err))
			}
		}
		res.Points = append(res.Points, pt)
	}
	return res, nil
}

// snapshotTail returns cfg.SnapshotTail at size n, -1 for no snapshot.
func (cfg *ScaleConfig) snapshotTail(n int) int {
	switch {
	case cfg.SnapshotTail < 0:
		return -1
	case cfg.SnapshotTail == 0:
		return min(n/2, issuer.DefaultSnapshotEvery/2)
	}
	return min(cfg.SnapshotTail, n)
}

// publishScaleSnapshot publishes, as an issuer does, a snapshot of a
// denylist in dir (removed afterwards) holding the first seq token
// revocations publishRevocationRange published, at sequence seq.
func publishScaleSnapshot(ctx context.Context, conn *bus.Conn, dir string, seq int) (err error) {
	if seq == 0 {
		return nil
	}
	db, err := store.Open(dir, store.Options{Logger: quietLogger()})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = cerr
		}
		os.RemoveAll(dir)
	}()
	now := time.Now()
	entries := make([]store.Entry, seq)
	for i := range entries {
		entries[i] = store.Entry{Key: denyKey(bus.KindToken, fmt.Sprintf("scale-%d", i)), At: now, Until: now.Add(revocationLifetime)}
	}
	if err := db.Apply(uint64(seq), entries); err != nil {
		return fmt.Errorf("snapshot source: %w", err)
	}
	if _, err := verifier.PublishSnapshot(ctx, conn, db, "bench"); err != nil {
		return err
	}
	return nil
}

// scaleInProc measures a fresh in-process sidecar catching up with the
// stream, its heap, and cached Verify against what it holds.
func scaleInProc(ctx context.Context, c *core, s *signer, cfg ScaleConfig, pt *ScalePoint) (err error) {
	n := pt.Revocations
	cfg.Progress.Phasef("scale: %d revocations: a fresh in-process verifier catching up", n)
	heap0 := liveHeap()
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("verifier-%d", n))
	defer os.RemoveAll(dir)
	start := time.Now()
	sc, err := c.startSidecar(ctx, fmt.Sprintf("bench-scale-%d", n), dir, false)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := sc.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	stop := cfg.Progress.Ticker(func() string {
		st := sc.Status()
		return fmt.Sprintf("scale: catching up: %d of %d applied", st.Applied, n)
	})
	err = waitUntil(ctx, 10*time.Minute, sc.Ready)
	stop()
	if err != nil {
		return fmt.Errorf("verifier not ready: %w", err)
	}
	pt.CatchUp = time.Since(start)
	pt.CatchUpRate = float64(n) / pt.CatchUp.Seconds()
	if got := sc.Status().Denylist; got != n {
		return fmt.Errorf("caught-up verifier holds %d entries, want %d", got, n)
	}
	pt.HeapGrowth = int64(liveHeap()) - int64(heap0)

	// Half the tokens are revoked (their jti is among the n), half not.
	const tokens = 1024
	toks := make([]string, tokens)
	for i := range toks {
		jti := fmt.Sprintf("fresh-%d", i)
		if i%2 == 0 {
			jti = fmt.Sprintf("scale-%d", (i*7919)%n)
		}
		if toks[i], err = s.sign(s.claims(fmt.Sprintf("bench-%d", i), jti, fmt.Sprintf("sid-%d", i))); err != nil {
			return err
		}
	}
	v := sc.Verifier()
	pt.VerifyCached, err = measureMicro(ctx, cfg.MicroDuration, func(i int) error {
		_, err := v.Verify(ctx, toks[i%tokens])
		if (i%tokens)%2 == 0 {
			if !errors.Is(err, verifier.ErrRevoked) {
				return fmt.Errorf("token %d: verify = %v, want revoked", i%tokens, err)
			}
			return nil
		}
		return err
	})
	return err
}

// denylistCheck measures the seven lookups of a token's denylist check
// against a denylist of n entries in dir, made for the measurement and
// removed after it, so that it does not weigh on the other measurements
// of this process; half the tokens have a revoked jti.
func denylistCheck(ctx context.Context, dir string, n int, d time.Duration) (_ Micro, err error) {
	db, err := store.Open(dir, store.Options{Logger: quietLogger()})
	if err != nil {
		return Micro{}, err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = cerr
		}
		os.RemoveAll(dir)
	}()
	if err := fillDenylist(db, n, "scale"); err != nil {
		return Micro{}, err
	}
	const tokens = 1024
	keys := make([][]string, tokens)
	for i := range keys {
		jti := fmt.Sprintf("fresh-%d", i)
		if i%2 == 0 {
			jti = fmt.Sprintf("scale-%d", (i*7919)%n)
		}
		id := fmt.Sprintf("%032x", i)
		keys[i] = checkKeys(jti, id, "kid-"+id[:8], "bench-"+id[:8], "bench", "acme")
	}
	found := 0
	m, err := measureMicro(ctx, d, func(i int) error {
		k := keys[i%tokens]
		for _, key := range k[:3] {
			if db.Contains(key) {
				found++
			}
		}
		for _, key := range k[3:] {
			if _, ok := db.Lookup(key); ok {
				found++
			}
		}
		return nil
	})
	if err == nil && found == 0 {
		err = errors.New("denylist check found no revoked token")
	}
	return m, err
}

// scaleProcess starts a fresh `herald verifier` process and measures it.
func scaleProcess(ctx context.Context, c *core, cfg ScaleConfig, n int) (_ *ScaleProcess, err error) {
	name := fmt.Sprintf("bench-scale-proc-%d", n)
	dir := filepath.Join(cfg.Dir, name)
	defer os.RemoveAll(dir)
	start := time.Now()
	ch, err := cfg.Command.start(verifierSpec(name, dir, c.natsURL(), ""))
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := ch.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if _, err := ch.waitReady(ctx, 10*time.Minute); err != nil {
		return nil, err
	}
	sp := &ScaleProcess{CatchUp: time.Since(start)}
	mem, err := readMemory(ch.pid())
	if err != nil {
		return nil, err
	}
	sp.RSS, sp.Peak = mem.RSS, mem.Peak
	return sp, nil
}

// liveHeap returns the live Go heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
