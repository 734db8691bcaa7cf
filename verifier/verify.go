package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/metric"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/jsonstrict"
	"github.com/heraldsec/herald/store"
)

// Defaults for Config.
const (
	DefaultLeeway       = 30 * time.Second
	DefaultMaxTokenSize = 8 << 10
	// DefaultUnknownKeyInterval is how often, at most, Config.OnUnknownKey
	// is called for one external issuer.
	DefaultUnknownKeyInterval = 10 * time.Second
)

// Config configures a Verifier.
type Config struct {
	// Issuer is the required iss claim. Required.
	Issuer string
	// Audience is the audience this verifier accepts; aud must contain it. Required.
	Audience string
	// Algorithms is the allow-list of signing algorithms. Default EdDSA and ES256.
	Algorithms []string
	// Leeway tolerates clock skew on exp, nbf and iat. Default DefaultLeeway.
	Leeway time.Duration
	// MaxTokenSize bounds a token, in bytes, before any parsing. Default DefaultMaxTokenSize.
	MaxTokenSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// CacheSize bounds how many verified tokens are remembered so that a
	// repeated token skips signature verification; the denylist is still
	// checked on every call. Default DefaultCacheSize; negative disables
	// the cache.
	CacheSize int
	// MeterProvider receives the verification metrics. Nil uses the global
	// OpenTelemetry provider (a no-op unless the program set one up).
	MeterProvider metric.MeterProvider
	// TrustedProxies are the peers whose forwarding headers a DPoP check
	// believes: X-Forwarded-Proto everywhere, and, on the sidecar's
	// /v1/verify (forward auth), the original request's method, URI and
	// host (X-Forwarded-Method/-Uri/-Host, X-Original-Method/-URI). Nil
	// means DefaultTrustedProxies (loopback); empty, not nil, trusts no peer.
	TrustedProxies []netip.Prefix
	// Live, if set, tracks the requests Middleware and ServeAdmitted admit
	// until they end, so that a revocation applied meanwhile
	// (LiveSet.Revoke) cancels them. Nil tracks nothing. A sidecar sets it.
	Live *LiveSet
	// Stale, if set, reports whether verdicts come from a state cut off
	// from the bus for too long; admitted requests then carry HeaderStale.
	// Nil: never stale. A sidecar sets it.
	Stale func() bool
	// OnUnknownKey, if set, is called when a token of a trusted external
	// issuer names a kid the key set does not hold for that issuer (the
	// provider rotated its keys and no issuer published the new one yet):
	// at most once per issuer per UnknownKeyInterval, however many such
	// tokens arrive. It must not block. A sidecar publishes a
	// bus.KeyRequest.
	OnUnknownKey func(iss, kid string)
	// UnknownKeyInterval spaces the calls of OnUnknownKey for one issuer.
	// Default DefaultUnknownKeyInterval.
	UnknownKeyInterval time.Duration
}

// DefaultTrustedProxies returns the default Config.TrustedProxies: the
// loopback addresses, where a proxy next to the sidecar connects from.
func DefaultTrustedProxies() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

func (c *Config) setDefaults() {
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{bus.AlgEdDSA, bus.AlgES256}
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MaxTokenSize == 0 {
		c.MaxTokenSize = DefaultMaxTokenSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.TrustedProxies == nil {
		c.TrustedProxies = DefaultTrustedProxies()
	}
	if c.UnknownKeyInterval == 0 {
		c.UnknownKeyInterval = DefaultUnknownKeyInterval
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	for _, a := range c.Algorithms {
		if a != bus.AlgEdDSA && a != bus.AlgES256 {
			errs = append(errs, fmt.Errorf("algorithm %q is not supported (want EdDSA or ES256)", a))
		}
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		errs = append(errs, errors.New("leeway must be between 0 and 5m"))
	}
	if c.MaxTokenSize < 0 {
		errs = append(errs, errors.New("max token size must not be negative"))
	}
	if c.UnknownKeyInterval < 0 {
		errs = append(errs, errors.New("unknown key interval must not be negative"))
	}
	if c.CacheSize > 1<<24 {
		errs = append(errs, errors.New("cache size must be at most 16777216 entries"))
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("trusted proxy %s is not a valid CIDR prefix", p))
		}
	}
	return errors.Join(errs...)
}

