package store_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heraldsec/herald/store"
)

// TestDB_FingerprintCollisions gives every key the same fingerprint (and,
// in the second case, one of three): lookups, merges, prunes,
// counts and a reopen still answer for the exact key.
func TestDB_FingerprintCollisions(t *testing.T) {
	for name, hash := range map[string]func(uint64) uint64{
		"all keys":  func(uint64) uint64 { return 42 },
		"four ways": func(h uint64) uint64 { return h & 3 }, // 0 becomes 1: three fingerprints
	} {
		t.Run(name, func(t *testing.T) {
			store.SetFingerprint(t, hash)
			mem, db := newMemDB(t)
			mustApply(t, db, 1, entry("a", 0, time.Minute), entry("b", time.Second, time.Hour), entry("c", 2*time.Second, 2*time.Hour))
			checkEntry(t, db, "a", 0, time.Minute)
			checkEntry(t, db, "b", time.Second, time.Hour)
			checkEntry(t, db, "c", 2*time.Second, 2*time.Hour)
			checkAbsent(t, db, "d")
			checkAbsent(t, db, "aa")
			if got := db.Len(); got != 3 {
				t.Fatalf("Len = %d, want 3", got)
			}

			// A merge changes its key only, after the old entry was looked
			// up (and cached).
			mustApply(t, db, 2, entry("a", 3*time.Second, 30*time.Minute), entry("d", 0, 10*time.Minute))
			checkEntry(t, db, "a", 3*time.Second, 30*time.Minute)
			checkEntry(t, db, "b", time.Second, time.Hour)
			checkEntry(t, db, "d", 0, 10*time.Minute)
			if got := db.Len(); got != 4 {
				t.Fatalf("Len after merge = %d, want 4 (a was held)", got)
			}

			// Pruning some keys of a fingerprint keeps the others found.
			mem.clock.Set(t0.Add(30 * time.Minute))
			if n, err := db.Prune(); err != nil || n != 2 {
				t.Fatalf("Prune = %d, %v; want a and d", n, err)
			}
			mem.clock.Set(t0)
			checkAbsent(t, db, "a")
			checkAbsent(t, db, "d")
			checkEntry(t, db, "b", time.Second, time.Hour)
			checkEntry(t, db, "c", 2*time.Second, 2*time.Hour)
			if got := db.Len(); got != 2 {
				t.Fatalf("Len after Prune = %d, want 2", got)
			}

			db = mem.reopen(db)
			checkAbsent(t, db, "a")
			checkEntry(t, db, "b", time.Second, time.Hour)
			checkEntry(t, db, "c", 2*time.Second, 2*time.Hour)
			if got := db.Len(); got != 2 {
				t.Fatalf("Len after reopen = %d, want 2", got)
			}

			// Every key of the fingerprint expired: none is found, and a
			// prune takes them all.
			mem.clock.Set(t0.Add(2 * time.Hour))
			checkAbsent(t, db, "b")
			checkAbsent(t, db, "c")
			if n, err := db.Prune(); err != nil || n != 2 {
				t.Fatalf("Prune = %d, %v; want b and c", n, err)
			}
			if got := db.Len(); got != 0 {
				t.Fatalf("Len = %d, want 0", got)
			}
			mem.clock.Set(t0)
			checkAbsent(t, db, "b")
		})
	}
}

// TestDB_LookupAfterChange looks keys up (so that they are cached) before
// each change: every lookup after it sees the change.
func TestDB_LookupAfterChange(t *testing.T) {
	mem, db := newMemDB(t)
	mustApply(t, db, 1, entry("k", 0, time.Minute), entry("gone", 0, time.Minute))
	checkEntry(t, db, "k", 0, time.Minute)
	mustApply(t, db, 2, entry("k", time.Second, time.Hour))
	checkEntry(t, db, "k", time.Second, time.Hour)
	checkEntry(t, db, "gone", 0, time.Minute)
	mem.clock.Set(t0.Add(time.Minute))
	if n, err := db.Prune(); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	mem.clock.Set(t0)
	checkAbsent(t, db, "gone")
	if err := db.Reset(); err != nil {
		t.Fatal(err)
	}
	checkAbsent(t, db, "k")
}

