package bus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// checkDeliveries checks that got holds the events of seqs, in order.
func checkDeliveries(t testing.TB, got []bus.Delivery, seqs []uint64, events []*bus.Event) {
	t.Helper()
	if len(got) != len(seqs) {
		t.Fatalf("%d deliveries, want %d", len(got), len(seqs))
	}
	for i, d := range got {
		if d.Seq != seqs[i] {
			t.Fatalf("delivery %d: seq %d, want %d", i, d.Seq, seqs[i])
		}
		e, err := bus.Decode(d.Data)
		if err != nil {
			t.Fatalf("delivery %d: Decode: %v", i, err)
		}
		if e.ID != events[i].ID {
			t.Fatalf("delivery %d (seq %d): event %s, want %s", i, d.Seq, e.ID, events[i].ID)
		}
		if got, want := d.Header.Get(jetstream.MsgIDHeader), events[i].ID; got != want {
			t.Fatalf("delivery %d: %s = %q, want %q", i, jetstream.MsgIDHeader, got, want)
		}
		if got, want := d.Subject, events[i].Subject(); got != want {
			t.Fatalf("delivery %d: subject %q, want %q", i, got, want)
		}
		if d.Time.IsZero() {
			t.Fatalf("delivery %d: zero time", i)
		}
	}
}

func TestConn_EnsureStreams(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Connect(t, s)
	cfg := bus.StreamConfig{RevocationMaxAge: bustest.RevocationMaxAge}
	if err := c.EnsureStreams(t.Context(), cfg); err != nil {
		t.Fatalf("EnsureStreams: %v", err)
	}
	// Twice is fine: every component calls it at start.
	if err := c.EnsureStreams(t.Context(), cfg); err != nil {
		t.Fatalf("second EnsureStreams: %v", err)
	}

	t.Run("HERALD", func(t *testing.T) {
		sc := bustest.StreamInfo(t, c, "HERALD").Config
		if got, want := sc.Subjects, []string{"herald.revoke.>"}; !slices.Equal(got, want) {
			t.Errorf("subjects = %q, want %q", got, want)
		}
		if !sc.DenyDelete || !sc.DenyPurge {
			t.Errorf("DenyDelete = %v, DenyPurge = %v; want both true", sc.DenyDelete, sc.DenyPurge)
		}
		if got, want := sc.MaxAge, bustest.RevocationMaxAge; got != want {
			t.Errorf("MaxAge = %v, want %v", got, want)
		}
		if got, want := sc.Storage, jetstream.FileStorage; got != want {
			t.Errorf("storage = %v, want %v", got, want)
		}
		if got, want := sc.Retention, jetstream.LimitsPolicy; got != want {
			t.Errorf("retention = %v, want %v", got, want)
		}
		if sc.Duplicates <= 0 || sc.Duplicates > bustest.RevocationMaxAge {
			t.Errorf("duplicates window = %v, want in (0, %v]", sc.Duplicates, bustest.RevocationMaxAge)
		}
	})

	t.Run("HERALD_AUDIT", func(t *testing.T) {
		sc := bustest.StreamInfo(t, c, "HERALD_AUDIT").Config
		want := []string{"herald.issue.>", "herald.session.>", "herald.key.>", "herald.admin.>", "herald.signal.>"}
		if got := slices.Sorted(slices.Values(sc.Subjects)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("subjects = %q, want %q", sc.Subjects, want)
		}
		if !sc.DenyDelete || !sc.DenyPurge {
			t.Errorf("DenyDelete = %v, DenyPurge = %v; want both true", sc.DenyDelete, sc.DenyPurge)
		}
		if got, want := sc.MaxAge, bus.DefaultAuditMaxAge; got != want {
			t.Errorf("MaxAge = %v, want %v", got, want)
		}
		if got, want := sc.Storage, jetstream.FileStorage; got != want {
			t.Errorf("storage = %v, want %v", got, want)
		}
	})

	t.Run("HERALD_KEYS", func(t *testing.T) {
		kv, err := c.Keys(t.Context())
		if err != nil {
			t.Fatalf("Keys: %v", err)
		}
		if got, want := kv.Bucket(), "HERALD_KEYS"; got != want {
			t.Fatalf("bucket = %q, want %q", got, want)
		}
		st, err := kv.Status(t.Context())
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if got, want := st.History(), int64(1); got != want {
			t.Errorf("history = %d, want %d", got, want)
		}
		if _, err := kv.Put(t.Context(), "kid-1", []byte("public key")); err != nil {
			t.Fatalf("Put: %v", err)
		}
	})

	t.Run("update max age", func(t *testing.T) {
		if err := c.EnsureStreams(t.Context(), bus.StreamConfig{RevocationMaxAge: 2 * bustest.RevocationMaxAge}); err != nil {
			t.Fatalf("EnsureStreams with a new max age: %v", err)
		}
		if got, want := bustest.StreamInfo(t, c, "HERALD").Config.MaxAge, 2*bustest.RevocationMaxAge; got != want {
			t.Errorf("MaxAge = %v, want %v", got, want)
		}
	})

	t.Run("max age required", func(t *testing.T) {
		if err := c.EnsureStreams(t.Context(), bus.StreamConfig{}); err == nil {
			t.Fatal("EnsureStreams without RevocationMaxAge succeeded, want an error")
		}
	})
}

