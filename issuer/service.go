package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/internal/tasks"
	"github.com/heraldsec/herald/signals"
	"github.com/heraldsec/herald/ssf"
	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/verifier"
)

// Service is the issuer: it signs tokens, keeps sessions, refresh tokens,
// clients and keys, takes revocations, and publishes all of it as events.
type Service struct {
	cfg      Config
	conn     *bus.Conn
	keys     *keyring
	state    *store.DB     // clients, revocation cut-offs, outbox (synced)
	sessions *sessionStore // HERALD_SESSIONS, shared by every replica
	outbox   *outbox
	trusted  *verifier.KeySet // HERALD_KEYS as verifiers see it
	deny     *store.DB        // the denylist, for introspection
	follow   *verifier.Follower
	head     *sharedReads[string, uint64] // streams' last sequences, for barrier
	intro    *verifier.Verifier           // introspection: the verifiers' own checks
	limits   *limiter
	replay   *proofCache // DPoP proofs accepted at the token endpoint
	creds    *credentials
	metrics  *issuerMetrics
	ln       net.Listener
	log      *slog.Logger

	keyMu    sync.Mutex // serializes rotation, retirement and key revocation
	eventKey *signingKey
	keyWork  keyWork // revocations of keys (own ones, or all) to react to

	dummyOnce sync.Once
	dummy     []byte // bcrypt hash compared against for unknown clients

	closeOnce sync.Once

	fed           *federation.Federation // nil without trusted issuers
	signalKV      jetstream.KeyValue     // HERALD_SIGNALS
	signalSources []signals.Source       // whose logout tokens and SETs are taken

	transmitter *ssf.Transmitter // the SSF transmitter; nil when off

	audiences   audienceVerifiers // introspection's checks for other audiences
	clientGuard *clientGuard      // bounds on client authentication
	refusedLog  refusedLog        // of events the feed refuses

	// followHold, when a test sets it before Run, delays the revocation
	// follower until it is closed.
	followHold chan struct{}
	// catchUpWait, when a test sets it, replaces catchUpWait.
	catchUpWait time.Duration

	// Measured by watchSkew: this issuer's clock minus the NATS server's,
	// and the largest skew of a live verifier against it, in nanoseconds.
	clockOffset atomic.Int64
	clockKnown  atomic.Bool
	maxSkew     atomic.Int64
	// fleetLive is how many verifiers had a live heartbeat at watchSkew's
	// last listing of the fleet; fleetKnown says one succeeded.
	fleetLive  atomic.Int64
	fleetKnown atomic.Bool
}

// Open prepares an issuer: it creates or updates the streams and buckets,
// opens its state, moves sessions an older version kept in it to
// HERALD_SESSIONS, loads or creates the signing keys and publishes them to
// HERALD_KEYS before anything is signed, loads or creates the admin token,
// and listens on cfg.HTTPAddr. Call Run to serve and Close afterwards.
func Open(ctx context.Context, cfg Config, conn *bus.Conn) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("issuer config: %w", err)
	}
	s, err := open(ctx, cfg, conn)
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	return s, nil
}

