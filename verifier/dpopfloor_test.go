package verifier

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestDPoPReplay_FullCacheKeepsOtherKeysProofs: clients that keep a full
// replay cache full with fresh proofs of many keys make room from their
// own keys only. An honest client's proof older than all of theirs, yet
// within the accepted window, is still accepted; every proof the cache
// had to forget stays refused to its key; and the cache's maps stay
// bounded, keys that hold only a floor included, until that floor is past.
func TestDPoPReplay_FullCacheKeepsOtherKeysProofs(t *testing.T) {
	const size, perKey = 64, 8
	c := NewReplayCache(size)
	c.perKey = perKey
	now := time.Now()
	window := DPoPMaxAge + DefaultLeeway
	bounded := func(when string) {
		t.Helper()
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.order) > size || len(c.keys) > 2*size {
			t.Fatalf("%s: %d proofs of %d keys, bounds %d and %d", when, len(c.order), len(c.keys), size, 2*size)
		}
	}

	// Attackers: 16 keys of 8 fresh proofs each, twice the cache's size.
	var attacker []*DPoPProof
	for i := range 2 * size {
		p := &DPoPProof{JKT: fmt.Sprintf("attacker-%d", i%16), ID: fmt.Sprint("a", i), At: now.Add(-time.Second + time.Duration(i)*time.Millisecond)}
		if err := c.Use(p, now); err != nil {
			t.Fatalf("attacker proof %d: %v", i, err)
		}
		attacker = append(attacker, p)
		bounded("attacker")
	}
	// An honest client whose proof is 30 s old, older than every
	// attacker's, but well within DPoPMaxAge.
	honest := &DPoPProof{JKT: "honest", ID: "h0", At: now.Add(-30 * time.Second)}
	if err := c.Use(honest, now); err != nil {
		t.Fatalf("a cache full of other keys' proofs refused an honest proof within the window: %v", err)
	}
	if err := c.Use(honest, now); !errors.Is(err, ErrDPoPProof) {
		t.Fatalf("honest proof replayed: %v, want refused", err)
	}
	// Every attacker proof, held or forgotten, is refused when replayed.
	for i, p := range attacker {
		if err := c.Use(p, now); !errors.Is(err, ErrDPoPProof) {
			t.Fatalf("replay of attacker proof %d: %v, want refused", i, err)
		}
	}
	bounded("replays")

	// Keys of one proof each fill the cache, then as many new keys again:
	// each makes room by forgetting a key's only proof, leaving that key a
	// floor alone. Those floors still refuse the forgotten proofs.
	later := now.Add(2 * window)
	var single []*DPoPProof
	for i := range 3 * size {
		p := &DPoPProof{JKT: fmt.Sprint("single-", i), ID: "s", At: later.Add(-time.Second + time.Duration(i)*time.Millisecond)}
		err := c.Use(p, later)
		switch {
		case i < 2*size && err != nil:
			t.Fatalf("single-proof key %d: %v", i, err)
		case i >= 2*size && !errors.Is(err, ErrDPoPProof):
			// Past 2*size keys, a new key is refused rather than
			// letting the keys map grow.
			t.Fatalf("key %d beyond the key bound: %v, want refused", i, err)
		}
		single = append(single, p)
		bounded("single-proof keys")
	}
	for i, p := range single[:size] {
		if err := c.Use(p, later); !errors.Is(err, ErrDPoPProof) {
			t.Fatalf("replay of forgotten proof %d by its key: %v, want refused", i, err)
		}
	}
	bounded("forgotten replays")

	// Once every floor is past, the keys that hold only a floor go.
	end := later.Add(2 * window)
	if err := c.Use(&DPoPProof{JKT: "honest", ID: "h1", At: end}, end); err != nil {
		t.Fatalf("fresh proof after the window: %v", err)
	}
	c.mu.Lock()
	n, k := len(c.order), len(c.keys)
	c.mu.Unlock()
	if n != 1 || k != 1 {
		t.Fatalf("after every proof and floor expired: %d proofs of %d keys, want 1 of 1", n, k)
	}
}
