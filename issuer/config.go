package issuer

import (
	"net/http"

	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/federation"
)

// Defaults for Config.
const (
	DefaultHTTPAddr     = "127.0.0.1:8420"
	DefaultAudience     = "herald"
	DefaultClientID     = "herald"
	DefaultAccessTTL    = 5 * time.Minute
	DefaultMaxAccessTTL = 15 * time.Minute
	DefaultLeeway       = 30 * time.Second
	DefaultSessionTTL   = 24 * time.Hour
	DefaultSessionIdle  = 2 * time.Hour
	// DefaultRateLimit is how many token-endpoint requests per second one
	// source address may make (with bursts of twice as many).
	DefaultRateLimit = 50
	// DefaultClientRateLimit is the same per registered client.
	DefaultClientRateLimit = 20
	// DefaultClientSecretCost is the bcrypt cost of client secrets.
	DefaultClientSecretCost = 11
	// MinAdminTokenLen is the shortest admin token accepted, in bytes: a
	// bearer credential that opens every admin action must not be
	// guessable (the generated one carries 256 random bits).
	MinAdminTokenLen = 32
	// DefaultSnapshotEvery is how many revocation events the issuer's
	// denylist applies between two snapshots.
	DefaultSnapshotEvery = 100_000
	// DefaultEventStreamMaxAge is how long GET /v1/events streams before
	// the server ends it; the client reconnects with Last-Event-ID.
	DefaultEventStreamMaxAge = time.Hour
	// DefaultSnapshotInterval is how long the issuer waits before a
	// snapshot of a stream that grew by fewer than SnapshotEvery events.
	DefaultSnapshotInterval = 5 * time.Minute
)

// retentionMargin is added to the HERALD stream's MaxAge beyond the
// denylist bound, for clock differences between issuer and NATS servers.
const retentionMargin = time.Minute

