package verifier

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/store"
)

// shortMaxAge is the HERALD retention of the gap tests: events expire
// while a verifier is down. EnsureStreams must clamp its dedupe window to it.
const shortMaxAge = 1500 * time.Millisecond

func streamHead(t *testing.T, conn *bus.Conn) (first, last uint64) {
	t.Helper()
	first, last, err := conn.StreamHead(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

// TestFollower_Gap stops a verifier, lets revocations it never saw expire
// from the stream, and restarts it: it must notice the gap, rebuild, and
// end caught up with the stream.
func TestFollower_Gap(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, shortMaxAge)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	dir := t.TempDir()

	sc, stop := startCore(t, conn, dir)
	waitReady(t, sc)
	revoke(t, conn, sc, bus.KindToken, "jti-0", time.Now())
	applied := sc.Status().Applied
	stop()

	for i := range 3 {
		publishRevocation(t, conn, bus.KindToken, fmt.Sprintf("jti-lost-%d", i), time.Now())
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if first, last := streamHead(t, conn); first <= applied+1 {
			return fmt.Errorf("stream holds %d..%d; waiting for %d to expire", first, last, applied+1)
		}
		return nil
	})
	last := publishRevocation(t, conn, bus.KindToken, "jti-new", time.Now())

	sc, _ = startCore(t, conn, dir)
	bustest.WaitFor(t, 5*time.Second, func() error {
		if st := sc.Status(); st.Gaps != 1 {
			return fmt.Errorf("gaps = %d, want 1 (%+v)", st.Gaps, st)
		}
		return nil
	})
	waitReady(t, sc)
	st := sc.Status()
	if st.Applied != last {
		t.Fatalf("applied = %d, want the stream's last sequence %d (%+v)", st.Applied, last, st)
	}
	if st.LastGap == "" {
		t.Errorf("status names no gap: %+v", st)
	}
	c := baseClaims(time.Now().Add(-time.Second))
	c["jti"] = "jti-new"
	if _, err := sc.Verifier().Verify(t.Context(), k.EdToken(t, c)); err == nil {
		t.Fatal("token revoked after the gap verified")
	}
}

// TestFollower_Restart reopens a verifier on its data dir with nothing new
// on the stream: it resumes from its checkpoint and applies nothing twice.
func TestFollower_Restart(t *testing.T) {
	f := newFixture(t)
	at := time.Now()
	seq := revoke(t, f.conn, f.sc, bus.KindSubject, "mallory", at)
	revoke(t, f.conn, f.sc, bus.KindToken, "jti-restart", at)
	before := f.sc.Status()
	if before.EventsApplied != 2 {
		t.Fatalf("events applied = %d, want 2", before.EventsApplied)
	}
	if before.Applied < seq+1 {
		t.Fatalf("applied = %d, want %d", before.Applied, seq+1)
	}
	f.stop()

	sc, _ := startCore(t, f.conn, f.dir)
	waitReady(t, sc)
	st := sc.Status()
	if st.EventsApplied != 0 {
		t.Errorf("events applied after restart = %d, want 0", st.EventsApplied)
	}
	if st.Applied != before.Applied {
		t.Errorf("applied after restart = %d, want %d", st.Applied, before.Applied)
	}
	if st.Denylist != before.Denylist {
		t.Errorf("denylist after restart = %d, want %d", st.Denylist, before.Denylist)
	}
	if st.Gaps != 0 {
		t.Errorf("gaps after restart = %d, want 0", st.Gaps)
	}
	// The denylist survived the restart.
	c := baseClaims(at.Add(-time.Second))
	c["sub"] = "mallory"
	if _, err := sc.Verifier().Verify(t.Context(), f.EdToken(t, c)); err == nil {
		t.Fatal("revoked subject verified after restart")
	}

	// Something new is applied exactly once.
	next := revoke(t, f.conn, sc, bus.KindToken, "jti-after-restart", time.Now())
	if got := sc.Status(); got.EventsApplied != 1 || got.Applied != next {
		t.Fatalf("after one more event: events applied %d, applied %d; want 1, %d", got.EventsApplied, got.Applied, next)
	}
}

