package issuer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/heraldsec/herald/bus"
)

// Defaults for Config.
const (
	DefaultHTTPAddr     = "127.0.0.1:8420"
	DefaultAudience     = "herald"
	DefaultClientID     = "herald"
	DefaultAccessTTL    = 5 * time.Minute
	DefaultMaxAccessTTL = 15 * time.Minute
	DefaultLeeway       = 30 * time.Second
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
	// AdminToken is the admin bearer credential. If empty, the token in
	// DataDir/admin.token is used, created at first start.
	AdminToken string
	// Replicas is the replication factor of streams and bucket. Default 1.
	Replicas int
	// Logger receives the issuer's logs. Nil uses slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
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
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		errs = append(errs, fmt.Errorf("replicas must be 1, 3 or 5, not %d", c.Replicas))
	}
	return errors.Join(errs...)
}

// revocationLifetime is how long a revocation must be enforced: until every
// token it could match has expired, plus the verifiers' leeway.
func (c *Config) revocationLifetime() time.Duration { return c.MaxAccessTTL + c.Leeway }
