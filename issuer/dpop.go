package issuer

import (
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/heraldsec/herald/verifier"
)

// DPoP proofs at the token endpoint are remembered only once their key is
// shown to be bound to a valid credential: the session's key for a
// refresh, an authenticated client's for client_credentials. A caller
// without such a credential adds nothing to the cache, so it cannot be
// filled to lock honest clients out.
const (
	// dpopProofWindow is how long after its iat a proof could still be
	// accepted, and so must be remembered: its maximum age plus the
	// leeway for a client clock that runs ahead.
	dpopProofWindow = verifier.DPoPMaxAge + verifier.DefaultLeeway
	// dpopPerKeyMax bounds the proofs remembered per key.
	dpopPerKeyMax = 1024
)

// proofCache remembers the proofs accepted at the token endpoint, per key
// thumbprint, until they could no longer be accepted. It is bounded in
// count: per key, and in all (max). Room is made by forgetting the oldest
// proof of the key that holds the most (or of the key itself, past
// dpopPerKeyMax), and raising that key's floor: a proof of that key whose
// window ends no later than the floor is refused, so a forgotten proof is
// never accepted again. Honest clients use a proof once, right after
// making it, so the floor, under their newest proofs, does not touch them.
// A key past its bound with proofs all as new as the one it presents gets
// that proof refused: the excess of one key is refused, never others.
// It is safe for concurrent use.
type proofCache struct {
	max, perKey int

	mu    sync.Mutex
	keys  map[string]*keyProofs
	total int
	swept time.Time
}

type keyProofs struct {
	seen  map[[16]byte]time.Time // proof id hash → end of its window
	floor time.Time
}

func newProofCache(max, perKey int) *proofCache {
	return &proofCache{max: max, perKey: perKey, keys: make(map[string]*keyProofs)}
}

var (
	errProofReplayed = invalidDPoP("proof replayed")
	errProofOld      = invalidDPoP("proof older than the newest this key used; make a fresh one")
	errProofBurst    = invalidDPoP("too many proofs by this key at once; retry with a fresh proof shortly")
	errProofsFull    = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
		Description: "too many DPoP keys in use at once; retry with a fresh proof"}
)

// record remembers proof p, whose key is bound to a valid credential, and
// refuses it if it was seen before or is below its key's floor.
func (c *proofCache) record(p *verifier.DPoPProof, now time.Time) error {
	until := p.At.Add(dpopProofWindow)
	id := sha256.Sum256([]byte(p.ID))
	var h [16]byte
	copy(h[:], id[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) > time.Second {
		c.sweep(now)
	}
	k := c.keys[p.JKT]
	if k != nil {
		if !until.After(k.floor) {
			return errProofOld
		}
		if t, ok := k.seen[h]; ok && now.Before(t) {
			return errProofReplayed
		}
	}
	if c.total >= c.max || k == nil && len(c.keys) >= 2*c.max {
		c.sweep(now)
		k = c.keys[p.JKT]
	}
	if k == nil {
		if len(c.keys) >= 2*c.max {
			return errProofsFull // only with as many keys in use as the cache holds proofs
		}
		k = &keyProofs{seen: make(map[[16]byte]time.Time)}
		c.keys[p.JKT] = k
	}
	if len(k.seen) >= c.perKey {
		if _, end := oldest(k); !until.After(end) {
			return errProofBurst
		}
		c.forgetOldest(k)
	}
	if c.total >= c.max {
		var big *keyProofs
		for _, o := range c.keys {
			if big == nil || len(o.seen) > len(big.seen) {
				big = o
			}
		}
		c.forgetOldest(big)
		if !until.After(k.floor) { // k was the biggest, and p its oldest
			return errProofOld
		}
	}
	k.seen[h] = until
	c.total++
	return nil
}

// forgetOldest forgets k's proof whose window ends first and raises k's
// floor to it. c.mu is held.
func (c *proofCache) forgetOldest(k *keyProofs) {
	h, end := oldest(k)
	if end.IsZero() {
		return
	}
	delete(k.seen, h)
	c.total--
	if end.After(k.floor) {
		k.floor = end
	}
}

// oldest returns k's proof whose window ends first, and when; a zero time
// when k has none.
func oldest(k *keyProofs) (h [16]byte, end time.Time) {
	for id, t := range k.seen {
		if end.IsZero() || t.Before(end) {
			h, end = id, t
		}
	}
	return h, end
}

// sweep forgets proofs whose window has ended, and keys with neither
// proofs nor a floor still in the future. c.mu is held.
func (c *proofCache) sweep(now time.Time) {
	for jkt, k := range c.keys {
		for h, t := range k.seen {
			if !now.Before(t) {
				delete(k.seen, h)
				c.total--
			}
		}
		if len(k.seen) == 0 && !now.Before(k.floor) {
			delete(c.keys, jkt)
		}
	}
	c.swept = now
}