func TestConn_DenyDeleteAndPurge(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)
	bustest.Publish(t, c, bustest.Revocation("j1"), bustest.Revocation("j2"))
	for _, name := range []string{"HERALD", "HERALD_AUDIT"} {
		t.Run(name, func(t *testing.T) {
			st, err := c.JetStream().Stream(t.Context(), name)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if err := st.DeleteMsg(t.Context(), 1); err == nil {
				t.Error("DeleteMsg succeeded, want an error")
			}
			if err := st.SecureDeleteMsg(t.Context(), 1); err == nil {
				t.Error("SecureDeleteMsg succeeded, want an error")
			}
			if err := st.Purge(t.Context()); err == nil {
				t.Error("Purge succeeded, want an error")
			}
		})
	}
	if got, want := bustest.StreamInfo(t, c, "HERALD").State.Msgs, uint64(2); got != want {
		t.Fatalf("HERALD holds %d messages after delete and purge attempts, want %d", got, want)
	}
}

func TestConn_Publish(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)

	events := []*bus.Event{bustest.Revocation("j1"), bustest.Revocation("j2"), bustest.Revocation("j3")}
	seqs := bustest.Publish(t, c, events...)
	if got, want := seqs, []uint64{1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("sequences = %v, want %v", got, want)
	}

	t.Run("republish", func(t *testing.T) {
		// Same event, same ID: a retry after a lost ack.
		seq, err := c.Publish(t.Context(), events[1])
		if err != nil {
			t.Fatalf("republish: %v", err)
		}
		if got, want := seq, seqs[1]; got != want {
			t.Fatalf("republish seq = %d, want the original %d", got, want)
		}
		st := bustest.StreamInfo(t, c, "HERALD").State
		if got, want := st.Msgs, uint64(3); got != want {
			t.Fatalf("HERALD holds %d messages, want %d", got, want)
		}
		if got, want := st.LastSeq, uint64(3); got != want {
			t.Fatalf("HERALD last seq = %d, want %d", got, want)
		}
	})

	t.Run("stored message", func(t *testing.T) {
		st, err := c.JetStream().Stream(t.Context(), "HERALD")
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetMsg(t.Context(), 2)
		if err != nil {
			t.Fatalf("GetMsg(2): %v", err)
		}
		want, err := bus.Encode(events[1])
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != string(want) {
			t.Errorf("stored data = %s, want %s", m.Data, want)
		}
		if got, want := m.Subject, "herald.revoke.token"; got != want {
			t.Errorf("subject = %q, want %q", got, want)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), events[1].ID; got != want {
			t.Errorf("%s = %q, want %q", jetstream.MsgIDHeader, got, want)
		}
	})

	t.Run("audit event", func(t *testing.T) {
		now := time.Now().UTC()
		e := &bus.Event{ID: bus.NewID(), Type: bus.TypeTokenIssued, Time: now, Actor: "test",
			Token: &bus.Token{ID: "j", Subject: "u", Tenant: "acme", KeyID: "k", IssuedAt: now, Expires: now.Add(time.Minute)}}
		seq, err := c.Publish(t.Context(), e)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if got, want := seq, uint64(1); got != want {
			t.Errorf("HERALD_AUDIT seq = %d, want %d", got, want)
		}
		if got, want := bustest.StreamInfo(t, c, "HERALD").State.Msgs, uint64(3); got != want {
			t.Errorf("HERALD holds %d messages, want %d: audit events stay out of it", got, want)
		}
	})
}

