package federation

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/heraldsec/herald/bus"
)

// Defaults of Config.
const (
	// DefaultMinRefresh is the shortest time between two scheduled
	// refreshes of a key set, whatever its Cache-Control says.
	DefaultMinRefresh = 5 * time.Minute
	// DefaultMaxRefresh is the longest time between two scheduled
	// refreshes of a key set.
	DefaultMaxRefresh = 24 * time.Hour
	// DefaultRefresh is the time between two refreshes of a key set whose
	// response states no lifetime.
	DefaultRefresh = time.Hour
	// DefaultRetryMin is the first wait after a failed refresh; it
	// doubles after each failure up to DefaultRetryMax.
	DefaultRetryMin = 30 * time.Second
	// DefaultRetryMax bounds the wait after failed refreshes.
	DefaultRetryMax = 5 * time.Minute
	// DefaultMinPromptInterval is the shortest time between a refresh and
	// one prompted by a key request or an unknown kid.
	DefaultMinPromptInterval = 30 * time.Second
	// DefaultBusTimeout bounds one publication of an issuer's entries, or
	// one removal pass, on the bus.
	DefaultBusTimeout = 30 * time.Second
	// QueueGroup is the queue group of the issuers' subscription to
	// bus.SubjectKeyRequest: one replica answers each request.
	QueueGroup = "herald-federation"
)

// Config configures a Federation. Zero fields take their defaults.
type Config struct {
	// Issuers are the trusted external issuers, with their defaults
	// (LoadFile, FromURLs, Issuer.WithDefaults).
	Issuers []Issuer
	// Conn is the bus the keys and trust entries are published on, in
	// bus.BucketKeys, and key requests read from. Required.
	Conn *bus.Conn
	// Signer signs the entries, with the issuer's event key. Default:
	// Conn's signer.
	Signer *bus.Signer
	// EventKeys are the event keys whose signatures on entries already in
	// the bucket are accepted as current (so that replicas signing with
	// different trusted keys during a rotation do not rewrite each
	// other's entries). Default: Signer's key only.
	EventKeys bus.EventKeyFunc
	// HTTP is the client providers are read with. Redirects are never
	// followed whatever its CheckRedirect. Default: a client with
	// http.DefaultTransport.
	HTTP *http.Client
	// FetchTimeout bounds each HTTP request. Default DefaultFetchTimeout.
	FetchTimeout time.Duration
	// BusTimeout bounds one publication of an issuer's entries, or one
	// removal pass, so that a bus outage fails a refresh (retried with
	// backoff) rather than holds it. Default DefaultBusTimeout.
	BusTimeout time.Duration
	// Log receives refresh failures and recoveries. Default slog.Default().
	Log *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MinRefresh, MaxRefresh bound the time between scheduled refreshes of
	// an issuer, which its key set's Cache-Control max-age (or Expires)
	// sets; Refresh is used when the response states none. Defaults
	// DefaultMinRefresh, DefaultMaxRefresh, DefaultRefresh.
	MinRefresh, MaxRefresh, Refresh time.Duration
	// RetryMin and RetryMax bound the backoff after failed refreshes.
	// Defaults DefaultRetryMin, DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// MinPromptInterval is the shortest time between a refresh of an
	// issuer and one a key request or an unknown kid prompts. Default
	// DefaultMinPromptInterval.
	MinPromptInterval time.Duration
	// Grace is how long a key the provider dropped stays in the bucket.
	// Zero: the issuer's MaxTokenLifetime, so tokens it signed before
	// the rotation verify until they expire.
	Grace time.Duration
	// Revoked reports whether an admin revoked the key kid of issuer
	// iss: such a key is never published again, is removed from the
	// bucket, and Key does not return it. It must be safe for concurrent
	// use. Nil: none is.
	Revoked func(iss, kid string) bool
	// MeterProvider records the metrics. Default: the global provider.
	MeterProvider metric.MeterProvider
}

