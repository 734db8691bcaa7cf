//go:build linux

package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// herald runs the herald binary with args and returns its standard output.
func (f *fleet) herald(args ...string) string {
	f.t.Helper()
	out, err := exec.Command(f.bin, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		f.t.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// pemKey reads a PKCS#8 PEM private key file: what a thief copies.
func pemKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

// mint signs a token for any subject with key, issued now, living 5
// minutes: what a thief holding a signing key makes.
func mint(t *testing.T, key crypto.Signer) string {
	t.Helper()
	jwk, err := bus.NewJWK(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": testIssuer, "sub": "mallory", "aud": "herald", "jti": bus.NewID(),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "client_id": "herald",
	})
	tok.Header["typ"], tok.Header["kid"] = "at+jwt", jwk.Kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestProcs_StolenIssuerHostProcedure runs the procedure of SECURITY.md
// ("Stolen issuer host: the procedure") with real processes: a NATS
// server, herald issuer, herald verifier, and the herald keys commands.
// A thief copies the issuer's key files (token keys and event key); after
// the procedure, everything it signs with them is refused by the running
// verifier, and tokens issued afterwards verify.
func TestProcs_StolenIssuerHostProcedure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	f := newFleet(t)
	natsURL := "nats://" + freeAddr(t)
	f.startNATS(t.TempDir(), strings.TrimPrefix(natsURL, "nats://"))
	natsArgs := []string{"--nats", natsURL, "--nats-discover=false"}

	offline := t.TempDir() // the root key's machine
	root := filepath.Join(offline, "root.pem")
	rootKid := f.herald("keys", "root", "create", "--out", root)
	host := t.TempDir() // the issuer host
	event1 := filepath.Join(host, "event.pem")
	event1Kid := f.herald("keys", "event-key", event1)
	data := filepath.Join(host, "data")
	iss := f.startIssuer(data, natsURL, "--event-key-file", event1, "--root-keys", rootKid)
	f.herald(append([]string{"keys", "event", "certify", "--root", root, "--issuer", testIssuer, "--event-key", event1}, natsArgs...)...)
	_, vURL := f.readyVerifier(t.TempDir(), natsURL, "--root-keys", rootKid)

	// The theft.
	stolen := map[string]crypto.Signer{}
	for _, which := range []string{"current", "next"} {
		b, err := os.ReadFile(filepath.Join(data, "keys", which))
		if err != nil {
			t.Fatal(err)
		}
		kid := strings.TrimSpace(string(b))
		stolen[kid] = pemKey(t, filepath.Join(data, "keys", kid+".pem"))
	}
	stolenEvent, err := bus.NewSigner(pemKey(t, event1), testIssuer)
	if err != nil {
		t.Fatal(err)
	}
	thief := bustest.ConnectURL(t, natsURL)
	thief.SetSigner(stolenEvent)
	_, thiefKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	thiefJWK, err := bus.NewJWK(thiefKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := thief.PublishKey(t.Context(), thiefJWK); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if code := tryVerify(vURL, mint(t, thiefKey)); code != 200 {
			return fmt.Errorf("before the procedure, the thief's own key: %d, want 200 (the window)", code)
		}
		return nil
	})

	// The procedure.
	event2 := filepath.Join(host, "event-2.pem")
	f.herald("keys", "event-key", event2)
	f.herald(append([]string{"keys", "event", "certify", "--root", root, "--issuer", testIssuer, "--event-key", event2}, natsArgs...)...)
	iss.signal(syscall.SIGTERM)
	iss.wait(20 * time.Second)
	iss = f.startIssuer(data, natsURL, "--event-key-file", event2, "--root-keys", rootKid)
	f.herald(append([]string{"keys", "event", "revoke", "--root", root, "--kid", event1Kid, "--reason", "host stolen"}, natsArgs...)...)
	f.revoke(iss.url, `{"kind":"all","reason":"host stolen"}`)
	after := f.newSessions(iss.url, "alice", 1)[0]

	// The thief again, with everything it holds.
	for _, k := range stolen {
		jwk, err := bus.NewJWK(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := thief.PublishKey(t.Context(), jwk); err != nil {
			t.Fatal(err)
		}
	}
	if err := thief.PublishKey(t.Context(), thiefJWK); err != nil {
		t.Fatal(err)
	}
	if _, err := thief.Publish(t.Context(), &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: time.Now(), Actor: "thief",
		Revocation: &bus.Revocation{Kind: bus.KindSubject, Value: "alice-0", At: time.Now(), Until: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	last := f.revoke(iss.url, `{"kind":"token","value":"some-jti"}`)
	bustest.WaitFor(t, 20*time.Second, func() error {
		st, err := status(vURL)
		if err != nil || st.Applied < last {
			return fmt.Errorf("verifier has not applied %d: %+v %v", last, st, err)
		}
		for kid, k := range stolen {
			if code := tryVerify(vURL, mint(t, k)); code != 401 {
				return fmt.Errorf("token minted with stolen token key %s: %d", kid, code)
			}
		}
		if code := tryVerify(vURL, mint(t, thiefKey)); code != 401 {
			return fmt.Errorf("token minted with the thief's key, entry signed with the stolen event key: %d", code)
		}
		if code := tryVerify(vURL, after.Access); code != 200 {
			return fmt.Errorf("token issued after the procedure: %d (the thief's revocation must be skipped)", code)
		}
		return nil
	})
	// The issuer refuses to start again with the stolen event key.
	iss.signal(syscall.SIGTERM)
	iss.wait(20 * time.Second)
	p := startProc(t, "issuer", []string{"HERALD_ADMIN_TOKEN=" + f.admin}, f.bin, "issuer", "--http", "127.0.0.1:0",
		"--data", data, "--issuer-url", testIssuer, "--nats", natsURL, "--event-key-file", event1, "--root-keys", rootKid)
	if err := p.wait(30 * time.Second); err == nil || !strings.Contains(p.logs.String(), "revoked by a root key") {
		t.Fatalf("issuer with the revoked event key: exit %v\n%s", err, lastLines(p.logs.String(), 10))
	}
}