func TestConn_PublishInvalid(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)

	bad := bustest.Revocation("")
	if seq, err := c.Publish(t.Context(), bad); err == nil {
		t.Fatalf("Publish of a token revocation without value = seq %d, want an error", seq)
	} else if !errors.Is(err, bus.ErrMalformed) {
		t.Errorf("Publish error %q does not wrap ErrMalformed", err)
	}
	if seqs, err := c.PublishAll(t.Context(), bad); err == nil {
		t.Fatalf("PublishAll of an invalid event = %v, want an error", seqs)
	}
	if got := bustest.StreamInfo(t, c, "HERALD").State.Msgs; got != 0 {
		t.Fatalf("HERALD holds %d messages after invalid publishes, want 0", got)
	}
}

func TestConn_PublishAll(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)
	bustest.Publish(t, c, bustest.Revocation("first"))

	events := make([]*bus.Event, 20)
	for i := range events {
		events[i] = bustest.Revocation(fmt.Sprintf("j%d", i))
	}
	seqs, err := c.PublishAll(t.Context(), events...)
	if err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
	want := make([]uint64, len(events))
	for i := range want {
		want[i] = uint64(i + 2)
	}
	if !slices.Equal(seqs, want) {
		t.Fatalf("sequences = %v, want %v", seqs, want)
	}

	// The stream holds them in the order given.
	st, err := c.JetStream().Stream(t.Context(), "HERALD")
	if err != nil {
		t.Fatal(err)
	}
	for i, seq := range seqs {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), events[i].ID; got != want {
			t.Fatalf("seq %d holds event %s, want %s", seq, got, want)
		}
	}

	if seqs, err := c.PublishAll(t.Context()); err != nil || len(seqs) != 0 {
		t.Fatalf("PublishAll() = %v, %v; want no sequences and no error", seqs, err)
	}
}

func TestConn_Follow(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)
	events := []*bus.Event{bustest.Revocation("j1"), bustest.Revocation("j2"), bustest.Revocation("j3")}
	seqs := bustest.Publish(t, c, events...)

	t.Run("from start", func(t *testing.T) {
		col, _ := bustest.Follow(t, c, 0)
		got := col.WaitLen(t, 3)
		checkDeliveries(t, got, seqs, events)
		for _, d := range got {
			// Nothing was published meanwhile: every delivery sees head 3.
			if got, want := d.Seq+d.Pending, uint64(3); got != want {
				t.Errorf("seq %d: Seq+Pending = %d, want %d", d.Seq, got, want)
			}
		}
	})

	t.Run("after", func(t *testing.T) {
		for after := range uint64(3) {
			t.Run(fmt.Sprint(after), func(t *testing.T) {
				col, _ := bustest.Follow(t, c, after)
				got := col.WaitLen(t, 3-int(after))
				checkDeliveries(t, got, seqs[after:], events[after:])
			})
		}
	})

	t.Run("after head then new", func(t *testing.T) {
		// Published from here on: the last subtest, since it grows the stream.
		col, _ := bustest.Follow(t, c, 3)
		more := []*bus.Event{bustest.Revocation("j4"), bustest.Revocation("j5")}
		moreSeqs := bustest.Publish(t, c, more...)
		if got, want := moreSeqs, []uint64{4, 5}; !slices.Equal(got, want) {
			t.Fatalf("sequences = %v, want %v", got, want)
		}
		got := col.WaitLen(t, 2)
		checkDeliveries(t, got, moreSeqs, more)
		last := got[len(got)-1]
		_, head, err := c.StreamHead(t.Context(), "HERALD")
		if err != nil {
			t.Fatal(err)
		}
		if got := last.Seq + last.Pending; got != head {
			t.Fatalf("last delivery: Seq %d + Pending %d = %d, want stream head %d", last.Seq, last.Pending, got, head)
		}
	})
}

func TestConn_FollowLive(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)
	col, _ := bustest.Follow(t, c, 0)

	var events []*bus.Event
	var seqs []uint64
	for i := range 10 {
		e := bustest.Revocation(fmt.Sprintf("j%d", i))
		events = append(events, e)
		seqs = append(seqs, bustest.Publish(t, c, e)...)
		// Each one arrives on its own, not only in a batch with the rest.
		col.WaitLen(t, i+1)
	}
	got := col.WaitLen(t, len(events))
	checkDeliveries(t, got, seqs, events)
	last := got[len(got)-1]
	if got, want := last.Seq+last.Pending, seqs[len(seqs)-1]; got != want {
		t.Fatalf("last delivery: Seq+Pending = %d, want stream last seq %d", got, want)
	}
	if last.Pending != 0 {
		t.Fatalf("last delivery: Pending = %d, want 0", last.Pending)
	}
}

