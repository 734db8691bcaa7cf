package store_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heraldsec/herald/store"
)

// t0 is the start of every test clock.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a controllable Options.Now, safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// memDB is a DB on an in-memory filesystem that can be closed and reopened.
type memDB struct {
	tb    testing.TB
	fs    vfs.FS
	clock *clock
}

func newMemDB(tb testing.TB) (*memDB, *store.DB) {
	tb.Helper()
	m := &memDB{tb: tb, fs: vfs.NewMem(), clock: newClock()}
	return m, m.open()
}

// open opens the DB on m's filesystem and closes it when the test ends.
func (m *memDB) open() *store.DB {
	m.tb.Helper()
	db, err := store.Open("db", store.Options{FS: m.fs, Logger: discard(), Now: m.clock.Now})
	if err != nil {
		m.tb.Fatalf("Open: %v", err)
	}
	m.tb.Cleanup(func() { db.Close() })
	return db
}

// reopen closes db and opens it again on the same filesystem.
func (m *memDB) reopen(db *store.DB) *store.DB {
	m.tb.Helper()
	if err := db.Close(); err != nil {
		m.tb.Fatalf("Close: %v", err)
	}
	return m.open()
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func entry(key string, at, until time.Duration) store.Entry {
	return store.Entry{Key: key, At: t0.Add(at), Until: t0.Add(until)}
}

func mustApply(tb testing.TB, db *store.DB, seq uint64, entries ...store.Entry) {
	tb.Helper()
	if err := db.Apply(seq, entries); err != nil {
		tb.Fatalf("Apply(%d): %v", seq, err)
	}
}

// checkEntry fails unless db holds a live entry for key with the given times.
func checkEntry(tb testing.TB, db *store.DB, key string, at, until time.Duration) {
	tb.Helper()
	got, ok := db.Lookup(key)
	if !ok {
		tb.Fatalf("Lookup(%q) found nothing, want an entry", key)
	}
	if got.Key != key || !got.At.Equal(t0.Add(at)) || !got.Until.Equal(t0.Add(until)) {
		tb.Fatalf("Lookup(%q) = {%q at %v until %v}, want {%q at %v until %v}",
			key, got.Key, got.At.Sub(t0), got.Until.Sub(t0), key, at, until)
	}
	if !db.Contains(key) {
		tb.Fatalf("Contains(%q) = false after Lookup found it", key)
	}
}

// checkAbsent fails if db holds a live entry for key.
func checkAbsent(tb testing.TB, db *store.DB, key string) {
	tb.Helper()
	if got, ok := db.Lookup(key); ok {
		tb.Fatalf("Lookup(%q) = {at %v until %v}, want nothing", key, got.At.Sub(t0), got.Until.Sub(t0))
	}
	if db.Contains(key) {
		tb.Fatalf("Contains(%q) = true, want false", key)
	}
}

func TestDB_ApplyLookup(t *testing.T) {
	_, db := newMemDB(t)
	mustApply(t, db, 1,
		entry("jti:a", 0, time.Minute),
		entry("sid:b", time.Second, 2*time.Minute),
		entry("", 0, time.Minute), // the empty key is a key like any other
	)
	tests := []struct {
		key       string
		found     bool
		at, until time.Duration
	}{
		{key: "jti:a", found: true, at: 0, until: time.Minute},
		{key: "sid:b", found: true, at: time.Second, until: 2 * time.Minute},
		{key: "", found: true, at: 0, until: time.Minute},
		{key: "jti:A", found: false},
		{key: "jti:a ", found: false},
		{key: "sid:", found: false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.key), func(t *testing.T) {
			if tt.found {
				checkEntry(t, db, tt.key, tt.at, tt.until)
			} else {
				checkAbsent(t, db, tt.key)
			}
		})
	}
	if got, want := db.Len(), 3; got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
	if got, want := db.Applied(), uint64(1); got != want {
		t.Errorf("Applied = %d, want %d", got, want)
	}
}