// open builds the Service of a valid cfg, each part before whatever uses
// it. Its errors say which part failed; Open wraps them once.
func open(ctx context.Context, cfg Config, conn *bus.Conn) (_ *Service, err error) {
	log := cfg.Logger.With("component", "issuer")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	sessionsKV, err := ensureBus(ctx, cfg, conn)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, conn: conn, log: log, keyWork: keyWork{wake: make(chan struct{}, 1)}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.state, err = store.Open(filepath.Join(cfg.DataDir, "state"), store.Options{Sync: true, Logger: log}); err != nil {
		return nil, err
	}
	s.outbox = newOutbox(s.state, conn, log)
	s.head = newHeadReader(conn)
	if err := shareOldCutoffs(s.state); err != nil {
		return nil, err
	}
	if s.deny, err = store.Open(filepath.Join(cfg.DataDir, "denylist"), store.Options{Logger: log, Now: cfg.Now}); err != nil {
		return nil, err
	}
	if s.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if cfg.IssuerURL == "" {
		cfg.IssuerURL = "http://" + s.ln.Addr().String()
		s.cfg = cfg
	}

	// The event key signs what goes on the bus, so it comes before
	// anything is published or written to HERALD_SESSIONS.
	var created bool
	if s.eventKey, created, err = loadEventKey(cfg); err != nil {
		return nil, err
	}
	if s.trusted, err = newKeySet(ctx, cfg, conn, s.eventKey, log); err != nil {
		return nil, err
	}
	signer, err := signEvents(ctx, cfg, conn, s.eventKey)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("event key created; pin it on verifiers with --event-keys", "event_kid", s.eventKey.kid)
	}
	s.sessions = newSessionStore(sessionsKV, conn, s.trusted)

	if err := s.resignLegacy(ctx); err != nil {
		return nil, err
	}
	if err := s.moveLegacySessions(ctx); err != nil { // signs the entries it writes
		return nil, err
	}
	if s.keys, err = openKeys(ctx, cfg, conn, log); err != nil {
		return nil, err
	}
	s.follow = verifier.NewFollower(conn, s.deny, s.trusted, log)
	s.follow.OnApply(s.noteRevocations) // reads s.keys
	if s.creds, err = openCredentials(cfg, s.state, s.now, log); err != nil {
		return nil, err
	}
	if s.signalKV, err = conn.Signals(ctx); err != nil {
		return nil, err
	}
	if err := s.openFederation(signer); err != nil {
		return nil, err
	}
	s.limits = newLimiter(cfg.RateLimit, cfg.ClientRateLimit, s.now)
	s.replay = newProofCache(dpopReplayMax, dpopPerKeyMax)
	s.clientGuard = newClientGuard(s.now)
	if s.metrics, err = newIssuerMetrics(cfg.MeterProvider, s); err != nil {
		return nil, err
	}
	introCfg := verifier.Config{Issuer: cfg.IssuerURL, Audience: cfg.Audience, Leeway: cfg.Leeway}
	if s.intro, err = newIntrospector(introCfg, s.trusted, s.deny, s.follow); err != nil {
		return nil, fmt.Errorf("introspection: %w", err)
	}
	if err := s.openSSF(); err != nil {
		return nil, err
	}
	return s, nil
}