func TestConn_FollowStop(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)
	bustest.Publish(t, c, bustest.Revocation("j1"), bustest.Revocation("j2"))

	before := consumerGoroutines()
	stopped, stop := bustest.Follow(t, c, 0)
	stopped.WaitLen(t, 2)
	if n := consumerGoroutines(); n <= before {
		t.Fatalf("%d consumer goroutines while following, %d before: the leak check below would see nothing", n, before)
	}
	done := make(chan struct{})
	go func() {
		stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return")
	}
	stop() // a second call is harmless

	// The consumer's goroutines are gone.
	bustest.WaitFor(t, 5*time.Second, func() error {
		if n := consumerGoroutines(); n > before {
			return fmt.Errorf("%d consumer goroutines after stop, %d before Follow:\n%s", n, before, goroutines())
		}
		return nil
	})

	// Publish more and wait until another follower has them all: had the
	// stopped one still been running, it would have seen them by then.
	witness, _ := bustest.Follow(t, c, 0)
	bustest.Publish(t, c, bustest.Revocation("j3"), bustest.Revocation("j4"))
	witness.WaitLen(t, 4)
	if got := stopped.Deliveries(); len(got) != 2 {
		t.Fatalf("%d deliveries after stop, want 2 (last seq %d)", len(got), got[len(got)-1].Seq)
	}
}

// goroutines returns the stacks of every goroutine.
func goroutines() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// consumerGoroutines counts the goroutines of the JetStream client's
// consumers. The embedded server runs in the same process, and its side of a
// consumer outlives the client's by design (the inactive threshold), so a
// plain runtime.NumGoroutine would count those.
func consumerGoroutines() int {
	n := 0
	for g := range strings.SplitSeq(goroutines(), "\n\n") {
		if strings.Contains(g, "nats.go/jetstream.") || strings.Contains(g, "herald/bus.(*Conn).Follow") {
			n++
		}
	}
	return n
}

func TestConn_FollowStopWaitsForDeliver(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)
	bustest.Publish(t, c, bustest.Revocation("j1"), bustest.Revocation("j2"))

	var (
		inDeliver  atomic.Int32
		deliveries atomic.Int32
		entered    = make(chan struct{})
		release    = make(chan struct{})
	)
	stop, err := c.Follow(t.Context(), bus.StreamRevocations, 0, func(d bus.Delivery) {
		inDeliver.Add(1)
		defer inDeliver.Add(-1)
		if deliveries.Add(1) == 1 {
			close(entered)
			<-release
		}
	})
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	t.Cleanup(stop)
	<-entered

	stopReturned := make(chan int32)
	go func() {
		stop()
		stopReturned <- inDeliver.Load()
	}()
	// Give stop a chance to return early before letting deliver finish. The
	// assertion below holds whatever the timing; the delay only makes a
	// violation likely to show.
	var once sync.Once
	releaseDeliver := func() { once.Do(func() { close(release) }) }
	defer releaseDeliver()
	time.AfterFunc(50*time.Millisecond, releaseDeliver)
	select {
	case n := <-stopReturned:
		if n != 0 {
			t.Fatal("stop returned while deliver was still running")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return")
	}
}

func TestConn_Retention(t *testing.T) {
	s := bustest.RunServer(t)
	const maxAge = 250 * time.Millisecond
	c := bustest.Setup(t, s, maxAge)
	bustest.Publish(t, c, bustest.Revocation("j1"), bustest.Revocation("j2"))
	bustest.WaitFor(t, 5*time.Second, func() error {
		first, last, err := c.StreamHead(t.Context(), "HERALD")
		if err != nil {
			return err
		}
		if first != 3 || last != 2 {
			return fmt.Errorf("StreamHead = %d, %d; want 3, 2 once both messages expired", first, last)
		}
		return nil
	})

	// Keep what comes next for the rest of the test.
	if err := c.EnsureStreams(t.Context(), bus.StreamConfig{RevocationMaxAge: bustest.RevocationMaxAge}); err != nil {
		t.Fatalf("EnsureStreams: %v", err)
	}
	e := bustest.Revocation("j3")
	seqs := bustest.Publish(t, c, e)
	if got, want := seqs[0], uint64(3); got != want {
		t.Fatalf("seq after expiry = %d, want %d", got, want)
	}
	// Follow does not hide retention: the caller sees the jump.
	for _, after := range []uint64{0, 1} {
		t.Run(fmt.Sprintf("after %d", after), func(t *testing.T) {
			col, _ := bustest.Follow(t, c, after)
			checkDeliveries(t, col.WaitLen(t, 1), seqs, []*bus.Event{e})
		})
	}
}