// Config configures an issuer Service.
type Config struct {
	// DataDir holds signing keys and the admin token file. Required.
	DataDir string
	// HTTPAddr is where the API listens, host:port; port 0 picks one.
	// Default DefaultHTTPAddr.
	HTTPAddr string
	// IssuerURL is the iss claim and the RFC 8414 issuer identifier.
	// Default "http://" and the address the API listens on.
	IssuerURL string
	// Audience is the aud claim of access tokens. Default DefaultAudience.
	Audience string
	// ClientID is the client_id claim of sessions that name none (RFC 9068
	// requires one). Default DefaultClientID.
	ClientID string
	// Algorithm signs access tokens: EdDSA or ES256. Default EdDSA.
	Algorithm string
	// AccessTTL is the lifetime of access tokens. Default DefaultAccessTTL.
	AccessTTL time.Duration
	// MaxAccessTTL is the longest lifetime any access token may have; it
	// bounds how long a revocation must be remembered. Default DefaultMaxAccessTTL.
	MaxAccessTTL time.Duration
	// Leeway is the clock skew verifiers tolerate; revocations are kept this
	// much longer than MaxAccessTTL. Default DefaultLeeway.
	Leeway time.Duration
	// SessionTTL is the absolute lifetime of a session: its refresh tokens
	// stop working after it. Default DefaultSessionTTL.
	SessionTTL time.Duration
	// SessionIdle ends a session not refreshed for this long. Default DefaultSessionIdle.
	SessionIdle time.Duration
	// KeyRotation rotates the signing key this often; 0 rotates only on demand.
	KeyRotation time.Duration
	// RateLimit bounds token-endpoint requests per second per source
	// address. Default DefaultRateLimit; negative disables.
	RateLimit float64
	// ClientRateLimit bounds token-endpoint requests per second per
	// registered client (a client id that is not registered is limited by
	// source address only), and, apart, an SSF receiver's calls of the
	// transmitter's API. Default DefaultClientRateLimit; negative
	// disables.
	ClientRateLimit float64
	// ClientSecretCost is the bcrypt cost of client secrets: slow enough
	// that a stolen state store does not give them away. Default
	// DefaultClientSecretCost.
	ClientSecretCost int
	// AdminToken is the admin bearer credential, at least MinAdminTokenLen
	// bytes. If empty, the token in DataDir/admin.token is used, created
	// at first start.
	AdminToken string
	// Replicas is the replication factor of streams and bucket. Default 1.
	Replicas int
	// EventKeyFile is a PKCS#8 PEM Ed25519 or P-256 private key (mode 0600,
	// or 0640 for a Kubernetes secret read through fsGroup) that
	// signs this issuer's events, shared by the replicas of one deployment
	// so that verifiers pin one kid. Empty: a key created in DataDir.
	EventKeyFile string
	// EventKeys pins the event keys of the other issuer replicas, by kid,
	// for this issuer's own view of the denylist (introspection, refresh).
	// Its own event key is always trusted. Empty: trust on first use.
	EventKeys []string
	// RootKeys pins root keys by kid: event keys they certify are trusted,
	// event keys they revoke never are, and the issuer refuses to start
	// with an event key they revoked.
	RootKeys []string
	// SnapshotEvery publishes a snapshot of the denylist to
	// HERALD_SNAPSHOTS once it has applied this many revocation events
	// since the last snapshot, so that fresh verifiers need not replay the
	// whole stream. Default DefaultSnapshotEvery; negative disables
	// snapshots.
	SnapshotEvery int
	// SnapshotInterval also publishes one when the stream has grown at
	// all and the last snapshot is this old. Default
	// DefaultSnapshotInterval.
	SnapshotInterval time.Duration
	// EventStreamMaxAge is the longest an event stream (GET /v1/events)
	// runs before the server ends it, so that it is re-authorized when
	// the client reconnects with Last-Event-ID. Default
	// DefaultEventStreamMaxAge.
	EventStreamMaxAge time.Duration
	// MeterProvider receives the issuer's metrics. Nil uses the global
	// OpenTelemetry provider.
	MeterProvider metric.MeterProvider
	// Metrics serves GET /metrics (e.g. a Prometheus exporter's handler);
	// nil answers 404. Exporters are set up by the program, not here.
	Metrics http.Handler
	// Logger receives the issuer's logs. Nil uses slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Trust lists the external issuers this issuer trusts
	// (federation.LoadFile, federation.FromURLs): it publishes the keys of
	// those whose tokens verifiers accept, and takes their back-channel
	// logout tokens and Shared Signals SETs.
	Trust []federation.Issuer
	// SSFPolls lists the Shared Signals streams this issuer polls for
	// SETs (RFC 8936).
	SSFPolls []SSFPoll

	// DisableSSF turns off the SSF transmitter (package ssf), which is
	// on when IssuerURL is https or http on a loopback host: receivers
	// then create streams of Herald's revocations as CAEP SETs.
	DisableSSF bool
	// SSFKeyFile is the transmitter's RSA key (PKCS#8 PEM, mode 0600),
	// which signs SETs; every replica must use the same one. Empty: a
	// 2048-bit key created in DataDir/ssf-key.pem.
	SSFKeyFile string
	// SSFDefaultSubjects is the default_subjects of new streams: ALL
	// (the default) or NONE.
	SSFDefaultSubjects string
	// SSFRetention is how long HERALD_SSF keeps events for receivers
	// that are away or paused. Default 7 days (ssf.Config.Retention).
	SSFRetention time.Duration
	// SSFLoopbackPush lets receivers push to endpoints on a loopback
	// host though IssuerURL is not on one (ssf.Config.LoopbackPush): for
	// tests and benchmarks whose receivers run beside the issuer.
	SSFLoopbackPush bool
}

