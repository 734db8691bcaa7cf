package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
)

// TestRun_RootKeyCommands: herald keys root create makes a 0600 root key
// and prints its kid; event certify and event revoke write root-signed
// statements (--out, mode 0600) that event publish puts in HERALD_KEYS,
// where a key set pinning the root for the certificate's issuer trusts
// the certified event key and then refuses it for good; a key set of
// another issuer refuses the certificate. Bad input, and a certificate
// without --issuer, change nothing.
func TestRun_RootKeyCommands(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, time.Hour)
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	rootKid := strings.TrimSpace(runCmd(t, "keys", "root", "create", "--out", root))
	if fi, err := os.Stat(root); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key file: %v, mode %v", err, fi.Mode().Perm())
	}
	if err := run(t.Context(), []string{"keys", "root", "create", "--out", root}, io.Discard, io.Discard); err == nil {
		t.Fatal("root create over an existing file: want error")
	}
	eventKey := filepath.Join(dir, "event.pem")
	eventKid := strings.TrimSpace(runCmd(t, "keys", "event-key", eventKey))

	openRoot := filepath.Join(dir, "open-root.pem")
	if b, err := os.ReadFile(root); err != nil || os.WriteFile(openRoot, b, 0o640) != nil {
		t.Fatal("copy root key")
	}
	cert, revocation := filepath.Join(dir, "cert.jws"), filepath.Join(dir, "revoked.jws")
	runCmd(t, "keys", "event", "certify", "--root", root, "--issuer", testIssuer, "--event-key", eventKey, "--out", cert)
	runCmd(t, "keys", "event", "revoke", "--root", root, "--kid", eventKid, "--reason", "test", "--out", revocation)
	for _, bad := range [][]string{
		{"keys", "event", "certify", "--issuer", testIssuer, "--event-key", eventKey, "--out", filepath.Join(dir, "x")},                     // no root
		{"keys", "event", "certify", "--root", root, "--event-key", eventKey, "--out", filepath.Join(dir, "x")},                             // no issuer
		{"keys", "event", "certify", "--root", openRoot, "--issuer", testIssuer, "--event-key", eventKey, "--out", filepath.Join(dir, "x")}, // a root readable by its group
		{"keys", "event", "revoke", "--root", root, "--kid", "a.b", "--out", filepath.Join(dir, "x")},                                       // not a kid
		{"keys", "event", "publish", "--nats", s.ClientURL(), eventKey},                                                                     // not a statement
	} {
		if err := run(t.Context(), bad, io.Discard, io.Discard); err == nil {
			t.Errorf("herald %s: want error", strings.Join(bad, " "))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("a refused command wrote its output")
	}

	ks := verifier.NewKeySet(nil, nil)
	ks.TrustRootKeys(testIssuer, rootKid)
	other := verifier.NewKeySet(nil, nil)
	other.TrustRootKeys("https://staging.herald.test", rootKid)
	put := func(file string) {
		t.Helper()
		name := strings.TrimSpace(runCmd(t, "keys", "event", "publish", "--nats", s.ClientURL(), "--nats-discover=false", file))
		kv, err := conn.Keys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		e, err := kv.Get(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.Put(name, e.Value()); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	put(cert)
	if _, _, ok := ks.EventKey(eventKid); !ok {
		t.Fatal("certified event key not trusted")
	}
	if b, err := os.ReadFile(cert); err != nil || other.Put(bus.EventCertPrefix+eventKid, []byte(strings.TrimSpace(string(b)))) == nil {
		t.Fatalf("certificate for %s accepted by a key set of another issuer (%v)", testIssuer, err)
	}
	if _, _, ok := other.EventKey(eventKid); ok {
		t.Fatal("event key certified for another issuer trusted")
	}
	put(revocation)
	if _, _, ok := ks.EventKey(eventKid); ok || !ks.EventKeyRevoked(eventKid) {
		t.Fatal("revoked event key still trusted")
	}
}