// ensureBus creates or updates the streams and buckets the issuer uses and
// returns HERALD_SESSIONS.
func ensureBus(ctx context.Context, cfg Config, conn *bus.Conn) (jetstream.KeyValue, error) {
	err := conn.EnsureStreams(ctx, bus.StreamConfig{
		RevocationMaxAge: cfg.revocationLifetime() + retentionMargin,
		Replicas:         cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	if err := conn.EnsureFleet(ctx, bus.FleetConfig{Replicas: cfg.Replicas}); err != nil {
		return nil, err
	}
	if err := conn.EnsureRefreshRelay(ctx, bus.RefreshRelayConfig{Replicas: cfg.Replicas}); err != nil {
		return nil, err
	}
	if err := conn.EnsureSignals(ctx, bus.DefaultSignalsTTL, cfg.Replicas); err != nil {
		return nil, err
	}
	err = conn.EnsureSessions(ctx, bus.SessionsConfig{TTL: cfg.SessionTTL + sessionsMargin, Replicas: cfg.Replicas})
	if err != nil {
		return nil, err
	}
	return conn.Sessions(ctx)
}

// loadEventKey loads the event key from cfg.EventKeyFile, or loads or
// creates it in the data directory.
func loadEventKey(cfg Config) (k *signingKey, created bool, err error) {
	if cfg.EventKeyFile != "" {
		k, err = readPrivateKey(cfg.EventKeyFile, eventKeyForbidden)
		return k, false, err
	}
	return openEventKey(filepath.Join(cfg.DataDir, "event-key"))
}

// newKeySet returns the key set that checks what the bus carries: the
// other replicas' event keys as pinned or found, and this issuer's own,
// own, from the start. It refuses own if a pinned root key revoked it.
func newKeySet(ctx context.Context, cfg Config, conn *bus.Conn, own *signingKey, log *slog.Logger) (*verifier.KeySet, error) {
	trusted := verifier.NewKeySet(nil, log)
	trusted.TrustEventKeys(cfg.EventKeys...)
	trusted.TrustRootKeys(cfg.IssuerURL, cfg.RootKeys...)
	if err := checkOwnEventKey(ctx, conn, cfg.RootKeys, own.kid, log); err != nil {
		return nil, err
	}
	if err := trusted.AddEventKey(own.jwk, own.priv.Public()); err != nil {
		return nil, fmt.Errorf("trust own event key: %w", err)
	}
	return trusted, nil
}

// signEvents makes conn sign with the event key k and publishes its
// public half under bus.EventKeyPrefix.
func signEvents(ctx context.Context, cfg Config, conn *bus.Conn, k *signingKey) (*bus.Signer, error) {
	signer, err := bus.NewSigner(k.priv, cfg.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("event signer: %w", err)
	}
	// Verifiers refuse tokens that live longer than the key entries say,
	// whoever signed them.
	signer.SetMaxTokenLifetime(cfg.MaxAccessTTL)
	conn.SetSigner(signer)
	return signer, conn.PublishEventKey(ctx)
}

// EventKeyID returns the kid of the key that signs this issuer's events:
// the value verifiers pin with --event-keys.
func (s *Service) EventKeyID() string { return s.eventKey.kid }

// openKeys loads the signing keys and publishes the current and the next
// key before anything is signed.
func openKeys(ctx context.Context, cfg Config, conn *bus.Conn, log *slog.Logger) (*keyring, error) {
	// A key revoked while this replica was down, or through another
	// replica, is never published again.
	revoked, err := conn.RevokedKeys(ctx)
	if err != nil {
		return nil, err
	}
	keys, created, err := openKeyring(filepath.Join(cfg.DataDir, "keys"), cfg.Algorithm, revoked)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("signing keys created", "current", keys.Current().kid, "next", keys.Next().kid, "alg", cfg.Algorithm)
	}
	for _, k := range keys.All() {
		if err := publishKey(ctx, conn, k); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// openCredentials loads or creates the admin token and reads the named
// credentials from state.
func openCredentials(cfg Config, state *store.DB, now func() time.Time, log *slog.Logger) (*credentials, error) {
	admin, path, created, err := loadAdminToken(cfg.AdminToken, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	creds, err := loadCredentials(state, admin, now, log)
	if err != nil {
		return nil, err
	}
	switch {
	case created:
		log.Info("admin token created", "file", path)
	case path != "":
		log.Info("admin token loaded", "file", path)
	default:
		log.Info("admin token from environment")
	}
	return creds, nil
}

// newIntrospector returns a verifier for introspection by cfg: the
// verifiers' own checks, so both paths agree. It is ready once follow has
// caught up and the key set is loaded.
func newIntrospector(cfg verifier.Config, trusted *verifier.KeySet, deny *store.DB, follow *verifier.Follower) (*verifier.Verifier, error) {
	return verifier.New(cfg, trusted, deny, func() bool { return follow.CaughtUp() && trusted.Loaded() })
}

// IssuerURL returns the iss claim of the tokens this issuer signs.
func (s *Service) IssuerURL() string { return s.cfg.IssuerURL }

// Addr returns the address the API listens on.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// URL returns the base http:// URL of the API.
func (s *Service) URL() string { return "http://" + s.ln.Addr().String() }

// Run serves the HTTP API, publishes what the outbox holds, follows keys
// and revocations for introspection, and rotates and retires keys, until
// ctx ends. It returns once everything it started has stopped.
func (s *Service) Run(ctx context.Context) error {
	g := tasks.New(ctx) // the first error stops every task
	g.Go("keys", func(ctx context.Context) error { return s.trusted.Watch(ctx, s.conn) })
	g.Go("revocations", func(ctx context.Context) error {
		if s.followHold != nil {
			select {
			case <-s.followHold:
			case <-ctx.Done():
				return nil
			}
		}
		return s.follow.Run(ctx)
	})
	g.Go("outbox", s.outbox.Run)
	g.Go("key rotation", s.rotateKeys)
	g.Go("snapshots", s.runSnapshots)
	g.Go("clock skew", s.watchSkew)
	g.Go("shared cut-offs", s.flushShares)
	if s.fed != nil {
		g.Go("trusted issuers", s.fed.Run)
	}
	for _, p := range s.cfg.SSFPolls {
		g.Go("ssf poll "+p.URL, func(ctx context.Context) error { return s.pollSSF(ctx, p) })
	}
	if s.transmitter != nil {
		g.Go("ssf transmitter", s.runTransmitter)
	}
	g.Go("http", func(ctx context.Context) error { return httpserve.Serve(ctx, s.ln, newHandler(s)) })
	s.log.Info("issuer ready", "http", s.URL(), "kid", s.keys.Current().kid, "event_kid", s.eventKey.kid, "issuer", s.cfg.IssuerURL)
	return g.Wait()
}

// Close releases the listener and the stores. Call it after Run has
// returned. It is safe to call more than once.
func (s *Service) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		if s.ln != nil {
			s.ln.Close()
		}
		s.metrics.close()
		if s.outbox != nil {
			s.outbox.close()
		}
		for _, db := range []*store.DB{s.state, s.deny} {
			if db != nil {
				errs = append(errs, db.Close())
			}
		}
	})
	return errors.Join(errs...)
}

// now returns the issuer's clock.
func (s *Service) now() time.Time { return s.cfg.Now() }
