package store

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
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
	if prev := db.applied.Load(); seq <= prev {
		return fmt.Errorf("store: apply sequence %d: already applied %d", seq, prev)
	}
	now := db.now().UnixNano()
	b := db.pdb.NewBatch()
	defer b.Close()
	updates := make(map[string]value, len(entries))
	added := 0 // keys new to the denylist
	db.mu.RLock()
	for _, e := range entries {
		v := value{at: e.At.UnixNano(), until: e.Until.UnixNano()}
		if v.until <= now {
			continue
		}
		old, ok := updates[e.Key]
		if !ok {
			if old, ok = db.entries[e.Key]; !ok {
				added++
			}
		}
		if ok {
			if old.at > v.at {
				v.at = old.at
			}
			if old.until > v.until {
				v.until = old.until
			}
			if old == v {
				continue
			}
			if old.until != v.until {
				_ = b.Delete(expiryKey(old.until, e.Key), nil)
			}
		}
		updates[e.Key] = v
		_ = b.Set(entryKey(e.Key), encodeValue(v), nil)
		_ = b.Set(expiryKey(v.until, e.Key), nil, nil)
	}
	setCount(b, len(db.entries)+added)
	db.mu.RUnlock()
	var seqb [8]byte
	binary.BigEndian.PutUint64(seqb[:], seq)
	_ = b.Set(keyApplied, seqb[:], nil)
	if err := db.commit(b, db.write); err != nil {
		return fmt.Errorf("store: apply sequence %d: %w", seq, err)
	}
	if len(updates) > 0 {
		db.mu.Lock()
		for k, v := range updates {
			db.entries[k] = v
		}
		db.mu.Unlock()
	}
	db.applied.Store(seq)
	return nil
}

// Load fills an empty denylist with entries and sets the applied sequence
// to seq, in one atomic batch, as Apply would on an empty denylist but
// faster for a large one: entries sorted by key (as Entries' caller may
// sort them) are written in Pebble's order. Entries for the same key
// merge as in Apply; expired ones are not stored. It refuses a denylist
// that holds entries or an applied sequence.
func (db *DB) Load(seq uint64, entries []Entry) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return ErrClosed
	}
	db.mu.RLock()
	held := len(db.entries)
	db.mu.RUnlock()
	if prev := db.applied.Load(); prev != 0 || held != 0 || seq == 0 {
		return fmt.Errorf("store: load sequence %d: denylist not empty (applied %d, %d entries)", seq, prev, held)
	}
	byKey := func(a, b Entry) int { return strings.Compare(a.Key, b.Key) }
	if !slices.IsSortedFunc(entries, byKey) {
		entries = slices.Clone(entries)
		slices.SortFunc(entries, byKey)
	}
	now := db.now().UnixNano()
	type kept struct {
		key string
		v   value
	}
	merged := make([]kept, 0, len(entries))
	for _, e := range entries {
		v := value{at: e.At.UnixNano(), until: e.Until.UnixNano()}
		if v.until <= now {
			continue
		}
		if n := len(merged); n > 0 && merged[n-1].key == e.Key {
			last := &merged[n-1].v
			last.at, last.until = max(last.at, v.at), max(last.until, v.until)
			continue
		}
		merged = append(merged, kept{e.Key, v})
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	m := make(map[string]value, len(merged))
	for _, k := range merged {
		_ = b.Set(entryKey(k.key), encodeValue(k.v), nil)
		m[k.key] = k.v
	}
	byExpiry := func(a, b kept) int {
		if c := cmp.Compare(a.v.until, b.v.until); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	}
	if !slices.IsSortedFunc(merged, byExpiry) {
		slices.SortFunc(merged, byExpiry)
	}
	for _, k := range merged {
		_ = b.Set(expiryKey(k.v.until, k.key), nil, nil)
	}
	setCount(b, len(merged))
	var seqb [8]byte
	binary.BigEndian.PutUint64(seqb[:], seq)
	_ = b.Set(keyApplied, seqb[:], nil)
	if err := db.commit(b, db.write); err != nil {
		return fmt.Errorf("store: load sequence %d: %w", seq, err)
	}
	db.mu.Lock()
	db.entries = m
	db.mu.Unlock()
	db.applied.Store(seq)
	return nil
}

// Entries returns every entry that has not expired and the applied
// sequence they are the state at, read together so that no Apply falls
// between them: what a replay of the stream up to seq would hold. The
// order of entries is unspecified. It reads memory only.
func (db *DB) Entries() (seq uint64, entries []Entry, err error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return 0, nil, ErrClosed
	}
	now := db.now().UnixNano()
	db.mu.RLock()
	defer db.mu.RUnlock()
	entries = make([]Entry, 0, len(db.entries))
	for k, v := range db.entries {
		if v.until > now {
			entries = append(entries, Entry{Key: k, At: time.Unix(0, v.at), Until: time.Unix(0, v.until)})
		}
	}
	return db.applied.Load(), entries, nil
}

// Lookup returns the entry for key if there is one that has not expired.
// It reads memory only.
func (db *DB) Lookup(key string) (Entry, bool) {
	db.mu.RLock()
	v, ok := db.entries[key]
	db.mu.RUnlock()
	if !ok || v.until <= db.now().UnixNano() {
		return Entry{}, false
	}
	return Entry{Key: key, At: time.Unix(0, v.at), Until: time.Unix(0, v.until)}, true
}

// Contains reports whether key has an entry that has not expired; the same
// as Lookup without building an Entry.
func (db *DB) Contains(key string) bool {
	db.mu.RLock()
	v, ok := db.entries[key]
	db.mu.RUnlock()
	return ok && v.until > db.now().UnixNano()
}

// Len returns the number of entries held, including expired ones not yet pruned.
func (db *DB) Len() int {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return len(db.entries)
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
	remaining := 0
	db.mu.RLock()
	for _, k := range keys {
		if v, ok := db.entries[k]; ok && v.until <= now {
			remaining--
		}
	}
	remaining += len(db.entries)
	db.mu.RUnlock()
	setCount(b, remaining)
	if err := db.commit(b, db.write); err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	db.mu.Lock()
	for _, k := range keys {
		if v, ok := db.entries[k]; ok && v.until <= now {
			delete(db.entries, k)
		}
	}
	db.mu.Unlock()
	return len(keys), nil
}

// Reset deletes every entry and the applied sequence in one batch, for a
// rebuild from the start of the stream.
func (db *DB) Reset() error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.closed {
		return ErrClosed
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	_ = b.DeleteRange([]byte{prefixEntry}, []byte{prefixEntry + 1}, nil)
	_ = b.DeleteRange([]byte{prefixExpiry}, []byte{prefixExpiry + 1}, nil)
	_ = b.Delete(keyApplied, nil)
	setCount(b, 0)
	if err := db.commit(b, db.write); err != nil {
		return fmt.Errorf("store: reset: %w", err)
	}
	db.mu.Lock()
	db.entries = make(map[string]value)
	db.mu.Unlock()
	db.applied.Store(0)
	return nil
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
