package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultSignalsTTL is how long BucketSignals keeps an entry: longer than
// the iat bound of any signal (5 minutes for a logout token, 23 hours for
// a SET), so a replay within it is caught by its record and one after it
// by its iat.
const DefaultSignalsTTL = 24 * time.Hour

// MaxSignalsEntry bounds an entry of BucketSignals, in bytes.
const MaxSignalsEntry = 64 << 10

// EnsureSignals creates or updates BucketSignals, with its entries kept
// for ttl (DefaultSignalsTTL if not positive). Only issuers use it: it is
// where replicas share which logout tokens and SETs they received (keyed
// by a hash of iss and jti, created once, so exactly one replica acts on
// each) and where the positions of polled SET streams are kept.
func (c *Conn) EnsureSignals(ctx context.Context, ttl time.Duration, replicas int) error {
	if ttl <= 0 {
		ttl = DefaultSignalsTTL
	}
	if replicas <= 0 {
		replicas = 1
	}
	_, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       BucketSignals,
		Description:  "Herald signals received from outside: replay records by hash of iss and jti, and poll positions",
		History:      1,
		TTL:          ttl,
		MaxValueSize: MaxSignalsEntry,
		Storage:      jetstream.FileStorage,
		Replicas:     replicas,
	})
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", BucketSignals, err)
	}
	return c.limitStream(ctx, BucketStream(BucketSignals), func(sc *jetstream.StreamConfig) { limitConsumers(sc, DefaultMaxConsumers) })
}

// Signals opens BucketSignals.
func (c *Conn) Signals(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, BucketSignals)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketSignals, err)
	}
	return kv, nil
}

// SignalEventID returns the id of the event of kind part (a revocation,
// its audit record) that the token with issuer iss and id jti causes: the
// same on every issuer replica, so that JetStream stores the events of
// two replicas acting on the same token at once a single time (their
// Nats-Msg-Id). 32 hex digits, as NewID's.
func SignalEventID(iss, jti, part string) string {
	sum := sha256.Sum256([]byte(iss + "\x00" + jti + "\x00" + part))
	return hex.EncodeToString(sum[:16])
}

// SignalKey returns the key in BucketSignals of the replay record of the
// token with issuer iss and id jti.
func SignalKey(iss, jti string) string { return "jti." + hashName(iss+"\x00"+jti) }
