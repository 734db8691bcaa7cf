package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Limits of BucketBFF.
const (
	// DefaultBFFTTL is how long a refresh claim and its result stay in
	// BucketBFF: long enough for every request still carrying the cookie
	// from before the refresh to find the result, short enough to keep the
	// bucket small (one entry per refresh).
	DefaultBFFTTL = 2 * time.Minute
	// MaxBFFEntry bounds an entry of BucketBFF, in bytes: a sealed cookie
	// state (under 4 KB) and its framing. The server refuses larger writes.
	MaxBFFEntry = 8 << 10
	// DefaultBFFMaxBytes bounds the bucket's storage: a refresh leaves one
	// entry of about 2 KB for DefaultBFFTTL, so it holds the refreshes of
	// some 500 a second, tens of thousands of active browsers. Once full,
	// the server refuses new claims, and cookie refreshes fail closed
	// until entries expire; the bucket never takes the store's space from
	// the streams.
	DefaultBFFMaxBytes = 128 << 20
	// DefaultBFFMaxEntries bounds the bucket's entries (claims, results and
	// deletion markers), however small.
	DefaultBFFMaxEntries = 64 << 10
)

// BFFConfig sets the limits of BucketBFF.
type BFFConfig struct {
	// TTL is how long an entry is kept after its last write. Default
	// DefaultBFFTTL.
	TTL time.Duration
	// Replicas is the bucket's replication factor (1, 3 or 5). Default 1.
	Replicas int
	// MaxBytes bounds the bucket's storage. Default DefaultBFFMaxBytes.
	MaxBytes int64
	// MaxEntries bounds its entries. Default DefaultBFFMaxEntries.
	MaxEntries int64
}

// EnsureBFF creates BucketBFF, or updates it to cfg. The issuer calls it at
// start, as it calls EnsureFleet; verifiers only open it (BFF), so that a
// verifier's NATS user needs no right to create or change buckets.
//
// Entries are written by verifiers, never by the issuer: a claim (Create,
// so that exactly one replica wins) and then, over it, the refresh's
// result sealed with the replicas' cookie key. The bucket never holds a
// token in clear. Its limits (MaxBytes, MaxEntries, MaxBFFEntry, one value
// per key) bound what a verifier credential can store in it: a full bucket
// refuses writes (it discards nothing), which fails cookie refreshes
// closed, never anything else.
func (c *Conn) EnsureBFF(ctx context.Context, cfg BFFConfig) error {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultBFFTTL
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultBFFMaxBytes
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultBFFMaxEntries
	}
	_, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       BucketBFF,
		Description:  "Herald cookie-session refreshes claimed by verifier replicas, by keyed hash of the refresh token",
		History:      1,
		TTL:          cfg.TTL,
		MaxValueSize: MaxBFFEntry,
		MaxBytes:     cfg.MaxBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", BucketBFF, err)
	}
	// A bucket's configuration has no entry count or consumer limits: they
	// are its stream's.
	return c.limitStream(ctx, streamBFF, func(sc *jetstream.StreamConfig) {
		sc.MaxMsgs = cfg.MaxEntries
		limitConsumers(sc, DefaultMaxConsumers)
	})
}

// BFF opens BucketBFF. When it does not exist (no issuer of this version
// has run) the error wraps jetstream.ErrBucketNotFound.
func (c *Conn) BFF(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, BucketBFF)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketBFF, err)
	}
	return kv, nil
}
