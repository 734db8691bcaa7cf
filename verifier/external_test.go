package verifier

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

const (
	idpIssuer   = "https://idp.test/realms/main"
	otherIssuer = "https://login.other.test/tenant/v2.0"
)

// trustEventKey makes ks trust the test event key.
func trustEventKey(tb testing.TB, ks *KeySet) *bus.Signer {
	tb.Helper()
	signer := bustest.Signer(tb)
	event, err := json.Marshal(signer.JWK())
	if err != nil {
		tb.Fatal(err)
	}
	if err := ks.Put(bus.EventKeyPrefix+signer.KeyID(), event); err != nil {
		tb.Fatalf("trust event key: %v", err)
	}
	return signer
}

// putIdP puts in ks the trust entry t of idp (nil: idp.Trust()) and its
// keys for every algorithm, signed by the test event key.
func putIdP(tb testing.TB, ks *KeySet, idp *verifiertest.IdP, t *bus.Trust) {
	tb.Helper()
	signer := trustEventKey(tb, ks)
	if t == nil {
		tr := idp.Trust()
		t = &tr
	}
	name, value := verifiertest.TrustEntry(tb, signer, *t)
	if err := ks.Put(name, value); err != nil {
		tb.Fatalf("put trust: %v", err)
	}
	for _, alg := range bus.ExternalAlgorithms() {
		name, value := idp.KeyEntry(tb, signer, alg, time.Hour)
		if err := ks.Put(name, value); err != nil {
			tb.Fatalf("put %s key: %v", alg, err)
		}
	}
}

// TestKeySet_External: an external issuer's keys are found by issuer and
// provider kid only, while the issuer is trusted; never by Get, never for
// another issuer; removing the trust or the key entry drops them.
func TestKeySet_External(t *testing.T) {
	idp := verifiertest.NewIdP(t, idpIssuer)
	ks := NewKeySet(nil, nil)
	signer := bustest.Signer(t)

	// Entries put before their event key is trusted wait for it.
	tname, tvalue := verifiertest.TrustEntry(t, signer, idp.Trust())
	kname, kvalue := idp.KeyEntry(t, signer, bus.AlgRS256, time.Hour)
	if err := ks.Put(tname, tvalue); !errors.Is(err, bus.ErrUntrusted) {
		t.Fatalf("trust before its event key: err = %v, want ErrUntrusted", err)
	}
	if err := ks.Put(kname, kvalue); !errors.Is(err, bus.ErrUntrusted) {
		t.Fatalf("key before its event key: err = %v, want ErrUntrusted", err)
	}
	if _, ok := ks.Trust(idpIssuer); ok {
		t.Fatal("trust held before its event key is trusted")
	}
	trustEventKey(t, ks)
	tr, ok := ks.Trust(idpIssuer)
	if !ok || tr.Issuer != idpIssuer {
		t.Fatalf("Trust = %+v, %v after the event key", tr, ok)
	}
	k, tr2, ok := ks.External(idpIssuer, idp.Kid(bus.AlgRS256))
	if !ok || tr2 != tr || k.Issuer != idpIssuer || k.Algorithm != bus.AlgRS256 || k.MaxLifetime != time.Hour {
		t.Fatalf("External = %+v, %v, %v", k, tr2, ok)
	}
	if _, isRSA := k.Public.(*rsa.PublicKey); !isRSA {
		t.Fatalf("public key is %T, want *rsa.PublicKey", k.Public)
	}
	if _, ok := ks.Get(idp.Kid(bus.AlgRS256)); ok {
		t.Fatal("Get returns an external issuer's key")
	}
	if _, _, ok := ks.External(otherIssuer, idp.Kid(bus.AlgRS256)); ok {
		t.Fatal("External returns a key for another issuer")
	}
	if len(ks.Keys()) != 0 || ks.ExternalKeys() != 1 {
		t.Fatalf("Keys = %d, ExternalKeys = %d, want 0 and 1", len(ks.Keys()), ks.ExternalKeys())
	}

	// Without the trust entry, keys are held but not used.
	ks.Remove(tname)
	if _, _, ok := ks.External(idpIssuer, idp.Kid(bus.AlgRS256)); ok {
		t.Fatal("key used after its issuer's trust entry was removed")
	}
	if _, ok := ks.Trust(idpIssuer); ok {
		t.Fatal("trust held after removal")
	}
	if err := ks.Put(tname, tvalue); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := ks.External(idpIssuer, idp.Kid(bus.AlgRS256)); !ok {
		t.Fatal("key not used once its issuer is trusted again")
	}
	ks.Remove(kname)
	if _, _, ok := ks.External(idpIssuer, idp.Kid(bus.AlgRS256)); ok || ks.ExternalKeys() != 0 {
		t.Fatal("key held after its entry was removed")
	}

	// An entry under another issuer's name, or a Herald key's, is refused.
	for _, name := range []string{bus.ExternalKeyName(otherIssuer, idp.JWK(t, bus.AlgRS256)), idp.Kid(bus.AlgRS256)} {
		if err := ks.Put(name, kvalue); err == nil {
			t.Errorf("entry stored as %s accepted", name)
		}
	}
	if _, ok := ks.Get(idp.Kid(bus.AlgRS256)); ok {
		t.Fatal("misplaced entry became a Herald key")
	}
}

