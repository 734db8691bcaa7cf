package verifier

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/store"
)

// TestSnapshot_NewestNotBest publishes a complete snapshot, then one chunk
// of a newer snapshot that is never completed. A fresh verifier loads the
// newer one's chunk while it reads, finds the older one best, empties the
// denylist of what it loaded and starts from the older one: none of the
// incomplete snapshot's entries stay.
func TestSnapshot_NewestNotBest(t *testing.T) {
	_, conn, _ := snapshotBus(t, 20*time.Minute)
	base := time.Now().Add(-time.Minute)
	last := publishMixed(t, conn, "v", 40, base)
	source := caughtUp(t, conn, last)
	info, err := PublishSnapshot(t.Context(), conn, source.db, "test")
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks != 1 {
		t.Fatalf("snapshot of %d chunks, want 1", info.Chunks)
	}
	created, err := conn.StreamCreated(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	stray := []bus.SnapshotEntry{{Kind: bus.KindToken, Value: "only-in-the-incomplete-one", At: base, Until: base.Add(time.Hour)}}
	newer := bus.SnapshotChunks(bus.NewID(), last, created, stray, "test", time.Now())[0]
	newer.ID = newer.Snapshot.ID + ".1"
	newer.Snapshot.Index, newer.Snapshot.Count = 1, 2 // its chunk 0 never comes
	newer.Snapshot.EventKeys = []string{conn.Signer().KeyID()}
	if _, err := conn.PublishAll(t.Context(), newer); err != nil {
		t.Fatal(err)
	}

	sc := caughtUp(t, conn, last)
	st := sc.Status()
	if st.SnapshotSeq != info.Seq || st.SnapshotFallbacks != 0 || st.EventsApplied != 0 {
		t.Fatalf("status %+v: want started from the complete snapshot at %d", st, info.Seq)
	}
	if sc.db.Contains(denyKey(bus.KindToken, "only-in-the-incomplete-one")) {
		t.Fatal("an entry of the incomplete snapshot stayed in the denylist")
	}
	_, want := denylistOf(t, source)
	_, got := denylistOf(t, sc)
	sameDenylist(t, got, want)
}

// BenchmarkSnapshotRestore is a fresh verifier starting from a snapshot
// of 200,000 token revocations: reading, checking and writing it to its
// denylist until it is ready.
func BenchmarkSnapshotRestore(b *testing.B) {
	const n = 200_000
	srv := bustest.RunServer(b)
	conn := bustest.Setup(b, srv, 20*time.Minute)
	k := newTestKeys(b)
	publishKey(b, conn, k.EdKid, k.EdJWK)
	publishMany(b, conn, 1)
	src, err := store.Open(b.TempDir(), store.Options{Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	now := time.Now()
	entries := make([]store.Entry, n)
	for i := range entries {
		entries[i] = store.Entry{Key: denyKey(bus.KindToken, fmt.Sprintf("%032x", i)), At: now, Until: now.Add(15 * time.Minute)}
	}
	if err := src.Apply(1, entries); err != nil {
		b.Fatal(err)
	}
	if _, err := PublishSnapshot(b.Context(), conn, src, "bench"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		sc, stop := startCore(b, conn, b.TempDir())
		if err := sc.WaitReady(b.Context()); err != nil {
			b.Fatal(err)
		}
		if st := sc.Status(); st.SnapshotSeq != 1 || st.Denylist != n {
			b.Fatalf("status %+v: want started from the snapshot of %d entries", st, n)
		}
		stop()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