func TestDB_Merge(t *testing.T) {
	const m = time.Minute
	tests := []struct {
		name        string
		first, then store.Entry
		sameBatch   bool
		wantAt      time.Duration
		wantUntil   time.Duration
	}{
		{name: "later at and later until win", first: entry("k", 0, 5*m), then: entry("k", m, 10*m), wantAt: m, wantUntil: 10 * m},
		{name: "earlier at and earlier until lose", first: entry("k", m, 10*m), then: entry("k", 0, 5*m), wantAt: m, wantUntil: 10 * m},
		{name: "later at with earlier until", first: entry("k", 0, 10*m), then: entry("k", m, 5*m), wantAt: m, wantUntil: 10 * m},
		{name: "earlier at with later until", first: entry("k", m, 5*m), then: entry("k", 0, 10*m), wantAt: m, wantUntil: 10 * m},
		{name: "identical", first: entry("k", m, 5*m), then: entry("k", m, 5*m), wantAt: m, wantUntil: 5 * m},
		{name: "same batch later second", first: entry("k", 0, 5*m), then: entry("k", m, 10*m), sameBatch: true, wantAt: m, wantUntil: 10 * m},
		{name: "same batch earlier second", first: entry("k", m, 10*m), then: entry("k", 0, 5*m), sameBatch: true, wantAt: m, wantUntil: 10 * m},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem, db := newMemDB(t)
			if tt.sameBatch {
				mustApply(t, db, 1, tt.first, tt.then)
			} else {
				mustApply(t, db, 1, tt.first)
				mustApply(t, db, 2, tt.then)
			}
			checkEntry(t, db, "k", tt.wantAt, tt.wantUntil)
			if got, want := db.Len(), 1; got != want {
				t.Fatalf("Len = %d, want %d", got, want)
			}

			// The merged entry survives a restart unchanged.
			db = mem.reopen(db)
			checkEntry(t, db, "k", tt.wantAt, tt.wantUntil)

			// The prune index follows the merged Until: nothing goes
			// before it, the entry goes at it.
			mem.clock.Set(t0.Add(tt.wantUntil - time.Nanosecond))
			if n, err := db.Prune(); err != nil || n != 0 {
				t.Fatalf("Prune just before until = %d, %v; want 0, nil", n, err)
			}
			checkEntry(t, db, "k", tt.wantAt, tt.wantUntil)
			mem.clock.Set(t0.Add(tt.wantUntil))
			if n, err := db.Prune(); err != nil || n != 1 {
				t.Fatalf("Prune at until = %d, %v; want 1, nil", n, err)
			}
			if got, want := db.Len(), 0; got != want {
				t.Fatalf("Len after Prune = %d, want %d", got, want)
			}
		})
	}
}

func TestDB_Expired(t *testing.T) {
	mem, db := newMemDB(t)
	mustApply(t, db, 1,
		entry("short", 0, time.Minute),
		entry("shorter", 0, 30*time.Second),
		entry("long", 0, time.Hour),
	)

	t.Run("hidden once until passes", func(t *testing.T) {
		mem.clock.Set(t0.Add(time.Minute)) // until is exclusive: at until the entry is expired
		checkAbsent(t, db, "short")
		checkAbsent(t, db, "shorter")
		checkEntry(t, db, "long", 0, time.Hour)
		if got, want := db.Len(), 3; got != want {
			t.Fatalf("Len before Prune = %d, want %d (expired entries stay until pruned)", got, want)
		}
	})

	t.Run("pruned", func(t *testing.T) {
		n, err := db.Prune()
		if err != nil {
			t.Fatalf("Prune: %v", err)
		}
		if got, want := n, 2; got != want {
			t.Fatalf("Prune deleted %d, want %d", got, want)
		}
		if got, want := db.Len(), 1; got != want {
			t.Fatalf("Len after Prune = %d, want %d", got, want)
		}
		if n, err := db.Prune(); err != nil || n != 0 {
			t.Fatalf("second Prune = %d, %v; want 0, nil", n, err)
		}
	})

	t.Run("gone from disk", func(t *testing.T) {
		// Turn the clock back: entries still on disk would be live again.
		mem.clock.Set(t0)
		db = mem.reopen(db)
		checkAbsent(t, db, "short")
		checkAbsent(t, db, "shorter")
		checkEntry(t, db, "long", 0, time.Hour)
		if got, want := db.Len(), 1; got != want {
			t.Fatalf("Len after reopen = %d, want %d", got, want)
		}
		if got, want := db.Applied(), uint64(1); got != want {
			t.Fatalf("Applied after reopen = %d, want %d", got, want)
		}
	})
}

