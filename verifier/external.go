package verifier

import (
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/heraldsec/herald/bus"
)

// Bounds of what a KeySet holds of external issuers.
const (
	// MaxTrustedIssuers bounds the external issuers a KeySet trusts, and
	// the issuers it holds keys of.
	MaxTrustedIssuers = 256
	// MaxExternalKeys bounds the keys a KeySet holds per external issuer.
	MaxExternalKeys = 64
)

// trusted is a trust entry after its checks.
type trusted struct {
	trust    *bus.Trust
	eventKid string // the event key that signed the entry
	entry    string
}

// Errors of external issuers' entries.
var (
	errTooManyIssuers = fmt.Errorf("more than %d external issuers", MaxTrustedIssuers)
	errTooManyKeys    = fmt.Errorf("more than %d keys of one external issuer", MaxExternalKeys)
)

// signerOf wraps ks.EventKey to record the kid of the event key that an
// entry's signature was checked with.
func (ks *KeySet) signerOf(kid *string) bus.EventKeyFunc {
	return func(k string) (bus.JWK, crypto.PublicKey, bool) {
		*kid = k
		return ks.EventKey(k)
	}
}

// putTrust adds the trust entry stored under name. One signed by an
// event key not trusted yet waits as token keys do.
func (ks *KeySet) putTrust(name string, data []byte) error {
	var signer string
	t, err := bus.OpenTrust(name, data, ks.signerOf(&signer))
	if errors.Is(err, bus.ErrUntrusted) {
		ks.mu.Lock()
		ks.pending[name] = data
		ks.mu.Unlock()
	}
	if err != nil {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	delete(ks.pending, name)
	if _, ok := ks.trusts[t.Issuer]; !ok && len(ks.trusts) >= MaxTrustedIssuers {
		return fmt.Errorf("trust %s: %w", t.Issuer, errTooManyIssuers)
	}
	ks.trusts[t.Issuer] = &trusted{trust: t, eventKid: signer, entry: name}
	ks.trustNames[name] = t.Issuer
	return nil
}

// putExternalKey adds the checked key entry e of an external issuer,
// stored under name. The caller holds no lock.
func (ks *KeySet) putExternalKey(name string, e bus.KeyEntry) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	delete(ks.pending, name)
	if ks.revoked[bus.RevokedExternalKid(e.Issuer, e.JWK.Kid)] {
		return fmt.Errorf("key %s of %s: revoked", truncate(e.JWK.Kid, 64), e.Issuer)
	}
	keys := ks.external[e.Issuer]
	if keys == nil {
		if len(ks.external) >= MaxTrustedIssuers {
			return fmt.Errorf("key %s of %s: %w", truncate(e.JWK.Kid, 64), e.Issuer, errTooManyIssuers)
		}
		keys = make(map[string]*Key)
		ks.external[e.Issuer] = keys
	}
	old := keys[e.JWK.Kid]
	if old == nil && len(keys) >= MaxExternalKeys {
		return fmt.Errorf("key %s of %s: %w", truncate(e.JWK.Kid, 64), e.Issuer, errTooManyKeys)
	}
	if old != nil && old.entry != name {
		delete(ks.extNames, old.entry) // another key under the same kid replaces it
	}
	k := &Key{ID: e.JWK.Kid, Algorithm: e.JWK.Alg, Public: e.Public, JWK: e.JWK, MaxLifetime: e.MaxLifetime,
		EventKid: e.EventKid, Issuer: e.Issuer, entry: name}
	keys[k.ID] = k
	ks.extNames[name] = k
	return nil
}

// removeExternal drops the trust or external key entry stored under name,
// if the set holds one. The caller holds mu.
func (ks *KeySet) removeExternal(name string) {
	if iss, ok := ks.trustNames[name]; ok {
		delete(ks.trustNames, name)
		if t := ks.trusts[iss]; t != nil && t.entry == name {
			delete(ks.trusts, iss)
		}
	}
	if k, ok := ks.extNames[name]; ok {
		delete(ks.extNames, name)
		if keys := ks.external[k.Issuer]; keys != nil && keys[k.ID] == k {
			delete(keys, k.ID)
			if len(keys) == 0 {
				delete(ks.external, k.Issuer)
			}
		}
	}
}

// dropSignedBy drops the trusts and external keys whose entries event key
// kid signed, and returns how many. The caller holds mu.
func (ks *KeySet) dropSignedBy(kid string) int {
	n := 0
	for name, iss := range ks.trustNames {
		if t := ks.trusts[iss]; t != nil && t.eventKid == kid {
			ks.removeExternal(name)
			n++
		}
	}
	for name, k := range ks.extNames {
		if k.EventKid == kid {
			ks.removeExternal(name)
			n++
		}
	}
	return n
}

// expired reports whether the event key kid, trusted through a root
// certificate that expires, has expired. The caller holds mu shared.
func (ks *KeySet) expired(kid string, now time.Time) bool {
	signer := ks.events[kid]
	return signer != nil && !signer.NotAfter.IsZero() && !now.Before(signer.NotAfter)
}

// Trust returns the trust entry of external issuer iss, if the set holds
// one: the issuer's tokens are accepted, read as it says.
func (ks *KeySet) Trust(iss string) (*bus.Trust, bool) {
	now := time.Now()
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	t, ok := ks.trusts[iss]
	if !ok || ks.expired(t.eventKid, now) {
		return nil, false
	}
	return t.trust, true
}

// External returns the key with the provider's kid of trusted external
// issuer iss, and that issuer's trust entry. It finds nothing while the
// issuer is not trusted, and never returns Herald's own keys (Get), nor
// another issuer's.
func (ks *KeySet) External(iss, kid string) (*Key, *bus.Trust, bool) {
	now := time.Now()
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	t, ok := ks.trusts[iss]
	if !ok || ks.expired(t.eventKid, now) {
		return nil, nil, false
	}
	k, ok := ks.external[iss][kid]
	if !ok || ks.expired(k.EventKid, now) {
		return nil, nil, false
	}
	return k, t.trust, true
}

// Trusted returns the issuers of the trust entries the set holds.
func (ks *KeySet) Trusted() []string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]string, 0, len(ks.trusts))
	for iss := range ks.trusts {
		out = append(out, iss)
	}
	return out
}

// ExternalKeys returns how many keys of external issuers the set holds.
func (ks *KeySet) ExternalKeys() int {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return len(ks.extNames)
}
