package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Entry is one denylist entry.
type Entry struct {
	// Key identifies what is denied; its meaning belongs to the caller.
	Key string
	// At is when the entry was made.
	At time.Time
	// Until is when the entry expires and may be forgotten.
	Until time.Time
}

// Apply records entries and sets the applied sequence to seq, in one atomic
// batch. An entry for a key already present keeps the later At and the later
// Until of the two. seq must be greater than Applied; entries may be empty
// (an event that denies nothing still advances the sequence). Entries
// already expired are not stored.
func (db *DB) Apply(seq uint64, entries []Entry) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return ErrClosed
	}
	if db.loading {
		return fmt.Errorf("store: apply sequence %d: a load is in progress", seq)
	}
	if prev := db.applied.Load(); seq <= prev {
		return fmt.Errorf("store: apply sequence %d: already applied %d", seq, prev)
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	st, err := db.stage(b, entries)
	if err != nil {
		return fmt.Errorf("store: apply sequence %d: %w", seq, err)
	}
	setCount(b, db.idx.n+st.added)
	setApplied(b, seq)
	if err := db.commit(b, db.write); err != nil {
		return fmt.Errorf("store: apply sequence %d: %w", seq, err)
	}
	db.publish(st)
	db.applied.Store(seq)
	return nil
}

// staged is what a batch changes in the denylist, to show in memory once
// the batch is committed.
type staged struct {
	updates map[string]update
	added   int // keys new to the denylist
}

type update struct {
	v     value
	fp    uint64
	fresh bool // the key was not held before
}

// stage writes to b what merging entries into the denylist changes. It
// reads the entries they merge with from Pebble (only keys whose
// fingerprint is held: an update, or another key's) and changes nothing
// in memory. The caller holds writeMu, so only it changes the index.
func (db *DB) stage(b *pebble.Batch, entries []Entry) (staged, error) {
	now := db.now().UnixNano()
	st := staged{updates: make(map[string]update, len(entries))}
	for _, e := range entries {
		v := value{at: e.At.UnixNano(), until: e.Until.UnixNano()}
		if v.until <= now {
			continue
		}
		u, ok := st.updates[e.Key]
		old := u.v
		if !ok {
			u.fp = db.fp.hash(e.Key)
			u.fresh = true
			if db.idx.has(u.fp) {
				var err error
				if old, ok, err = db.read(e.Key); err != nil {
					return staged{}, err
				}
				u.fresh = !ok
			}
			if u.fresh {
				st.added++
			}
		}
		if ok {
			v.at, v.until = max(old.at, v.at), max(old.until, v.until)
			if old == v {
				continue
			}
			if old.until != v.until {
				_ = b.Delete(expiryKey(old.until, e.Key), nil)
			}
		}
		u.v = v
		st.updates[e.Key] = u
		_ = b.Set(entryKey(e.Key), encodeValue(v), nil)
		_ = b.Set(expiryKey(v.until, e.Key), nil, nil)
	}
	return st, nil
}

// publish shows a committed batch's changes in memory.
func (db *DB) publish(st staged) {
	if len(st.updates) == 0 {
		return
	}
	db.mu.Lock()
	for k, u := range st.updates {
		if u.fresh {
			db.idx.add(u.fp)
		}
		db.hits.drop(u.fp, k)
	}
	db.mu.Unlock()
}

// read returns the entry Pebble holds for key.
func (db *DB) read(key string) (value, bool, error) {
	val, closer, err := db.pdb.Get(entryKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return value{}, false, nil
	}
	if err != nil {
		// A copy of key, so that key itself does not escape: lookups of
		// keys built on the caller's stack stay there.
		return value{}, false, fmt.Errorf("read entry %q: %w", strings.Clone(key), err)
	}
	defer closer.Close()
	v, err := decodeValue(val)
	if err != nil {
		return value{}, false, fmt.Errorf("read entry %q: %w", strings.Clone(key), err)
	}
	return v, true, nil
}

// loadBatch bounds the entries Load writes in one batch.
const loadBatch = 8192

// Load fills an empty denylist with entries and sets the applied sequence
// to seq, as Apply would on an empty denylist: entries for the same key
// merge as in Apply; expired ones are not stored. It writes them through
// a Loader, in bounded batches, so a crash before it returns leaves an
// empty denylist once reopened. It refuses a denylist that holds entries
// or an applied sequence.
func (db *DB) Load(seq uint64, entries []Entry) error {
	l, err := db.NewLoader()
	if err != nil {
		return fmt.Errorf("store: load sequence %d: %w", seq, err)
	}
	for len(entries) > 0 {
		n := min(len(entries), loadBatch)
		if err := l.Add(entries[:n]); err != nil {
			l.Abort()
			return fmt.Errorf("store: load sequence %d: %w", seq, err)
		}
		entries = entries[n:]
	}
	if err := l.Finish(seq); err != nil {
		l.Abort()
		return fmt.Errorf("store: load sequence %d: %w", seq, err)
	}
	return nil
}

