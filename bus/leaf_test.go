package bus_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestLeaf_VerifierAtTheEdge runs a verifier whose only NATS is a leaf
// node: an edge server without JetStream, linked to the hub cluster where
// the issuer and the streams are. Through the leaf it loads the keys,
// applies revocations, reports to the fleet and confirms revocations to an
// issuer waiting for them. It names the hub's JetStream domain, which is
// what lets its JetStream requests cross the leaf connection.
func TestLeaf_VerifierAtTheEdge(t *testing.T) {
	c := bustest.RunCluster(t, 3)
	svc, _ := startIssuer(t, c.Connect(t), t.TempDir(), 3)
	leaf := bustest.RunLeaf(t, c.LeafURLs()...)

	// Without the domain, nats-server keeps JetStream requests on the leaf.
	plain := connectTo(t, bus.Config{URL: leaf.ClientURL()})
	if _, _, err := plain.StreamHead(t.Context(), bus.StreamRevocations); err == nil {
		t.Fatal("stream info through the leaf without the hub's domain succeeded; the domain setup is not what is tested")
	}

	conn := connectTo(t, bus.Config{URL: leaf.ClientURL(), JetStreamDomain: bustest.ClusterDomain, Name: "edge-verifier"})
	sc, _ := startVerifier(t, conn, t.TempDir())
	waitVerifiersReady(t, sc)

	s := newSession(t, svc, "edge-user")
	wantValid(t, sc, s.AccessToken)
	r := revokeSession(t, svc, s.SessionID)
	if err := wantRevoked(t.Context(), sc, r.Seq, s.AccessToken); err != nil {
		t.Fatal(err)
	}

	// The issuer sees the edge verifier in the fleet (heartbeats cross the
	// leaf into HERALD_VERIFIERS) ...
	bustest.WaitFor(t, 20*time.Second, func() error {
		var list struct {
			Verifiers []bus.Heartbeat `json:"verifiers"`
		}
		code, body, err := apiCall(t.Context(), "GET", svc.URL()+"/v1/verifiers", nil, &list)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("list verifiers: %d %s %v", code, body, err)
		}
		i := slices.IndexFunc(list.Verifiers, func(h bus.Heartbeat) bool { return h.ID == sc.ID() })
		if i < 0 || list.Verifiers[i].AppliedSeq < r.Seq {
			return fmt.Errorf("edge verifier %s not in the fleet at seq %d: %+v", sc.ID(), r.Seq, list.Verifiers)
		}
		return nil
	})
	// ... and a revocation that waits for the fleet is confirmed by it.
	s2 := newSession(t, svc, "edge-user-2")
	var r2 issuer.RevocationResult
	code, body, err := apiCall(t.Context(), "POST", svc.URL()+"/v1/revocations?wait=10s",
		issuer.RevocationRequest{Kind: "session", Value: s2.SessionID, Reason: "edge"}, &r2)
	if err != nil || code != http.StatusOK {
		t.Fatalf("revoke with wait: %d %s %v", code, body, err)
	}
	if got := sc.Status().Applied; got < r2.Seq {
		t.Fatalf("the issuer confirmed seq %d but the edge verifier applied only %d", r2.Seq, got)
	}
}