func (c *Config) setDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.Algorithm == "" {
		c.Algorithm = bus.AlgEdDSA
	}
	if c.AccessTTL == 0 {
		c.AccessTTL = DefaultAccessTTL
	}
	if c.MaxAccessTTL == 0 {
		c.MaxAccessTTL = max(DefaultMaxAccessTTL, c.AccessTTL)
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.SessionIdle == 0 {
		c.SessionIdle = min(DefaultSessionIdle, c.SessionTTL)
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.EventStreamMaxAge == 0 {
		c.EventStreamMaxAge = DefaultEventStreamMaxAge
	}
	if c.ClientSecretCost == 0 {
		c.ClientSecretCost = DefaultClientSecretCost
	}
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.ClientRateLimit == 0 {
		c.ClientRateLimit = DefaultClientRateLimit
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.Algorithm != bus.AlgEdDSA && c.Algorithm != bus.AlgES256 {
		errs = append(errs, fmt.Errorf("algorithm %q is not supported (want EdDSA or ES256)", c.Algorithm))
	}
	if c.AccessTTL <= 0 {
		errs = append(errs, errors.New("access ttl must be positive"))
	}
	if c.MaxAccessTTL < c.AccessTTL {
		errs = append(errs, fmt.Errorf("max access ttl %s is shorter than access ttl %s", c.MaxAccessTTL, c.AccessTTL))
	}
	if c.Leeway < 0 {
		errs = append(errs, errors.New("leeway must not be negative"))
	}
	if c.SessionTTL < c.AccessTTL {
		errs = append(errs, fmt.Errorf("session ttl %s is shorter than access ttl %s", c.SessionTTL, c.AccessTTL))
	}
	if c.SessionIdle <= 0 || c.SessionIdle > c.SessionTTL {
		errs = append(errs, errors.New("session idle timeout must be positive and at most the session ttl"))
	}
	if c.KeyRotation < 0 || (c.KeyRotation > 0 && c.KeyRotation < time.Second) {
		errs = append(errs, errors.New("key rotation must be 0 (on demand only) or at least 1s"))
	}
	if c.EventStreamMaxAge < 0 {
		errs = append(errs, errors.New("event stream max age must not be negative"))
	}
	if c.SnapshotInterval < 0 {
		errs = append(errs, errors.New("snapshot interval must not be negative"))
	}
	if c.ClientSecretCost < 4 || c.ClientSecretCost > 31 {
		errs = append(errs, errors.New("client secret cost must be a bcrypt cost between 4 and 31"))
	}
	if c.AdminToken != "" {
		if err := checkAdminTokenLen(len(c.AdminToken)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := federation.Merge(c.Trust); err != nil {
		errs = append(errs, err)
	}
	for _, is := range c.Trust {
		if err := is.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("trusted issuer %.128s: %w", is.URL, err))
		}
		if c.IssuerURL != "" && is.URL == c.IssuerURL {
			errs = append(errs, fmt.Errorf("trusted issuer %.128s is this issuer", is.URL))
		}
	}
	for _, p := range c.SSFPolls {
		errs = append(errs, p.validate(c.Trust)...)
	}
	errs = append(errs, c.validateSSF()...)
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		errs = append(errs, fmt.Errorf("replicas must be 1, 3 or 5, not %d", c.Replicas))
	}
	return errors.Join(errs...)
}

// checkAdminTokenLen refuses an admin token of n bytes that is too short
// to resist guessing. It names the length, never the token.
func checkAdminTokenLen(n int) error {
	if n < MinAdminTokenLen {
		return fmt.Errorf("admin token is %d bytes, want at least %d (e.g. openssl rand -base64 32)", n, MinAdminTokenLen)
	}
	return nil
}

// revocationLifetime is how long a revocation must be enforced: until every
// token it could match has expired, plus the verifiers' leeway. Tokens of
// trusted external issuers count too: a revocation without an issuer
// matches theirs.
func (c *Config) revocationLifetime() time.Duration {
	longest := c.MaxAccessTTL
	for _, is := range c.Trust {
		if is.Tokens {
			longest = max(longest, is.MaxTokenLifetime)
		}
	}
	return longest + c.Leeway
}

// trustsTokensOf reports whether verifiers accept the tokens of external
// issuer iss.
func (c *Config) trustsTokensOf(iss string) bool {
	for _, is := range c.Trust {
		if is.Tokens && is.URL == iss {
			return true
		}
	}
	return false
}
