package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/internal/tasks"
	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/browser"
	"go.opentelemetry.io/otel/metric"
)

// Defaults for Config.
const (
	DefaultHTTPAddr = "127.0.0.1:8421"
	// DefaultAdminAddr is where a sidecar in proxy mode serves its own
	// endpoints, apart from the application's listener.
	DefaultAdminAddr    = "127.0.0.1:8422"
	DefaultPruneEvery   = time.Minute
	DefaultMaxStaleness = 30 * time.Second
)

// What a sidecar does once it has been cut off from the bus for longer than
// its maximum staleness (Config.OnStale).
const (
	// StaleDeny fails closed: no verdicts (503) until the bus is back and
	// the denylist has caught up.
	StaleDeny = "deny"
	// StaleAllow fails open: verdicts go on from the last state, marked
	// with the X-Herald-Stale header.
	StaleAllow = "allow"
)

// Config configures a Sidecar.
type Config struct {
	// Verifier configures token checks.
	Verifier verifier.Config
	// EventKeys pins the issuers' event keys by kid (RFC 7638 thumbprint):
	// only events and token keys they signed are trusted. Empty: trust the
	// event keys found at start, or the first to appear (trust on first use).
	EventKeys []string
	// RootKeys pins root keys by kid: event keys they certify for
	// Verifier.Issuer are trusted, and event keys they revoke never are,
	// pinned or not.
	RootKeys []string
	// DataDir holds the denylist. Required.
	DataDir string
	// HTTPAddr is where the sidecar listens, host:port; port 0 picks one.
	// Default DefaultHTTPAddr.
	HTTPAddr string
	// NoListen runs the sidecar without its HTTP server, for services that
	// embed the verifier and use verifier.Middleware. HTTPAddr and Upstream are then
	// ignored.
	NoListen bool
	// Upstream, when set, is the http(s) URL of the application the sidecar
	// proxies to (proxy mode): every path on HTTPAddr goes there if its
	// token verifies (with cookie sessions, but /.herald/), and the
	// sidecar's own endpoints (/v1/verify, /v1/status, /healthz, /readyz,
	// /metrics) move to AdminAddr.
	Upstream string
	// AdminAddr is where a sidecar in proxy mode serves its own endpoints,
	// host:port; port 0 picks one. Default DefaultAdminAddr, or loopback
	// port 0 when HTTPAddr's port is 0. Without Upstream the sidecar's
	// endpoints are its API, on HTTPAddr, and AdminAddr is not used.
	AdminAddr string
	// Cookies, when set, adds browser sessions to proxy mode: a
	// __Host-herald cookie stands for a session whose tokens only the
	// sidecar holds (see browser.Config). Requires Upstream.
	Cookies *browser.Config
	// PruneEvery is how often expired denylist entries are deleted.
	// Default DefaultPruneEvery.
	PruneEvery time.Duration
	// MaxStaleness is how long the sidecar may be cut off from the bus
	// (no delivery, no answer from JetStream) before it counts as stale:
	// not ready, and OnStale applies. Default DefaultMaxStaleness.
	MaxStaleness time.Duration
	// OnStale is StaleDeny (the default) or StaleAllow.
	OnStale string
	// HeartbeatEvery is how often the sidecar reports to the
	// HERALD_VERIFIERS bucket. Default bus.DefaultHeartbeatEvery; negative
	// disables heartbeats.
	HeartbeatEvery time.Duration
	// FleetTTL is the TTL of HERALD_VERIFIERS if the sidecar must create
	// it. Default bus.DefaultFleetTTL.
	FleetTTL time.Duration
	// ID names the sidecar in the fleet. Default: an id created at first
	// start and kept in DataDir/verifier.id.
	ID string
	// Version is reported in heartbeats and status.
	Version string
	// MeterProvider receives the sidecar's metrics (verify latency and
	// outcomes, propagation lag, denylist size, cache, stream lag). Nil
	// uses the global OpenTelemetry provider.
	MeterProvider metric.MeterProvider
	// Metrics serves GET /metrics, e.g. the Prometheus exporter's handler
	// for MeterProvider; nil answers 404. Exporters are set up by the
	// program (cmd/herald), not by this package.
	Metrics http.Handler
	// Logger receives the sidecar's logs. Nil uses slog.Default().
	Logger *slog.Logger
	// Timeouts bound slow clients of the sidecar's HTTP server; zero
	// fields keep the defaults (see httpserve.Serve). Requests a token or session
	// admitted in proxy mode are exempt from the read and write timeouts.
	Timeouts httpserve.Timeouts
}

