package issuer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus/bustest"
)

// TestSharedReads_ReadStartsAfterTheCall: concurrent callers of one key
// share one read, none gets the answer of a read that began before it
// called, and no key is held once its reads are done.
func TestSharedReads_ReadStartsAfterTheCall(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	ctx := t.Context()
	kv, err := conn.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "SHARED", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	var reads atomic.Int64
	started := make(chan struct{}, 8)
	proceed := make(chan struct{})
	g := &sharedReads[string, jetstream.KeyValueEntry]{read: func(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
		reads.Add(1)
		e, err := kv.Get(ctx, key)
		started <- struct{}{}
		<-proceed
		return e, err
	}}
	value := func() (string, error) {
		e, err := g.get(ctx, "k")
		if err != nil {
			return "", err
		}
		return string(e.Value()), nil
	}
	first := make(chan string, 1)
	go func() {
		v, err := value()
		if err != nil {
			v = err.Error()
		}
		first <- v
	}()
	<-started // a read of v1 is under way
	if _, err := kv.Put(ctx, "k", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	const n = 8
	later := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			v, err := value()
			if err != nil {
				v = err.Error()
			}
			later <- v
		})
	}
	// Every later caller waits for the one read queued behind the first.
	bustest.WaitFor(t, 5*time.Second, func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		if k := g.keys["k"]; k == nil || k.next == nil || k.next.callers != n {
			return errors.New("the later callers are not all waiting for the next read")
		}
		return nil
	})
	close(proceed)
	wg.Wait()
	close(later)
	if v := <-first; v != "v1" {
		t.Fatalf("first caller got %q, want v1", v)
	}
	for v := range later {
		if v != "v2" {
			t.Fatalf("a caller that came after the write got %q, want v2", v)
		}
	}
	if got := reads.Load(); got != 2 {
		t.Fatalf("%d reads for %d callers, want 2", got, n+1)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.keys) != 0 {
		t.Fatalf("%d keys held after every read ended", len(g.keys))
	}
}
