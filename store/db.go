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

var keyApplied = []byte("m/applied")

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
}

// DB is a Pebble database holding a denylist and its applied sequence.
type DB struct {
	pdb   *pebble.DB
	write *pebble.WriteOptions
	now   func() time.Time

	writeMu sync.Mutex   // serializes Apply, Reset, Prune and Close
	life    sync.RWMutex // held shared by Update, exclusively by Close
	closed  bool

	mu      sync.RWMutex
	entries map[string]value

	applied atomic.Uint64
}

type value struct{ at, until int64 } // unix nanoseconds

// Open opens or creates the database in dir (mode 0700) and loads its
// entries into memory, dropping expired ones.
func Open(dir string, opts Options) (*DB, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pdb, err := pebble.Open(dir, &pebble.Options{
		FS:     opts.FS,
		Logger: pebbleLogger{opts.Logger.With("component", "pebble", "dir", dir)},
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	db := &DB{pdb: pdb, write: pebble.NoSync, now: opts.Now, entries: make(map[string]value)}
	if opts.Sync {
		db.write = pebble.Sync
	}
	if err := db.load(); err != nil {
		pdb.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if _, err := db.Prune(); err != nil {
		pdb.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return db, nil
}

func (db *DB) load() error {
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
		v, err := decodeValue(val)
		if err != nil {
			it.Close()
			return fmt.Errorf("load entry %q: %w", it.Key()[1:], err)
		}
		db.entries[string(it.Key()[1:])] = v
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("load entries: %w", err)
	}
	return nil
}

// Close closes the database. It is safe to call more than once.
func (db *DB) Close() error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	db.life.Lock()
	defer db.life.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
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
	panic("pebble: " + msg)
}