func (c *Config) setDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
		if _, port, err := net.SplitHostPort(c.HTTPAddr); err == nil && port == "0" {
			c.AdminAddr = "127.0.0.1:0"
		}
	}
	if c.PruneEvery <= 0 {
		c.PruneEvery = DefaultPruneEvery
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.OnStale == "" {
		c.OnStale = StaleDeny
	}
	if c.HeartbeatEvery == 0 {
		c.HeartbeatEvery = bus.DefaultHeartbeatEvery
	}
	if c.FleetTTL <= 0 {
		c.FleetTTL = bus.DefaultFleetTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Cookies != nil {
		cc := *c.Cookies // the caller's config stays as it was
		if cc.KeyFile == "" {
			cc.KeyFile = filepath.Join(c.DataDir, browser.DefaultKeyFile)
		}
		cc.EnsureDefaults()
		c.Cookies = &cc
	}
}

// Validate reports every problem with c at once. The Verifier config is
// checked by New.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.MaxStaleness < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("max staleness %s is below 100ms", c.MaxStaleness))
	}
	if c.OnStale != StaleDeny && c.OnStale != StaleAllow {
		errs = append(errs, fmt.Errorf("on-stale %q: want deny or allow", c.OnStale))
	}
	if c.HeartbeatEvery > 0 && c.HeartbeatEvery < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat interval %s is below 10ms", c.HeartbeatEvery))
	}
	if c.ID != "" && !bus.ValidVerifierID(c.ID) {
		errs = append(errs, fmt.Errorf("id %q: want 1 to 128 of A-Z a-z 0-9 - _ = .", c.ID))
	}
	if c.Upstream != "" && !c.NoListen {
		if _, err := parseUpstream(c.Upstream); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Cookies != nil {
		if c.Upstream == "" || c.NoListen {
			errs = append(errs, errors.New("cookie sessions need proxy mode (an upstream)"))
		}
		errs = append(errs, c.Cookies.Validate())
	}
	return errors.Join(errs...)
}

// Sidecar is the verifier process: it follows HERALD_KEYS and the HERALD
// stream into a Pebble denylist and answers /v1/verify over HTTP.
type Sidecar struct {
	cfg      Config
	conn     *bus.Conn
	db       *store.DB
	keys     *verifier.KeySet
	follower *verifier.Follower
	verifier *verifier.Verifier
	live     *verifier.LiveSet
	proxy    *proxy            // nil unless in proxy mode
	sessions *browser.Sessions // nil unless cookie sessions are on
	ln       net.Listener      // nil with NoListen
	adminLn  net.Listener      // the own endpoints' listener in proxy mode; else nil
	log      *slog.Logger
	id       string
	host     string
	started  time.Time

	metrics   *sidecarMetrics
	closeOnce sync.Once
	closeErr  error
}