func TestDB_OpenDropsExpired(t *testing.T) {
	mem, db := newMemDB(t)
	mustApply(t, db, 1, entry("short", 0, time.Minute), entry("long", 0, time.Hour))
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mem.clock.Set(t0.Add(time.Minute))
	db = mem.open()
	if got, want := db.Len(), 1; got != want {
		t.Fatalf("Len after Open past expiry = %d, want %d", got, want)
	}
	// Open pruned on disk too, not just in memory.
	mem.clock.Set(t0)
	db = mem.reopen(db)
	checkAbsent(t, db, "short")
	checkEntry(t, db, "long", 0, time.Hour)
}

func TestDB_ApplyOldSequence(t *testing.T) {
	for _, seq := range []uint64{0, 4, 5} {
		t.Run(fmt.Sprintf("seq %d", seq), func(t *testing.T) {
			mem, db := newMemDB(t)
			mustApply(t, db, 5, entry("k", 0, time.Minute))
			err := db.Apply(seq, []store.Entry{entry("k", time.Second, time.Hour), entry("new", 0, time.Hour)})
			if err == nil {
				t.Fatalf("Apply(%d) after Apply(5) succeeded, want an error", seq)
			}
			check := func(db *store.DB) {
				t.Helper()
				if got, want := db.Applied(), uint64(5); got != want {
					t.Fatalf("Applied = %d, want %d", got, want)
				}
				checkEntry(t, db, "k", 0, time.Minute)
				checkAbsent(t, db, "new")
				if got, want := db.Len(), 1; got != want {
					t.Fatalf("Len = %d, want %d", got, want)
				}
			}
			check(db)
			check(mem.reopen(db))
		})
	}
}

func TestDB_Persist(t *testing.T) {
	mem, db := newMemDB(t)
	mustApply(t, db, 3, entry("a", 0, time.Minute))
	mustApply(t, db, 7, entry("b", time.Second, time.Hour), entry("a", 2*time.Second, 2*time.Minute))
	db = mem.reopen(db)
	if got, want := db.Applied(), uint64(7); got != want {
		t.Fatalf("Applied after reopen = %d, want %d", got, want)
	}
	checkEntry(t, db, "a", 2*time.Second, 2*time.Minute)
	checkEntry(t, db, "b", time.Second, time.Hour)
	if got, want := db.Len(), 2; got != want {
		t.Fatalf("Len after reopen = %d, want %d", got, want)
	}
	// The checkpoint still guards against replays after a restart.
	if err := db.Apply(7, nil); err == nil {
		t.Fatal("Apply(7) after reopen at 7 succeeded, want an error")
	}
	mustApply(t, db, 8)
}

func TestDB_PersistRealDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "denylist")
	opts := store.Options{Sync: true, Logger: discard()}
	db, err := store.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	// Entries far in the future: this test uses the real clock.
	now := time.Now()
	e := store.Entry{Key: "jti:x", At: now, Until: now.Add(time.Hour)}
	if err := db.Apply(1, []store.Entry{e}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	db, err = store.Open(dir, opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if got, want := db.Applied(), uint64(1); got != want {
		t.Fatalf("Applied after reopen = %d, want %d", got, want)
	}
	got, ok := db.Lookup("jti:x")
	if !ok || !got.At.Equal(e.At) || !got.Until.Equal(e.Until) {
		t.Fatalf("Lookup after reopen = %+v, %v; want %+v, true", got, ok, e)
	}
}

func TestOpen_DirMode(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "data")
	dir := filepath.Join(parent, "denylist")
	db, err := store.Open(dir, store.Options{Logger: discard()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	for _, d := range []string{parent, dir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			t.Fatalf("%s is not a directory", d)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o700); got != want {
			t.Errorf("mode of %s = %v, want %v", d, got, want)
		}
	}
}

func TestDB_Reset(t *testing.T) {
	mem, db := newMemDB(t)
	mustApply(t, db, 1, entry("a", 0, time.Minute), entry("b", 0, time.Hour))
	mustApply(t, db, 2, entry("c", 0, time.Hour))
	if err := db.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	check := func(db *store.DB) {
		t.Helper()
		if got, want := db.Applied(), uint64(0); got != want {
			t.Fatalf("Applied = %d, want %d", got, want)
		}
		if got, want := db.Len(), 0; got != want {
			t.Fatalf("Len = %d, want %d", got, want)
		}
		for _, k := range []string{"a", "b", "c"} {
			checkAbsent(t, db, k)
		}
	}
	check(db)
	db = mem.reopen(db)
	check(db)
	if n, err := db.Prune(); err != nil || n != 0 {
		t.Fatalf("Prune after Reset = %d, %v; want 0, nil (the prune index is empty too)", n, err)
	}

	// A rebuild starts again from the first sequence.
	mustApply(t, db, 1, entry("a", 0, 2*time.Minute))
	checkEntry(t, db, "a", 0, 2*time.Minute) // not merged with the entry before Reset
	mem.clock.Set(t0.Add(time.Hour))
	if n, err := db.Prune(); err != nil || n != 1 {
		t.Fatalf("Prune after rebuild = %d, %v; want 1, nil", n, err)
	}
}

func TestDB_Closed(t *testing.T) {
	_, db := newMemDB(t)
	mustApply(t, db, 1, entry("a", 0, time.Minute))
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if err := db.Apply(2, nil); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Apply on closed DB = %v, want ErrClosed", err)
	}
	if _, err := db.Prune(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Prune on closed DB = %v, want ErrClosed", err)
	}
	if err := db.Reset(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Reset on closed DB = %v, want ErrClosed", err)
	}
	if got, want := db.Applied(), uint64(1); got != want {
		t.Errorf("Applied on closed DB = %d, want %d", got, want)
	}
}

