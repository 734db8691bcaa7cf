package issuer_test

import (
	"crypto"
	"fmt"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestIssuer_Snapshots revokes more than SnapshotEvery times: the issuer
// publishes a signed snapshot of its denylist (as may a second replica),
// and a verifier started afterwards starts from the snapshot and enforces
// the revocations before and after it.
func TestIssuer_Snapshots(t *testing.T) {
	s := bustest.RunServer(t)
	cfg := issuer.Config{SnapshotEvery: 5, SnapshotInterval: time.Hour}
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), cfg)
	runIssuerOn(t, bustest.Connect(t, s), cfg) // a second replica, same event key
	var last uint64
	for i := range 6 {
		last = revoke(t, svc, "token", fmt.Sprintf("jti-%d", i)).Seq
	}
	conn := bustest.Connect(t, s)
	var snap *bus.Snapshot
	bustest.WaitFor(t, 10*time.Second, func() error {
		d, ok, err := conn.LastSnapshotChunk(t.Context())
		if err != nil || !ok {
			return fmt.Errorf("no snapshot yet (%v)", err)
		}
		e, err := bus.OpenEvent(d, bus.StreamSnapshots, func(kid string) (bus.JWK, crypto.PublicKey, bool) {
			k := bustest.Signer(t).JWK()
			pub, _ := k.PublicKey()
			return k, pub, kid == k.Kid
		})
		if err != nil {
			return err
		}
		snap = e.Snapshot
		if snap.Seq < 5 {
			return fmt.Errorf("snapshot at %d, want at least 5", snap.Seq)
		}
		return nil
	})
	if snap.Count != 1 || len(snap.Entries) != int(snap.Seq) {
		t.Fatalf("snapshot at %d holds %d entries in %d chunks", snap.Seq, len(snap.Entries), snap.Count)
	}
	after := revoke(t, svc, "token", "jti-after").Seq

	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := sc.Status(); st.Applied < after {
			return fmt.Errorf("applied %d, want %d", st.Applied, after)
		}
		return nil
	})
	st := sc.Status()
	if st.SnapshotSeq != snap.Seq || st.EventsApplied != after-snap.Seq {
		t.Fatalf("status %+v: want started from the snapshot at %d", st, snap.Seq)
	}
	if st.Denylist != int(last)+1 {
		t.Fatalf("denylist holds %d entries, want %d", st.Denylist, last+1)
	}
}