// Verifier checks access tokens locally: size, header, signature with a key
// from HERALD_KEYS, claims, and the denylist. It makes no network call. It
// is safe for concurrent use.
type Verifier struct {
	cfg     Config
	keys    *KeySet
	deny    *store.DB
	ready   func() bool
	allowed map[string]bool
	parser  *jwt.Parser
	cache   *tokenCache  // nil when disabled
	replay  *ReplayCache // DPoP proof ids seen
	metrics *verifyMetrics
	unknown *keyRequests // nil without Config.OnUnknownKey
	// ownMarker is the scope marker of Config.Issuer (scopeMarker).
	ownMarker string
}

// New returns a Verifier that trusts the keys in keys and refuses what deny
// holds. ready, if not nil, gates every verdict: while it reports false,
// Verify fails with ErrNotReady.
func New(cfg Config, keys *KeySet, deny *store.DB, ready func() bool) (*Verifier, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("verifier config: %w", err)
	}
	v := &Verifier{cfg: cfg, keys: keys, deny: deny, ready: ready, allowed: make(map[string]bool), ownMarker: scopeMarker(cfg.Issuer)}
	for _, a := range cfg.Algorithms {
		v.allowed[a] = true
	}
	v.parser = v.newParser()
	v.cache = newTokenCache(cfg.CacheSize)
	v.replay = NewReplayCache(dpopReplayMax)
	if cfg.OnUnknownKey != nil {
		v.unknown = newKeyRequests(cfg.OnUnknownKey, cfg.UnknownKeyInterval)
	}
	var err error
	if v.metrics, err = newVerifyMetrics(cfg.MeterProvider); err != nil {
		return nil, err
	}
	return v, nil
}

// newParser builds golang-jwt's parser from the config. Every option that
// golang-jwt enforces itself is set here; what it does not check (typ,
// crit, key headers, the size bound, required claims) Verify checks.
func (v *Verifier) newParser() *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods(v.cfg.Algorithms),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(v.cfg.Now),
	)
}

// header is the JOSE header of an access token. Members that would let the
// token choose its own key are recorded so they can be refused.
type header struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
	Jku  json.RawMessage `json:"jku"`
	X5u  json.RawMessage `json:"x5u"`
	X5c  json.RawMessage `json:"x5c"`
	Jwk  json.RawMessage `json:"jwk"`
}

// Verify checks token and returns its claims, or an error wrapping one of
// the Err* reasons. The checks follow RFC 8725 and RFC 9068: a size bound
// before parsing, an algorithm allow-list, typ at+jwt, no crit, keys only
// from HERALD_KEYS and of the header's algorithm, exp, iat, sub and jti
// required, issuer and audience checked, then the denylist.
//
// A token that passed every check but the denylist is remembered (by its
// SHA-256) until its exp: the next Verify of the same token skips the
// header, signature and claim checks, provided the key that verified it is
// still trusted, and still checks the denylist, from memory. So a
// revocation is seen by the first Verify after it was applied. The
// returned Claims are the caller's; their Audience slice is shared and must
// not be modified.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	start := time.Now()
	c, _, err := v.verify(token)
	v.metrics.record(ctx, start, err)
	return c, err
}

// Check is Verify without metrics: it also returns the kid of the key
// that verified the token, which key revocations match. For callers that
// give one verdict from several checks (a browser session refreshing its
// token) and record it with Observe.
func (v *Verifier) Check(token string) (*Claims, string, error) {
	return v.verify(token)
}

// Observe starts timing one verdict and returns the function that records
// it, with its error (nil when admitted), in the verification metrics.
func (v *Verifier) Observe(ctx context.Context) func(err error) {
	start := time.Now()
	return func(err error) { v.metrics.record(ctx, start, err) }
}

// Remaining returns how long the token of c has left before it expires,
// by the verifier's clock (Config.Now).
func (v *Verifier) Remaining(c *Claims) time.Duration {
	return c.ExpiresAt.Sub(v.cfg.Now())
}