// TestFollower_StreamRecreated deletes and recreates HERALD under a
// verifier that is down: the checkpoint is past the new stream's last
// sequence, which the verifier must treat as a gap.
func TestFollower_StreamRecreated(t *testing.T) {
	f := newFixture(t)
	for i := range 3 {
		revoke(t, f.conn, f.sc, bus.KindToken, fmt.Sprintf("jti-old-%d", i), time.Now())
	}
	f.stop()
	if err := f.conn.JetStream().DeleteStream(t.Context(), bus.StreamRevocations); err != nil {
		t.Fatal(err)
	}
	if err := f.conn.EnsureStreams(t.Context(), bus.StreamConfig{RevocationMaxAge: 20 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	seq := publishRevocation(t, f.conn, bus.KindToken, "jti-new", time.Now())

	sc, _ := startCore(t, f.conn, f.dir)
	waitReady(t, sc)
	st := sc.Status()
	if st.Gaps != 1 || st.Applied != seq {
		t.Fatalf("status = %+v, want 1 gap and applied %d", st, seq)
	}
	if st.Denylist != 1 {
		t.Errorf("denylist = %d, want 1 (rebuilt from the new stream)", st.Denylist)
	}
}

// TestFollower_AllExpired starts verifiers when every event the stream
// ever held has expired: the stream is empty but its last sequence is not
// zero. There is nothing to apply, so a fresh verifier must become ready,
// and one whose checkpoint is behind must report the gap and become ready.
// An empty stream delivers nothing, so neither may wait for a delivery.
func TestFollower_AllExpired(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, shortMaxAge)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	dir := t.TempDir()

	sc, stop := startCore(t, conn, dir)
	waitReady(t, sc)
	revoke(t, conn, sc, bus.KindToken, "jti-0", time.Now())
	stop()
	publishRevocation(t, conn, bus.KindToken, "jti-lost", time.Now())
	bustest.WaitFor(t, 10*time.Second, func() error {
		if first, last := streamHead(t, conn); first <= last {
			return fmt.Errorf("stream holds %d..%d; waiting for it to empty", first, last)
		}
		return nil
	})

	t.Run("fresh", func(t *testing.T) {
		sc, _ := startCore(t, conn, t.TempDir())
		waitReady(t, sc)
		if st := sc.Status(); st.Lag != 0 {
			t.Errorf("lag = %d with nothing left to apply (%+v)", st.Lag, st)
		}
	})
	t.Run("behind", func(t *testing.T) {
		sc, _ := startCore(t, conn, dir)
		waitReady(t, sc)
		if st := sc.Status(); st.Gaps != 1 || st.Lag != 0 {
			t.Errorf("gaps = %d, lag %d; want 1 (event 2 was lost), 0 (%+v)", st.Gaps, st.Lag, st)
		}
	})
}

// TestFollower_BoundsFutureRevocations: a revocation dated in the future
// (a forged "all", a bad clock) is held to now plus leeway, and one that
// asks to be kept longer than the stream keeps it is held to that.
func TestFollower_BoundsFutureRevocations(t *testing.T) {
	f := newFixtureMaxAge(t, 10*time.Minute)
	now := time.Now()
	seq, err := f.conn.Publish(t.Context(), &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "forger",
		Revocation: &bus.Revocation{Kind: bus.KindAll, At: now.Add(24 * time.Hour), Until: now.Add(365 * 24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.sc.WaitApplied(t.Context(), seq); err != nil {
		t.Fatal(err)
	}
	e, ok := f.sc.db.Lookup(denyKey(bus.KindAll, ""))
	if !ok {
		t.Fatal("revocation not applied")
	}
	if max := time.Now().Add(10*time.Minute + DefaultLeeway); e.Until.After(max) {
		t.Fatalf("until = %s, want at most now + retention + leeway (%s)", e.Until, max)
	}
	if e.At.After(e.Until) {
		t.Fatalf("at = %s, want at most until (%s)", e.At, e.Until)
	}

	// A jti revocation's at is bounded to now + leeway; a subject
	// revocation dated by a clock 45 s ahead keeps its at: pulled back, it
	// would let through tokens that clock dated just before it.
	ahead := now.Add(45 * time.Second)
	for _, k := range []bus.Kind{bus.KindToken, bus.KindSubject} {
		seq, err := f.conn.Publish(t.Context(), &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: ahead, Actor: "fast clock",
			Revocation: &bus.Revocation{Kind: k, Value: "v", At: ahead, Until: ahead.Add(5 * time.Minute)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.sc.WaitApplied(t.Context(), seq); err != nil {
			t.Fatal(err)
		}
		e, ok := f.sc.db.Lookup(denyKey(k, "v"))
		switch {
		case !ok:
			t.Fatalf("%s revocation not applied", k)
		case k == bus.KindToken && e.At.After(time.Now().Add(DefaultLeeway)):
			t.Fatalf("token revocation at = %s, want at most now + leeway", e.At)
		case k == bus.KindSubject && !e.At.Equal(ahead):
			t.Fatalf("subject revocation at = %s, want %s as dated", e.At, ahead)
		}
	}
}

// TestFollower_ProbeResync: a probe after staleness that finds the stream
// ahead of the denylist makes the follower not caught up (so the sidecar
// gives no verdict) until it has applied up to that head; a regular probe
// only records the head.
func TestFollower_ProbeResync(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	db, err := store.Open(t.TempDir(), store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ks := NewKeySet(nil, nil)
	if err := putKey(t, ks, newTestKeys(t).EdJWK); err != nil { // trusts the test event key
		t.Fatal(err)
	}
	ks.markLoaded()
	fl := NewFollower(conn, db, ks, testLogger(t)) // not running: applies nothing
	fl.markCaughtUp(0)
	last := publishRevocation(t, conn, bus.KindToken, "jti-while-cut-off", time.Now())

	if err := fl.Probe(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if st := fl.Status(); !st.CaughtUp || st.Head != last || st.Lag != last {
		t.Fatalf("after a regular probe: %+v, want caught up, head %d, lag %d", st, last, last)
	}
	if err := fl.Probe(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	if fl.CaughtUp() || !fl.HasState() {
		t.Fatalf("after a resync probe: caught up %v, has state %v; want false, true", fl.CaughtUp(), fl.HasState())
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- fl.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	bustest.WaitFor(t, 5*time.Second, func() error {
		if st := fl.Status(); !st.CaughtUp || st.Applied != last {
			return fmt.Errorf("status %+v, want caught up at %d", st, last)
		}
		return nil
	})
}
