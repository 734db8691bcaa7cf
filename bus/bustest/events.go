package bustest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// RevocationMaxAge is the HERALD retention Setup-style tests use: long
// enough that nothing expires while a test runs.
const RevocationMaxAge = 10 * time.Minute

// Revocation returns a new valid revocation event of the token jti.
func Revocation(jti string) *bus.Event {
	now := time.Now().UTC()
	return &bus.Event{
		ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "test",
		Revocation: &bus.Revocation{Kind: bus.KindToken, Value: jti, At: now, Until: now.Add(RevocationMaxAge)},
	}
}

// Publish publishes events one by one and returns their stream sequences.
func Publish(tb testing.TB, c *bus.Conn, events ...*bus.Event) []uint64 {
	tb.Helper()
	seqs := make([]uint64, len(events))
	for i, e := range events {
		seq, err := c.Publish(tb.Context(), e)
		if err != nil {
			tb.Fatalf("Publish: %v", err)
		}
		seqs[i] = seq
	}
	return seqs
}

// StreamInfo returns the info of the stream name.
func StreamInfo(tb testing.TB, c *bus.Conn, name string) *jetstream.StreamInfo {
	tb.Helper()
	s, err := c.JetStream().Stream(tb.Context(), name)
	if err != nil {
		tb.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(tb.Context())
	if err != nil {
		tb.Fatalf("stream %s info: %v", name, err)
	}
	return info
}

// Collector records the deliveries of a Follow.
type Collector struct {
	mu  sync.Mutex
	got []bus.Delivery
}

// Deliver records d; it is the callback Follow is given.
func (c *Collector) Deliver(d bus.Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, d)
}

// Deliveries returns what has been delivered so far.
func (c *Collector) Deliveries() []bus.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// WaitLen waits until c has received n deliveries and returns them.
func (c *Collector) WaitLen(tb testing.TB, n int) []bus.Delivery {
	tb.Helper()
	WaitFor(tb, 5*time.Second, func() error {
		if got := len(c.Deliveries()); got != n {
			return fmt.Errorf("%d deliveries, want %d", got, n)
		}
		return nil
	})
	return c.Deliveries()
}

// Follow follows HERALD after the sequence after into a Collector; the
// returned stop ends it, and runs when the test ends.
func Follow(tb testing.TB, c *bus.Conn, after uint64) (*Collector, func()) {
	tb.Helper()
	col := &Collector{}
	stop, err := c.Follow(tb.Context(), bus.StreamRevocations, after, col.Deliver)
	if err != nil {
		tb.Fatalf("Follow(after %d): %v", after, err)
	}
	tb.Cleanup(stop)
	return col, stop
}
