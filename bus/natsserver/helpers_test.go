package natsserver_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// Fixtures of the tests that run Herald's clients against a secured
// server, as bus's own tests do.

// revocationMaxAge is the HERALD retention of these tests: long enough that
// nothing expires while a test runs.
const revocationMaxAge = 10 * time.Minute

// revocation returns a new valid revocation event of a token.
func revocation(jti string) *bus.Event {
	now := time.Now().UTC()
	return &bus.Event{
		ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "test",
		Revocation: &bus.Revocation{Kind: bus.KindToken, Value: jti, At: now, Until: now.Add(revocationMaxAge)},
	}
}

func publish(t testing.TB, c *bus.Conn, events ...*bus.Event) []uint64 {
	t.Helper()
	seqs := make([]uint64, len(events))
	for i, e := range events {
		seq, err := c.Publish(t.Context(), e)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		seqs[i] = seq
	}
	return seqs
}

func streamInfo(t testing.TB, c *bus.Conn, name string) *jetstream.StreamInfo {
	t.Helper()
	s, err := c.JetStream().Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info
}

// collector records deliveries of a Follow.
type collector struct {
	mu  sync.Mutex
	got []bus.Delivery
}

func (c *collector) deliver(d bus.Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, d)
}

func (c *collector) deliveries() []bus.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// waitLen waits until c has received n deliveries.
func (c *collector) waitLen(t testing.TB, n int) []bus.Delivery {
	t.Helper()
	bustest.WaitFor(t, 5*time.Second, func() error {
		if got := len(c.deliveries()); got != n {
			return fmt.Errorf("%d deliveries, want %d", got, n)
		}
		return nil
	})
	return c.deliveries()
}

func follow(t testing.TB, c *bus.Conn, after uint64) (*collector, func()) {
	t.Helper()
	col := &collector{}
	stop, err := c.Follow(t.Context(), bus.StreamRevocations, after, col.deliver)
	if err != nil {
		t.Fatalf("Follow(after %d): %v", after, err)
	}
	t.Cleanup(stop)
	return col, stop
}