// Validate reports every problem with cfg, after defaults.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.Conn == nil {
		errs = append(errs, errors.New("conn is required"))
	}
	if cfg.Signer == nil {
		errs = append(errs, errors.New("signer is required (none set on the conn)"))
	}
	if _, err := Merge(cfg.Issuers); err != nil {
		errs = append(errs, err)
	}
	for _, is := range cfg.Issuers {
		if err := is.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("issuer %.128s: %w", is.URL, err))
		}
	}
	if cfg.MinRefresh > cfg.MaxRefresh {
		errs = append(errs, fmt.Errorf("min refresh %s exceeds max refresh %s", cfg.MinRefresh, cfg.MaxRefresh))
	}
	if cfg.RetryMin > cfg.RetryMax {
		errs = append(errs, fmt.Errorf("min retry %s exceeds max retry %s", cfg.RetryMin, cfg.RetryMax))
	}
	for name, d := range map[string]time.Duration{"min refresh": cfg.MinRefresh, "max refresh": cfg.MaxRefresh,
		"refresh": cfg.Refresh, "min retry": cfg.RetryMin, "max retry": cfg.RetryMax,
		"min prompt interval": cfg.MinPromptInterval, "fetch timeout": cfg.FetchTimeout, "bus timeout": cfg.BusTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if cfg.Grace < 0 {
		errs = append(errs, errors.New("grace must not be negative"))
	}
	return errors.Join(errs...)
}

func (cfg *Config) withDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.MinRefresh, DefaultMinRefresh)
	def(&cfg.MaxRefresh, DefaultMaxRefresh)
	def(&cfg.Refresh, DefaultRefresh)
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	def(&cfg.MinPromptInterval, DefaultMinPromptInterval)
	def(&cfg.FetchTimeout, DefaultFetchTimeout)
	def(&cfg.BusTimeout, DefaultBusTimeout)
	if cfg.Signer == nil && cfg.Conn != nil {
		cfg.Signer = cfg.Conn.Signer()
	}
	if cfg.EventKeys == nil && cfg.Signer != nil {
		jwk := cfg.Signer.JWK()
		pub, err := jwk.PublicKey()
		cfg.EventKeys = func(kid string) (bus.JWK, crypto.PublicKey, bool) {
			return jwk, pub, err == nil && kid == jwk.Kid
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Revoked == nil {
		cfg.Revoked = func(string, string) bool { return false }
	}
}

// Federation keeps the keys of trusted external issuers: it reads each
// provider's key set, publishes the token issuers' keys and trust entries
// in bus.BucketKeys, and serves the keys of every issuer to the signals
// receiver (Key). Make one with New and run it with Run. Its methods are
// safe for concurrent use.
type Federation struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	fetch   *fetcher
	metrics *metrics

	issuers []*issuerState // in configuration order
	byURL   map[string]*issuerState

	// Counters of key requests, by outcome, for tests and metrics.
	requests, prompted atomic.Int64
}

// issuerState is what a Federation knows of one issuer.
type issuerState struct {
	cfg    Issuer
	prompt chan struct{} // a prompted refresh is due; capacity 1

	refreshMu sync.Mutex // held by the one refresh of the issuer under way

	mu          sync.Mutex // guards what follows
	tokenKeys   []key      // the last good OIDC key set (tokens, logout tokens)
	signalKeys  []key      // the last good SSF key set (SETs), for SSF issuers
	skipped     []string
	lastAttempt time.Time
	lastRefresh time.Time
	next        time.Time
	lastErr     string
	errorSince  time.Time
	backoff     time.Duration
	missing     map[string]time.Time // bucket entries of keys the provider dropped: since when
}

// New returns a Federation for cfg, which it checks. It reads nothing
// before Run.
func New(cfg Config) (*Federation, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	f := &Federation{cfg: cfg, log: cfg.Log.With("component", "federation"), now: cfg.Now,
		byURL: make(map[string]*issuerState, len(cfg.Issuers))}
	f.fetch = &fetcher{client: newHTTPClient(cfg.HTTP), timeout: cfg.FetchTimeout, now: cfg.Now}
	for _, is := range cfg.Issuers {
		st := &issuerState{cfg: is.clone(), prompt: make(chan struct{}, 1), missing: make(map[string]time.Time)}
		f.issuers = append(f.issuers, st)
		f.byURL[is.URL] = st
	}
	m, err := newMetrics(cfg.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	f.metrics = m
	return f, nil
}

// Run fetches every issuer's keys, publishes them, and keeps them fresh
// until ctx ends: it removes the entries of issuers no longer configured,
// refreshes each issuer on its schedule and when prompted, and answers
// key requests. The keys gauge is reported while it runs. It returns nil
// when ctx ends, or an error if it cannot subscribe to key requests.
// Run it once.
func (f *Federation) Run(ctx context.Context) error {
	reg, err := f.metrics.observe(f)
	if err != nil {
		return err
	}
	defer func() { _ = reg.Unregister() }()
	sub, err := f.subscribe()
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	var wg sync.WaitGroup
	wg.Go(func() { f.pruneLoop(ctx) })
	for _, st := range f.issuers {
		wg.Go(func() { f.loop(ctx, st) })
	}
	wg.Wait()
	return nil
}

// loop refreshes st at once, then when its schedule says or a prompt
// comes, until ctx ends.
func (f *Federation) loop(ctx context.Context, st *issuerState) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-st.prompt:
		}
		_ = f.refresh(ctx, st)
		st.mu.Lock()
		wait := st.next.Sub(f.now())
		st.mu.Unlock()
		timer.Reset(max(wait, 0))
	}
}

