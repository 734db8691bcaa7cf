package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadOptions selects what Read reads.
type ReadOptions struct {
	// Subjects filters by subject (wildcards allowed); empty reads all.
	Subjects []string
	// Since starts at the first message stored at or after it; zero
	// starts at the first message the stream holds.
	Since time.Time
	// MaxBytes bounds the bytes of messages asked for at once, for
	// streams of large messages; 0 leaves the client's default.
	MaxBytes int
}

// Read calls fn for every message of stream matching opts that exists
// when Read starts, in order, and returns once the last of them has been
// delivered or fn returns false.
func (c *Conn) Read(ctx context.Context, stream string, opts ReadOptions, fn func(Delivery) bool) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubjects: opts.Subjects}
	if !opts.Since.IsZero() {
		since := opts.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := c.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	remaining := info.NumPending
	if remaining == 0 {
		return nil
	}
	var pull []jetstream.PullMessagesOpt
	if opts.MaxBytes > 0 {
		pull = append(pull, jetstream.PullMaxBytes(opts.MaxBytes))
	}
	it, err := cons.Messages(pull...)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer it.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			it.Stop() // unblocks Next
		case <-done:
		}
	}()
	for remaining > 0 {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read %s: %w", stream, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		d := Delivery{Seq: meta.Sequence.Stream, Pending: meta.NumPending, Time: meta.Timestamp,
			Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
		if !fn(d) {
			return nil
		}
		remaining = meta.NumPending
	}
	return nil
}