// TestLoader_CrashMidLoad takes crash images of a denylist while a Loader
// fills it: an image taken before Finish opens empty (and stays empty
// once reopened), ready for a new load; one taken after opens to the whole
// load.
func TestLoader_CrashMidLoad(t *testing.T) {
	fs := vfs.NewCrashableMem()
	clk := newClock()
	opts := store.Options{FS: fs, Sync: true, Logger: discard(), Now: clk.Now}
	db, err := store.Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := db.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const batches, perBatch = 5, 100
	var images []*vfs.MemFS
	for i := range batches {
		es := make([]store.Entry, perBatch)
		for j := range es {
			es[j] = entry(fmt.Sprintf("k%d-%03d", i, j), 0, time.Hour)
		}
		if err := l.Add(es); err != nil {
			t.Fatal(err)
		}
		if got, want := l.Len(), (i+1)*perBatch; got != want {
			t.Fatalf("Loader.Len = %d, want %d", got, want)
		}
		if err := db.Apply(1, nil); err == nil {
			t.Fatal("Apply during a load succeeded")
		}
		images = append(images, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng}))
	}
	checkEntry(t, db, "k0-000", 0, time.Hour) // visible as added
	for i, image := range images {
		for range 2 {
			got, err := store.Open("db", store.Options{FS: image, Logger: discard(), Now: clk.Now})
			if err != nil {
				t.Fatalf("open the image taken after batch %d: %v", i, err)
			}
			if got.Applied() != 0 || got.Len() != 0 {
				t.Fatalf("image after batch %d: applied %d with %d entries, want an empty denylist", i, got.Applied(), got.Len())
			}
			checkAbsent(t, got, "k0-000")
			got.Close()
		}
	}
	// The emptied image takes a new load.
	got, err := store.Open("db", store.Options{FS: images[2], Logger: discard(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Load(3, []store.Entry{entry("x", 0, time.Hour)}); err != nil {
		t.Fatalf("load into an emptied image: %v", err)
	}
	got.Close()

	if err := l.Finish(7); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(nil); err == nil {
		t.Fatal("Add after Finish succeeded")
	}
	image := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rng})
	got, err = store.Open("db", store.Options{FS: image, Logger: discard(), Now: clk.Now, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Applied() != 7 || got.Len() != batches*perBatch {
		t.Fatalf("image after Finish: applied %d with %d entries, want 7 and %d", got.Applied(), got.Len(), batches*perBatch)
	}
	checkEntry(t, got, fmt.Sprintf("k%d-%03d", batches-1, perBatch-1), 0, time.Hour)
	mustApply(t, got, 8, entry("after", 0, time.Hour))
}

// TestLoader_Abort empties the denylist of what was loaded, and a load
// refuses a denylist that is not empty or is being loaded.
func TestLoader_Abort(t *testing.T) {
	mem, db := newMemDB(t)
	l, err := db.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.NewLoader(); err == nil {
		t.Fatal("a second Loader started")
	}
	if err := l.Add([]store.Entry{entry("a", 0, time.Hour), entry("a", time.Second, time.Minute), entry("b", 0, time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Add([]store.Entry{entry("b", time.Minute, 2*time.Hour)}); err != nil {
		t.Fatal(err)
	}
	checkEntry(t, db, "a", time.Second, time.Hour)
	checkEntry(t, db, "b", time.Minute, 2*time.Hour)
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(3); err == nil {
		t.Fatal("Finish after Abort succeeded")
	}
	checkAbsent(t, db, "a")
	if db.Len() != 0 || db.Applied() != 0 {
		t.Fatalf("after Abort: %d entries, applied %d", db.Len(), db.Applied())
	}
	db = mem.reopen(db)
	if db.Len() != 0 || db.Applied() != 0 {
		t.Fatalf("reopened after Abort: %d entries, applied %d", db.Len(), db.Applied())
	}
	mustApply(t, db, 1, entry("c", 0, time.Hour))
	if _, err := db.NewLoader(); err == nil {
		t.Fatal("a Loader started on a denylist that holds entries")
	}
}
