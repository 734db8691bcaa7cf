package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Key prefixes of the Pebble keyspace.
const (
	prefixEntry  = 'e' // e<key> -> at(8) until(8)
	prefixExpiry = 'x' // x<until(8)><key> -> empty; the prune index
	prefixMeta   = 'm'
)

var (
	keyApplied = []byte("m/applied")
	keyCount   = []byte("m/count") // entries held; absent in denylists written before it
	// keyLoading marks a denylist being filled by a Loader: written before
	// its first entries and deleted with the batch that sets the applied
	// sequence, so that Open empties a load cut short by a crash.
	keyLoading = []byte("m/loading")
)

// ErrClosed is returned by operations on a closed DB.
var ErrClosed = errors.New("store: closed")

// Options configures Open.
type Options struct {
	// FS is the filesystem. Default vfs.Default; vfs.NewMem() for tests.
	FS vfs.FS
	// Sync makes every Apply durable on disk before it returns. Without
	// it a machine crash may lose the last batches, together with their
	// checkpoint, which is safe for state that can be replayed from the stream.
	Sync bool
	// Logger receives Pebble's messages. Nil uses slog.Default().
	Logger *slog.Logger
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// Verify makes Open read the whole database, checking Pebble's
	// checksums, so that damage anywhere is reported by Open (wrapped in
	// ErrCorrupt) rather than found later, by a compaction. It costs a
	// read of everything at Open.
	Verify bool
	// CacheSize is the size in bytes of Pebble's block cache. Zero keeps
	// Pebble's default (8 MiB).
	CacheSize int64
}

// DB is a Pebble database holding a denylist and its applied sequence.
type DB struct {
	pdb     *pebble.DB
	write   *pebble.WriteOptions
	now     func() time.Time
	log     *slog.Logger
	release func() // frees the directory for another Open; nil on a FS other than the real one
	fail    failure

	writeMu sync.Mutex   // serializes Apply, Reset, Prune and Close
	life    sync.RWMutex // held shared by Update, exclusively by Close
	closed  bool

	mu      sync.RWMutex // guards idx and pdbGone; hits is filled under it shared
	idx     index
	fp      fingerprinter // set by Open, never changed
	hits    hitCache
	pdbGone bool // Close has begun closing Pebble: lookups must not read it
	loading bool // a Loader is filling the denylist; under writeMu

	applied atomic.Uint64
}

type value struct{ at, until int64 } // unix nanoseconds

