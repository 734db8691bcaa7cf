package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxSessionEntry bounds an entry of BucketSessions, in bytes: the server
// refuses larger writes.
const MaxSessionEntry = 256 << 10

// SessionsConfig sets the limits of BucketSessions.
type SessionsConfig struct {
	// TTL is how long an entry is kept after its last write: at least the
	// absolute lifetime of a session, plus a margin for clock skew. Required.
	TTL time.Duration
	// Replicas is the bucket's replication factor (1, 3 or 5). Default 1.
	Replicas int
}

// sessionsStream is the stream behind BucketSessions.
const sessionsStream = "KV_" + BucketSessions

// EnsureSessions creates BucketSessions, or updates it to cfg. The issuer
// calls it at start, as it calls EnsureStreams.
//
// The bucket is an ordinary key-value bucket with history 1, except in two
// ways. Reads go through the stream leader, never a replica's direct get:
// a replica that lags would show a refresh token rotated a moment ago on
// another issuer as unknown, and compare-and-set needs the latest revision
// anyway. And entries cannot be deleted or purged, by Herald or anyone:
// a session ends by a write that says so and leaves by age.
func (c *Conn) EnsureSessions(ctx context.Context, cfg SessionsConfig) error {
	if cfg.TTL <= 0 {
		return errors.New("ensure sessions bucket: ttl is required")
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	s, err := c.createOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              sessionsStream,
		Description:       "Herald sessions shared by issuer replicas, by session id",
		Subjects:          []string{"$KV." + BucketSessions + ".>"},
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            cfg.TTL,
		MaxMsgSize:        MaxSessionEntry,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Discard:           jetstream.DiscardNew,
		Duplicates:        min(DefaultDuplicates, cfg.TTL),
		DenyDelete:        true,
		DenyPurge:         true,
		AllowDirect:       false,
		// Concurrent writes are synced together as one batch (WriteKV).
		AllowAtomicPublish: true,
	})
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", BucketSessions, err)
	}
	c.allowAtomic(sessionsStream, s.CachedInfo().Config.AllowAtomicPublish)
	return nil
}

// Sessions opens BucketSessions, which must exist.
func (c *Conn) Sessions(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, BucketSessions)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketSessions, err)
	}
	return kv, nil
}
