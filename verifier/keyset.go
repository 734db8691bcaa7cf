package verifier

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// MaxLifetime bounds exp - iat of the tokens the key signs, as its
	// signed entry states (bus.KeyEntry); 0 for event keys.
	MaxLifetime time.Duration
	// EventKid is the event key that signed the key's entry.
	EventKid string
	// NotAfter, for an event key trusted by a root certificate that
	// expires, is that expiry.
	NotAfter time.Time
	// Issuer is, for a trusted external issuer's key, that issuer: the
	// only iss whose tokens the key verifies. Empty for Herald's keys.
	Issuer string
	// entry is the bucket entry name the key came from.
	entry string
}

// KeySet holds the public keys published in HERALD_KEYS. Keys come only
// from the bucket, never from token headers (RFC 8725 section 3.10). It is
// safe for concurrent use.
//
// The bucket holds two kinds of keys. Event keys (named bus.EventKeyPrefix
// plus their thumbprint) sign events and token key entries; a KeySet
// trusts those pinned with TrustEventKeys, or, when none are pinned, the
// ones it finds first (trust on first use: those in the bucket when it
// starts, or the first to appear if there are none). Token keys sign
// access tokens; each entry must be signed by a trusted event key, so that
// publish rights on NATS are not enough to make verifiers trust a key.
//
// With root keys pinned (TrustRootKeys), an event key is also trusted
// while a pinned root key certifies it for this deployment's issuer
// (bus.EventCertPrefix entries), and
// an event key a pinned root key revoked (bus.RevokedEventKeyPrefix) is
// never trusted again, pinned or not, nor any token key it signed.
type KeySet struct {
	mu      sync.RWMutex
	keys    map[string]*Key
	events  map[string]*Key   // trusted event keys, by kid
	pending map[string][]byte // token key entries signed by an event key not (yet) trusted
	pins    map[string]bool   // pinned event key kids; empty: trust on first use
	revoked map[string]bool   // token keys revoked for good: never trusted again
	roots   map[string]bool   // pinned root key kids
	issuer  string            // the iss a root certificate must name
	// eventRevoked holds the event keys a pinned root key revoked: never
	// trusted again. untrusted holds event keys seen and refused (not
	// pinned, not certified), at most maxUntrusted: what they sign is
	// positively forged, where a key not seen at all may still arrive.
	eventRevoked map[string]bool
	untrusted    map[string]bool
	tofu         bool // trust on first use still open
	denied       func(kid string) bool
	// trusts holds the trusted external issuers, by issuer, and external
	// their keys, by issuer then provider kid (external.go).
	trusts     map[string]*trusted
	trustNames map[string]string // trust entry name -> issuer
	external   map[string]map[string]*Key
	extNames   map[string]*Key // external key entry name -> key
	log        *slog.Logger
	loaded     atomic.Bool
	ready      chan struct{} // closed once loaded
	lastErr    atomic.Pointer[string]
	bad        atomic.Uint64
}

// NewKeySet returns an empty key set. denied, if not nil, reports keys that
// were revoked: they are never added again.
func NewKeySet(denied func(kid string) bool, log *slog.Logger) *KeySet {
	if log == nil {
		log = slog.Default()
	}
	return &KeySet{keys: make(map[string]*Key), events: make(map[string]*Key), pending: make(map[string][]byte),
		pins: make(map[string]bool), revoked: make(map[string]bool), roots: make(map[string]bool),
		eventRevoked: make(map[string]bool), untrusted: make(map[string]bool), tofu: true, denied: denied, log: log, ready: make(chan struct{}),
		trusts: make(map[string]*trusted), trustNames: make(map[string]string),
		external: make(map[string]map[string]*Key), extNames: make(map[string]*Key)}
}

// TrustEventKeys pins the event keys the set trusts, by kid (the key's RFC
// 7638 thumbprint): only events and token keys signed by one of them are
// accepted. Call it before Watch. Without pins the set trusts on first use.
func (ks *KeySet) TrustEventKeys(kids ...string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, kid := range kids {
		if kid != "" {
			ks.pins[kid] = true
			ks.tofu = false
		}
	}
}

// maxUntrusted bounds the refused event keys a KeySet remembers.
const maxUntrusted = 1024

// TrustRootKeys pins root keys by kid: event keys they certify for
// issuer (the iss of this deployment's tokens) are trusted, and event keys
// they revoke never are. A certificate for another issuer, or for none, is
// refused: a root key pinned by several deployments certifies for one.
// Call it before Watch. With root keys pinned the set does not trust on
// first use.
func (ks *KeySet) TrustRootKeys(issuer string, kids ...string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.issuer = issuer
	for _, kid := range kids {
		if kid != "" {
			ks.roots[kid] = true
			ks.tofu = false
		}
	}
}

