package issuer_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// readPEMKey reads a PKCS#8 PEM private key file.
func readPEMKey(t *testing.T, path string) crypto.Signer {
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

// rootSidecar runs a verifier that pins only the root key.
func rootSidecar(t *testing.T, s *natsserver.Server, iss, rootKid string) *sidecar.Sidecar {
	t.Helper()
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: iss, Audience: issuer.DefaultAudience},
		RootKeys: []string{rootKid}, DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet,
	}, bustest.Connect(t, s))
	if err != nil {
		t.Fatalf("open sidecar: %v", err)
	}
	bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
	return sc
}

// TestStolenIssuerHost_Procedure runs the recovery procedure of SECURITY.md
// after a thief copied the issuer's key files: its current and next token
// keys and its event key. Real NATS, a real issuer and real verifiers,
// in-process. The root key never is on the issuer host. After the
// procedure (a new event key certified by the root key, the issuer
// restarted with it, the old event key revoked by the root key, revoke
// all), every token the thief forges with a stolen token key, every key
// entry and revocation it signs with the stolen event key, is refused by
// the running verifier and by a fresh one, and tokens issued afterwards
// verify.
func TestStolenIssuerHost_Procedure(t *testing.T) {
	s := bustest.RunServer(t)
	operator := bustest.Connect(t, s) // the operator's access to HERALD_KEYS
	offline := t.TempDir()            // the root key's machine
	rootPath := filepath.Join(offline, "root.pem")
	rootKid, err := issuer.CreateRootKey(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	const issuerURL = "https://issuer.test" // the deployment's iss
	certify := func(eventKeyPath string) {
		t.Helper()
		_, value, err := issuer.CertifyEventKey(rootPath, issuerURL, eventKeyPath, time.Now().Add(-time.Minute), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := issuer.PublishRootStatement(t.Context(), operator, value); err != nil {
			t.Fatal(err)
		}
	}
	host := t.TempDir() // the issuer host
	event1 := filepath.Join(host, "event-key.pem")
	event1Kid, _, err := issuer.EventKeyFile(event1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := issuer.Config{DataDir: filepath.Join(host, "data"), EventKeyFile: event1, RootKeys: []string{rootKid}, IssuerURL: issuerURL}
	svc, stop := runIssuerOn(t, bustest.Connect(t, s), cfg)
	certify(event1)
	sc := rootSidecar(t, s, svc.IssuerURL(), rootKid)
	waitReady(t, sc)

	// The theft: copies of the token keys and of the event key.
	stolenTokenKeys := map[string]crypto.Signer{}
	for _, which := range []string{"current", "next"} {
		kid := keyPointer(t, cfg.DataDir, which)
		stolenTokenKeys[kid] = stealKey(t, cfg.DataDir, kid)
	}
	stolenEvent, err := bus.NewSigner(readPEMKey(t, event1), svc.IssuerURL())
	if err != nil {
		t.Fatal(err)
	}
	thief := bustest.Connect(t, s)
	thief.SetSigner(stolenEvent)
	// Before the procedure the thief publishes a token key of its own,
	// signed with the stolen event key, and the verifiers trust it.
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
	bustest.WaitFor(t, 5*time.Second, func() error {
		return wantVerdict(t, sc, forgeToken(t, thiefKey, svc.IssuerURL(), 5*time.Minute), 200, "")
	})

	// The procedure. 1: a new event key, certified with the root key.
	event2 := filepath.Join(host, "event-key-2.pem")
	event2Kid, _, err := issuer.EventKeyFile(event2)
	if err != nil {
		t.Fatal(err)
	}
	certify(event2)
	// 2: the issuer restarts with it; the old event key is refused.
	stop()
	cfg.EventKeyFile = event2
	svc, _ = runIssuerOn(t, bustest.Connect(t, s), cfg)
	if svc.EventKeyID() != event2Kid {
		t.Fatalf("issuer signs events with %s, want %s", svc.EventKeyID(), event2Kid)
	}
	// 3: the root key revokes the stolen event key.
	_, value, err := issuer.RevokeEventKey(rootPath, event1Kid, "issuer host stolen")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.PublishRootStatement(t.Context(), operator, value); err != nil {
		t.Fatal(err)
	}
	// 4: revoke all: every token key is replaced and removed.
	revoke(t, svc, "all", "")
	after := createSession(t, svc, issuer.SessionRequest{Subject: "alice"})

	// After the procedure, the thief tries everything again: its own
	// token key and a stolen one republished with the stolen event key,
	// the stolen event key itself, a revocation signed with it.
	for kid := range stolenTokenKeys {
		jwk, err := bus.NewJWK(stolenTokenKeys[kid].Public())
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
	if err := thief.PublishEventKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := thief.Publish(t.Context(), &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: time.Now(), Actor: "thief",
		Revocation: &bus.Revocation{Kind: bus.KindSubject, Value: "alice", At: time.Now(), Until: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	// An honest revocation after all of it: once a verifier applied it,
	// it has seen the thief's.
	last := revoke(t, svc, "token", "some-jti")

	for _, v := range []*sidecar.Sidecar{sc, rootSidecar(t, s, svc.IssuerURL(), rootKid)} {
		waitReady(t, v)
		bustest.WaitFor(t, 10*time.Second, func() error {
			if st := v.Status(); st.Applied < last.Seq {
				return fmt.Errorf("verifier applied %d, want %d", st.Applied, last.Seq)
			}
			for kid, key := range stolenTokenKeys {
				code, reason := verify(t, v, forgeToken(t, key, svc.IssuerURL(), 5*time.Minute))
				if code != 401 {
					return fmt.Errorf("token forged with stolen token key %s: %d %s", kid, code, reason)
				}
			}
			if code, reason := verify(t, v, forgeToken(t, thiefKey, svc.IssuerURL(), 5*time.Minute)); code != 401 {
				return fmt.Errorf("token forged with the thief's key published with the stolen event key: %d %s", code, reason)
			}
			return wantVerdict(t, v, after.AccessToken, 200, "") // the thief's revocation of alice was skipped
		})
		st := v.Status()
		for _, kid := range st.EventKeys {
			if kid == event1Kid {
				t.Errorf("verifier still trusts the stolen event key %s", event1Kid)
			}
		}
		if st.Refused == 0 {
			t.Errorf("the thief's revocation was not refused and counted: %+v", st.FollowerStatus)
		}
	}
	// The issuer does not start again with the revoked event key.
	cfg.EventKeyFile = event1
	cfg.HTTPAddr, cfg.AdminToken, cfg.Logger, cfg.IssuerURL = "127.0.0.1:0", adminToken, quiet, "https://issuer.test"
	if _, err := issuer.Open(t.Context(), cfg, bustest.Connect(t, s)); err == nil {
		t.Fatal("issuer opened with the revoked event key")
	}
}

// TestRootCertificate_OtherDeploymentRefused: staging and production pin
// the same root key. A staging event key's certificate, copied with the
// stolen staging event key into production's HERALD_KEYS, does not make
// production's verifiers trust that key, nor the token key it signs: the
// certificate names the staging issuer. Production's own event keys,
// certified for its issuer, are trusted.
func TestRootCertificate_OtherDeploymentRefused(t *testing.T) {
	s := bustest.RunServer(t) // production
	operator := bustest.Connect(t, s)
	rootPath := filepath.Join(t.TempDir(), "root.pem")
	rootKid, err := issuer.CreateRootKey(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(iss, eventKeyPath string) {
		t.Helper()
		_, value, err := issuer.CertifyEventKey(rootPath, iss, eventKeyPath, time.Now().Add(-time.Minute), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := issuer.PublishRootStatement(t.Context(), operator, value); err != nil {
			t.Fatal(err)
		}
	}
	const stagingURL = "https://staging.test"
	host := t.TempDir()
	prodEvent := filepath.Join(host, "event-key.pem")
	if _, _, err := issuer.EventKeyFile(prodEvent); err != nil {
		t.Fatal(err)
	}
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{DataDir: filepath.Join(host, "data"), EventKeyFile: prodEvent, RootKeys: []string{rootKid}})
	if svc.IssuerURL() == stagingURL {
		t.Fatal("production and staging share an issuer")
	}
	publish(svc.IssuerURL(), prodEvent)
	sc := rootSidecar(t, s, svc.IssuerURL(), rootKid)
	waitReady(t, sc)

	// The staging event key, stolen with its certificate for staging.
	stagingEvent := filepath.Join(t.TempDir(), "staging-event-key.pem")
	stagingKid, _, err := issuer.EventKeyFile(stagingEvent)
	if err != nil {
		t.Fatal(err)
	}
	publish(stagingURL, stagingEvent)
	stolen, err := bus.NewSigner(readPEMKey(t, stagingEvent), svc.IssuerURL())
	if err != nil {
		t.Fatal(err)
	}
	thief := bustest.Connect(t, s)
	thief.SetSigner(stolen)
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
	// Then a production event key certified for production: once the
	// verifier trusts it, it has read the thief's entries before it.
	prodEvent2 := filepath.Join(host, "event-key-2.pem")
	prodKid2, _, err := issuer.EventKeyFile(prodEvent2)
	if err != nil {
		t.Fatal(err)
	}
	publish(svc.IssuerURL(), prodEvent2)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if !slices.Contains(sc.Status().EventKeys, prodKid2) {
			return fmt.Errorf("production event key %s not trusted: %v", prodKid2, sc.Status().EventKeys)
		}
		return nil
	})
	if code, reason := verify(t, sc, forgeToken(t, thiefKey, svc.IssuerURL(), 5*time.Minute)); code != 401 {
		t.Errorf("token signed with a key published with the staging event key: %d %s, want 401", code, reason)
	}
	if slices.Contains(sc.Status().EventKeys, stagingKid) {
		t.Errorf("production trusts the staging event key %s", stagingKid)
	}
}
