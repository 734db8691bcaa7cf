package verifier

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

func newSigner(t *testing.T) *bus.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bus.NewSigner(priv, "https://issuer.test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKeySet_RootKeys: an event key is trusted while a pinned root key
// certifies it, and never again once a pinned root key revokes it, pinned
// or not; the token keys it signed go with it. Certificates and
// revocations of unpinned roots, expired, early or misplaced
// certificates, and certificates for another issuer's deployment, are
// refused and change nothing.
func TestKeySet_RootKeys(t *testing.T) {
	root, other := newSigner(t), newSigner(t)
	event, pinned := newSigner(t), newSigner(t)
	ks := NewKeySet(nil, testLogger(t))
	ks.TrustRootKeys(testIssuer, root.KeyID())
	ks.TrustEventKeys(pinned.KeyID())
	now := time.Now()
	certifyFor := func(iss string, r *bus.Signer, s *bus.Signer, nbf, exp time.Time) (string, []byte) {
		name, value, err := bus.CertifyEventKey(r, iss, s.JWK(), nbf, exp)
		if err != nil {
			t.Fatal(err)
		}
		return name, value
	}
	certify := func(r *bus.Signer, s *bus.Signer, nbf, exp time.Time) (string, []byte) {
		return certifyFor(testIssuer, r, s, nbf, exp)
	}
	// Refused: another root, an expired or early certificate, one stored
	// under another key's name, one for another deployment.
	for _, tc := range []struct {
		name  string
		entry func() (string, []byte)
	}{
		{"unpinned root", func() (string, []byte) { return certify(other, event, now.Add(-time.Hour), time.Time{}) }},
		{"expired", func() (string, []byte) { return certify(root, event, now.Add(-2*time.Hour), now.Add(-time.Hour)) }},
		{"not yet valid", func() (string, []byte) { return certify(root, event, now.Add(time.Hour), time.Time{}) }},
		{"other issuer", func() (string, []byte) {
			return certifyFor("https://staging.test", root, event, now.Add(-time.Hour), time.Time{})
		}},
		{"misplaced", func() (string, []byte) {
			_, v := certify(root, event, now.Add(-time.Hour), time.Time{})
			return bus.EventCertPrefix + pinned.KeyID(), v
		}},
	} {
		name, value := tc.entry()
		if err := ks.Put(name, value); err == nil {
			t.Errorf("%s: certificate accepted", tc.name)
		}
		if _, _, ok := ks.EventKey(event.KeyID()); ok {
			t.Fatalf("%s: event key trusted", tc.name)
		}
	}
	if ks.Untrusted(event.KeyID()) {
		t.Fatal("an event key never seen is untrusted: its events would be skipped, not awaited")
	}
	// Trusted with a valid certificate, and so are the token keys it signs.
	if err := ks.Put(certify(root, event, now.Add(-time.Hour), now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	k := newTestKeys(t)
	entry, err := event.SignKey(mustJWK(t, k.EdJWK))
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Put(k.EdKid, entry); err != nil {
		t.Fatalf("token key signed by a certified event key: %v", err)
	}
	pinnedJWK, err := json.Marshal(pinned.JWK())
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Put(bus.EventKeyPrefix+pinned.KeyID(), pinnedJWK); err != nil {
		t.Fatal(err)
	}
	// A revocation by another root changes nothing.
	name, value, err := bus.RevokeEventKey(other, event.KeyID(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Put(name, value); !errors.Is(err, bus.ErrRootUntrusted) {
		t.Fatalf("revocation by an unpinned root: %v", err)
	}
	if _, ok := ks.Get(k.EdKid); !ok {
		t.Fatal("token key dropped by a revocation of an unpinned root")
	}
	// Revoked by the pinned root: the event key, the token key it signed,
	// and a pinned event key revoked too.
	for _, s := range []*bus.Signer{event, pinned} {
		name, value, err := bus.RevokeEventKey(root, s.KeyID(), "stolen")
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.Put(name, value); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := ks.EventKey(s.KeyID()); ok || !ks.Untrusted(s.KeyID()) {
			t.Fatalf("revoked event key %s still trusted", s.KeyID())
		}
	}
	if _, ok := ks.Get(k.EdKid); ok {
		t.Fatal("token key signed by a revoked event key still trusted")
	}
	if err := ks.Put(certify(root, event, now.Add(-time.Hour), time.Time{})); err == nil {
		t.Fatal("revoked event key certified again")
	}
	if err := ks.Put(bus.EventKeyPrefix+pinned.KeyID(), pinnedJWK); err == nil {
		t.Fatal("revoked pinned event key trusted again")
	}
	if err := ks.Put(k.EdKid, entry); err == nil {
		t.Fatal("token key signed by a revoked event key trusted again")
	}
}

// TestKeySet_TokenKeysEndWithTheirEventKeyCertificate: a token key whose
// entry an event key signed while a root certificate trusted it is not
// trusted past that certificate's expiry, as the event key itself is not:
// a thief of an event key whose certificate simply expired keeps no key
// entry it signed before.
func TestKeySet_TokenKeysEndWithTheirEventKeyCertificate(t *testing.T) {
	root, event := newSigner(t), newSigner(t)
	ks := NewKeySet(nil, testLogger(t))
	ks.TrustRootKeys(testIssuer, root.KeyID())
	now := time.Now()
	name, value, err := bus.CertifyEventKey(root, testIssuer, event.JWK(), now.Add(-time.Hour), now.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Put(name, value); err != nil {
		t.Fatal(err)
	}
	k := newTestKeys(t)
	entry, err := event.SignKey(mustJWK(t, k.EdJWK))
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Put(k.EdKid, entry); err != nil {
		t.Fatal(err)
	}
	if _, ok := ks.Get(k.EdKid); !ok {
		t.Fatal("token key not trusted while its event key's certificate is valid")
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		if _, _, ok := ks.EventKey(event.KeyID()); ok {
			return errors.New("certificate not expired yet")
		}
		return nil
	})
	if _, ok := ks.Get(k.EdKid); ok {
		t.Fatal("token key still trusted after its event key's certificate expired")
	}
}
