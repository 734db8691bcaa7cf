package issuer_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestEventKeyRevoked_ReplicaStillOnItStops: a replica still running with
// an event key that the root key revokes (one left out of the restart of
// the procedure) would sign revocations every verifier drops as forged,
// and answer them 200. Once it learns of the revocation it answers 503 to
// revocations and to requests that mint, and /readyz is not ready.
func TestEventKeyRevoked_ReplicaStillOnItStops(t *testing.T) {
	s := bustest.RunServer(t)
	operator := bustest.Connect(t, s)
	rootPath := filepath.Join(t.TempDir(), "root.pem")
	rootKid, err := issuer.CreateRootKey(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	eventPath := filepath.Join(host, "event-key.pem")
	eventKid, _, err := issuer.EventKeyFile(eventPath)
	if err != nil {
		t.Fatal(err)
	}
	_, cert, err := issuer.CertifyEventKey(rootPath, "https://issuer.test", eventPath, time.Now().Add(-time.Minute), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{DataDir: filepath.Join(host, "data"), EventKeyFile: eventPath, RootKeys: []string{rootKid}})
	if _, err := issuer.PublishRootStatement(t.Context(), operator, cert); err != nil {
		t.Fatal(err)
	}
	sess := createSession(t, svc, issuer.SessionRequest{Subject: "alice"})

	_, rev, err := issuer.RevokeEventKey(rootPath, eventKid, "stolen")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.PublishRootStatement(t.Context(), operator, rev); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		if code, _ := call(t, "GET", svc.URL()+"/readyz", "", nil); code != http.StatusServiceUnavailable {
			return errors.New("readyz still ready")
		}
		return nil
	})
	if code, body := call(t, "POST", svc.URL()+"/v1/revocations", adminToken, issuer.RevocationRequest{Kind: "session", Value: sess.SessionID}); code != http.StatusServiceUnavailable {
		t.Fatalf("revocation signed with the revoked event key: %d %s, want 503", code, body)
	}
	if _, err := svc.CreateSession(t.Context(), issuer.SessionRequest{Subject: "bob"}, "test"); err == nil {
		t.Fatal("session created by a replica whose event key is revoked")
	}
}