func TestDB_EmptyApply(t *testing.T) {
	for _, entries := range [][]store.Entry{nil, {}} {
		t.Run(fmt.Sprintf("len %d nil %v", len(entries), entries == nil), func(t *testing.T) {
			mem, db := newMemDB(t)
			if err := db.Apply(1, entries); err != nil {
				t.Fatalf("Apply(1, empty): %v", err)
			}
			if err := db.Apply(9, entries); err != nil {
				t.Fatalf("Apply(9, empty): %v", err)
			}
			if got, want := db.Applied(), uint64(9); got != want {
				t.Fatalf("Applied = %d, want %d", got, want)
			}
			if got, want := mem.reopen(db).Applied(), uint64(9); got != want {
				t.Fatalf("Applied after reopen = %d, want %d", got, want)
			}
		})
	}
}

func TestDB_ApplyAlreadyExpired(t *testing.T) {
	mem, db := newMemDB(t)
	mem.clock.Set(t0.Add(time.Hour))
	mustApply(t, db, 1,
		entry("past", 0, time.Minute),
		entry("now", 0, time.Hour), // until == now is expired
		entry("live", 0, time.Hour+time.Nanosecond),
	)
	if got, want := db.Len(), 1; got != want {
		t.Fatalf("Len = %d, want %d", got, want)
	}
	if got, want := db.Applied(), uint64(1); got != want {
		t.Fatalf("Applied = %d, want %d", got, want)
	}
	// Not on disk either: with the clock turned back they would be live.
	mem.clock.Set(t0)
	db = mem.reopen(db)
	checkAbsent(t, db, "past")
	checkAbsent(t, db, "now")
	checkEntry(t, db, "live", 0, time.Hour+time.Nanosecond)
}

func TestDB_ApplyExpiredKeepsLiveEntry(t *testing.T) {
	_, db := newMemDB(t)
	mustApply(t, db, 1, entry("k", time.Second, time.Hour))
	// An expired entry for a live key changes nothing, not even At.
	mustApply(t, db, 2, store.Entry{Key: "k", At: t0.Add(time.Minute), Until: t0.Add(-time.Second)})
	checkEntry(t, db, "k", time.Second, time.Hour)
}

func TestDB_Concurrent(t *testing.T) {
	mem, db := newMemDB(t)
	const n = 200
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			if err := db.Apply(uint64(i+1), []store.Entry{entry(fmt.Sprint(i), 0, time.Hour)}); err != nil {
				t.Errorf("Apply(%d): %v", i+1, err)
				return
			}
			if i%50 == 0 {
				mem.clock.Advance(time.Millisecond)
				if _, err := db.Prune(); err != nil {
					t.Errorf("Prune: %v", err)
					return
				}
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for i := range n {
				db.Contains(fmt.Sprint(i))
				db.Lookup(fmt.Sprint(n - i))
				db.Len()
				db.Applied()
			}
		})
	}
	wg.Wait()
	if got, want := db.Len(), n; got != want {
		t.Fatalf("Len = %d, want %d", got, want)
	}
}

