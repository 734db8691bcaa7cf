package verifier

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// Key is a public key a verifier trusts.
type Key struct {
	ID        string
	Algorithm string
	Public    crypto.PublicKey
	JWK       bus.JWK
}

// KeySet holds the public keys published in HERALD_KEYS. Keys come only
// from the bucket, never from token headers (RFC 8725 section 3.10). It is
// safe for concurrent use.
type KeySet struct {
	mu     sync.RWMutex
	keys   map[string]*Key
	denied func(kid string) bool
	log    *slog.Logger
	loaded atomic.Bool
	bad    atomic.Uint64
}

// NewKeySet returns an empty key set. denied, if not nil, reports keys that
// were revoked: they are never added again.
func NewKeySet(denied func(kid string) bool, log *slog.Logger) *KeySet {
	if log == nil {
		log = slog.Default()
	}
	return &KeySet{keys: make(map[string]*Key), denied: denied, log: log}
}

// Get returns the key with the given kid.
func (ks *KeySet) Get(kid string) (*Key, bool) {
	ks.mu.RLock()
	k, ok := ks.keys[kid]
	ks.mu.RUnlock()
	return k, ok
}

// Keys returns every key held, in no particular order.
func (ks *KeySet) Keys() []*Key {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]*Key, 0, len(ks.keys))
	for _, k := range ks.keys {
		out = append(out, k)
	}
	return out
}

// Loaded reports whether the initial contents of the bucket have been read.
func (ks *KeySet) Loaded() bool { return ks.loaded.Load() }

// Put parses and adds a key in its HERALD_KEYS form. A key that fails to
// parse, whose kid differs from name, or that was revoked, is refused.
func (ks *KeySet) Put(name string, data []byte) error {
	jwk, pub, err := bus.ParseJWK(data)
	if err != nil {
		return err
	}
	if jwk.Kid != name {
		return fmt.Errorf("key %s: stored under %q", jwk.Kid, name)
	}
	if ks.denied != nil && ks.denied(jwk.Kid) {
		return fmt.Errorf("key %s: revoked", jwk.Kid)
	}
	ks.mu.Lock()
	ks.keys[jwk.Kid] = &Key{ID: jwk.Kid, Algorithm: jwk.Alg, Public: pub, JWK: jwk}
	ks.mu.Unlock()
	return nil
}

// Remove drops the key with the given kid.
func (ks *KeySet) Remove(kid string) {
	ks.mu.Lock()
	delete(ks.keys, kid)
	ks.mu.Unlock()
}

// Watch follows the HERALD_KEYS bucket until ctx ends, keeping the set equal
// to the bucket. Malformed keys are logged, counted and ignored. It retries
// while the bucket does not exist or NATS is unreachable.
func (ks *KeySet) Watch(ctx context.Context, conn *bus.Conn) error {
	for {
		err := ks.watch(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		ks.log.Warn("key watch interrupted; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (ks *KeySet) watch(ctx context.Context, conn *bus.Conn) error {
	kv, err := conn.Keys(ctx)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bus.BucketKeys, err)
	}
	defer w.Stop()
	seen := make(map[string]bool)
	initial := true
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("key watcher closed")
			}
			if e == nil { // end of the initial values
				if initial {
					// Keys deleted while we were not watching are gone.
					for _, k := range ks.Keys() {
						if !seen[k.ID] {
							ks.Remove(k.ID)
						}
					}
					initial = false
					seen = nil
					ks.loaded.Store(true)
					ks.log.Debug("keys loaded", "count", len(ks.Keys()))
				}
				continue
			}
			if initial {
				seen[e.Key()] = true
			}
			switch e.Operation() {
			case jetstream.KeyValuePut:
				if err := ks.Put(e.Key(), e.Value()); err != nil {
					ks.bad.Add(1)
					ks.log.Warn("key refused", "kid", e.Key(), "err", err)
				} else {
					ks.log.Info("key trusted", "kid", e.Key())
				}
			case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
				ks.Remove(e.Key())
				ks.log.Info("key removed", "kid", e.Key())
			}
		}
	}
}