// Open opens or creates the database in dir (mode 0700) and loads its
// entries into memory, dropping expired ones. An error that comes from the
// data rather than the machine wraps ErrCorrupt.
func Open(dir string, opts Options) (*DB, error) {
	db := &DB{}
	if opts.FS == nil {
		opts.FS = vfs.Default
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		release, err := claimDir(dir)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
		db.release = release
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db.now, db.log = opts.Now, opts.Logger.With("component", "store", "dir", dir)
	db.write, db.idx, db.fp = pebble.NoSync, newIndex(), newFingerprinter()
	if opts.Sync {
		db.write = pebble.Sync
	}
	if err := db.open(dir, opts); err != nil {
		if db.release != nil {
			db.release()
		}
		if opts.FS == vfs.Default && lockedByOther(dir, err) {
			return nil, fmt.Errorf("open store %s: %w (its LOCK file is held): run one herald per data directory", dir, ErrInUse)
		}
		return nil, fmt.Errorf("open store %s: %w", dir, corruptUnlessEnvironment(err))
	}
	return db, nil
}

// open opens Pebble and reads the database into memory.
func (db *DB) open(dir string, opts Options) error {
	var cache *pebble.Cache
	if opts.CacheSize > 0 {
		cache = pebble.NewCache(opts.CacheSize)
	}
	pdb, err := pebble.Open(dir, &pebble.Options{
		FS:            opts.FS,
		Logger:        pebbleLogger{opts.Logger.With("component", "pebble", "dir", dir)},
		EventListener: &pebble.EventListener{DataCorruption: db.corruption},
		Cache:         cache,
	})
	if cache != nil {
		cache.Unref() // pdb holds its own reference
	}
	if err != nil {
		return err
	}
	db.pdb = pdb
	err = db.load()
	if err == nil && opts.Verify {
		if err = pdb.CheckLevels(nil); err != nil {
			err = fmt.Errorf("verify: %w", err)
		}
	}
	if err == nil {
		_, err = db.Prune()
	}
	if err == nil {
		err = db.brokenErr() // damage a compaction found meanwhile
	}
	if err != nil {
		pdb.Close()
		return err
	}
	return nil
}

func (db *DB) load() error {
	switch _, closer, err := db.pdb.Get(keyLoading); {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read load marker: %w", err)
	default:
		closer.Close()
		// A Loader stopped before Finish: what it wrote is a part of a
		// snapshot without its sequence. Start empty, as before it.
		db.log.Warn("a denylist load was cut short; emptying the denylist to start again")
		b := resetBatch(db.pdb)
		err := db.commit(b, pebble.Sync)
		b.Close()
		if err != nil {
			return fmt.Errorf("empty an interrupted load: %w", err)
		}
	}
	v, closer, err := db.pdb.Get(keyApplied)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read applied sequence: %w", err)
	default:
		if len(v) != 8 {
			closer.Close()
			return fmt.Errorf("read applied sequence: %d bytes, want 8", len(v))
		}
		db.applied.Store(binary.BigEndian.Uint64(v))
		closer.Close()
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEntry}, UpperBound: []byte{prefixEntry + 1}})
	if err != nil {
		return fmt.Errorf("load entries: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("load entries: %w", err)
		}
		if _, err := decodeValue(val); err != nil {
			it.Close()
			return fmt.Errorf("load entry %q: %w", it.Key()[1:], err)
		}
		db.idx.add(db.fp.hash(string(it.Key()[1:])))
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("load entries: %w", err)
	}
	v, closer, err = db.pdb.Get(keyCount)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read entry count: %w", err)
	default:
		defer closer.Close()
		if len(v) != 8 {
			return fmt.Errorf("read entry count: %d bytes, want 8", len(v))
		}
		if n := binary.BigEndian.Uint64(v); n != uint64(db.idx.n) {
			return fmt.Errorf("%d entries found, %d recorded: entries were lost", db.idx.n, n)
		}
	}
	return nil
}

// Close closes the database. It is safe to call more than once. A DB
// broken by a failed write is not closed: Pebble would wait forever for the
// commit that failed. The process should exit.
func (db *DB) Close() error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	db.life.Lock()
	defer db.life.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	db.fail.mu.Lock()
	stuck := db.fail.stuck
	db.fail.mu.Unlock()
	if stuck {
		return nil
	}
	if db.release != nil {
		defer db.release()
	}
	db.mu.Lock() // lookups in flight finish their reads of Pebble first
	db.pdbGone = true
	db.mu.Unlock()
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

func encodeValue(v value) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b[:8], uint64(v.at))
	binary.BigEndian.PutUint64(b[8:], uint64(v.until))
	return b
}

func decodeValue(b []byte) (value, error) {
	if len(b) != 16 {
		return value{}, fmt.Errorf("value of %d bytes, want 16", len(b))
	}
	return value{at: int64(binary.BigEndian.Uint64(b[:8])), until: int64(binary.BigEndian.Uint64(b[8:]))}, nil
}

func entryKey(k string) []byte {
	b := make([]byte, 1+len(k))
	b[0] = prefixEntry
	copy(b[1:], k)
	return b
}

func expiryKey(until int64, k string) []byte {
	b := make([]byte, 9+len(k))
	b[0] = prefixExpiry
	binary.BigEndian.PutUint64(b[1:9], uint64(until))
	copy(b[9:], k)
	return b
}

// pebbleLogger adapts Pebble's logger to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg)
	panic(&fatalError{msg: "pebble: " + msg, args: args})
}

// fatalError is what Pebble's fatal errors panic with: their message, and
// the errors among their arguments for errors.Is (a full disk's ENOSPC).
type fatalError struct {
	msg  string
	args []any
}

func (e *fatalError) Error() string { return e.msg }

func (e *fatalError) Unwrap() []error {
	var errs []error
	for _, a := range e.args {
		if err, ok := a.(error); ok {
			errs = append(errs, err)
		}
	}
	return errs
}
