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

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/verifier"
	"golang.org/x/sync/errgroup"
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
	intro    *verifier.Verifier // introspection: the verifiers' own checks
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
}

// Open prepares an issuer: it creates or updates the streams and buckets,
// opens its state, moves sessions an older version kept in it to
// HERALD_SESSIONS, loads or creates the signing keys and publishes them to
// HERALD_KEYS before anything is signed, loads or creates the admin token,
// and listens on cfg.HTTPAddr. Call Run to serve and Close afterwards.
func Open(ctx context.Context, cfg Config, conn *bus.Conn) (_ *Service, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("issuer config: %w", err)
	}
	log := cfg.Logger.With("component", "issuer")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	err = conn.EnsureStreams(ctx, bus.StreamConfig{
		RevocationMaxAge: cfg.revocationLifetime() + retentionMargin,
		Replicas:         cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	if err := conn.EnsureFleet(ctx, bus.FleetConfig{Replicas: cfg.Replicas}); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	if err := conn.EnsureBFF(ctx, bus.BFFConfig{Replicas: cfg.Replicas}); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	err = conn.EnsureSessions(ctx, bus.SessionsConfig{TTL: cfg.SessionTTL + sessionsMargin, Replicas: cfg.Replicas})
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	kv, err := conn.Sessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	s := &Service{cfg: cfg, conn: conn, log: log, keyWork: keyWork{wake: make(chan struct{}, 1)}}
	s.sessions = &sessionStore{kv: kv,
		seal: func(name string, data []byte) ([]byte, error) {
			return conn.Signer().SignEntry(bus.BucketSessions, name, data)
		},
		unseal: func(name string, value []byte) ([]byte, error) {
			return bus.OpenEntry(bus.BucketSessions, name, value, s.trusted.EventKey)
		},
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.state, err = store.Open(filepath.Join(cfg.DataDir, "state"), store.Options{Sync: true, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	s.outbox = newOutbox(s.state, conn, log)
	if err := s.shareOldCutoffs(); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	s.deny, err = store.Open(filepath.Join(cfg.DataDir, "denylist"), store.Options{Logger: log, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	if s.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("open issuer: listen: %w", err)
	}
	if cfg.IssuerURL == "" {
		s.cfg.IssuerURL = "http://" + s.ln.Addr().String()
	}
	if err := s.openEventKey(ctx); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	if err := s.resignLegacy(ctx); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	if err := s.moveLegacySessions(ctx); err != nil { // signs the entries it writes
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	s.follow = verifier.NewFollower(conn, s.deny, s.trusted, log)
	s.follow.OnApply(s.noteRevocations)
	if s.keys, err = s.openKeys(ctx); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	admin, path, created, err := loadAdminToken(cfg.AdminToken, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	if err := s.loadCredentials(admin); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	switch {
	case created:
		log.Info("admin token created", "file", path)
	case path != "":
		log.Info("admin token loaded", "file", path)
	default:
		log.Info("admin token from environment")
	}
	s.limits = newLimiter(cfg.RateLimit, cfg.ClientRateLimit, s.now)
	s.replay = newProofCache(dpopReplayMax, dpopPerKeyMax)
	s.clientGuard = newClientGuard(s.now)
	if s.metrics, err = newIssuerMetrics(cfg.MeterProvider, s); err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	// Introspection runs the verifiers' own checks, so both paths agree.
	s.intro, err = verifier.New(verifier.Config{Issuer: s.cfg.IssuerURL, Audience: cfg.Audience, Leeway: cfg.Leeway},
		s.trusted, s.deny, func() bool { return s.follow.CaughtUp() && s.trusted.Loaded() })
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	return s, nil
}

// openEventKey loads or creates the event key, makes the connection sign
// with it, trusts it in the issuer's key set, and publishes its public
// half under bus.EventKeyPrefix.
func (s *Service) openEventKey(ctx context.Context) error {
	var k *signingKey
	var created bool
	var err error
	if s.cfg.EventKeyFile != "" {
		k, err = readPrivateKey(s.cfg.EventKeyFile, eventKeyForbidden)
	} else {
		k, created, err = openEventKey(filepath.Join(s.cfg.DataDir, "event-key"))
	}
	if err != nil {
		return err
	}
	signer, err := bus.NewSigner(k.priv, s.cfg.IssuerURL)
	if err != nil {
		return err
	}
	// Verifiers refuse tokens that live longer than the key entries say,
	// whoever signed them.
	signer.SetMaxTokenLifetime(s.cfg.MaxAccessTTL)
	s.eventKey = k
	// The key set that checks what the bus carries: the other replicas'
	// event keys as pinned or found, and this issuer's own from the start.
	s.trusted = verifier.NewKeySet(nil, s.log)
	s.trusted.TrustEventKeys(s.cfg.EventKeys...)
	s.trusted.TrustRootKeys(s.cfg.IssuerURL, s.cfg.RootKeys...)
	if err := s.checkOwnEventKey(ctx, k.kid); err != nil {
		return err
	}
	if err := s.trusted.AddEventKey(k.jwk, k.priv.Public()); err != nil {
		return err
	}
	s.conn.SetSigner(signer)
	if err := s.conn.PublishEventKey(ctx); err != nil {
		return err
	}
	if created {
		s.log.Info("event key created; pin it on verifiers with --event-keys", "event_kid", k.kid)
	}
	return nil
}

// EventKeyID returns the kid of the key that signs this issuer's events:
// the value verifiers pin with --event-keys.
func (s *Service) EventKeyID() string { return s.eventKey.kid }

// openKeys loads the signing keys and publishes the current and the next
// key before anything is signed.
func (s *Service) openKeys(ctx context.Context) (*keyring, error) {
	// A key revoked while this replica was down, or through another
	// replica, is never published again.
	revoked, err := s.conn.RevokedKeys(ctx)
	if err != nil {
		return nil, err
	}
	keys, created, err := openKeyring(filepath.Join(s.cfg.DataDir, "keys"), s.cfg.Algorithm, revoked)
	if err != nil {
		return nil, err
	}
	if created {
		s.log.Info("signing keys created", "current", keys.Current().kid, "next", keys.Next().kid, "alg", s.cfg.Algorithm)
	}
	for _, k := range keys.All() {
		if err := publishKey(ctx, s.conn, k); err != nil {
			return nil, err
		}
	}
	return keys, nil
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
	g, ctx := errgroup.WithContext(ctx) // the first error stops every task
	run := func(name string, fn func(context.Context) error) {
		g.Go(func() error {
			if err := fn(ctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	run("keys", func(ctx context.Context) error { return s.trusted.Watch(ctx, s.conn) })
	run("revocations", func(ctx context.Context) error {
		if s.followHold != nil {
			select {
			case <-s.followHold:
			case <-ctx.Done():
				return nil
			}
		}
		return s.follow.Run(ctx)
	})
	run("outbox", s.outbox.Run)
	run("key rotation", s.rotateKeys)
	run("snapshots", s.runSnapshots)
	run("clock skew", s.watchSkew)
	run("shared cut-offs", s.flushShares)
	run("http", func(ctx context.Context) error { return httpserve.Serve(ctx, s.ln, newHandler(s)) })
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