// Open opens the denylist in cfg.DataDir and listens on cfg.HTTPAddr.
// Call Run to start serving and Close to release the denylist.
func Open(cfg Config, conn *bus.Conn) (*Sidecar, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open verifier: %w", err)
	}
	log := cfg.Logger.With("component", "verifier")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open verifier: %w", err)
	}
	id := cfg.ID
	if id == "" {
		var err error
		if id, err = loadID(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("open verifier: %w", err)
		}
	}
	db, err := verifier.OpenDenylist(filepath.Join(cfg.DataDir, "denylist"), log)
	if err != nil {
		return nil, fmt.Errorf("open verifier: %w", err)
	}
	host, _ := os.Hostname()
	keys := verifier.NewKeySet(func(kid string) bool { return db.Contains(verifier.DenyKey(bus.KindKey, kid)) }, log)
	keys.TrustEventKeys(cfg.EventKeys...)
	keys.TrustRootKeys(cfg.Verifier.Issuer, cfg.RootKeys...)
	sc := &Sidecar{cfg: cfg, conn: conn, db: db, keys: keys, live: verifier.NewLiveSet(), log: log, id: id, host: host, started: time.Now()}
	// The follower calls revokeLive only once Run has started, when every
	// field of sc is set.
	sc.follower = verifier.NewFollower(conn, db, keys, log, verifier.WithOnApply(sc.revokeLive))
	vcfg := cfg.Verifier
	if vcfg.MeterProvider == nil {
		vcfg.MeterProvider = cfg.MeterProvider
	}
	vcfg.Live = sc.live
	vcfg.Stale = func() bool { return !sc.Ready() }
	if vcfg.OnUnknownKey == nil {
		vcfg.OnUnknownKey = sc.requestKey
	}
	sc.verifier, err = verifier.New(vcfg, keys, db, sc.givesVerdicts)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open verifier: %w", err)
	}
	if sc.metrics, err = newSidecarMetrics(cfg.MeterProvider, sc); err != nil {
		db.Close()
		return nil, fmt.Errorf("open verifier: %w", err)
	}
	if cfg.NoListen {
		return sc, nil
	}
	if cfg.Upstream != "" {
		u, _ := parseUpstream(cfg.Upstream) // checked by Validate
		sc.proxy = newProxy(u, sc.verifier, log)
		if cfg.Cookies != nil {
			up := browser.Upstream{Proxy: sc.proxy.rp, Forward: http.HandlerFunc(sc.proxy.forward), Bearer: sc.proxy}
			if sc.sessions, err = browser.New(*cfg.Cookies, sc.verifier, up, conn, log); err != nil {
				sc.metrics.close()
				db.Close()
				return nil, fmt.Errorf("open verifier: %w", err)
			}
		}
		sc.proxy.holdHooks() // once every hook is set
	}
	sc.ln, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		sc.metrics.close()
		db.Close()
		return nil, fmt.Errorf("open verifier: listen: %w", err)
	}
	if sc.proxy != nil {
		if sc.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			sc.ln.Close()
			sc.metrics.close()
			db.Close()
			return nil, fmt.Errorf("open verifier: listen for the admin endpoints: %w", err)
		}
	}
	return sc, nil
}

// revokeLive ends the requests in flight that revs match; the Follower
// calls it once revs are committed to the denylist.
// It also announces the sidecar's heartbeat at once, so that an issuer
// waiting for the fleet to confirm (revoke --wait) hears of it without
// waiting for the next periodic heartbeat.
func (s *Sidecar) revokeLive(revs []*bus.Revocation) {
	now := time.Now()
	for _, r := range revs {
		s.metrics.lag.Record(context.Background(), now.Sub(r.At).Seconds(), s.metrics.attr)
	}
	if n := s.live.Revoke(revs); n > 0 {
		s.log.Info("requests in flight ended by revocation", "count", n)
	}
	if err := s.conn.Announce(s.Heartbeat()); err != nil {
		s.log.Debug("announce applied revocations", "err", err)
	}
}