// Loader fills an empty denylist batch by batch, for a snapshot too large
// to hold at once, and sets its applied sequence last. Until Finish the
// denylist has no applied sequence and is marked as being loaded: Open
// empties one whose load a crash cut short, and Apply refuses to write
// to it. Entries added are visible to Lookup as soon as Add returns.
// A Loader is used from one goroutine.
type Loader struct {
	db   *DB
	done bool
}

// NewLoader starts filling an empty denylist. It refuses a denylist that
// holds entries or an applied sequence, or that another Loader is filling.
func (db *DB) NewLoader() (*Loader, error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return nil, ErrClosed
	}
	if prev := db.applied.Load(); prev != 0 || db.idx.n != 0 || db.loading {
		return nil, fmt.Errorf("store: load: denylist not empty (applied %d, %d entries, loading %v)", prev, db.idx.n, db.loading)
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(keyLoading, nil, nil)
	if err := db.commit(b, pebble.NoSync); err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	db.loading = true
	return &Loader{db: db}, nil
}

// Add writes entries in one batch, merged with those added before as
// Apply merges them; expired ones are not stored. The batch is not
// synced: Finish is.
func (l *Loader) Add(entries []Entry) error {
	db := l.db
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if err := l.check(); err != nil {
		return err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	st, err := db.stage(b, entries)
	if err != nil {
		return fmt.Errorf("store: load: %w", err)
	}
	if err := db.commit(b, pebble.NoSync); err != nil {
		return fmt.Errorf("store: load: %w", err)
	}
	db.publish(st)
	return nil
}

// Len returns the number of entries the denylist holds so far.
func (l *Loader) Len() int {
	l.db.mu.RLock()
	defer l.db.mu.RUnlock()
	return l.db.idx.n
}

// Finish sets the applied sequence to seq, which must not be zero, and
// ends the load, in one batch, durable when the DB was opened with Sync.
func (l *Loader) Finish(seq uint64) error {
	db := l.db
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if err := l.check(); err != nil {
		return err
	}
	if seq == 0 {
		return errors.New("store: load: sequence 0")
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	setCount(b, db.idx.n)
	setApplied(b, seq)
	_ = b.Delete(keyLoading, nil)
	if err := db.commit(b, db.write); err != nil {
		return fmt.Errorf("store: load sequence %d: %w", seq, err)
	}
	l.done, db.loading = true, false
	db.applied.Store(seq)
	return nil
}

// Abort empties the denylist of what the Loader added, as Reset does, and
// ends the load. It does nothing after Finish or Abort.
func (l *Loader) Abort() error {
	db := l.db
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if l.done || !db.loading {
		return nil
	}
	if db.closed {
		return ErrClosed
	}
	if err := db.reset(); err != nil {
		return fmt.Errorf("store: abort load: %w", err)
	}
	l.done = true
	return nil
}

// check reports why l cannot write. The caller holds writeMu.
func (l *Loader) check() error {
	switch {
	case l.db.closed:
		return ErrClosed
	case l.done || !l.db.loading:
		return errors.New("store: load: ended")
	}
	return nil
}

// Entries returns every entry that has not expired and the applied
// sequence they are the state at, read together so that no Apply falls
// between them: what a replay of the stream up to seq would hold. The
// order of entries is unspecified. It reads them from Pebble.
func (db *DB) Entries() (seq uint64, entries []Entry, err error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return 0, nil, ErrClosed
	}
	now := db.now().UnixNano()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEntry}, UpperBound: []byte{prefixEntry + 1}})
	if err != nil {
		return 0, nil, fmt.Errorf("store: entries: %w", err)
	}
	entries = make([]Entry, 0, db.idx.n)
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return 0, nil, fmt.Errorf("store: entries: %w", err)
		}
		v, err := decodeValue(val)
		if err != nil {
			it.Close()
			return 0, nil, fmt.Errorf("store: entry %q: %w", it.Key()[1:], err)
		}
		if v.until > now {
			entries = append(entries, Entry{Key: string(it.Key()[1:]), At: time.Unix(0, v.at), Until: time.Unix(0, v.until)})
		}
	}
	if err := it.Close(); err != nil {
		return 0, nil, fmt.Errorf("store: entries: %w", err)
	}
	return db.applied.Load(), entries, nil
}

