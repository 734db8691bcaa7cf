package issuer_test

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// stealKey copies the private key file of kid from an issuer's data
// directory, as a thief with a copy of the disk holds it.
func stealKey(t *testing.T, dataDir, kid string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "keys", kid+".pem"))
	if err != nil {
		t.Fatalf("steal key %s: %v", kid, err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("steal key %s: not PEM", kid)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

// forgeToken signs, with a stolen key, the token a thief would mint: any
// subject, issued now, expiring after life.
func forgeToken(t *testing.T, key crypto.Signer, iss string, life time.Duration) string {
	t.Helper()
	jwk, err := bus.NewJWK(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	method := jwt.SigningMethod(jwt.SigningMethodEdDSA)
	if jwk.Alg == bus.AlgES256 {
		method = jwt.SigningMethodES256
	}
	now := time.Now()
	tok := jwt.NewWithClaims(method, jwt.MapClaims{
		"iss": iss, "sub": "mallory", "aud": issuer.DefaultAudience, "jti": bus.NewID(),
		"iat": now.Unix(), "exp": now.Add(life).Unix(), "client_id": "herald", "scope": "admin",
	})
	tok.Header["typ"], tok.Header["kid"] = "at+jwt", jwk.Kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReplicas_RevokedKeyStaysRevoked: replica B's signing key revoked
// through replica A. B stops signing with it at once and deletes its file;
// the key stays refused by the verifiers once the revocation's denylist
// window has passed, and B restarted does not publish it again.
func TestReplicas_RevokedKeyStaysRevoked(t *testing.T) {
	s := bustest.RunServer(t)
	// A revocation is remembered by the denylist for MaxAccessTTL plus the
	// leeway: keep that short, so the test sees what follows it.
	cfg := issuer.Config{AccessTTL: time.Second, MaxAccessTTL: time.Second, Leeway: time.Millisecond}
	a, _ := runIssuerOn(t, bustest.Connect(t, s), cfg)
	cfgB := cfg
	cfgB.DataDir = t.TempDir()
	b, stopB := runIssuerOn(t, bustest.Connect(t, s), cfgB)
	sc, _ := runSidecar(t, s, a.IssuerURL(), t.TempDir())
	waitReady(t, sc)

	kid := headerKid(t, createSession(t, b, issuer.SessionRequest{Subject: "bob"}).AccessToken)
	stolen := stealKey(t, cfgB.DataDir, kid)
	res := revoke(t, a, "key", kid)

	// B reacts to the revocation of its own key: it signs with another one
	// and the key file is gone.
	bustest.WaitFor(t, 5*time.Second, func() error {
		if got := headerKid(t, createSession(t, b, issuer.SessionRequest{Subject: "bob"}).AccessToken); got == kid {
			return fmt.Errorf("replica B still signs with revoked key %s", kid)
		}
		if _, err := os.Stat(filepath.Join(cfgB.DataDir, "keys", kid+".pem")); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("revoked key file still on B's disk: %v", err)
		}
		return nil
	})
	// The denylist window passes; B restarts.
	bustest.WaitFor(t, 10*time.Second, func() error {
		if time.Since(res.At) < cfg.MaxAccessTTL+time.Second {
			return errors.New("revocation still in the denylist window")
		}
		return nil
	})
	stopB()
	b, _ = runIssuerOn(t, bustest.Connect(t, s), cfgB)
	fresh := createSession(t, b, issuer.SessionRequest{Subject: "bob"})
	if got := headerKid(t, fresh.AccessToken); got == kid {
		t.Fatalf("restarted replica B signs with revoked key %s", kid)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, fresh.AccessToken, 200, "") })
	forged := forgeToken(t, stolen, a.IssuerURL(), time.Second)
	if err := wantVerdict(t, sc, forged, 401, "unknown_key"); err != nil {
		t.Fatalf("token signed with the revoked key after restart: %v", err)
	}
	// A fresh verifier, which never saw the revocation event's window,
	// refuses it too: the record in HERALD_KEYS is permanent.
	sc2, _ := runSidecar(t, s, a.IssuerURL(), t.TempDir())
	waitReady(t, sc2)
	if err := wantVerdict(t, sc2, forged, 401, "unknown_key"); err != nil {
		t.Fatalf("fresh verifier: %v", err)
	}
	kv, err := bustest.Connect(t, s).Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), bus.RevokedKeyPrefix+kid); err != nil {
		t.Fatalf("no permanent record of the revocation in %s: %v", bus.BucketKeys, err)
	}
}

