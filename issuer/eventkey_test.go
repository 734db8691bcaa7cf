package issuer_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// TestIssuer_EventKey checks the issuer's own event key: created at first
// start in a file only its owner reads, published under its thumbprint,
// kept across restarts, and enough for a verifier that pins it and nothing
// else to apply the issuer's revocations and trust its token keys. A key
// file others can read stops the issuer.
func TestIssuer_EventKey(t *testing.T) {
	s := bustest.RunServer(t)
	dir := t.TempDir()
	open := func() (*issuer.Service, func()) {
		t.Helper()
		svc, err := issuer.Open(t.Context(), issuer.Config{
			DataDir: dir, HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet, IssuerURL: "https://issuer.test",
		}, bustest.Connect(t, s))
		if err != nil {
			t.Fatalf("open issuer: %v", err)
		}
		return svc, bustest.RunUntilStopped(t, svc.Run, func() { svc.Close() })
	}
	svc, stop := open()
	kid := svc.EventKeyID()
	if kid == bustest.Signer(t).KeyID() {
		t.Fatal("issuer signs with the test event key, want its own")
	}
	file := filepath.Join(dir, "event-key", kid+".pem")
	for _, p := range []string{file, filepath.Dir(file)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or world access", p, fi.Mode().Perm())
		}
	}
	kv, err := bustest.Connect(t, s).Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(t.Context(), bus.EventKeyPrefix+kid)
	if err != nil {
		t.Fatalf("event key not published: %v", err)
	}
	if _, _, err := bus.ParseEventKey(entry.Key(), entry.Value()); err != nil {
		t.Fatal(err)
	}
	stop()

	svc, _ = open()
	if got := svc.EventKeyID(); got != kid {
		t.Fatalf("event kid after restart = %s, want %s", got, kid)
	}
	// Another event key in the bucket, published before the verifier
	// starts: pinning keeps it out.
	if err := bustest.Connect(t, s).PublishEventKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	sc, err := sidecar.Open(sidecar.Config{
		Verifier:  verifier.Config{Issuer: svc.IssuerURL(), Audience: issuer.DefaultAudience},
		EventKeys: []string{kid},
		DataDir:   t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet,
	}, bustest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
	waitReady(t, sc)
	if got := sc.Status().EventKeys; len(got) != 1 || got[0] != kid {
		t.Fatalf("verifier trusts event keys %v, want only %s", got, kid)
	}
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "eve"})
	if err := wantVerdict(t, sc, sess.AccessToken, 200, ""); err != nil {
		t.Fatal(err)
	}
	revoke(t, svc, "session", sess.SessionID)
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, sess.AccessToken, 401, "revoked") })

	if err := os.Chmod(file, 0o604); err != nil {
		t.Fatal(err)
	}
	_, err = issuer.Open(t.Context(), issuer.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, Logger: quiet, EventKeyFile: file,
	}, bustest.Connect(t, s))
	if err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("open with a readable event key file: %v, want refused", err)
	}
}