// Lookup returns the entry for key if there is one that has not expired.
// A key the denylist does not hold is answered from memory; one it holds
// is read from Pebble, unless looked up recently.
func (db *DB) Lookup(key string) (Entry, bool) {
	v, ok := db.lookup(key)
	if !ok {
		return Entry{}, false
	}
	return Entry{Key: key, At: time.Unix(0, v.at), Until: time.Unix(0, v.until)}, true
}

// Contains reports whether key has an entry that has not expired; the same
// as Lookup without building an Entry.
func (db *DB) Contains(key string) bool {
	_, ok := db.lookup(key)
	return ok
}

func (db *DB) lookup(key string) (value, bool) {
	fp := db.fp.hash(key)
	db.mu.RLock()
	if !db.idx.has(fp) {
		db.mu.RUnlock()
		return value{}, false
	}
	v, ok := db.confirm(fp, key)
	db.mu.RUnlock()
	return v, ok && v.until > db.now().UnixNano()
}

// refused is the entry reported for a key that cannot be confirmed: held
// for ever, made at the end of time, so that every check refuses.
var refused = value{at: math.MaxInt64, until: math.MaxInt64}

// confirm returns the entry of key, whose fingerprint fp the index holds,
// from the hits cache or Pebble. The caller holds mu shared. A key that
// cannot be read (a closed or damaged DB) is reported held (refused): a
// check refuses rather than lets through.
func (db *DB) confirm(fp uint64, key string) (value, bool) {
	if v, ok := db.hits.get(fp, key); ok {
		return v, true
	}
	if db.pdbGone {
		return refused, true
	}
	v, ok, err := db.read(key)
	if err != nil {
		return refused, true
	}
	if ok {
		db.hits.put(fp, key, v)
	}
	return v, ok
}

// Len returns the number of entries held, including expired ones not yet pruned.
func (db *DB) Len() int {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.idx.n
}

// Applied returns the last applied sequence, 0 if none.
func (db *DB) Applied() uint64 { return db.applied.Load() }

// Prune deletes the entries that have expired, from disk and memory, and
// returns how many it deleted.
func (db *DB) Prune() (int, error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return 0, ErrClosed
	}
	now := db.now().UnixNano()
	upper := expiryKey(now+1, "")
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixExpiry}, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	var keys []string
	for it.First(); it.Valid(); it.Next() {
		ik := it.Key()
		k := string(ik[9:])
		_ = b.Delete(ik, nil)
		_ = b.Delete(entryKey(k), nil)
		keys = append(keys, k)
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	setCount(b, db.idx.n-len(keys))
	if err := db.commit(b, db.write); err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	db.mu.Lock()
	for _, k := range keys {
		fp := db.fp.hash(k)
		db.idx.remove(fp)
		db.hits.drop(fp, k)
	}
	db.mu.Unlock()
	return len(keys), nil
}

// Reset deletes every entry and the applied sequence in one batch, for a
// rebuild from the start of the stream. It also ends a load in progress.
func (db *DB) Reset() error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return ErrClosed
	}
	if err := db.reset(); err != nil {
		return fmt.Errorf("store: reset: %w", err)
	}
	return nil
}

// reset empties the denylist. The caller holds writeMu.
func (db *DB) reset() error {
	b := resetBatch(db.pdb)
	defer b.Close()
	if err := db.commit(b, db.write); err != nil {
		return err
	}
	db.mu.Lock()
	db.idx = newIndex()
	db.hits.clear()
	db.mu.Unlock()
	db.applied.Store(0)
	db.loading = false
	return nil
}

// resetBatch returns a batch that deletes every entry, the applied
// sequence and a load's mark.
func resetBatch(pdb *pebble.DB) *pebble.Batch {
	b := pdb.NewBatch()
	_ = b.DeleteRange([]byte{prefixEntry}, []byte{prefixEntry + 1}, nil)
	_ = b.DeleteRange([]byte{prefixExpiry}, []byte{prefixExpiry + 1}, nil)
	_ = b.Delete(keyApplied, nil)
	_ = b.Delete(keyLoading, nil)
	setCount(b, 0)
	return b
}

// setCount records in b how many entries the denylist holds once b is
// committed. Open compares it with the entries it finds: a file lost or cut
// short outside the write-ahead log (a damaged MANIFEST can drop a whole
// sstable without Pebble noticing) would otherwise leave an applied
// sequence without all of its entries.
func setCount(b *pebble.Batch, n int) {
	var nb [8]byte
	binary.BigEndian.PutUint64(nb[:], uint64(n))
	_ = b.Set(keyCount, nb[:], nil)
}

func setApplied(b *pebble.Batch, seq uint64) {
	var seqb [8]byte
	binary.BigEndian.PutUint64(seqb[:], seq)
	_ = b.Set(keyApplied, seqb[:], nil)
}