// rootPinned is a bus.RootKeyFunc.
func (ks *KeySet) rootPinned(kid string) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.roots[kid]
}

// markUntrusted records an event key seen and refused. The caller holds mu.
func (ks *KeySet) markUntrusted(kid string) {
	if len(ks.untrusted) < maxUntrusted {
		ks.untrusted[kid] = true
	}
}

// Untrusted reports whether event key kid is positively not trusted: a
// pinned root key revoked it, or it was seen in the bucket and refused.
// What it signs is forged; what an event key never seen signs may just
// be early.
func (ks *KeySet) Untrusted(kid string) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.eventRevoked[kid] || ks.untrusted[kid]
}

// EventKeyRevoked reports whether a pinned root key revoked event key kid.
func (ks *KeySet) EventKeyRevoked(kid string) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.eventRevoked[kid]
}

// AddEventKey trusts the event key jwk (with public key pub) whatever the
// pins or the trust on first use say: an issuer's own key, which it holds
// before the bucket does. Token keys it signed that were waiting are added.
func (ks *KeySet) AddEventKey(jwk bus.JWK, pub crypto.PublicKey) error {
	if jwk.Kid != jwk.Thumbprint() {
		return fmt.Errorf("event key %s: kid is not the key's thumbprint", jwk.Kid)
	}
	ks.mu.Lock()
	if ks.eventRevoked[jwk.Kid] {
		ks.mu.Unlock()
		return fmt.Errorf("event key %s: %w", jwk.Kid, errEventKeyRevoked)
	}
	ks.events[jwk.Kid] = &Key{ID: jwk.Kid, Algorithm: jwk.Alg, Public: pub, JWK: jwk}
	retry := ks.pending
	ks.pending = make(map[string][]byte)
	ks.mu.Unlock()
	ks.retryPending(retry)
	return nil
}

// EventKey returns the trusted event key with the given kid; its signature
// is a bus.EventKeyFunc.
func (ks *KeySet) EventKey(kid string) (bus.JWK, crypto.PublicKey, bool) {
	ks.mu.RLock()
	k, ok := ks.events[kid]
	ks.mu.RUnlock()
	if !ok || (!k.NotAfter.IsZero() && !time.Now().Before(k.NotAfter)) {
		return bus.JWK{}, nil, false
	}
	return k.JWK, k.Public, true
}

// EventKeys returns the kids of the trusted event keys.
func (ks *KeySet) EventKeys() []string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]string, 0, len(ks.events))
	for kid := range ks.events {
		out = append(out, kid)
	}
	return out
}