// Leeway returns the clock skew the verifier tolerates (Config.Leeway).
func (v *Verifier) Leeway() time.Duration { return v.cfg.Leeway }

// Stale reports whether verdicts come from a stale state (Config.Stale).
func (v *Verifier) Stale() bool { return v.cfg.Stale != nil && v.cfg.Stale() }

// verify is Verify that also returns the kid of the key that verified the
// token, which key revocations match.
func (v *Verifier) verify(token string) (*Claims, string, error) {
	if v.ready != nil && !v.ready() {
		return nil, "", ErrNotReady
	}
	if token == "" {
		return nil, "", ErrMissing
	}
	if len(token) > v.cfg.MaxTokenSize {
		return nil, "", fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(token), v.cfg.MaxTokenSize)
	}
	var sum [sha256.Size]byte
	if v.cache != nil {
		sum = sha256.Sum256([]byte(token))
		if e, ok := v.cache.get(&sum, v.cfg.Now().UnixNano()); ok {
			if v.stillTrusted(e) {
				if err := v.checkDenylist(&e.claims, e.key.ID); err != nil {
					return nil, "", err
				}
				c := e.claims
				return &c, e.key.ID, nil
			}
		}
	}
	c, key, trust, err := v.verifyToken(token)
	if err != nil {
		return nil, "", err
	}
	if err := headerSafe(c); err != nil {
		return nil, "", err
	}
	if v.cache != nil {
		v.cache.put(&sum, &cacheEntry{claims: *c, key: key, trust: trust, exp: c.ExpiresAt.UnixNano()})
	}
	if err := v.checkDenylist(c, key.ID); err != nil {
		return nil, "", err
	}
	return c, key.ID, nil
}

// stillTrusted reports whether the key (and, for an external issuer's
// token, the trust entry) that verified the token of cache entry e is
// still the one the key set holds.
func (v *Verifier) stillTrusted(e *cacheEntry) bool {
	if e.key.Issuer == "" {
		k, _ := v.keys.Get(e.key.ID)
		return k == e.key
	}
	k, t, _ := v.keys.External(e.key.Issuer, e.key.ID)
	return k == e.key && t == e.trust
}

// verifyToken runs every check but the denylist. It returns the key that
// verified the token and, for a trusted external issuer's token, that
// issuer's trust entry.
func (v *Verifier) verifyToken(token string) (*Claims, *Key, *bus.Trust, error) {
	if strings.Count(token, ".") != 2 {
		return nil, nil, nil, fmt.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}
	// Base64 decoders skip CR and LF, even strict ones, so they would give
	// a token many spellings (in the signature, where the signing input
	// does not cover them): one token, one string.
	if strings.IndexByte(token, '\n') >= 0 || strings.IndexByte(token, '\r') >= 0 {
		return nil, nil, nil, fmt.Errorf("%w: line break in token", ErrMalformed)
	}
	hdr, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	// golang-jwt decodes the claims with encoding/json, which matches
	// names case-insensitively and keeps the last of duplicates; check
	// the same bytes first.
	var rawErr error
	raw, err := base64.RawURLEncoding.Strict().DecodeString(payload)
	if err != nil {
		rawErr = fmt.Errorf("%w: claims are not base64url", ErrMalformed)
	} else if err := jsonstrict.CheckMembers(raw, claimNames); err != nil {
		rawErr = fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	// The unverified iss chooses the keys: Herald's own, or those of the
	// trusted external issuer it names, and no other. Claims that fail the
	// strict checks name no issuer and are refused below; claims without
	// an iss go the way of Herald's tokens, to be refused as they were.
	if iss, ok := peekIssuer(raw, rawErr); ok && iss != v.cfg.Issuer {
		t, trusted := v.keys.Trust(iss)
		if !trusted {
			return nil, nil, nil, fmt.Errorf("%w: %q is not a trusted issuer", ErrIssuer, truncate(iss, 64))
		}
		return v.verifyExternal(token, hdr, raw, t)
	}
	if rawErr != nil {
		if _, err := parseHeader(hdr); err != nil {
			return nil, nil, nil, err
		}
		return nil, nil, nil, rawErr
	}
	key, err := v.checkHeader(hdr)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := v.parseHerald(token, key)
	return c, key, nil, err
}

// parseHerald checks the signature and claims of a token of Herald's
// issuer, whose header chose key.
func (v *Verifier) parseHerald(token string, key *Key) (*Claims, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if t.Method.Alg() != key.Algorithm {
			return nil, ErrAlgorithm
		}
		return key.Public, nil
	})
	if err != nil {
		return nil, mapJWTError(err)
	}
	switch {
	case c.Subject == "":
		return nil, fmt.Errorf("%w: sub is missing", ErrMalformed)
	case c.ID == "":
		return nil, fmt.Errorf("%w: jti is missing", ErrMalformed)
	case c.IssuedAt == nil:
		return nil, fmt.Errorf("%w: iat is missing", ErrMalformed)
	case c.ExpiresAt == nil: // golang-jwt requires it already; the cache relies on it
		return nil, fmt.Errorf("%w: exp is missing", ErrMalformed)
	}
	// Whoever holds a signing key must not mint tokens that outlive every
	// revocation: the key's signed entry bounds their lifetime.
	if life, limit := c.ExpiresAt.Sub(c.IssuedAt.Time), key.maxLifetime()+v.cfg.Leeway; life > limit {
		return nil, fmt.Errorf("%w: lifetime %s exceeds the issuer's max %s", ErrMalformed, life, limit)
	}
	// Email is what an external issuer's trust entry names; Herald's
	// tokens carry none that revocations match.
	c.Email = ""
	return &c, nil
}

