package store

import (
	"hash/maphash"
	"strings"
	"sync/atomic"
)

// index is the in-memory part of a denylist: a 64-bit fingerprint of every
// key held, keyed by a hash with a seed of this process, each with the
// latest Until of the keys that have it. It holds no key, so a million
// entries cost tens of MiB rather than hundreds.
//
// A fingerprint says only that a key may be held: a key missing from the
// index is not held (the answer of almost every lookup, from memory), and
// a key found is confirmed, and its entry read, from Pebble or from the
// hits cache. Two keys with one fingerprint are told apart that way too.
type index struct {
	hash  func(string) uint64
	until map[uint64]int64 // fingerprint -> the latest Until of the keys having it
	// shared counts the keys of the fingerprints more than one key has.
	shared map[uint64]int
	n      int // keys held, expired ones included until pruned
}

func newIndex(hash func(string) uint64) index {
	return index{hash: hash, until: make(map[uint64]int64), shared: make(map[uint64]int)}
}

// fingerprintHook, when set by a test before Open, replaces the
// fingerprint hash, to force collisions.
var fingerprintHook func(string) uint64

// newHash returns the fingerprint hash of a new DB.
func newHash() func(string) uint64 {
	if fingerprintHook != nil {
		return fingerprintHook
	}
	seed := maphash.MakeSeed()
	return func(k string) uint64 { return maphash.String(seed, k) }
}

// add records that a key with fingerprint fp and expiry until is held;
// fresh says it was not held before (so fp, if present, was another key's).
func (x *index) add(fp uint64, until int64, fresh bool) {
	old, ok := x.until[fp]
	if fresh {
		x.n++
		if ok {
			if c := x.shared[fp]; c > 0 {
				x.shared[fp] = c + 1
			} else {
				x.shared[fp] = 2
			}
		}
	}
	if !ok || until > old {
		x.until[fp] = until
	}
}

// remove records that one key with fingerprint fp is no longer held.
func (x *index) remove(fp uint64) {
	x.n--
	switch c := x.shared[fp]; {
	case c > 2:
		x.shared[fp] = c - 1
	case c == 2:
		delete(x.shared, fp)
	default:
		delete(x.until, fp)
	}
}

// hitSets and hitWays size the hits cache: 16384 entries, each key in one
// of the four of its set, so that thousands of hot keys fit without
// evicting each other.
const (
	hitSets = 1 << 12
	hitWays = 4
)

// hit is a confirmed entry in the hits cache.
type hit struct {
	key string
	v   value
}

// hitCache holds the entries of keys recently found by lookups, so that a
// key looked up again and again (a revoked token retried, an "all"
// revocation, a subject revoked and signed in again) is answered from
// memory. Readers fill it while holding DB.mu shared; writers drop the
// keys they change while holding it exclusively, after committing, so no
// reader can put back an entry older than the one on disk.
type hitCache struct {
	slots [hitSets * hitWays]atomic.Pointer[hit]
	next  atomic.Uint32 // rotates the way a full set gives up
}

// set returns the slots of fp's set.
func (c *hitCache) set(fp uint64) []atomic.Pointer[hit] {
	i := (fp & (hitSets - 1)) * hitWays
	return c.slots[i : i+hitWays]
}

func (c *hitCache) get(fp uint64, key string) (value, bool) {
	set := c.set(fp)
	for i := range set {
		if h := set[i].Load(); h != nil && h.key == key {
			return h.v, true
		}
	}
	return value{}, false
}

func (c *hitCache) put(fp uint64, key string, v value) {
	set := c.set(fp)
	way := -1
	for i := range set {
		if h := set[i].Load(); h == nil || h.key == key {
			way = i
			break
		}
	}
	if way < 0 {
		way = int(c.next.Add(1) % hitWays)
	}
	set[way].Store(&hit{key: strings.Clone(key), v: v})
}

func (c *hitCache) drop(fp uint64, key string) {
	set := c.set(fp)
	for i := range set {
		if h := set[i].Load(); h != nil && h.key == key {
			set[i].Store(nil)
		}
	}
}

func (c *hitCache) clear() {
	for i := range c.slots {
		c.slots[i].Store(nil)
	}
}
