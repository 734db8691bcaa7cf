package bus

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func newRootTestSigner(t *testing.T) *Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(priv, "https://issuer.test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOpenEventKeyCert_BoundToIssuer: a certificate names the issuer of
// the deployment it is for, and opens only for that issuer: one made for
// staging is refused by production though both pin its root, and so is
// one that names no issuer. A revocation holds for every issuer.
func TestOpenEventKeyCert_BoundToIssuer(t *testing.T) {
	root, event := newRootTestSigner(t), newRootTestSigner(t)
	pinned := func(kid string) bool { return kid == root.KeyID() }
	const staging, production = "https://staging.test", "https://issuer.test"
	now := time.Now()
	name, value, err := CertifyEventKey(root, staging, event.JWK(), now.Add(-time.Minute), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := OpenEventKeyCert(name, value, staging, pinned, now); err != nil {
		t.Fatalf("certificate for staging, opened by staging: %v", err)
	}
	if _, _, _, err := OpenEventKeyCert(name, value, production, pinned, now); !errors.Is(err, ErrMisplaced) {
		t.Fatalf("certificate for staging, opened by production: %v, want %v", err, ErrMisplaced)
	}
	if _, _, _, err := OpenEventKeyCert(name, value, "", pinned, now); err == nil {
		t.Fatal("certificate opened with no issuer configured")
	}
	if _, _, err := CertifyEventKey(root, "", event.JWK(), now, time.Time{}); err == nil {
		t.Fatal("certificate made for no issuer")
	}
	// A certificate of the earlier format, without iss, signed by the
	// pinned root: refused everywhere.
	old := struct {
		Bucket    string `json:"aud"`
		Name      string `json:"sub"`
		Root      JWK    `json:"root"`
		Key       JWK    `json:"key"`
		IssuedAt  int64  `json:"iat"`
		NotBefore int64  `json:"nbf"`
	}{BucketKeys, name, root.JWK(), event.JWK(), now.Unix(), now.Add(-time.Minute).Unix()}
	oldValue, err := root.signStatement(EventCertType, old)
	if err != nil {
		t.Fatal(err)
	}
	for _, iss := range []string{production, ""} {
		if _, _, _, err := OpenEventKeyCert(name, oldValue, iss, pinned, now); err == nil {
			t.Fatalf("certificate without an issuer accepted for %q", iss)
		}
	}
	// A revocation names no deployment: it refuses in all of them.
	rname, rvalue, err := RevokeEventKey(root, event.KeyID(), "stolen")
	if err != nil {
		t.Fatal(err)
	}
	if kid, err := OpenEventKeyRevocation(rname, rvalue, pinned); err != nil || kid != event.KeyID() {
		t.Fatalf("revocation: %q, %v", kid, err)
	}
}
