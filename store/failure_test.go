package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/store/storetest"
)

// TestDB_DiskFull fills the disk under the write-ahead log. Pebble panics
// on the failed write, with unsynced writes while holding its commit lock.
// The DB reports ErrBroken with the cause instead, refuses every later
// write at once, keeps answering from memory, and closes without waiting
// for Pebble.
func TestDB_DiskFull(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) {
			full := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
				if op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.HasSuffix(op.Path, ".log") {
					return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
				}
				return nil
			})}
			failed := &errorfs.Counter{Injector: full}
			clk := newClock()
			db, err := store.Open("db", store.Options{FS: errorfs.Wrap(vfs.NewMem(), failed), Sync: sync, Logger: discard(), Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			mustApply(t, db, 1, entry("a", 0, time.Hour))
			full.On()
			// Unsynced writes go to 32 KiB blocks in memory; a block's
			// failed write shows when a later block is queued. Pebble's
			// first memtable (256 KiB) is far from full by then: a log
			// rotation, whose failure Pebble cannot survive, stays out.
			big := make([]store.Entry, 300)
			for i := range big {
				big[i] = entry(fmt.Sprintf("big-%03d-%s", i, strings.Repeat("x", 80)), 0, time.Hour)
			}
			applyErr := db.Apply(2, big)
			for deadline := time.Now().Add(10 * time.Second); applyErr == nil && failed.Load() == 0; {
				if time.Now().After(deadline) {
					t.Fatal("the log's first block was never written")
				}
				runtime.Gosched()
			}
			for seq := uint64(3); seq < 1000 && applyErr == nil; seq++ {
				applyErr = db.Apply(seq, []store.Entry{entry(fmt.Sprint("k", seq), 0, time.Hour)})
			}
			if !errors.Is(applyErr, store.ErrBroken) || !errors.Is(applyErr, syscall.ENOSPC) {
				t.Fatalf("Apply on a full disk = %v, want ErrBroken wrapping ENOSPC", applyErr)
			}
			full.Off() // space is back, but Pebble's commit pipeline is not
			if err := db.Apply(1000, nil); !errors.Is(err, store.ErrBroken) {
				t.Errorf("Apply after the failure = %v, want ErrBroken", err)
			}
			if err := db.Reset(); !errors.Is(err, store.ErrBroken) {
				t.Errorf("Reset after the failure = %v, want ErrBroken", err)
			}
			clk.Advance(2 * time.Hour)
			if _, err := db.Prune(); !errors.Is(err, store.ErrBroken) {
				t.Errorf("Prune after the failure = %v, want ErrBroken", err)
			}
			if err := db.Update(func(tx *store.Tx) error { tx.Set("s", []byte("v")); return nil }); !errors.Is(err, store.ErrBroken) {
				t.Errorf("Update after the failure = %v, want ErrBroken", err)
			}
			clk.Set(t0)
			checkEntry(t, db, "a", 0, time.Hour)
			closed := make(chan error, 1)
			go func() { closed <- db.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("Close = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close of a broken DB did not return")
			}
		})
	}
}

// populate applies batches of entries to a new DB in dir until Pebble has
// flushed some of them to sstables, and returns the last sequence and the
// entries per batch.
func populate(t *testing.T, dir string) (last uint64, perBatch int) {
	t.Helper()
	db, err := store.Open(dir, store.Options{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	now, perBatch := time.Now(), 200
	for last = 1; ; last++ {
		es := make([]store.Entry, perBatch)
		for i := range es {
			es[i] = store.Entry{Key: fmt.Sprintf("jti-%06d-%03d-%s", last, i, strings.Repeat("x", 24)), At: now, Until: now.Add(time.Hour)}
		}
		if err := db.Apply(last, es); err != nil {
			t.Fatal(err)
		}
		if ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(ssts) > 0 && last%50 == 0 {
			break
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return last, perBatch
}

// TestOpen_Corrupt damages a denylist's files in the ways disks and people
// do (storetest.Damages). Open reports ErrCorrupt for every damage it
// cannot read past, and a denylist it opens despite damage (a torn log
// tail) holds a prefix of the batches: an applied sequence and exactly its
// entries. What the machine refuses is not corruption.
func TestOpen_Corrupt(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	last, perBatch := populate(t, src)
	for _, d := range storetest.Damages() {
		t.Run(d.Name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			if err := d.Apply(dir); err != nil {
				t.Fatal(err)
			}
			db, err := store.Open(dir, store.Options{Logger: discard(), Verify: true})
			switch {
			case d.Detected && !errors.Is(err, store.ErrCorrupt):
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			case errors.Is(err, store.ErrCorrupt):
				return
			case err != nil:
				t.Fatalf("Open = %v, want ErrCorrupt or a prefix of the batches", err)
			}
			defer db.Close()
			applied := db.Applied()
			if applied == 0 || applied > last || db.Len() != int(applied)*perBatch {
				t.Fatalf("applied %d of %d with %d entries, want a prefix: %d entries per batch", applied, last, db.Len(), perBatch)
			}
		})
	}
	t.Run("machine refuses", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "db")
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		for _, errno := range []syscall.Errno{syscall.EAGAIN, syscall.EACCES, syscall.ENOSPC, syscall.EMFILE} {
			refuse := errorfs.InjectorFunc(func(op errorfs.Op) error {
				if op.Kind == errorfs.OpLock || op.Kind == errorfs.OpCreate {
					return &os.PathError{Op: "open", Path: op.Path, Err: errno}
				}
				return nil
			})
			_, err := store.Open(dir, store.Options{FS: errorfs.Wrap(vfs.Default, refuse), Logger: discard()})
			if err == nil || errors.Is(err, store.ErrCorrupt) {
				t.Errorf("Open when the machine says %v = %v, want an error that is not ErrCorrupt", errno, err)
			}
		}
	})
	t.Run("open twice", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "db")
		db, err := store.Open(dir, store.Options{Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := store.Open(dir, store.Options{Logger: discard()}); err == nil || errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("second Open = %v, want an error that is not ErrCorrupt", err)
		}
	})
}

// TestDB_CrashAtAnyPoint takes crash images of a denylist's filesystem
// while batches are applied, keeping a random part of what was written but
// not synced, as a power loss would. Every image opens to a prefix of the
// batches: an applied sequence and exactly its entries. With Sync, that
// prefix includes every batch Apply returned for.
func TestDB_CrashAtAnyPoint(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			clk := newClock()
			db, err := store.Open("db", store.Options{FS: fs, Sync: sync, Logger: discard(), Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			const batches, perBatch = 60, 50
			for seq := uint64(1); seq <= batches; seq++ {
				es := make([]store.Entry, perBatch)
				for i := range es {
					es[i] = entry(fmt.Sprintf("k%03d-%02d", seq, i), 0, time.Hour)
				}
				mustApply(t, db, seq, es...)
				if seq%5 != 0 {
					continue
				}
				image := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
				got, err := store.Open("db", store.Options{FS: image, Logger: discard(), Now: clk.Now})
				if err != nil {
					t.Fatalf("open the image taken after batch %d: %v", seq, err)
				}
				applied := got.Applied()
				if got.Len() != int(applied)*perBatch {
					t.Errorf("image after batch %d: applied %d with %d entries, want %d", seq, applied, got.Len(), int(applied)*perBatch)
				}
				if sync && applied != seq {
					t.Errorf("image after batch %d: applied %d, want every synced batch", seq, applied)
				}
				got.Close()
			}
		})
	}
}