// TestIssuer_ResignsLegacyRevocations: an unsigned revocation left in the
// stream by an older issuer is republished signed when the issuer starts,
// so that an upgrade revokes nothing less; a second start adds nothing.
func TestIssuer_ResignsLegacyRevocations(t *testing.T) {
	s := bustest.RunServer(t)
	dir := t.TempDir()
	svc, stop := runIssuer(t, s, dir)
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "legacy-user"})
	stop()

	conn := bustest.Connect(t, s)
	now := time.Now()
	data, err := bus.Encode(&bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "old-issuer",
		Revocation: &bus.Revocation{Kind: bus.KindSubject, Value: "legacy-user", At: now, Until: now.Add(20 * time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.JetStream().Publish(t.Context(), bus.RevokeSubject(bus.KindSubject), data); err != nil {
		t.Fatal(err)
	}
	svc, stop = runIssuer(t, s, dir)
	_, head, err := conn.StreamHead(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	if err := wantVerdict(t, sc, sess.AccessToken, 401, "revoked"); err != nil {
		t.Fatal(err)
	}
	if st := sc.Status(); st.Refused != 1 || st.Applied != head {
		t.Fatalf("verifier refused %d events, applied %d; want the unsigned one refused and %d applied", st.Refused, st.Applied, head)
	}
	stop()
	runIssuer(t, s, dir)
	if _, again, err := conn.StreamHead(t.Context(), bus.StreamRevocations); err != nil || again != head {
		t.Fatalf("stream head after a second start %d (%v), want %d", again, err, head)
	}
}

// TestSessions_ForgedEntryRefused writes session entries as someone with
// write access to HERALD_SESSIONS but without an issuer's event key: the
// JSON alone, and the JSON signed by a key of their own, each with the hash
// of a refresh token they chose. Neither refreshes; the honest session
// still does once its entry is back.
func TestSessions_ForgedEntryRefused(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "victim"})
	conn := bustest.Connect(t, s)
	kv, err := conn.JetStream().KeyValue(t.Context(), bus.BucketSessions)
	if err != nil {
		t.Fatal(err)
	}
	name := "session." + sess.SessionID
	honest, err := kv.Get(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(honest.Value()), ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var signed struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(payload, &signed); err != nil {
		t.Fatal(err)
	}
	chosen := "hrt_chosen-by-mallory." + sess.SessionID
	sum := sha256.Sum256([]byte(chosen))
	signed.Data["refresh"] = hex.EncodeToString(sum[:])
	forgedJSON, err := json.Marshal(signed.Data)
	if err != nil {
		t.Fatal(err)
	}
	mallory := bustest.ForeignConn(t, s)
	if err := mallory.PublishEventKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	bySelf, err := mallory.Signer().SignEntry(bus.BucketSessions, name, forgedJSON)
	if err != nil {
		t.Fatal(err)
	}
	for what, value := range map[string][]byte{"unsigned": forgedJSON, "signed by another key": bySelf} {
		if _, err := kv.Put(t.Context(), name, value); err != nil {
			t.Fatal(err)
		}
		if code, body := refresh(t, svc, chosen); code == 200 {
			t.Fatalf("%s forged entry: refresh with the chosen token answered 200: %v", what, body)
		}
	}
	if _, err := kv.Put(t.Context(), name, honest.Value()); err != nil {
		t.Fatal(err)
	}
	if code, body := refresh(t, svc, sess.RefreshToken); code != 200 {
		t.Fatalf("refresh with the honest entry back: %d %v", code, body)
	}
}

// TestAudit_ForgedEventsHidden publishes an admin action and a revocation
// signed by a key of someone with publish rights: the audit API and the
// revocation list show neither, only what the issuer signed.
func TestAudit_ForgedEventsHidden(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	revoke(t, svc, "token", "honest-jti")
	c := bustest.ForeignConn(t, s)
	now := time.Now()
	_, err := c.PublishAll(t.Context(),
		&bus.Event{ID: bus.NewID(), Type: bus.TypeAdminRevoke, Time: now, Actor: "admin",
			Admin: &bus.Admin{Action: "revoke", Kind: bus.KindAll, Reason: "forged"}},
		&bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "admin",
			Revocation: &bus.Revocation{Kind: bus.KindToken, Value: "forged-jti", At: now, Until: now.Add(time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	code, body := call(t, "GET", svc.URL()+"/v1/audit", adminToken, nil)
	if code != 200 || strings.Contains(string(body), "forged") || !strings.Contains(string(body), "honest-jti") {
		t.Fatalf("audit: %d %s; want the honest action only", code, body)
	}
	code, body = call(t, "GET", svc.URL()+"/v1/revocations", adminToken, nil)
	if code != 200 || strings.Contains(string(body), "forged-jti") || !strings.Contains(string(body), "honest-jti") {
		t.Fatalf("revocations: %d %s; want the honest one only", code, body)
	}
}