// LastError returns why watching the bucket last failed, if it did.
func (ks *KeySet) LastError() string {
	if p := ks.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Ready returns a channel closed once the initial contents of the bucket
// have been read.
func (ks *KeySet) Ready() <-chan struct{} { return ks.ready }

// Get returns the key with the given kid. A token key whose entry was
// signed by an event key trusted through a root certificate ends with that
// certificate, as the event key does.
func (ks *KeySet) Get(kid string) (*Key, bool) {
	ks.mu.RLock()
	k, ok := ks.keys[kid]
	var signer *Key
	if ok {
		signer = ks.events[k.EventKid]
	}
	ks.mu.RUnlock()
	if signer != nil && !signer.NotAfter.IsZero() && !time.Now().Before(signer.NotAfter) {
		return nil, false
	}
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

// Loaded reports whether the initial contents of the bucket have been read
// and the set trusts an event key: without one, no revocation can be
// checked, so a verifier must not give verdicts.
func (ks *KeySet) Loaded() bool {
	if !ks.loaded.Load() {
		return false
	}
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return len(ks.events) > 0
}

// Put parses and adds an entry of HERALD_KEYS stored under name: an event
// key, a token key signed by a trusted event key, or, signed the same way,
// the trust entry of an external issuer (bus.TrustPrefix) or one of its
// keys (bus.ExternalKeyPrefix). An entry that fails to
// parse, is stored under another name, is signed by no trusted event key,
// or is a revoked key, is refused. A token key signed by an event key not
// trusted yet is kept aside and added if that key becomes trusted.
func (ks *KeySet) Put(name string, data []byte) error {
	if strings.HasPrefix(name, bus.EventKeyPrefix) {
		return ks.putEventKey(name, data)
	}
	if strings.HasPrefix(name, bus.EventCertPrefix) {
		return ks.putEventCert(name, data)
	}
	if strings.HasPrefix(name, bus.RevokedEventKeyPrefix) {
		kid, err := bus.OpenEventKeyRevocation(name, data, ks.rootPinned)
		if err != nil {
			return err
		}
		ks.revokeEventKey(kid)
		return nil
	}
	if strings.HasPrefix(name, bus.RevokedKeyPrefix) {
		kid, err := bus.ParseRevokedKey(name, data)
		if err != nil {
			return err
		}
		ks.Revoke(kid)
		return nil
	}
	if strings.HasPrefix(name, bus.TrustPrefix) {
		return ks.putTrust(name, data)
	}
	entry, err := bus.OpenKeyEntry(name, data, ks.EventKey)
	jwk := entry.JWK
	if errors.Is(err, bus.ErrUntrusted) {
		ks.mu.Lock()
		ks.pending[name] = data
		ks.mu.Unlock()
	}
	if err != nil {
		return err
	}
	if entry.Issuer != "" {
		return ks.putExternalKey(name, entry)
	}
	if ks.denied != nil && ks.denied(jwk.Kid) {
		return fmt.Errorf("key %s: revoked", jwk.Kid)
	}
	ks.mu.Lock()
	if ks.revoked[jwk.Kid] {
		delete(ks.pending, name)
		ks.mu.Unlock()
		return fmt.Errorf("key %s: revoked", jwk.Kid)
	}
	delete(ks.pending, name)
	ks.keys[jwk.Kid] = &Key{ID: jwk.Kid, Algorithm: jwk.Alg, Public: entry.Public, JWK: jwk,
		MaxLifetime: entry.MaxLifetime, EventKid: entry.EventKid, entry: name}
	ks.mu.Unlock()
	return nil
}

// errNotPinned refuses an event key that is neither pinned nor trusted on
// first use.
var errNotPinned = errors.New("event key not trusted: pin it with --event-keys or certify it with a root key")

// errEventKeyRevoked refuses an event key a pinned root key revoked.
var errEventKeyRevoked = errors.New("event key revoked by a root key")

// putEventCert trusts the event key a pinned root key certifies for this
// deployment's issuer.
func (ks *KeySet) putEventCert(name string, data []byte) error {
	ks.mu.RLock()
	issuer := ks.issuer
	ks.mu.RUnlock()
	jwk, pub, exp, err := bus.OpenEventKeyCert(name, data, issuer, ks.rootPinned, time.Now())
	if err != nil {
		return err
	}
	ks.mu.Lock()
	if ks.eventRevoked[jwk.Kid] {
		ks.mu.Unlock()
		return fmt.Errorf("event key %s: %w", jwk.Kid, errEventKeyRevoked)
	}
	ks.events[jwk.Kid] = &Key{ID: jwk.Kid, Algorithm: jwk.Alg, Public: pub, JWK: jwk, NotAfter: exp}
	delete(ks.untrusted, jwk.Kid)
	retry := ks.pending
	ks.pending = make(map[string][]byte)
	ks.mu.Unlock()
	ks.log.Info("event key certified by a root key", "event_kid", jwk.Kid)
	ks.retryPending(retry)
	return nil
}

// revokeEventKey stops trusting event key kid for good, and drops the
// token keys whose entries it signed: an issuer with a new event key
// signs them again.
func (ks *KeySet) revokeEventKey(kid string) {
	ks.mu.Lock()
	ks.eventRevoked[kid] = true
	delete(ks.events, kid)
	dropped := 0
	for id, k := range ks.keys {
		if k.EventKid == kid {
			delete(ks.keys, id)
			dropped++
		}
	}
	dropped += ks.dropSignedBy(kid)
	ks.mu.Unlock()
	ks.log.Warn("event key revoked by a root key", "event_kid", kid, "token_keys_dropped", dropped)
}

func (ks *KeySet) putEventKey(name string, data []byte) error {
	jwk, pub, err := bus.ParseEventKey(name, data)
	if err != nil {
		return err
	}
	ks.mu.Lock()
	if ks.eventRevoked[jwk.Kid] {
		ks.mu.Unlock()
		return fmt.Errorf("event key %s: %w", jwk.Kid, errEventKeyRevoked)
	}
	if _, ok := ks.events[jwk.Kid]; ok {
		ks.mu.Unlock()
		return nil
	}
	trusted := ks.pins[jwk.Kid] || ks.tofu
	if !trusted {
		ks.markUntrusted(jwk.Kid)
		ks.mu.Unlock()
		return fmt.Errorf("event key %s: %w", jwk.Kid, errNotPinned)
	}
	if !ks.pins[jwk.Kid] {
		ks.log.Warn("event key trusted on first use; pin event keys with --event-keys", "event_kid", jwk.Kid)
	}
	ks.events[jwk.Kid] = &Key{ID: jwk.Kid, Algorithm: jwk.Alg, Public: pub, JWK: jwk}
	if ks.loaded.Load() {
		ks.tofu = false // none existed at start: this first one is trusted, later ones are not
	}
	retry := ks.pending
	ks.pending = make(map[string][]byte)
	ks.mu.Unlock()
	ks.retryPending(retry)
	return nil
}

// retryPending puts again the token key entries that waited for an event
// key: those it signed are trusted now, the others wait on.
func (ks *KeySet) retryPending(entries map[string][]byte) {
	for name, data := range entries {
		if err := ks.Put(name, data); err == nil {
			ks.log.Info("key trusted", "kid", name)
		}
	}
}

// Revoke drops token key kid and refuses it from then on, for as long as
// the set lives, whatever the bucket holds later. kid may also be
// bus.RevokedExternalKid of an external issuer's key, which is dropped and
// refused the same way.
func (ks *KeySet) Revoke(kid string) {
	ks.mu.Lock()
	ks.revoked[kid] = true
	delete(ks.keys, kid)
	delete(ks.pending, kid)
	if strings.HasPrefix(kid, bus.RevokedExternalPrefix) {
		for name, k := range ks.extNames {
			if bus.RevokedExternalKid(k.Issuer, k.ID) == kid {
				ks.removeExternal(name)
			}
		}
	}
	ks.mu.Unlock()
}

// Revoked reports whether token key kid was revoked (Revoke).
func (ks *KeySet) Revoked(kid string) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.revoked[kid]
}

// Remove drops the key stored under name, or the trust entry: the
// issuer's tokens are refused from then on. Event keys stay trusted for
// as long as the set lives: deleting one from the bucket must not make a
// verifier drop the revocations it signed.
func (ks *KeySet) Remove(name string) {
	ks.mu.Lock()
	delete(ks.keys, name)
	delete(ks.pending, name)
	ks.removeExternal(name)
	ks.mu.Unlock()
}

// names returns the names of the entries the set holds keys and trusts
// from, but event keys.
func (ks *KeySet) names() []string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]string, 0, len(ks.keys)+len(ks.trustNames)+len(ks.extNames))
	for kid := range ks.keys {
		out = append(out, kid)
	}
	for name := range ks.trustNames {
		out = append(out, name)
	}
	for name := range ks.extNames {
		out = append(out, name)
	}
	return out
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
		msg := err.Error()
		ks.lastErr.Store(&msg)
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
					for _, name := range ks.names() {
						if !seen[name] {
							ks.Remove(name)
						}
					}
					initial = false
					seen = nil
					ks.markLoaded()
				}
				continue
			}
			if initial {
				seen[e.Key()] = true
			}
			switch e.Operation() {
			case jetstream.KeyValuePut:
				if err := ks.Put(e.Key(), e.Value()); errors.Is(err, bus.ErrUntrusted) && initial {
					ks.log.Debug("key waits for its event key", "kid", e.Key())
				} else if err != nil {
					ks.bad.Add(1)
					ks.log.Warn("key refused", "kid", e.Key(), "err", err)
				} else if strings.HasPrefix(e.Key(), bus.RevokedKeyPrefix) {
					ks.log.Info("key revoked for good", "name", e.Key())
				} else {
					ks.log.Info("key trusted", "kid", e.Key())
				}
			case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
				if strings.HasPrefix(e.Key(), bus.EventKeyPrefix) {
					ks.log.Warn("event key deleted from the bucket; it stays trusted", "name", e.Key())
					continue
				}
				if strings.HasPrefix(e.Key(), bus.RevokedKeyPrefix) {
					ks.log.Warn("revoked key record deleted from the bucket; the key stays refused", "name", e.Key())
					continue
				}
				if strings.HasPrefix(e.Key(), bus.EventCertPrefix) {
					ks.log.Warn("event key certificate deleted from the bucket; it stays trusted until it expires", "name", e.Key())
					continue
				}
				ks.Remove(e.Key())
				ks.log.Info("key removed", "kid", e.Key())
			}
		}
	}
}

// markLoaded records that the initial contents of the bucket are in: trust
// on first use closes if it found an event key, and token keys still
// waiting for an event key are reported.
func (ks *KeySet) markLoaded() {
	ks.mu.Lock()
	if len(ks.events) > 0 {
		ks.tofu = false
	}
	waiting := len(ks.pending)
	ks.mu.Unlock()
	if ks.loaded.Swap(true) {
		return
	}
	close(ks.ready)
	if waiting > 0 {
		ks.bad.Add(uint64(waiting))
		ks.log.Warn("token keys signed by no trusted event key refused", "count", waiting)
	}
	ks.log.Debug("keys loaded", "count", len(ks.Keys()), "event_keys", len(ks.EventKeys()))
}

// maxLifetime is the longest exp - iat of a token k signs.
func (k *Key) maxLifetime() time.Duration {
	if k.MaxLifetime > 0 {
		return k.MaxLifetime
	}
	return bus.DefaultMaxTokenLifetime
}