// keyPointer returns the kid an issuer's data directory names as its
// current or next key.
func keyPointer(t *testing.T, dataDir, which string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "keys", which))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRevokeAll_ReplacesEveryStolenKey: a thief copied the key files of
// the issuer, current and next key alike. revoke all replaces both with
// fresh keys and removes every old one from HERALD_KEYS and the JWKS:
// tokens the thief signs with any of them afterwards, issued now, are
// refused, while tokens issued afterwards verify.
func TestRevokeAll_ReplacesEveryStolenKey(t *testing.T) {
	s := bustest.RunServer(t)
	dir := t.TempDir()
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{DataDir: dir})
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	// One rotation, so a retired key is on disk too.
	if code, body := call(t, "POST", svc.URL()+"/v1/keys/rotate", adminToken, nil); code != 200 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	stolen := map[string]crypto.Signer{}
	entries, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if kid, ok := strings.CutSuffix(e.Name(), ".pem"); ok {
			stolen[kid] = stealKey(t, dir, kid)
		}
	}
	cur, next := keyPointer(t, dir, "current"), keyPointer(t, dir, "next")
	if stolen[cur] == nil || stolen[next] == nil || len(stolen) != 3 {
		t.Fatalf("stole %d keys, want the current, next and retired one", len(stolen))
	}

	res := revoke(t, svc, "all", "")
	if stolen[res.Rotated] != nil {
		t.Fatalf("revoke all signs with %s, a stolen key", res.Rotated)
	}
	if n := keyPointer(t, dir, "next"); stolen[n] != nil {
		t.Fatalf("revoke all made stolen key %s the next key", n)
	}
	after := createSession(t, svc, issuer.SessionRequest{Subject: "z"})
	if err := wantVerdict(t, sc, after.AccessToken, 200, ""); err != nil {
		t.Fatalf("token issued after revoke all: %v", err)
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		for kid, key := range stolen {
			if err := wantVerdict(t, sc, forgeToken(t, key, svc.IssuerURL(), 5*time.Minute), 401, "revoked"); err != nil {
				return fmt.Errorf("token forged with stolen key %s: %w", kid, err)
			}
		}
		return nil
	})
	kv, err := bustest.Connect(t, s).Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, jwks := get(t, svc.URL()+"/.well-known/jwks.json")
	for kid := range stolen {
		if _, err := kv.Get(t.Context(), kid); err == nil {
			t.Errorf("stolen key %s still in %s", kid, bus.BucketKeys)
		}
		if _, err := kv.Get(t.Context(), bus.RevokedKeyPrefix+kid); err != nil {
			t.Errorf("stolen key %s not recorded revoked: %v", kid, err)
		}
		if strings.Contains(string(jwks), kid) {
			t.Errorf("stolen key %s still in the JWKS", kid)
		}
	}
}