func TestConn_FollowMissingStream(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Connect(t, s)
	stop, err := c.Follow(t.Context(), "NOPE", 0, func(bus.Delivery) {})
	if err == nil {
		stop()
		t.Fatal("Follow of a missing stream succeeded, want an error")
	}
}

func TestConn_StreamHead(t *testing.T) {
	s := bustest.RunServer(t)
	c := bustest.Setup(t, s, bustest.RevocationMaxAge)

	t.Run("empty", func(t *testing.T) {
		first, last, err := c.StreamHead(t.Context(), "HERALD")
		if err != nil {
			t.Fatalf("StreamHead: %v", err)
		}
		if last != 0 {
			t.Fatalf("StreamHead of an empty stream: last = %d, want 0", last)
		}
		// The documented invariant, last = first - 1, cannot hold for a
		// new stream whose first is 0; accept 0 or 1.
		if first > 1 {
			t.Fatalf("StreamHead of an empty stream: first = %d, want 0 or 1", first)
		}
	})

	t.Run("non-empty", func(t *testing.T) {
		bustest.Publish(t, c, bustest.Revocation("j1"), bustest.Revocation("j2"), bustest.Revocation("j3"))
		first, last, err := c.StreamHead(t.Context(), "HERALD")
		if err != nil {
			t.Fatalf("StreamHead: %v", err)
		}
		if first != 1 || last != 3 {
			t.Fatalf("StreamHead = %d, %d; want 1, 3", first, last)
		}
	})

	t.Run("missing stream", func(t *testing.T) {
		if _, _, err := c.StreamHead(t.Context(), "NOPE"); err == nil {
			t.Fatal("StreamHead of a missing stream succeeded, want an error")
		}
	})
}

func TestConnect_Errors(t *testing.T) {
	if _, err := bus.Connect(t.Context(), bus.Config{}); err == nil {
		t.Fatal("Connect without URL succeeded, want an error")
	}
	// Nothing listens there: a free port just closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{URL: "nats://user:secret@" + addr})
	if err == nil {
		c.Close()
		t.Fatal("Connect to a closed port succeeded, want an error")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("Connect error %q leaks the password", err)
	}
}

// TestEnsureStreams_UnchangedStreamNotUpdated: a second EnsureStreams with
// the same settings leaves Herald's streams alone (no update request
// reaches the server), and a changed setting is applied. (The buckets'
// streams are still updated: nats.go's CreateOrUpdateKeyValue always
// does.)
func TestEnsureStreams_UnchangedStreamNotUpdated(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	cfg := bus.StreamConfig{RevocationMaxAge: time.Hour}
	if err := conn.EnsureStreams(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	// Delivered into the channel by the connection's reader, before the
	// answer to a Flush: after one, every request sent before is there.
	updates := make(chan *nats.Msg, 64)
	sub, err := conn.NATS().ChanSubscribe("$JS.API.STREAM.UPDATE.>", updates)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := conn.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := conn.EnsureStreams(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := conn.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	for len(updates) > 0 {
		if u := <-updates; !strings.HasPrefix(u.Subject, "$JS.API.STREAM.UPDATE.KV_") {
			t.Errorf("%s with every setting unchanged", u.Subject)
		}
	}
	cfg.RevocationMaxAge = 2 * time.Hour
	if err := conn.EnsureStreams(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := conn.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := conn.JetStream().Stream(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Fatalf("HERALD max age %s after the change, want 2h", got)
	}
	counts := map[string]int{}
	for len(updates) > 0 {
		counts[strings.TrimPrefix((<-updates).Subject, "$JS.API.STREAM.UPDATE.")]++
	}
	if counts[bus.StreamRevocations] != 1 || counts[bus.StreamAudit] != 0 {
		t.Errorf("update requests once the max age changed: %v, want one for %s, none for %s", counts, bus.StreamRevocations, bus.StreamAudit)
	}
}
