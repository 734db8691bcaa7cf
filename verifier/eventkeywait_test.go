package verifier

import (
	"errors"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// TestFollower_WaitsForMissingEventKey: the pinned event key is missing
// from HERALD_KEYS (deleted), and revocations it signed are on the
// stream. A verifier started then is not ready, and does not skip those
// revocations: it stops at the first one and applies them once the event
// key is back.
func TestFollower_WaitsForMissingEventKey(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	if err := conn.EnsureStreams(t.Context(), bus.StreamConfig{RevocationMaxAge: 20 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	k := newTestKeys(t)
	if err := conn.PublishKey(t.Context(), mustJWK(t, k.EdJWK)); err != nil {
		t.Fatal(err)
	}
	victim := baseClaims(time.Now())
	seq := publishRevocation(t, conn, bus.KindSubject, victim["sub"].(string), time.Now())
	sc, _ := startCoreWith(t, conn, coreConfig{DataDir: t.TempDir(), EventKeys: []string{bustest.Signer(t).KeyID()}})
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := sc.Status(); !sc.Ready() && st.LastError == "" {
			return errors.New("verifier neither ready nor stopped")
		}
		return nil
	})
	if st := sc.Status(); sc.Ready() || st.Refused != 0 || st.Applied >= seq {
		t.Fatalf("without its event key: ready %v, refused %d, applied %d; want not ready, nothing refused, stopped before %d",
			sc.Ready(), st.Refused, st.Applied, seq)
	}
	// The event key is back (the issuer restarted): the revocation applies.
	if err := conn.PublishEventKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitReady(t, sc)
	waitApplied(t, sc, seq)
	_, err := sc.Verifier().Verify(t.Context(), k.EdToken(t, victim))
	checkVerdict(t, err, ErrRevoked)
}
