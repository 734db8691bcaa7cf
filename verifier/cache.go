package verifier

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"

	"github.com/heraldsec/herald/bus"
)

// DefaultCacheSize is how many verified tokens a Verifier remembers.
const DefaultCacheSize = 16384

// cacheShards splits the cache so that concurrent requests rarely meet on
// one lock. A power of two.
const cacheShards = 16

// tokenCache remembers tokens whose signature, header and claims have been
// checked, keyed by the SHA-256 of the token, so that a repeated token
// skips signature verification. It never holds a verdict: the denylist is
// checked on every request, after a hit. An entry is used only before its
// token's exp and only while the key that verified it is still trusted.
// Eviction is first in, first out per shard; the cache never holds more
// than its size.
type tokenCache struct {
	shards       [cacheShards]cacheShard
	hits, misses atomic.Uint64
}

type cacheShard struct {
	mu   sync.RWMutex
	m    map[[sha256.Size]byte]*cacheEntry
	ring [][sha256.Size]byte // insertion order, for eviction
	next int                 // the ring slot the next insertion takes
}

type cacheEntry struct {
	claims Claims
	key    *Key       // the key the signature verified with
	trust  *bus.Trust // for an external issuer's token, its trust entry
	exp    int64      // the token's exp, unix nanoseconds
}

// newTokenCache returns a cache of at most size entries (rounded up to a
// multiple of cacheShards), or nil when size is not positive.
func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	per := (size + cacheShards - 1) / cacheShards
	c := &tokenCache{}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*cacheEntry, per)
		c.shards[i].ring = make([][sha256.Size]byte, per)
	}
	return c
}

func (c *tokenCache) shard(h *[sha256.Size]byte) *cacheShard {
	return &c.shards[h[0]%cacheShards]
}

// get returns the entry for the token hashed to h if it is usable at now
// (unix nanoseconds).
func (c *tokenCache) get(h *[sha256.Size]byte, now int64) (*cacheEntry, bool) {
	s := c.shard(h)
	s.mu.RLock()
	e, ok := s.m[*h]
	s.mu.RUnlock()
	if !ok || now >= e.exp {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e, true
}

// put remembers e for the token hashed to h, evicting the oldest entry of
// its shard when the shard is full.
func (c *tokenCache) put(h *[sha256.Size]byte, e *cacheEntry) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[*h]; ok {
		s.m[*h] = e
		return
	}
	if len(s.m) >= len(s.ring) {
		delete(s.m, s.ring[s.next])
	}
	s.m[*h] = e
	s.ring[s.next] = *h
	s.next = (s.next + 1) % len(s.ring)
}

// len returns the number of entries held.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
