package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Limits of BucketRefreshRelay, the cookie-session refresh relay.
const (
	// DefaultRefreshRelayTTL is how long a refresh claim and its result
	// stay in BucketRefreshRelay: long enough for every request still
	// carrying the cookie from before the refresh to find the result, short
	// enough to keep the bucket small (one entry per refresh).
	DefaultRefreshRelayTTL = 2 * time.Minute
	// MaxRefreshRelayEntry bounds an entry of BucketRefreshRelay, in bytes:
	// a sealed cookie state (under 4 KB) and its framing. The server
	// refuses larger writes.
	MaxRefreshRelayEntry = 8 << 10
	// DefaultRefreshRelayMaxBytes bounds the bucket's storage: a refresh
	// leaves one entry of about 2 KB for DefaultRefreshRelayTTL, so it
	// holds the refreshes of some 500 a second, tens of thousands of active
	// browsers. Once full, the server refuses new claims, and cookie
	// refreshes fail closed until entries expire; the bucket never takes
	// the store's space from the streams.
	DefaultRefreshRelayMaxBytes = 128 << 20
	// DefaultRefreshRelayMaxEntries bounds the bucket's entries (claims,
	// results and deletion markers), however small.
	DefaultRefreshRelayMaxEntries = 64 << 10
)

// RefreshRelayConfig sets the limits of BucketRefreshRelay.
type RefreshRelayConfig struct {
	// TTL is how long an entry is kept after its last write. Default
	// DefaultRefreshRelayTTL.
	TTL time.Duration
	// Replicas is the bucket's replication factor (1, 3 or 5). Default 1.
	Replicas int
	// MaxBytes bounds the bucket's storage. Default
	// DefaultRefreshRelayMaxBytes.
	MaxBytes int64
	// MaxEntries bounds its entries. Default DefaultRefreshRelayMaxEntries.
	MaxEntries int64
}

// EnsureRefreshRelay creates BucketRefreshRelay, or updates it to cfg.
// The issuer calls it at start, as it calls EnsureFleet, although only
// verifiers use the bucket: they only open it (RefreshRelay), so that a
// verifier's NATS user needs no right to create or change a stream. That
// right cannot be narrowed to one bucket's configuration: the JetStream
// API names the stream in its subject but takes the configuration from
// the request, so a stolen verifier credential allowed to create this
// bucket's stream could make it republish into HERALD_KEYS or
// HERALD_SESSIONS, which the server stores whatever the user's
// permissions.
//
// Entries are written by verifiers, never by the issuer: a claim (Create,
// so that exactly one replica wins) and then, over it, the refresh's
// result sealed with the replicas' cookie key. The bucket never holds a
// token in clear. Its limits (MaxBytes, MaxEntries, MaxRefreshRelayEntry,
// one value per key) bound what a verifier credential can store in it: a
// full bucket refuses writes (it discards nothing), which fails cookie
// refreshes closed, never anything else.
func (c *Conn) EnsureRefreshRelay(ctx context.Context, cfg RefreshRelayConfig) error {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultRefreshRelayTTL
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultRefreshRelayMaxBytes
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultRefreshRelayMaxEntries
	}
	_, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       BucketRefreshRelay,
		Description:  "Herald cookie-session refreshes claimed by verifier replicas, by keyed hash of the refresh token",
		History:      1,
		TTL:          cfg.TTL,
		MaxValueSize: MaxRefreshRelayEntry,
		MaxBytes:     cfg.MaxBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", BucketRefreshRelay, err)
	}
	// A bucket's configuration has no entry count or consumer limits: they
	// are its stream's.
	return c.limitStream(ctx, streamRefreshRelay, func(sc *jetstream.StreamConfig) {
		sc.MaxMsgs = cfg.MaxEntries
		limitConsumers(sc, DefaultMaxConsumers)
	})
}

// RefreshRelay opens BucketRefreshRelay. When it does not exist (no
// issuer of this version has run) the error wraps
// jetstream.ErrBucketNotFound.
func (c *Conn) RefreshRelay(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, BucketRefreshRelay)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketRefreshRelay, err)
	}
	return kv, nil
}
