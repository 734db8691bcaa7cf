package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// holdFirst makes the committer of stream hold its first group until n
// further requests wait behind it, so that they are written as one group.
// It returns a channel closed once the first group is held, and a function
// returning the sizes of the groups written, in order, to read after the
// publishes returned.
func holdFirst(t *testing.T, c *bus.Conn, stream string, n int) (<-chan struct{}, func() []int) {
	t.Helper()
	var (
		mu    sync.Mutex
		sizes []int
		held  = make(chan struct{})
	)
	bus.SetBeforeWrite(c, stream, func(msgs int) {
		mu.Lock()
		first := len(sizes) == 0
		sizes = append(sizes, msgs)
		mu.Unlock()
		if !first {
			return
		}
		close(held)
		for deadline := time.Now().Add(10 * time.Second); bus.Queued(c, stream) < n && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // polled: the queue has no event to wait on
		}
	})
	return held, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(sizes)
	}
}

// TestCommitter_Coalesces: events published concurrently while a write is
// in flight are written as one atomic batch, and each caller gets its own
// event's sequence.
func TestCommitter_Coalesces(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)
	const n = 3 * bus.AtomicMin
	held, sizes := holdFirst(t, c, bus.StreamRevocations, n)

	events := make([]*bus.Event, n+1)
	for i := range events {
		events[i] = bustest.Revocation(fmt.Sprintf("jti-%d", i))
	}
	seqs := make([]uint64, len(events))
	errs := make([]error, len(events))
	var wg sync.WaitGroup
	wg.Go(func() { seqs[0], errs[0] = c.Publish(t.Context(), events[0]) })
	<-held
	for i := 1; i < len(events); i++ {
		wg.Go(func() { seqs[i], errs[i] = c.Publish(t.Context(), events[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if got := sizes(); !slices.Equal(got, []int{1, n}) {
		t.Fatalf("groups written = %v, want [1 %d]", got, n)
	}
	if batches, singles := bus.CommitStats(c, bus.StreamRevocations); batches != 1 || singles != 1 {
		t.Fatalf("%d atomic batches and %d plain publishes, want 1 and 1", batches, singles)
	}
	// Every caller's sequence holds its own event.
	st, err := c.JetStream().Stream(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for i, seq := range seqs {
		if seen[seq] {
			t.Fatalf("sequence %d returned twice", seq)
		}
		seen[seq] = true
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != events[i].ID {
			t.Fatalf("sequence %d holds event %s, want %s", seq, id, events[i].ID)
		}
	}
}

// TestCommitter_FailedBatch: one write that fails its check fails the
// whole atomic batch on the server; the committer then writes the group's
// messages one by one, so that only that caller gets an error, and a
// republished event gets its original sequence.
func TestCommitter_FailedBatch(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)
	ctx := t.Context()
	if err := c.EnsureSessions(ctx, bus.SessionsConfig{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	stream := "KV_" + bus.BucketSessions
	taken, err := c.WriteKV(ctx, bus.BucketSessions, bus.KVWrite{Key: "taken", Value: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2 * bus.AtomicMin
	held, sizes := holdFirst(t, c, stream, n)
	revs := make([][]uint64, n+1)
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	wg.Go(func() {
		revs[0], errs[0] = c.WriteKV(ctx, bus.BucketSessions, bus.KVWrite{Key: "k0", Value: []byte("v0")})
	})
	<-held
	for i := 1; i <= n; i++ {
		w := bus.KVWrite{Key: fmt.Sprintf("k%d", i), Value: fmt.Appendf(nil, "v%d", i)}
		switch i {
		case 5:
			w.Key = "taken" // exists: its create fails
		case 9:
			w = bus.KVWrite{Key: "taken", Value: []byte("stale"), Revision: taken[0] + 1000}
		}
		wg.Go(func() { revs[i], errs[i] = c.WriteKV(ctx, bus.BucketSessions, w) })
	}
	wg.Wait()
	if got := sizes(); len(got) != 2 || got[1] != n {
		t.Fatalf("groups written = %v, want [1 %d]", got, n)
	}
	if !errors.Is(errs[5], jetstream.ErrKeyExists) {
		t.Fatalf("create of an existing entry: %v, want ErrKeyExists", errs[5])
	}
	if !errors.Is(errs[9], jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("update at a wrong revision: %v, want ErrKeyRevisionMismatch", errs[9])
	}
	kv, err := c.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if i == 5 || i == 9 {
			continue
		}
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		e, err := kv.Get(ctx, fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if e.Revision() != revs[i][0] || string(e.Value()) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d: revision %d value %q, want %d v%d", i, e.Revision(), e.Value(), revs[i][0], i)
		}
	}
	if e, err := kv.Get(ctx, "taken"); err != nil || string(e.Value()) != "first" {
		t.Fatalf("taken: %v, %v", e, err)
	}
	if batches, singles := bus.CommitStats(c, stream); batches != 0 || singles != n+2 {
		t.Fatalf("%d atomic batches and %d plain publishes, want 0 and %d", batches, singles, n+2)
	}

	// An event published again in a batch: the batch fails as a duplicate,
	// and the event gets its original sequence.
	again := bustest.Revocation("again")
	seq, err := c.Publish(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	events := []*bus.Event{again}
	for i := range bus.AtomicMin {
		events = append(events, bustest.Revocation(fmt.Sprintf("new-%d", i)))
	}
	seqs, err := c.PublishAll(ctx, events...)
	if err != nil {
		t.Fatal(err)
	}
	if seqs[0] != seq {
		t.Fatalf("republished event at %d, want its original %d", seqs[0], seq)
	}
	if !slices.IsSorted(seqs[1:]) || seqs[1] <= seq {
		t.Fatalf("sequences %v", seqs)
	}
}

// TestCommitter_Cluster: atomic batches on a replicated stream and bucket
// of a three-node cluster give every caller its own sequence.
func TestCommitter_Cluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	cl := bustest.RunCluster(t, 3)
	c := cl.Connect(t)
	c.SetSigner(bustest.Signer(t))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.EnsureStreams(ctx, bus.StreamConfig{RevocationMaxAge: bustest.RevocationMaxAge, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureSessions(ctx, bus.SessionsConfig{TTL: time.Hour, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	events := make([]*bus.Event, 2*bus.AtomicMin)
	for i := range events {
		events[i] = bustest.Revocation(fmt.Sprintf("c%d", i))
	}
	seqs, err := c.PublishAll(ctx, events...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range seqs {
		if seqs[i] != seqs[0]+uint64(i) {
			t.Fatalf("sequences %v", seqs)
		}
	}
	writes := make([]bus.KVWrite, 2*bus.AtomicMin)
	for i := range writes {
		writes[i] = bus.KVWrite{Key: fmt.Sprintf("c.%d", i), Value: []byte("v")}
	}
	revs, err := c.WriteKV(ctx, bus.BucketSessions, writes...)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := c.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range writes {
		e, err := kv.Get(ctx, w.Key)
		if err != nil || e.Revision() != revs[i] {
			t.Fatalf("%s: %v at %d, want revision %d", w.Key, err, e.Revision(), revs[i])
		}
	}
	// A compare-and-set conflict in a batch fails only its own write.
	writes = append(writes[:0], bus.KVWrite{Key: "c.0", Value: []byte("w"), Revision: revs[0]})
	for i := 1; i < 2*bus.AtomicMin; i++ {
		writes = append(writes, bus.KVWrite{Key: fmt.Sprintf("d.%d", i), Value: []byte("v")})
	}
	if _, err := c.WriteKV(ctx, bus.BucketSessions, writes...); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteKV(ctx, bus.BucketSessions, bus.KVWrite{Key: "c.0", Value: []byte("x"), Revision: revs[0]}); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("stale update: %v, want ErrKeyRevisionMismatch", err)
	}
	if batches, _ := bus.CommitStats(c, bus.StreamRevocations); batches != 1 {
		t.Fatalf("%d atomic batches on %s, want 1", batches, bus.StreamRevocations)
	}
}
