package issuer_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/issuer"
)

// TestAttackPush_AbandonedClaimIsTakenOver: a replica that claimed a SET
// in HERALD_SIGNALS and stopped before acting on it (a crash) leaves a
// claim not done. The transmitter's retries are answered "retry" while
// the claim may still be worked on, and once it is older than any
// request could take, the claim is taken over and the SET acted on:
// the signal is not lost for the replay records' 24 hours.
func TestAttackPush_AbandonedClaimIsTakenOver(t *testing.T) {
	idp := federationtest.NewIdP(t)
	clock := &fakeClock{now: time.Now()}
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	trust := []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true, PushCredential: "idp-ssf"}.WithDefaults()}
	svc, _ := runIssuerOn(t, conn, issuer.Config{Trust: trust, Now: clock.Now})
	sc := runFleet(t, s, svc, 1)[0]
	cred := credential(t, svc, "idp-ssf", issuer.ScopeSignals)
	bob := idp.AccessToken(t, "bob", "b-1")
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, bob, http.StatusOK, "") })

	set := idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": "bob"}, nil)
	// The claim a crashed replica left.
	kv, err := conn.JetStream().KeyValue(t.Context(), bus.BucketSignals)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(set))
	claim, _ := json.Marshal(map[string]any{"hash": hex.EncodeToString(sum[:]), "done": false})
	if _, err := kv.Create(t.Context(), bus.SignalKey(idp.URL, jtiOf(t, set)), claim); err != nil {
		t.Fatal(err)
	}
	if code, body := push(t, svc, cred, "application/secevent+jwt", set); code != http.StatusServiceUnavailable {
		t.Fatalf("push while the claim is fresh: %d %s, want 503 (retry)", code, body)
	}
	if seq := revocationSeq(t, svc); seq != 0 {
		t.Fatalf("acted on a claimed SET: seq %d", seq)
	}
	clock.Advance(10 * time.Minute)
	if code, body := push(t, svc, cred, "application/secevent+jwt", set); code != http.StatusAccepted {
		t.Fatalf("push once the claim is abandoned: %d %s, want 202", code, body)
	}
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, bob, http.StatusUnauthorized, "revoked") })
	seq := revocationSeq(t, svc)
	if code, body := push(t, svc, cred, "application/secevent+jwt", set); code != http.StatusAccepted {
		t.Fatalf("retransmission: %d %s, want 202", code, body)
	}
	if again := revocationSeq(t, svc); again != seq {
		t.Errorf("retransmission after the takeover revoked again: seq %d -> %d", seq, again)
	}
}
