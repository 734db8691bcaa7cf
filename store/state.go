package store

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// prefixState prefixes the free-form state keyspace (issuer sessions,
// refresh tokens, clients, the outbox).
const prefixState = 's'

// Tx is a read-write view of the state keyspace whose writes are committed
// together, in one batch, by Update. Reads see the transaction's own writes.
// A Tx does not isolate concurrent Updates from each other: callers that
// read, check and write the same keys serialize those Updates themselves.
type Tx struct {
	b *pebble.Batch
}

// Get returns the value of key and whether it exists.
func (tx *Tx) Get(key string) ([]byte, bool, error) {
	v, closer, err := tx.b.Get(stateKey(key))
	return copyValue(v, closer, err)
}

// Set sets key to val.
func (tx *Tx) Set(key string, val []byte) { _ = tx.b.Set(stateKey(key), val, nil) }

// Delete deletes key.
func (tx *Tx) Delete(key string) { _ = tx.b.Delete(stateKey(key), nil) }

// Update runs fn and commits its writes atomically (durably when the DB was
// opened with Sync). If fn returns an error nothing is written.
func (db *DB) Update(fn func(tx *Tx) error) error {
	return db.update(db.write, fn)
}

// UpdateNoSync is Update without waiting for the disk: a crash may lose
// the change. For changes that are safe to redo, such as clearing work
// already done (published outbox entries).
func (db *DB) UpdateNoSync(fn func(tx *Tx) error) error {
	return db.update(pebble.NoSync, fn)
}

// UpdateThenSync is Update that returns once the change is written and
// visible, before it is on disk, with a function that waits for the disk:
// the caller overlaps other work with the sync and calls durable before
// it answers. A crash of the machine before durable returns may lose the
// change. On a DB opened without Sync, durable does nothing.
func (db *DB) UpdateThenSync(fn func(tx *Tx) error) (durable func() error, err error) {
	if err := db.update(pebble.NoSync, fn); err != nil {
		return nil, err
	}
	if !db.write.Sync {
		return func() error { return nil }, nil
	}
	return db.syncLog, nil
}

// syncLog waits until every write committed so far is on disk: the
// write-ahead log is synced up to an empty record written after them.
func (db *DB) syncLog() error {
	db.life.RLock()
	defer db.life.RUnlock()
	if db.closed {
		return ErrClosed
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	_ = b.LogData(nil, nil)
	if err := db.commit(b, pebble.Sync); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	return nil
}

func (db *DB) update(opts *pebble.WriteOptions, fn func(tx *Tx) error) error {
	db.life.RLock()
	defer db.life.RUnlock()
	if db.closed {
		return ErrClosed
	}
	b := db.pdb.NewIndexedBatch()
	defer b.Close()
	if err := fn(&Tx{b: b}); err != nil {
		return err
	}
	if b.Empty() {
		return nil
	}
	if err := db.commit(b, opts); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// Get returns the committed value of key and whether it exists.
func (db *DB) Get(key string) ([]byte, bool, error) {
	v, closer, err := db.pdb.Get(stateKey(key))
	return copyValue(v, closer, err)
}

// Scan calls fn for every committed key with the given prefix, in key
// order, until fn returns an error, which Scan returns.
func (db *DB) Scan(prefix string, fn func(key string, val []byte) error) error {
	lower := stateKey(prefix)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return fmt.Errorf("store: scan %q: %w", prefix, err)
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(string(it.Key()[1:]), v)
		}
		if err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store: scan %q: %w", prefix, err)
	}
	return nil
}

func stateKey(k string) []byte {
	b := make([]byte, 1+len(k))
	b[0] = prefixState
	copy(b[1:], k)
	return b
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func copyValue(v []byte, closer interface{ Close() error }, err error) ([]byte, bool, error) {
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: get: %w", err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}