// TestKeySet_ExternalBounds: a KeySet holds at most MaxExternalKeys keys
// per issuer and MaxTrustedIssuers trusts; more are refused, and what it
// holds stays.
func TestKeySet_ExternalBounds(t *testing.T) {
	ks := NewKeySet(nil, nil)
	signer := trustEventKey(t, ks)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := bus.NewJWK(ed.Public())
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxExternalKeys + 1 {
		jwk.Kid = fmt.Sprintf("k%d", i)
		name, value, err := signer.SignExternalKey(idpIssuer, jwk, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		err = ks.Put(name, value)
		if i < MaxExternalKeys && err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if i == MaxExternalKeys && !errors.Is(err, errTooManyKeys) {
			t.Fatalf("key %d: err = %v, want errTooManyKeys", i, err)
		}
	}
	if got := ks.ExternalKeys(); got != MaxExternalKeys {
		t.Fatalf("ExternalKeys = %d, want %d", got, MaxExternalKeys)
	}
	for i := range MaxTrustedIssuers + 1 {
		tr := bus.Trust{Issuer: fmt.Sprintf("https://idp%d.test", i), Algorithms: []string{bus.AlgRS256}, MaxTTL: 60}
		name, value := verifiertest.TrustEntry(t, signer, tr)
		err := ks.Put(name, value)
		if i < MaxTrustedIssuers && err != nil {
			t.Fatalf("trust %d: %v", i, err)
		}
		if i == MaxTrustedIssuers && !errors.Is(err, errTooManyIssuers) {
			t.Fatalf("trust %d: err = %v, want errTooManyIssuers", i, err)
		}
	}
	if got := len(ks.Trusted()); got != MaxTrustedIssuers {
		t.Fatalf("Trusted = %d, want %d", got, MaxTrustedIssuers)
	}
}

// TestKeySet_ExternalWeakRSA: an entry of a 1024-bit RSA key, signed by a
// trusted event key, is refused.
func TestKeySet_ExternalWeakRSA(t *testing.T) {
	ks := NewKeySet(nil, nil)
	trustEventKey(t, ks)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := bus.NewJWK(&weak.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	jwk.Kid = "weak"
	name, value := signKeyEntryByHand(t, idpIssuer, jwk)
	if err := ks.Put(name, value); !errors.Is(err, bus.ErrMalformed) || !strings.Contains(err.Error(), "1024 bits") {
		t.Fatalf("1024-bit RSA key: err = %v, want it refused for its size", err)
	}
	if _, _, ok := ks.External(idpIssuer, "weak"); ok {
		t.Fatal("1024-bit RSA key held")
	}
}

// signKeyEntryByHand signs the HERALD_KEYS entry of external key jwk of
// iss with the test event key, without the checks bus.Signer makes.
func signKeyEntryByHand(tb testing.TB, iss string, jwk bus.JWK) (name string, value []byte) {
	tb.Helper()
	signer := bustest.Signer(tb)
	now := time.Now().UTC()
	e := &bus.Event{ID: bus.NewID(), Type: bus.TypeKeyPublished, Time: now, Actor: "test",
		Key: &bus.Key{ID: jwk.Kid, Algorithm: jwk.Alg, JWK: &jwk, Issuer: iss, MaxTTL: 3600}}
	e.SET = bus.SET{Issuer: "test", JTI: e.ID, IssuedAt: now.Unix(), Audience: bus.BucketKeys,
		Events: map[string]struct{}{bus.EventTypePrefix + string(e.Type): {}}}
	payload, err := bus.Encode(e)
	if err != nil {
		tb.Fatal(err)
	}
	h := b64(mustJSON(tb, map[string]string{"alg": bus.AlgEdDSA, "kid": signer.KeyID(), "typ": bus.SecEventType}))
	input := h + "." + b64(payload)
	sig := ed25519.Sign(bustest.EventKey(tb), []byte(input))
	return bus.ExternalKeyName(iss, jwk), []byte(input + "." + b64(sig))
}

// TestKeySet_ExternalEventKeyRevoked: when a root key revokes the event
// key that signed an external issuer's entries, the trust and the keys go
// with it.
func TestKeySet_ExternalEventKeyRevoked(t *testing.T) {
	idp := verifiertest.NewIdP(t, idpIssuer)
	ks := NewKeySet(nil, nil)
	putIdP(t, ks, idp, nil)
	if _, _, ok := ks.External(idpIssuer, idp.Kid(bus.AlgES256)); !ok {
		t.Fatal("provider's key not held")
	}
	ks.revokeEventKey(bustest.Signer(t).KeyID())
	if _, ok := ks.Trust(idpIssuer); ok {
		t.Fatal("trust signed by a revoked event key still held")
	}
	if n := ks.ExternalKeys(); n != 0 {
		t.Fatalf("%d keys signed by a revoked event key still held", n)
	}
}
