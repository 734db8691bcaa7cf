package verifier

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/store"
)

// publishMixed publishes n revocations of every kind, some of them of the
// same value again with a later time (which the denylist merges), and
// returns the last sequence.
func publishMixed(t *testing.T, conn *bus.Conn, prefix string, n int, base time.Time) uint64 {
	t.Helper()
	kinds := []bus.Kind{bus.KindToken, bus.KindSession, bus.KindSubject, bus.KindClient, bus.KindTenant, bus.KindKey}
	var last uint64
	for i := range n {
		k := kinds[i%len(kinds)]
		value := fmt.Sprintf("%s-%d", prefix, i%(n/2+1)) // values repeat: later at and until win
		if i == n/2 {
			k, value = bus.KindAll, ""
		}
		last = publishRevocation(t, conn, k, value, base.Add(time.Duration(i)*time.Millisecond))
	}
	return last
}

// denylistOf returns the entries a sidecar's denylist holds, by key.
func denylistOf(t *testing.T, sc *core) (uint64, []store.Entry) {
	t.Helper()
	seq, entries, err := sc.db.Entries()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(entries, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) })
	return seq, entries
}

// sameDenylist fails unless got and want hold the same entries, to the
// nanosecond.
func sameDenylist(t *testing.T, got, want []store.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("denylist holds %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Key != want[i].Key || !got[i].At.Equal(want[i].At) || !got[i].Until.Equal(want[i].Until) {
			t.Fatalf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// caughtUp starts a fresh sidecar and returns it once it has applied
// sequence last.
func caughtUp(t *testing.T, conn *bus.Conn, last uint64) *core {
	t.Helper()
	sc, _ := startCore(t, conn, t.TempDir())
	waitReady(t, sc)
	waitApplied(t, sc, last)
	return sc
}

// snapshotBus starts a server with Herald's streams, HERALD keeping
// revocations for maxAge, and publishes the test token key.
func snapshotBus(t *testing.T, maxAge time.Duration) (*natsserver.Server, *bus.Conn, *testKeys) {
	t.Helper()
	srv := bustest.RunServer(t)
	conn := bustest.Setup(t, srv, maxAge)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	return srv, conn, k
}

// TestSnapshot_FreshVerifier publishes revocations, a snapshot of a
// caught-up denylist, and more revocations: a fresh verifier applies the
// snapshot, replays only the tail, and holds exactly the entries of a
// full replay.
func TestSnapshot_FreshVerifier(t *testing.T) {
	_, conn, k := snapshotBus(t, 20*time.Minute)
	base := time.Now().Add(-time.Minute)

	head := publishMixed(t, conn, "before", 120, base)
	source := caughtUp(t, conn, head)
	info, err := PublishSnapshot(t.Context(), conn, source.db, "test")
	if err != nil {
		t.Fatal(err)
	}
	if info.Seq != head || info.Entries != source.db.Len() || info.Chunks != 1 {
		t.Fatalf("snapshot %+v, want seq %d and %d entries in 1 chunk", info, head, source.db.Len())
	}
	const tail = 30
	last := publishMixed(t, conn, "before", tail, base.Add(time.Second)) // values already revoked, later
	last = publishMixed(t, conn, "after", tail, base)
	sc := caughtUp(t, conn, last)
	st := sc.Status()
	if st.SnapshotSeq != head || st.SnapshotFallbacks != 0 {
		t.Fatalf("status %+v: want started from the snapshot at %d", st, head)
	}
	if want := last - head; st.EventsApplied != want {
		t.Fatalf("events applied = %d, want only the %d after the snapshot", st.EventsApplied, want)
	}
	waitApplied(t, source, last)
	_, want := denylistOf(t, source)
	seq, got := denylistOf(t, sc)
	if seq != last {
		t.Fatalf("applied %d, want %d", seq, last)
	}
	sameDenylist(t, got, want)

	c := baseClaims(base.Add(-time.Second))
	c["jti"] = "after-3"
	if _, err := sc.Verifier().Verify(t.Context(), k.EdToken(t, c)); err == nil {
		t.Fatal("token revoked after the snapshot verified")
	}
}

// TestSnapshot_Unusable offers a fresh verifier snapshots it must not
// use: each time it replays the whole stream and ends with the same
// denylist as a verifier that never saw a snapshot.
func TestSnapshot_Unusable(t *testing.T) {
	chunksOf := func(t *testing.T, source *core) []*bus.Event {
		seq, entries := denylistOf(t, source)
		se, err := SnapshotEntries(entries)
		if err != nil {
			t.Fatal(err)
		}
		created, err := source.conn.StreamCreated(t.Context(), bus.StreamRevocations)
		if err != nil {
			t.Fatal(err)
		}
		chunks := bus.SnapshotChunks(bus.NewID(), seq, created, se, "test", time.Now())
		for _, c := range chunks {
			c.Snapshot.EventKeys = source.keys.EventKeys()
		}
		return chunks
	}
	publish := func(t *testing.T, conn *bus.Conn, chunks ...*bus.Event) {
		if _, err := conn.PublishAll(t.Context(), chunks...); err != nil {
			t.Fatal(err)
		}
	}
	publishRaw := func(t *testing.T, conn *bus.Conn, e *bus.Event, edit func(data []byte) []byte, sig bool) {
		msg, err := conn.NewMsg(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		msg.Data = edit(msg.Data)
		if !sig {
			msg.Header.Del(bus.HeaderSignature)
		}
		if _, err := conn.JetStream().PublishMsg(t.Context(), msg, jetstream.WithExpectStream(bus.StreamSnapshots)); err != nil {
			t.Fatal(err)
		}
	}
	same := func(b []byte) []byte { return b }
	cases := []struct {
		name  string
		offer func(t *testing.T, srv *natsserver.Server, conn *bus.Conn, source *core)
	}{
		{"none", func(*testing.T, *natsserver.Server, *bus.Conn, *core) {}},
		{"forged", func(t *testing.T, srv *natsserver.Server, _ *bus.Conn, source *core) {
			publish(t, bustest.ForeignConn(t, srv), chunksOf(t, source)...)
		}},
		{"unsigned", func(t *testing.T, _ *natsserver.Server, conn *bus.Conn, source *core) {
			publishRaw(t, conn, chunksOf(t, source)[0], same, false)
		}},
		{"tampered", func(t *testing.T, _ *natsserver.Server, conn *bus.Conn, source *core) {
			publishRaw(t, conn, chunksOf(t, source)[0], func(b []byte) []byte {
				return []byte(strings.Replace(string(b), `"kind":"token"`, `"kind":"tenant"`, 1))
			}, true)
		}},
		{"incomplete", func(t *testing.T, _ *natsserver.Server, conn *bus.Conn, source *core) {
			c := chunksOf(t, source)[0]
			c.Snapshot.Count = 2 // chunk 1 never published
			publish(t, conn, c)
		}},
		{"inconsistent", func(t *testing.T, _ *natsserver.Server, conn *bus.Conn, source *core) {
			c := chunksOf(t, source)
			c[0].Snapshot.Count = 2
			extra := bus.SnapshotChunks(c[0].Snapshot.ID, c[0].Snapshot.Seq-1, c[0].Snapshot.StreamCreated, nil, "test", time.Now())[0]
			extra.ID, extra.Snapshot.Index, extra.Snapshot.Count = c[0].Snapshot.ID+".1", 1, 2
			publish(t, conn, c[0], extra)
		}},
		{"other_stream", func(t *testing.T, _ *natsserver.Server, conn *bus.Conn, source *core) {
			c := chunksOf(t, source)
			for _, e := range c {
				e.Snapshot.StreamCreated = e.Snapshot.StreamCreated.Add(-time.Hour) // a HERALD deleted since
			}
			publish(t, conn, c...)
		}},
		{"older_publisher", func(t *testing.T, _ *natsserver.Server, conn *bus.Conn, source *core) {
			c := chunksOf(t, source)
			for _, e := range c {
				e.Snapshot.EventKeys = nil // a publisher that did not track what it refused
			}
			publish(t, conn, c...)
		}},
		{"publisher_trusted_less", func(t *testing.T, _ *natsserver.Server, conn *bus.Conn, source *core) {
			c := chunksOf(t, source)
			for _, e := range c {
				e.Snapshot.EventKeys = []string{"another-issuers-kid"} // it refused what this verifier applies
			}
			publish(t, conn, c...)
		}},
		{"genuine_control", nil},
		{"beyond_head", func(t *testing.T, _ *natsserver.Server, conn *bus.Conn, source *core) {
			c := chunksOf(t, source)
			for _, e := range c {
				e.Snapshot.Seq += 10 // a snapshot of a stream that was recreated since
			}
			publish(t, conn, c...)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, conn, _ := snapshotBus(t, 20*time.Minute)
			base := time.Now().Add(-time.Minute)
			last := publishMixed(t, conn, "v", 40, base)
			source := caughtUp(t, conn, last)
			if tc.offer == nil {
				// The same chunks as the cases make, untouched: used.
				publish(t, conn, chunksOf(t, source)...)
				if sc := caughtUp(t, conn, last); sc.Status().SnapshotSeq != last {
					t.Fatalf("genuine snapshot not used: %+v", sc.Status())
				}
				return
			}
			tc.offer(t, srv, conn, source)

			sc := caughtUp(t, conn, last)
			st := sc.Status()
			unusable := uint64(1)
			if tc.name == "none" {
				unusable = 0 // no snapshot is not an unusable one
			}
			if st.SnapshotSeq != 0 || st.SnapshotFallbacks != 1 || st.SnapshotUnusable != unusable || st.EventsApplied != last {
				t.Fatalf("status %+v: want a full replay of %d events after one fallback", st, last)
			}
			_, want := denylistOf(t, source)
			_, got := denylistOf(t, sc)
			sameDenylist(t, got, want)
		})
	}
}

// TestSnapshot_Stale keeps a snapshot longer than the revocations after
// it: once the stream no longer holds the event after the snapshot, a
// fresh verifier replays what the stream holds instead.
func TestSnapshot_Stale(t *testing.T) {
	_, conn, _ := snapshotBus(t, shortMaxAge)
	if err := conn.EnsureSnapshots(t.Context(), bus.SnapshotConfig{MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	head := publishMixed(t, conn, "old", 10, time.Now())
	source := caughtUp(t, conn, head)
	if _, err := PublishSnapshot(t.Context(), conn, source.db, "test"); err != nil {
		t.Fatal(err)
	}
	publishRevocation(t, conn, bus.KindToken, "expiring", time.Now())
	bustest.WaitFor(t, 10*time.Second, func() error {
		if first, last := streamHead(t, conn); first <= head+1 {
			return fmt.Errorf("stream holds %d..%d; waiting for %d to expire", first, last, head+1)
		}
		return nil
	})
	last := publishRevocation(t, conn, bus.KindToken, "kept", time.Now())

	sc := caughtUp(t, conn, last)
	st := sc.Status()
	if st.SnapshotSeq != 0 || st.SnapshotFallbacks != 1 || st.SnapshotUnusable != 1 {
		t.Fatalf("status %+v: want the stale snapshot refused", st)
	}
	if !sc.db.Contains(denyKey(bus.KindToken, "kept")) {
		t.Fatal("revocation after the stale snapshot not applied")
	}
}

// TestSnapshot_RefusalKeepsDenylistIncomplete: a follower that skips an
// event it cannot verify is complete only up to the sequence before it,
// across restarts, and publishes no snapshot of its denylist; so is a
// fresh one that refuses the same event.
func TestSnapshot_RefusalKeepsDenylistIncomplete(t *testing.T) {
	srv, conn, _ := snapshotBus(t, 20*time.Minute)
	dir := t.TempDir()
	now := time.Now()
	first := publishRevocation(t, conn, bus.KindSubject, "alice", now)
	sc, stop := startCore(t, conn, dir)
	waitApplied(t, sc, first)
	if got := sc.follower.Complete(); got != first {
		t.Fatalf("complete %d before any refusal, want %d", got, first)
	}
	pins := sc.keys.EventKeys() // the issuer's, trusted on first use
	// A key the verifier has seen and does not trust: what it signs is
	// refused, not waited for.
	foreign := bustest.ForeignConn(t, srv)
	if err := foreign.PublishEventKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	forged := publishRevocation(t, foreign, bus.KindSubject, "snapuser", now)
	last := publishRevocation(t, conn, bus.KindSubject, "bob", now)
	waitApplied(t, sc, last)
	if got := sc.follower.Complete(); got != forged-1 {
		t.Fatalf("complete %d after refusing %d, want %d", got, forged, forged-1)
	}
	if _, err := sc.follower.PublishSnapshot(t.Context(), "test"); !errors.Is(err, ErrSnapshotIncomplete) {
		t.Fatalf("publish a snapshot of a denylist that refused an event: %v, want ErrSnapshotIncomplete", err)
	}
	stop()

	sc, stop = startCore(t, conn, dir)
	waitApplied(t, sc, last)
	if got := sc.follower.Complete(); got != forged-1 {
		t.Fatalf("complete %d after a restart, want %d", got, forged-1)
	}
	stop()

	fresh, _ := startCoreWith(t, conn, coreConfig{DataDir: t.TempDir(), EventKeys: pins})
	waitApplied(t, fresh, last)
	if got := fresh.follower.Complete(); got != forged-1 {
		t.Fatalf("complete %d of a fresh denylist that refused %d, want %d", got, forged, forged-1)
	}
}