// TestReplicas_RevokeAllReplacesEveryReplicasKeys: revoke all through
// replica A replaces replica B's current and next keys too, and B's old
// keys are refused.
func TestReplicas_RevokeAllReplacesEveryReplicasKeys(t *testing.T) {
	s := bustest.RunServer(t)
	a, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{})
	dirB := t.TempDir()
	b, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{DataDir: dirB})
	sc, _ := runSidecar(t, s, a.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	stolen := map[string]crypto.Signer{}
	for _, which := range []string{"current", "next"} {
		kid := keyPointer(t, dirB, which)
		stolen[kid] = stealKey(t, dirB, kid)
	}
	revoke(t, a, "all", "")
	bustest.WaitFor(t, 5*time.Second, func() error {
		for _, which := range []string{"current", "next"} {
			if kid := keyPointer(t, dirB, which); stolen[kid] != nil {
				return fmt.Errorf("replica B's %s key is still %s", which, kid)
			}
		}
		return nil
	})
	bustest.WaitFor(t, 5*time.Second, func() error {
		for kid, key := range stolen {
			if err := wantVerdict(t, sc, forgeToken(t, key, a.IssuerURL(), 5*time.Minute), 401, "revoked"); err != nil {
				return fmt.Errorf("token forged with B's stolen key %s: %w", kid, err)
			}
		}
		return nil
	})
	fresh := createSession(t, b, issuer.SessionRequest{Subject: "z"})
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, fresh.AccessToken, 200, "") })
}

// TestRevoke_EventKeyIsNotAKey: a key revocation naming the event key,
// by its kid or its entry's name, or naming a revocation record, is a
// 400 that changes nothing: event keys are revoked only with a root key.
func TestRevoke_EventKeyIsNotAKey(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{})
	kv, err := bustest.Connect(t, s).Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, value := range []string{bus.EventKeyPrefix + svc.EventKeyID(), svc.EventKeyID(), bus.RevokedKeyPrefix + "x"} {
		code, body := call(t, "POST", svc.URL()+"/v1/revocations", adminToken,
			issuer.RevocationRequest{Kind: "key", Value: value})
		if code != 400 {
			t.Errorf("revoke key %s: %d %s, want 400", value, code, body)
		}
		code, body = call(t, "POST", svc.URL()+"/v1/revocations", adminToken,
			issuer.RevocationRequest{Kind: "key", Values: []string{"some-kid", value}})
		if code != 400 {
			t.Errorf("revoke keys [some-kid %s]: %d %s, want 400", value, code, body)
		}
	}
	code, body := call(t, "POST", svc.URL()+"/v1/revocations?dry_run=true", adminToken,
		issuer.RevocationRequest{Kind: "key", Value: svc.EventKeyID()})
	if code != 400 {
		t.Errorf("dry run of revoke key %s: %d %s, want 400", svc.EventKeyID(), code, body)
	}
	if _, err := kv.Get(t.Context(), bus.EventKeyPrefix+svc.EventKeyID()); err != nil {
		t.Fatalf("event key entry gone: %v", err)
	}
	for _, name := range []string{bus.RevokedKeyPrefix + svc.EventKeyID(), bus.RevokedKeyPrefix + "some-kid"} {
		if _, err := kv.Get(t.Context(), name); err == nil {
			t.Errorf("refused request left record %s", name)
		}
	}
}

// TestReplicas_RevokedWhileDownNotPublishedAgain: replica B is down when
// its signing key is revoked through replica A. Restarted, B finds the
// record in HERALD_KEYS: it deletes the key instead of publishing it, and
// signs with a new one.
func TestReplicas_RevokedWhileDownNotPublishedAgain(t *testing.T) {
	s := bustest.RunServer(t)
	a, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{})
	cfgB := issuer.Config{DataDir: t.TempDir()}
	b, stopB := runIssuerOn(t, bustest.Connect(t, s), cfgB)
	kid := headerKid(t, createSession(t, b, issuer.SessionRequest{Subject: "bob"}).AccessToken)
	stopB()
	revoke(t, a, "key", kid)
	kv, err := bustest.Connect(t, s).Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, _ = runIssuerOn(t, bustest.Connect(t, s), cfgB)
	if got := headerKid(t, createSession(t, b, issuer.SessionRequest{Subject: "bob"}).AccessToken); got == kid {
		t.Fatalf("restarted replica signs with revoked key %s", kid)
	}
	if _, err := os.Stat(filepath.Join(cfgB.DataDir, "keys", kid+".pem")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("revoked key file still on disk: %v", err)
	}
	if _, err := kv.Get(t.Context(), kid); err == nil {
		t.Fatalf("revoked key %s published again", kid)
	}
}