// requestKey asks the issuers, on bus.SubjectKeyRequest, for the key kid
// of trusted external issuer iss that a token named and the key set does
// not hold; the verifier calls it at a bounded rate
// (verifier.Config.UnknownKeyInterval). Publishing on core NATS does not
// block.
func (s *Sidecar) requestKey(iss, kid string) {
	data, err := json.Marshal(bus.KeyRequest{Issuer: iss, Kid: kid})
	if err == nil {
		err = s.conn.NATS().Publish(bus.SubjectKeyRequest, data)
	}
	if err != nil {
		s.log.Warn("ask the issuers for an external issuer's key", "iss", iss, "err", err)
		return
	}
	s.log.Info("asked the issuers for an unknown key of an external issuer", "iss", iss)
}

// errShutdown ends the requests in flight when the sidecar stops.
var errShutdown = errors.New("verifier: shutting down")

// Verifier returns the sidecar's token verifier.
func (s *Sidecar) Verifier() *verifier.Verifier { return s.verifier }

// Addr returns the address the sidecar's HTTP server listens on, nil with
// NoListen.
func (s *Sidecar) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL returns the base http:// URL of the sidecar, "" with NoListen.
func (s *Sidecar) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// AdminURL returns the base http:// URL of the sidecar's own endpoints in
// proxy mode, "" otherwise (they are then on URL).
func (s *Sidecar) AdminURL() string {
	if s.adminLn == nil {
		return ""
	}
	return "http://" + s.adminLn.Addr().String()
}

// ID returns the sidecar's id in the fleet.
func (s *Sidecar) ID() string { return s.id }

// Ready reports whether the sidecar is ready: keys loaded, the denylist
// caught up with the stream, and not stale.
func (s *Sidecar) Ready() bool {
	return s.keys.Loaded() && s.follower.CaughtUp() && !s.stale()
}

// stale reports whether the sidecar has been cut off from the bus for
// longer than MaxStaleness.
func (s *Sidecar) stale() bool {
	return time.Since(s.follower.LastContact()) > s.cfg.MaxStaleness
}

// givesVerdicts gates every verdict: when ready, or, with on-stale allow,
// whenever the denylist holds a state that was once caught up.
func (s *Sidecar) givesVerdicts() bool {
	if s.Ready() {
		return true
	}
	return s.cfg.OnStale == StaleAllow && s.keys.Loaded() && s.follower.HasState()
}

// WaitReady blocks until the sidecar is ready or ctx ends.
func (s *Sidecar) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !s.Ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// WaitApplied blocks until the sidecar has applied the revocation with
// stream sequence seq, or ctx ends.
func (s *Sidecar) WaitApplied(ctx context.Context, seq uint64) error {
	return s.follower.WaitApplied(ctx, seq)
}

// Status is what /v1/status reports.
type Status struct {
	verifier.FollowerStatus
	ID        string `json:"id"`
	Ready     bool   `json:"ready"`
	Connected bool   `json:"connected"`
	// Stale: cut off from the bus for longer than MaxStaleness.
	Stale bool `json:"stale"`
	// Staleness is how long ago, in seconds, the bus was last heard from.
	Staleness    float64   `json:"staleness_seconds"`
	LastContact  time.Time `json:"last_contact"`
	MaxStaleness string    `json:"max_staleness"`
	OnStale      string    `json:"on_stale"`
	// Verdicts: /v1/verify answers (200 or 401) rather than 503.
	Verdicts   bool `json:"verdicts"`
	KeysLoaded bool `json:"keys_loaded"`
	Keys       int  `json:"keys"`
	// TrustedIssuers counts the external issuers whose tokens are
	// accepted, ExternalKeys their keys held.
	TrustedIssuers int `json:"trusted_issuers"`
	ExternalKeys   int `json:"external_keys"`
	// EventKeys are the kids of the event keys whose events are applied.
	EventKeys    []string `json:"event_keys"`
	Denylist     int      `json:"denylist_size"`
	CacheEntries int      `json:"cache_entries"`
	LiveRequests int      `json:"live_requests"`
	Upstream     string   `json:"upstream,omitempty"`
	// CookieSessions: browser sessions are on (proxy mode).
	CookieSessions bool   `json:"cookie_sessions,omitempty"`
	Version        string `json:"version,omitempty"`
}