// CacheStats reports the fast path's hits and misses since start and how
// many tokens it holds.
func (v *Verifier) CacheStats() (hits, misses uint64, size int) {
	if v.cache == nil {
		return 0, 0, 0
	}
	return v.cache.hits.Load(), v.cache.misses.Load(), v.cache.len()
}

// parseHeader decodes the JOSE header seg of a token.
func parseHeader(seg string) (*header, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	if err := jsonstrict.CheckMembers(raw, headerNames); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	return &h, nil
}

// checkHeader checks the header seg of a token of Herald's issuer and
// returns the key it names.
func (v *Verifier) checkHeader(seg string) (*Key, error) {
	h, err := parseHeader(seg)
	if err != nil {
		return nil, err
	}
	switch {
	case !v.allowed[h.Alg]:
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, h.Alg)
	case !strings.EqualFold(h.Typ, "at+jwt") && !strings.EqualFold(h.Typ, "application/at+jwt"):
		return nil, fmt.Errorf("%w: typ %q", ErrType, h.Typ)
	case h.Crit != nil:
		return nil, fmt.Errorf("%w: crit header not supported", ErrMalformed)
	case h.Jku != nil || h.X5u != nil || h.X5c != nil || h.Jwk != nil:
		return nil, fmt.Errorf("%w: key-bearing headers (jku, x5u, x5c, jwk) are refused", ErrMalformed)
	case h.Kid == "":
		return nil, fmt.Errorf("%w: kid is missing", ErrUnknownKey)
	}
	key, ok := v.keys.Get(h.Kid)
	if !ok && v.deny != nil && (v.deny.Contains(denyKey(bus.KindKey, h.Kid)) || v.deny.Contains(denyKeyFor(bus.KindKey, v.cfg.Issuer, h.Kid))) {
		return nil, fmt.Errorf("%w: key", ErrRevoked)
	}
	if !ok {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, truncate(h.Kid, 64))
	}
	if key.Algorithm != h.Alg {
		return nil, fmt.Errorf("%w: key %s is for %s, token says %s", ErrAlgorithm, key.ID, key.Algorithm, h.Alg)
	}
	return key, nil
}

// mapJWTError turns golang-jwt's errors into ours.
func mapJWTError(err error) error {
	var ours *Error
	switch {
	case errors.As(err, &ours):
		return ours
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrBadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ErrIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ErrAudience
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrSignatureInvalid):
		return ErrBadSignature
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
