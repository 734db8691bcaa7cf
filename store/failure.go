package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrBroken is wrapped by the errors of every write to a DB that can no
// longer be written or trusted: a write to disk failed (a full disk, an I/O
// error) or Pebble found corruption. What the DB holds in memory stays
// readable, but nothing more can be recorded; the program should stop and
// reopen it (a denylist: rebuild it from the stream).
var ErrBroken = errors.New("store: broken")

// ErrCorrupt is wrapped by Open's error when the database on disk cannot
// be read back (a damaged or missing file, bad data), rather than when the
// machine refuses (no space, no permission, too many open files, the
// directory locked by another process); and by ErrBroken errors when
// corruption is found after Open. State that can be rebuilt, such as a
// denylist replayed from the stream, is then best moved aside and rebuilt.
var ErrCorrupt = errors.New("store: corrupt")

// ErrInUse is wrapped by Open's error when another process has the
// database open: Pebble's LOCK file in it is held. Two processes given the
// same data directory are the usual cause.
var ErrInUse = errors.New("store: in use by another process")

// lockedByOther reports whether Pebble's Open failed because another
// process holds dir's LOCK file: its error is the bare errno of the
// refused lock, so the lock is tried again to tell it from any other
// EAGAIN or EACCES.
func lockedByOther(dir string, err error) bool {
	if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
		return false
	}
	l, lerr := pebble.LockDirectory(dir, vfs.Default)
	if lerr == nil {
		l.Close()
		return false
	}
	return errors.Is(lerr, syscall.EAGAIN) || errors.Is(lerr, syscall.EACCES)
}

// failure is what broke a DB, if anything.
type failure struct {
	mu  sync.Mutex
	err error // wraps ErrBroken; nil while the DB works
	// stuck: a commit panicked inside Pebble, which then holds its commit
	// pipeline's lock for good, so Pebble's Close would wait forever.
	stuck bool
}

// brokenErr returns the error that broke db, nil if none.
func (db *DB) brokenErr() error {
	db.fail.mu.Lock()
	defer db.fail.mu.Unlock()
	return db.fail.err
}

// breakWith marks db broken by cause unless it already is. It returns the
// error writes report from now on and whether this call broke the DB.
func (db *DB) breakWith(cause error, stuck bool) (error, bool) {
	db.fail.mu.Lock()
	defer db.fail.mu.Unlock()
	db.fail.stuck = db.fail.stuck || stuck
	if db.fail.err != nil {
		return db.fail.err, false
	}
	db.fail.err = fmt.Errorf("%w: %w", ErrBroken, cause)
	return db.fail.err, true
}

// commit commits b. Pebble reports a failed write to its write-ahead log
// (a full disk, an I/O error) by panicking while it holds its commit
// pipeline's lock: no later commit could finish. commit turns that panic
// into an ErrBroken error, refuses every later commit, and Close then
// leaves Pebble as it is. The caller holds writeMu or life.
func (db *DB) commit(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	if err := db.brokenErr(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			cause, ok := r.(error)
			if !ok {
				cause = fmt.Errorf("%v", r)
			}
			err, _ = db.breakWith(fmt.Errorf("write to disk failed: %w", cause), true)
		}
	}()
	return b.Commit(opts)
}

// corruption handles Pebble's DataCorruption event, which Pebble's default
// turns into a fatal error that stops the process, even when a background
// compaction finds the damage. The DB is marked broken instead: reads of
// the damaged data fail with the error Pebble returns, writes fail with
// ErrBroken, and Open, which reads everything (Options.Verify), reports
// ErrCorrupt.
func (db *DB) corruption(info pebble.DataCorruptionInfo) {
	if _, first := db.breakWith(fmt.Errorf("%w: %s", ErrCorrupt, info), false); first {
		db.log.Error("store corruption detected; writes refused until reopened", "path", info.Path, "details", info.Details)
	}
}

// environmentErrnos are the errors by which the machine, not the data,
// refuses to open a database: the same database opens once they are gone.
var environmentErrnos = []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EACCES,
	syscall.EPERM, syscall.EAGAIN, syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM}

// corruptUnlessEnvironment wraps an error met while opening and reading a
// database in ErrCorrupt, unless the machine caused it.
func corruptUnlessEnvironment(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		for _, e := range environmentErrnos {
			if errno == e {
				return err
			}
		}
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// openDirs holds the absolute paths of the databases open on the real
// filesystem in this process. Pebble's own lock refuses a second Open of
// the same directory in one process with an error that names no cause,
// which must not read as corruption (the caller would move the directory
// out from under the open database).
var openDirs sync.Map

// claimDir records dir as open, or reports that it already is; release
// undoes it.
func claimDir(dir string) (release func(), err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, taken := openDirs.LoadOrStore(abs, struct{}{}); taken {
		return nil, fmt.Errorf("already open in this process")
	}
	return func() { openDirs.Delete(abs) }, nil
}
