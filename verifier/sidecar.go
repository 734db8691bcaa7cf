package verifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// Defaults for SidecarConfig.
const (
	DefaultHTTPAddr   = "127.0.0.1:8421"
	DefaultPruneEvery = time.Minute
)

// SidecarConfig configures a Sidecar.
type SidecarConfig struct {
	// Verifier configures token checks.
	Verifier Config
	// DataDir holds the denylist. Required.
	DataDir string
	// HTTPAddr is where the sidecar listens, host:port; port 0 picks one.
	// Default DefaultHTTPAddr.
	HTTPAddr string
	// PruneEvery is how often expired denylist entries are deleted.
	// Default DefaultPruneEvery.
	PruneEvery time.Duration
	// Logger receives the sidecar's logs. Nil uses slog.Default().
	Logger *slog.Logger
}

// Sidecar is the verifier process: it follows HERALD_KEYS and the HERALD
// stream into a Pebble denylist and answers /v1/verify over HTTP.
type Sidecar struct {
	cfg      SidecarConfig
	conn     *bus.Conn
	db       *store.DB
	keys     *KeySet
	follower *Follower
	verifier *Verifier
	ln       net.Listener
	log      *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

// OpenSidecar opens the denylist in cfg.DataDir and listens on cfg.HTTPAddr.
// Call Run to start serving and Close to release the denylist.
func OpenSidecar(cfg SidecarConfig, conn *bus.Conn) (*Sidecar, error) {
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DefaultHTTPAddr
	}
	if cfg.PruneEvery <= 0 {
		cfg.PruneEvery = DefaultPruneEvery
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "verifier")
	if cfg.DataDir == "" {
		return nil, errors.New("open verifier: data dir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open verifier: %w", err)
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, "denylist"), store.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open verifier: %w", err)
	}
	sc := &Sidecar{cfg: cfg, conn: conn, db: db, log: log}
	sc.keys = NewKeySet(func(kid string) bool { return db.Contains(denyKey(bus.KindKey, kid)) }, log)
	sc.follower = NewFollower(conn, db, sc.keys, log)
	sc.verifier, err = New(cfg.Verifier, sc.keys, db, sc.Ready)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open verifier: %w", err)
	}
	sc.ln, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open verifier: listen: %w", err)
	}
	return sc, nil
}

// Verifier returns the sidecar's token verifier.
func (s *Sidecar) Verifier() *Verifier { return s.verifier }

// Addr returns the address the sidecar's HTTP server listens on.
func (s *Sidecar) Addr() net.Addr { return s.ln.Addr() }

// URL returns the base http:// URL of the sidecar.
func (s *Sidecar) URL() string { return "http://" + s.ln.Addr().String() }

// Ready reports whether the sidecar gives verdicts: keys loaded, the
// denylist caught up with the stream, and NATS connected.
func (s *Sidecar) Ready() bool {
	return s.keys.Loaded() && s.follower.CaughtUp() && s.conn.Connected()
}

// WaitApplied blocks until the sidecar has applied the revocation with
// stream sequence seq, or ctx ends.
func (s *Sidecar) WaitApplied(ctx context.Context, seq uint64) error {
	return s.follower.WaitApplied(ctx, seq)
}

// Status is what /v1/status reports.
type Status struct {
	FollowerStatus
	Ready      bool   `json:"ready"`
	Connected  bool   `json:"connected"`
	Stale      bool   `json:"stale"`
	KeysLoaded bool   `json:"keys_loaded"`
	Keys       int    `json:"keys"`
	Denylist   int    `json:"denylist_size"`
	Version    string `json:"version,omitempty"`
}

// Status returns a snapshot of the sidecar's state.
func (s *Sidecar) Status() Status {
	st := Status{
		FollowerStatus: s.follower.Status(),
		Connected:      s.conn.Connected(),
		KeysLoaded:     s.keys.Loaded(),
		Keys:           len(s.keys.Keys()),
		Denylist:       s.db.Len(),
	}
	st.Ready = st.KeysLoaded && st.CaughtUp && st.Connected
	st.Stale = !st.Connected
	return st
}

// Run serves until ctx ends: it follows keys and revocations, prunes
// expired entries, and answers HTTP. It logs one line with "ready" and the
// listen address once the sidecar first gives verdicts. It returns after
// every goroutine it started has stopped.
func (s *Sidecar) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	run("keys", func(ctx context.Context) error { return s.keys.Watch(ctx, s.conn) })
	run("revocations", s.follower.Run)
	run("prune", s.prune)
	run("http", func(ctx context.Context) error { return Serve(ctx, s.ln, newHandler(s)) })
	run("ready", s.announce)
	wg.Wait()
	close(errc)
	return <-errc // the first error, or nil
}

// announce logs the ready line once the sidecar is first ready.
func (s *Sidecar) announce(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !s.Ready() {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	s.log.Info("verifier ready", "http", s.URL(), "applied_seq", s.db.Applied(), "keys", len(s.keys.Keys()))
	return nil
}

func (s *Sidecar) prune(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			n, err := s.db.Prune()
			if err != nil {
				s.log.Error("prune denylist", "err", err)
				continue
			}
			if n > 0 {
				s.log.Info("pruned expired denylist entries", "count", n, "remaining", s.db.Len())
			}
		}
	}
}

// Close closes the denylist (and the listener, if Run never ran). Call it
// after Run has returned. It is safe to call more than once.
func (s *Sidecar) Close() error {
	s.closeOnce.Do(func() {
		s.ln.Close()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}