// Status returns a snapshot of the sidecar's state.
func (s *Sidecar) Status() Status {
	last := s.follower.LastContact()
	st := Status{
		FollowerStatus: s.follower.Status(),
		ID:             s.id,
		Connected:      s.conn.Connected(),
		LastContact:    last.UTC(),
		Staleness:      time.Since(last).Seconds(),
		MaxStaleness:   s.cfg.MaxStaleness.String(),
		OnStale:        s.cfg.OnStale,
		KeysLoaded:     s.keys.Loaded(),
		Keys:           len(s.keys.Keys()),
		TrustedIssuers: len(s.keys.Trusted()),
		ExternalKeys:   s.keys.ExternalKeys(),
		EventKeys:      s.keys.EventKeys(),
		Denylist:       s.db.Len(),
		LiveRequests:   s.live.Len(),
		Version:        s.cfg.Version,
	}
	if s.proxy != nil {
		st.Upstream = s.cfg.Upstream
	}
	if st.LastError == "" {
		st.LastError = s.keys.LastError()
	}
	st.CookieSessions = s.sessions != nil
	_, _, st.CacheEntries = s.verifier.CacheStats()
	st.Stale = time.Since(last) > s.cfg.MaxStaleness
	st.Ready = st.KeysLoaded && st.CaughtUp && !st.Stale
	st.Verdicts = st.Ready || (s.cfg.OnStale == StaleAllow && st.KeysLoaded && s.follower.HasState())
	return st
}

// Run serves until ctx ends: it follows keys and revocations, prunes
// expired entries, and answers HTTP. It logs one line with "ready" and the
// listen addresses (http, and admin_http in proxy mode) once the sidecar
// first gives verdicts. It returns after
// every goroutine it started has stopped.
func (s *Sidecar) Run(ctx context.Context) error {
	g := tasks.New(ctx) // the first error stops every task
	run := g.Go
	run("keys", func(ctx context.Context) error { return s.keys.Watch(ctx, s.conn) })
	run("revocations", s.follower.Run)
	run("prune", s.prune)
	run("bus watch", s.watchBus)
	if s.cfg.HeartbeatEvery > 0 {
		run("heartbeat", s.heartbeat)
	}
	if s.ln != nil {
		run("http", func(ctx context.Context) error { return httpserve.ServeWith(ctx, s.ln, newHandler(s), s.cfg.Timeouts) })
	}
	if s.adminLn != nil {
		run("admin http", func(ctx context.Context) error {
			return httpserve.ServeWith(ctx, s.adminLn, newAdminHandler(s), s.cfg.Timeouts)
		})
	}
	run("live requests", func(ctx context.Context) error {
		// Streams and upgraded connections the proxy holds would keep the
		// HTTP server's graceful shutdown waiting: end them.
		<-ctx.Done()
		s.live.CloseAll(errShutdown)
		return nil
	})
	if s.sessions != nil {
		run("cookie session timeouts", s.sessions.Run)
	}
	run("ready", s.announce)
	return g.Wait()
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
	args := []any{"http", s.URL(), "id", s.id, "applied_seq", s.db.Applied(), "keys", len(s.keys.Keys())}
	if s.proxy != nil {
		args = append(args, "upstream", s.cfg.Upstream)
	}
	if s.adminLn != nil {
		args = append(args, "admin_http", s.AdminURL())
	}
	if s.sessions != nil {
		args = append(args, "cookie_sessions", true)
	}
	s.log.Info("verifier ready", args...)
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

// Close closes the denylist (and the listeners, if Run never ran). Call it
// after Run has returned. It is safe to call more than once.
func (s *Sidecar) Close() error {
	s.closeOnce.Do(func() {
		if s.ln != nil {
			s.ln.Close()
		}
		if s.adminLn != nil {
			s.adminLn.Close()
		}
		s.metrics.close()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}