// Refresh fetches the keys of issuer iss now and publishes them, without
// the rate limit of prompted refreshes. It returns the refresh's error,
// also shown by Status; the last good keys stay in use after an error.
func (f *Federation) Refresh(ctx context.Context, iss string) error {
	st, ok := f.byURL[iss]
	if !ok {
		return fmt.Errorf("federation: refresh %.128s: not a trusted issuer", iss)
	}
	return f.refresh(ctx, st)
}

// refresh fetches st's key sets and, for a token issuer, publishes them.
func (f *Federation) refresh(ctx context.Context, st *issuerState) error {
	st.refreshMu.Lock()
	defer st.refreshMu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	is := st.cfg
	st.mu.Lock()
	st.lastAttempt = f.now()
	st.mu.Unlock()

	tokens, signals, err := f.fetchKeys(ctx, is)
	now := f.now()
	if err == nil {
		st.mu.Lock()
		if tokens != nil {
			st.tokenKeys = tokens.keys
		}
		if signals != nil {
			st.signalKeys = signals.keys
		}
		skipped := append(skippedOf(tokens), skippedOf(signals)...)
		if !slices.Equal(skipped, st.skipped) && len(skipped) > 0 {
			f.log.Warn("external issuer keys left out", "issuer", is.URL, "skipped", skipped)
		}
		st.skipped = skipped
		st.mu.Unlock()
		if is.Tokens {
			err = f.publish(ctx, st, tokens.keys)
		}
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // shutting down: not the provider's failure
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		if st.lastErr == "" {
			st.errorSince = now
			f.log.Warn("external issuer keys not refreshed: keeping the last good keys", "issuer", is.URL, "err", err)
		}
		st.lastErr = err.Error()
		st.backoff = min(max(2*st.backoff, f.cfg.RetryMin), f.cfg.RetryMax)
		st.next = now.Add(st.backoff)
		f.metrics.refreshError(ctx, is.URL)
		return fmt.Errorf("federation: refresh %s: %w", is.URL, err)
	}
	if st.lastErr != "" {
		f.log.Info("external issuer keys refreshed again", "issuer", is.URL, "failing_since", st.errorSince)
	}
	st.lastErr, st.errorSince, st.backoff = "", time.Time{}, 0
	st.lastRefresh = now
	st.next = now.Add(f.schedule(tokens, signals))
	return nil
}

func skippedOf(ks *keySet) []string {
	if ks == nil {
		return nil
	}
	return ks.skipped
}

// fetchKeys reads the key sets of is: its OpenID Connect one, unless it
// is an SSF transmitter only, and its SSF one if it is one.
func (f *Federation) fetchKeys(ctx context.Context, is Issuer) (tokens, signals *keySet, err error) {
	if is.Tokens || !is.SSF {
		uri, err := f.fetch.discover(ctx, is.URL)
		if err != nil {
			return nil, nil, err
		}
		ks, err := f.fetch.jwks(ctx, uri, is.Algorithms)
		if err != nil {
			return nil, nil, err
		}
		tokens = &ks
	}
	if is.SSF {
		uri, err := f.fetch.ssfConfiguration(ctx, is.URL)
		if err != nil {
			return nil, nil, err
		}
		ks, err := f.fetch.jwks(ctx, uri, is.Algorithms)
		if err != nil {
			return nil, nil, err
		}
		signals = &ks
	}
	return tokens, signals, nil
}

// schedule returns the time until the next refresh after a good one: the
// shortest lifetime the key sets' responses state, or Config.Refresh,
// within Config.MinRefresh and MaxRefresh.
func (f *Federation) schedule(sets ...*keySet) time.Duration {
	d, stated := f.cfg.Refresh, false
	for _, ks := range sets {
		if ks != nil && ks.cached {
			if !stated || ks.ttl < d {
				d = ks.ttl
			}
			stated = true
		}
	}
	return min(max(d, f.cfg.MinRefresh), f.cfg.MaxRefresh)
}

// Issuer returns the configuration of trusted issuer iss, a copy the
// caller may keep.
func (f *Federation) Issuer(iss string) (Issuer, bool) {
	st, ok := f.byURL[iss]
	if !ok {
		return Issuer{}, false
	}
	return st.cfg.clone(), true
}

