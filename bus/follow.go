package bus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// stopTimeout bounds how long stopping a Follow waits for the consumer to close.
const stopTimeout = 5 * time.Second

// Delivery is one message read from a stream.
type Delivery struct {
	// Seq is the message's stream sequence.
	Seq uint64
	// Pending is how many messages the stream held after this one when it
	// was delivered, so Seq+Pending is the stream head at that moment.
	Pending uint64
	// Time is when the stream stored the message.
	Time    time.Time
	Subject string
	Header  nats.Header
	Data    []byte
}

// Follow delivers the messages of stream in order, starting after sequence
// after (0 reads from the first message the stream holds), to deliver,
// which runs on one goroutine at a time and must not block for long. It
// returns a function that stops delivery and waits for the running call of
// deliver to return.
//
// Follow uses an ordered consumer: it recovers by itself from missed
// messages and reconnects. It does not hide retention: when the stream no
// longer holds sequence after+1, delivery starts at the first message it
// does hold, and the caller sees the jump in Delivery.Seq.
func (c *Conn) Follow(ctx context.Context, stream string, after uint64, deliver func(Delivery)) (stop func(), err error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	cons, err := c.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("follow %s from %d: %w", stream, after+1, err)
	}
	// jetstream's Closed can report an ordered consumer closed while its
	// handler still runs, so Follow guards deliver itself: once stop holds
	// mu and sets stopped, no call of deliver runs or starts.
	var (
		mu      sync.Mutex
		stopped bool
	)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		meta, err := m.Metadata()
		if err != nil {
			c.log.Error("follow: message without metadata", "stream", stream, "err", err)
			return
		}
		deliver(Delivery{
			Seq:     meta.Sequence.Stream,
			Pending: meta.NumPending,
			Time:    meta.Timestamp,
			Subject: m.Subject(),
			Header:  m.Headers(),
			Data:    m.Data(),
		})
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		c.log.Debug("follow: consumer error", "stream", stream, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("follow %s from %d: %w", stream, after+1, err)
	}
	return func() {
		cc.Stop()
		select {
		case <-cc.Closed():
		case <-time.After(stopTimeout):
			// The connection is down and the unsubscribe cannot complete.
		}
		mu.Lock()
		stopped = true
		mu.Unlock()
	}, nil
}
