package issuer

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/store"
)

// TestShares_PendingCutoffsRecordedLater: a revocation committed but not
// recorded in HERALD_SESSIONS (the bus failed, or the issuer stopped
// between the two) leaves a pending share/ entry; Run records it there and
// forgets it, and the sessions it covers stop refreshing.
func TestShares_PendingCutoffsRecordedLater(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := openForTest(t, s, t.TempDir(), nil)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if !svc.follow.CaughtUp() {
			return errors.New("not caught up")
		}
		return nil
	})
	sess, err := svc.CreateSession(t.Context(), SessionRequest{Subject: "zed"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	at, _ := json.Marshal(&cutoff{At: svc.now()})
	if err := svc.state.Update(func(tx *store.Tx) error {
		tx.Set(shareKey(bus.KindSubject, "zed"), at)
		tx.Set(shareKey(bus.KindSession, "0123456789abcdef0123456789abcdef"), at) // no such session
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if _, ok, err := svc.sessions.cutoff(t.Context(), bus.KindSubject, "zed"); err != nil || !ok {
			return errors.New("cut-off of subject zed not in HERALD_SESSIONS yet")
		}
		n := 0
		if err := svc.state.Scan(keyShare, func(string, []byte) error { n++; return nil }); err != nil || n != 0 {
			return errors.New("pending cut-offs not forgotten yet")
		}
		return nil
	})
	if _, err := svc.refresh(t.Context(), sess.RefreshToken, clientAuth{}, ""); err == nil {
		t.Fatal("refresh of a session whose subject's cut-off was recorded late: accepted")
	}
}