// TokenEndpoint reads the token_endpoint of trusted issuer iss from its
// OpenID Connect discovery document or, if it has none, its RFC 8414
// authorization server metadata, as its keys are found: no redirect
// followed, bounded in size and time, the document naming iss exactly,
// the endpoint https (or http on a loopback host). It is read afresh on
// each call.
func (f *Federation) TokenEndpoint(ctx context.Context, iss string) (string, error) {
	if _, ok := f.byURL[iss]; !ok {
		return "", fmt.Errorf("%.128s is not a trusted issuer", iss)
	}
	return f.fetch.discoverMember(ctx, iss, pickTokenEndpoint)
}

// Issuers returns the configured issuers, in order, copies the caller may
// keep.
func (f *Federation) Issuers() []Issuer {
	out := make([]Issuer, len(f.issuers))
	for i, st := range f.issuers {
		out[i] = st.cfg.clone()
	}
	return out
}

// MaxLifetime returns the longest MaxTokenLifetime of the issuers whose
// access tokens verifiers accept (zero if none): revocations of external
// tokens are kept at least that long.
func (f *Federation) MaxLifetime() time.Duration {
	var d time.Duration
	for _, st := range f.issuers {
		if st.cfg.Tokens {
			d = max(d, st.cfg.MaxTokenLifetime)
		}
	}
	return d
}

// Key returns the key kid of trusted issuer iss from its last good key
// sets, for checking its logout tokens and SETs: its SSF key set, then
// its OpenID Connect one. A key an admin revoked is not returned. An
// unknown kid of a trusted issuer prompts a refresh, at the rate
// MinPromptInterval allows; the key is not there yet when Key returns.
func (f *Federation) Key(iss, kid string) (bus.JWK, crypto.PublicKey, bool) {
	st, ok := f.byURL[iss]
	if !ok {
		return bus.JWK{}, nil, false
	}
	if k, ok := st.find(kid); ok {
		if f.cfg.Revoked(iss, kid) {
			return bus.JWK{}, nil, false
		}
		return k.jwk, k.pub, true
	}
	f.prompt(st)
	return bus.JWK{}, nil, false
}

// KeyOrRefresh returns the key kid of trusted issuer iss as Key does,
// but when the kid is unknown it fetches the issuer's key sets before
// answering (or waits for a refresh under way), at most once per
// MinPromptInterval, the limit prompted refreshes and key requests share
// too: a flood of unknown kids,
// whichever way they arrive, costs the provider one fetch per interval.
// It is for the signals receiver, whose senders do not retry: a logout
// signed by a key the provider has just published is checked with it.
func (f *Federation) KeyOrRefresh(ctx context.Context, iss, kid string) (bus.JWK, crypto.PublicKey, bool) {
	st, ok := f.byURL[iss]
	if !ok {
		return bus.JWK{}, nil, false
	}
	if _, ok := st.find(kid); !ok {
		if f.allowRefresh(st) {
			// Not cancelled with the sender's request: the one refresh of
			// the interval serves the signals after it (each fetch and
			// publication is bounded).
			if err := f.refresh(context.WithoutCancel(ctx), st); err != nil {
				f.log.Warn("key set of a signal's issuer not fetched", "issuer", iss, "err", err)
			}
		} else {
			// A refresh under way (the first after a start) may bring it.
			st.refreshMu.Lock()
			st.refreshMu.Unlock()
		}
	}
	k, ok := st.find(kid)
	if !ok || f.cfg.Revoked(iss, kid) {
		return bus.JWK{}, nil, false
	}
	return k.jwk, k.pub, true
}

// allowRefresh reports whether st may be refreshed now for an unknown
// kid, none having started less than MinPromptInterval ago, and if so
// records the attempt.
func (f *Federation) allowRefresh(st *issuerState) bool {
	now := f.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.lastAttempt.IsZero() && now.Sub(st.lastAttempt) < f.cfg.MinPromptInterval {
		return false
	}
	st.lastAttempt = now
	return true
}

// find returns the key kid of st's last good key sets.
func (st *issuerState) find(kid string) (key, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, set := range [][]key{st.signalKeys, st.tokenKeys} {
		if i := slices.IndexFunc(set, func(k key) bool { return k.jwk.Kid == kid }); i >= 0 {
			return set[i], true
		}
	}
	return key{}, false
}

// prompt asks st's loop for a refresh unless one started less than
// MinPromptInterval ago, and reports whether it did.
func (f *Federation) prompt(st *issuerState) bool {
	if !f.allowRefresh(st) {
		return false
	}
	select {
	case st.prompt <- struct{}{}:
	default: // one is pending already
	}
	f.prompted.Add(1)
	return true
}