func BenchmarkLookup(b *testing.B) {
	const size = 100_000
	db, err := store.Open("db", store.Options{FS: vfs.NewMem(), Logger: discard(), Now: func() time.Time { return t0 }})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	defer db.Close()
	entries := make([]store.Entry, size)
	keys := make([]string, size)
	for i := range entries {
		keys[i] = fmt.Sprintf("jti:%032x", i)
		entries[i] = store.Entry{Key: keys[i], At: t0, Until: t0.Add(time.Hour)}
	}
	if err := db.Apply(1, entries); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	misses := make([]string, size)
	for i := range misses {
		misses[i] = fmt.Sprintf("jti:%032x", size+i)
	}

	run := func(keys []string, want bool) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := db.Lookup(keys[i%len(keys)]); ok != want {
					b.Fatalf("Lookup(%q) found %v, want %v", keys[i%len(keys)], ok, want)
				}
				i++
			}
		}
	}
	// hit looks up each key once in a while; hot, the same thousand keys
	// again and again (a revoked token retried, an "all" revocation).
	b.Run("hit", run(keys, true))
	b.Run("hit-hot", run(keys[:1000], true))
	b.Run("miss", run(misses, false))
}

// TestDB_Entries returns the unexpired entries with the sequence they
// were applied at.
func TestDB_Entries(t *testing.T) {
	now := time.Unix(1_700_000_000, 5)
	db, err := store.Open("", store.Options{FS: vfs.NewMem(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Apply(7, []store.Entry{
		{Key: "a", At: now.Add(-time.Second), Until: now.Add(time.Minute)},
		{Key: "b", At: now, Until: now.Add(time.Second)},
	}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second) // b expired, not yet pruned
	seq, entries, err := db.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if seq != 7 || len(entries) != 1 || entries[0].Key != "a" ||
		!entries[0].At.Equal(time.Unix(1_700_000_000, 5).Add(-time.Second)) || !entries[0].Until.Equal(time.Unix(1_700_000_000, 5).Add(time.Minute)) {
		t.Fatalf("entries = %d %+v, want 7 and a", seq, entries)
	}
	db.Close()
	if _, _, err := db.Entries(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("entries of a closed db: %v", err)
	}
}

// TestDB_Load fills an empty denylist in one batch: unsorted entries and
// entries for the same key merge as Apply merges them, expired ones are
// dropped, the result survives a reopen, and a denylist that holds
// anything is refused.
func TestDB_Load(t *testing.T) {
	fs := vfs.NewMem()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	db, err := store.Open("d", store.Options{FS: fs, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	at := now.Add(-time.Minute)
	err = db.Load(9, []store.Entry{
		{Key: "b", At: at, Until: now.Add(time.Hour)},
		{Key: "a", At: at.Add(time.Second), Until: now.Add(time.Minute)},
		{Key: "b", At: at.Add(2 * time.Second), Until: now.Add(time.Minute)},
		{Key: "old", At: at, Until: now},
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(db *store.DB) {
		t.Helper()
		if db.Applied() != 9 || db.Len() != 2 {
			t.Fatalf("applied %d, %d entries; want 9, 2", db.Applied(), db.Len())
		}
		b, ok := db.Lookup("b")
		if !ok || !b.At.Equal(at.Add(2*time.Second)) || !b.Until.Equal(now.Add(time.Hour)) {
			t.Fatalf("b = %+v, %v: want the later at and the later until", b, ok)
		}
		if _, ok := db.Lookup("a"); !ok {
			t.Fatal("a missing")
		}
	}
	check(db)
	if err := db.Load(10, nil); err == nil {
		t.Fatal("load into a denylist that holds entries")
	}
	if err := db.Apply(10, []store.Entry{{Key: "c", At: now, Until: now.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute) // a expires: the prune index holds it
	if n, err := db.Prune(); err != nil || n != 2 {
		t.Fatalf("prune = %d, %v; want a and c", n, err)
	}
	now = now.Add(-2 * time.Minute)
	db.Close()
	db, err = store.Open("d", store.Options{FS: fs, Now: clock, Verify: true})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if db.Applied() != 10 || db.Len() != 1 {
		t.Fatalf("after reopen: applied %d, %d entries; want 10, 1", db.Applied(), db.Len())
	}
}

// TestDB_LookupDuringReset: lookups go on while the denylist is reset
// and reloaded; run with -race, they share no unguarded state with it.
func TestDB_LookupDuringReset(t *testing.T) {
	_, db := newMemDB(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				db.Contains("j:a")
			}
		}
	}()
	for i := range 20 {
		mustApply(t, db, uint64(i+1), entry("j:a", 0, time.Hour))
		if err := db.Reset(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	if db.Contains("j:a") {
		t.Fatal("entry held after the last reset")
	}
}
