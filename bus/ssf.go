package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The Shared Signals transmitter's stream and buckets. HERALD_SSF sources
// HERALD, so it holds every revocation, for longer (receivers may be away
// or paused for days), plus each SSF stream's own control SETs on
// SubjectSSFPrefix+<stream id>. Each SSF stream reads it through its own
// durable consumer: the consumer is the stream's position, shared by every
// issuer replica.
const (
	// StreamSSF holds what the transmitter sends.
	StreamSSF = "HERALD_SSF"
	// BucketSSFStreams holds the SSF streams' configurations and status.
	BucketSSFStreams = "HERALD_SSF_STREAMS"
	// BucketSSFPending maps the SETs a poll returned to the JetStream
	// acknowledgements they wait for, so any replica acknowledges them.
	BucketSSFPending = "HERALD_SSF_PENDING"
	// SubjectSSFPrefix starts the subjects of an SSF stream's own
	// control SETs (verification, stream-updated) in StreamSSF.
	SubjectSSFPrefix = "herald.ssf."
	// DefaultSSFRetention is how long StreamSSF keeps events by default.
	DefaultSSFRetention = 7 * 24 * time.Hour
)

// SSFConfig configures StreamSSF and its buckets.
type SSFConfig struct {
	// Retention is how long StreamSSF keeps an event
	// (DefaultSSFRetention if not positive).
	Retention time.Duration
	// PendingTTL is how long an entry of BucketSSFPending lives.
	PendingTTL time.Duration
	// Replicas of the stream and buckets (1 if not positive).
	Replicas int
	// MaxConsumers bounds the consumers of StreamSSF: the SSF streams.
	MaxConsumers int
}

// EnsureSSF creates or updates StreamSSF, BucketSSFStreams and
// BucketSSFPending. StreamSSF denies delete and purge like HERALD, and
// sets no inactivity limit on consumers: a stream's position must
// outlive a receiver that is away.
func (c *Conn) EnsureSSF(ctx context.Context, cfg SSFConfig) error {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultSSFRetention
	}
	if cfg.PendingTTL <= 0 {
		cfg.PendingTTL = 30 * time.Minute
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxConsumers <= 0 {
		cfg.MaxConsumers = 1000
	}
	err := c.ensureStream(ctx, jetstream.StreamConfig{
		Name:         StreamSSF,
		Description:  "Herald Shared Signals: revocations (sourced from HERALD) and each SSF stream's control SETs",
		Subjects:     []string{SubjectSSFPrefix + ">"},
		Sources:      []*jetstream.StreamSource{{Name: StreamRevocations}},
		Retention:    jetstream.LimitsPolicy,
		Discard:      jetstream.DiscardOld,
		MaxAge:       cfg.Retention,
		Storage:      jetstream.FileStorage,
		Replicas:     cfg.Replicas,
		Duplicates:   min(DefaultDuplicates, cfg.Retention),
		DenyDelete:   true,
		DenyPurge:    true,
		MaxConsumers: cfg.MaxConsumers,
	})
	if err != nil {
		return err
	}
	for _, kv := range []jetstream.KeyValueConfig{{
		Bucket:      BucketSSFStreams,
		Description: "Herald SSF streams: configuration, receiver, status and subjects, by stream id",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}, {
		Bucket:      BucketSSFPending,
		Description: "Herald SSF poll deliveries awaiting the receiver's acknowledgement",
		History:     1,
		TTL:         cfg.PendingTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}} {
		if _, err := c.js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}
