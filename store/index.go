package store

import (
	"hash/maphash"
	"strings"
	"sync/atomic"
)

// index is the in-memory part of a denylist: a 64-bit fingerprint of every
// key held, made by the DB's fingerprinter. It holds no key and no times,
// so a million entries take 16 MiB rather than hundreds.
//
// A fingerprint says only that a key may be held: a key missing from the
// index is not held (the answer of almost every lookup, from memory), and
// a key found is confirmed, and its entry read, from Pebble or from the
// hits cache. Two keys with one fingerprint are told apart that way too.
type index struct {
	fps fpSet
	// shared counts the keys of the fingerprints more than one key has.
	shared map[uint64]int
	n      int // keys held, expired ones included until pruned
}

// newIndex returns an empty index.
func newIndex() index { return index{shared: make(map[uint64]int)} }

// fingerprinter makes the fingerprints of a DB's keys: a hash with a seed
// of this process. It never changes once the DB is open, so lookups use it
// without a lock.
type fingerprinter struct {
	seed maphash.Seed
	mix  func(uint64) uint64 // fingerprintHook, when a test set one
}

// newFingerprinter returns a fingerprinter with a new seed.
func newFingerprinter() fingerprinter {
	return fingerprinter{seed: maphash.MakeSeed(), mix: fingerprintHook}
}

// fingerprintHook, when set by a test before Open, maps the fingerprints
// of the DBs opened then, to force collisions.
var fingerprintHook func(uint64) uint64

// hash returns the fingerprint of key: never 0, which marks an empty slot.
func (f fingerprinter) hash(key string) uint64 {
	h := maphash.String(f.seed, key)
	if f.mix != nil {
		h = f.mix(h)
	}
	return max(h, 1)
}

// has reports whether a key with fingerprint fp may be held.
func (x *index) has(fp uint64) bool { return x.fps.has(fp) }

// add records that a key with fingerprint fp, not held before, is held.
func (x *index) add(fp uint64) {
	x.n++
	if x.fps.insert(fp) {
		return
	}
	if c := x.shared[fp]; c > 0 {
		x.shared[fp] = c + 1
	} else {
		x.shared[fp] = 2
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
		x.fps.delete(fp)
	}
}

// fpSet is a set of nonzero fingerprints in one flat slice, with linear
// probing from slot fp mod its size (a power of two), at most three
// quarters full: 8 bytes a slot, no pointers for the collector to scan.
type fpSet struct {
	slots []uint64 // 0: empty
	n     int
}

func (s *fpSet) has(fp uint64) bool {
	if len(s.slots) == 0 || fp == 0 {
		return false
	}
	mask := uint64(len(s.slots) - 1)
	for i := fp & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case fp:
			return true
		case 0:
			return false
		}
	}
}

// insert adds fp, reporting false if it was already there.
func (s *fpSet) insert(fp uint64) bool {
	if (s.n+1)*4 > len(s.slots)*3 {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	i := fp & mask
	for ; s.slots[i] != 0; i = (i + 1) & mask {
		if s.slots[i] == fp {
			return false
		}
	}
	s.slots[i] = fp
	s.n++
	return true
}

// delete removes fp, if there, moving back the fingerprints after it that
// probed past its slot, so that no search stops short of them.
func (s *fpSet) delete(fp uint64) {
	if len(s.slots) == 0 {
		return
	}
	mask := uint64(len(s.slots) - 1)
	i := fp & mask
	for ; s.slots[i] != fp; i = (i + 1) & mask {
		if s.slots[i] == 0 {
			return
		}
	}
	for j := (i + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask {
		// j's fingerprint moves back to i unless its home slot lies
		// cyclically in (i, j]: its search would not pass i.
		home := s.slots[j] & mask
		if (i < j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = 0
	s.n--
}

func (s *fpSet) grow() {
	old := s.slots
	s.slots, s.n = make([]uint64, max(16, 2*len(old))), 0
	for _, fp := range old {
		if fp != 0 {
			s.insert(fp)
		}
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
