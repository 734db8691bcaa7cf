package verifier

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// clock is a settable time source for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// newMemVerifier returns a Verifier trusting k's Ed25519 key, with an
// in-memory denylist and the clock clk.
func newMemVerifier(t *testing.T, k *testKeys, clk *clock) (*Verifier, *KeySet, *store.DB) {
	t.Helper()
	db, err := store.Open("denylist", store.Options{FS: vfs.NewMem(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys := NewKeySet(nil, nil)
	if err := putKey(t, keys, k.EdJWK); err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, Now: clk.Now}, keys, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v, keys, db
}

func TestVerifier_Cache(t *testing.T) {
	k := newTestKeys(t)
	start := time.Now().Truncate(time.Second)

	t.Run("hit, then revoked at once", func(t *testing.T) {
		clk := &clock{now: start}
		v, _, db := newMemVerifier(t, k, clk)
		c := baseClaims(start.Add(-time.Second))
		tok := k.EdToken(t, c)
		for range 3 {
			got, err := v.Verify(t.Context(), tok)
			if err != nil || got.Subject != "alice" || got.ID != c["jti"] {
				t.Fatalf("Verify = %+v, %v", got, err)
			}
			got.Subject = "changed by the caller" // must not reach the cache
		}
		if hits, misses, size := v.CacheStats(); hits != 2 || misses != 1 || size != 1 {
			t.Fatalf("cache hits %d misses %d size %d, want 2, 1, 1", hits, misses, size)
		}
		r := &bus.Revocation{Kind: bus.KindSession, Value: c["sid"].(string), At: start, Until: start.Add(time.Hour)}
		if err := db.Apply(1, []store.Entry{entryFor(r, r.Value)}); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrRevoked) {
			t.Fatalf("Verify of a cached token just revoked = %v, want ErrRevoked", err)
		}
	})

	t.Run("never past exp", func(t *testing.T) {
		clk := &clock{now: start}
		v, _, _ := newMemVerifier(t, k, clk)
		c := baseClaims(start.Add(-time.Minute))
		c["exp"] = start.Add(time.Minute).Unix()
		tok := k.EdToken(t, c)
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		// Within the leeway after exp: the full check still accepts, the
		// cache is not used.
		clk.set(start.Add(time.Minute + time.Second))
		hits, _, _ := v.CacheStats()
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("Verify within leeway = %v", err)
		}
		if h, _, _ := v.CacheStats(); h != hits {
			t.Fatalf("cache used past exp: hits %d → %d", hits, h)
		}
		clk.set(start.Add(time.Minute + DefaultLeeway + time.Second))
		if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrExpired) {
			t.Fatalf("Verify past exp and leeway = %v, want ErrExpired", err)
		}
	})

	t.Run("key removed", func(t *testing.T) {
		clk := &clock{now: start}
		v, keys, _ := newMemVerifier(t, k, clk)
		tok := k.EdToken(t, baseClaims(start))
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		keys.Remove(k.EdKid)
		if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Verify after its key left HERALD_KEYS = %v, want ErrUnknownKey", err)
		}
	})

	t.Run("refusals are not cached", func(t *testing.T) {
		clk := &clock{now: start}
		v, _, _ := newMemVerifier(t, k, clk)
		c := baseClaims(start)
		c["aud"] = "other"
		tok := k.EdToken(t, c)
		for range 2 {
			if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrAudience) {
				t.Fatalf("Verify = %v, want ErrAudience", err)
			}
		}
		if _, _, size := v.CacheStats(); size != 0 {
			t.Fatalf("cache holds %d refused tokens", size)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		v, err := New(Config{Issuer: testIssuer, Audience: testAudience, CacheSize: -1}, NewKeySet(nil, nil), nil, nil)
		if err != nil || v.cache != nil {
			t.Fatalf("New with CacheSize -1: cache %v, err %v", v.cache, err)
		}
	})
}

func TestTokenCache_Bounded(t *testing.T) {
	c := newTokenCache(64)
	for i := range 10_000 {
		h := sha256.Sum256(fmt.Appendf(nil, "token-%d", i))
		c.put(&h, &cacheEntry{exp: 1 << 62})
		if n := c.len(); n > 64 {
			t.Fatalf("after %d puts the cache holds %d entries, bound 64", i+1, n)
		}
	}
	last := sha256.Sum256([]byte("token-9999"))
	if _, ok := c.get(&last, 0); !ok {
		t.Fatal("the newest entry was evicted")
	}
	if _, ok := c.get(&last, 1<<62); ok {
		t.Fatal("entry used at its exp")
	}
}
