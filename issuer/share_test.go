package issuer

import (
	"encoding/json"
	"errors"
	"sync/atomic"
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
	waitCaughtUp(t, svc)
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

// TestShares_LateCutoffSparesLaterSessions: a cut-off recorded in
// HERALD_SESSIONS long after its revocation (the bus was down, or an
// upgraded issuer sharing its older cut-offs) still stops the sessions
// created before the revocation, but not those its subject created after
// it and before the late write.
func TestShares_LateCutoffSparesLaterSessions(t *testing.T) {
	s := bustest.RunServer(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	svc, _ := openForTest(t, s, t.TempDir(), func(svc *Service) {
		svc.cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	waitCaughtUp(t, svc)
	before, err := svc.CreateSession(t.Context(), SessionRequest{Subject: "zed"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(time.Second))
	at := svc.now() // the revocation of subject zed; its cut-off is not written yet
	clock.Add(int64(time.Hour))
	after, err := svc.CreateSession(t.Context(), SessionRequest{Subject: "zed"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	pending, _ := json.Marshal(&cutoff{At: at})
	if err := svc.state.Update(func(tx *store.Tx) error {
		tx.Set(shareKey(bus.KindSubject, "zed"), pending)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if _, ok, err := svc.sessions.cutoff(t.Context(), bus.KindSubject, "zed"); err != nil || !ok {
			return errors.New("cut-off of subject zed not in HERALD_SESSIONS yet")
		}
		return nil
	})
	if _, err := svc.refresh(t.Context(), before.RefreshToken, clientAuth{}, ""); err == nil {
		t.Fatal("refresh of a session created before the revocation: accepted")
	}
	if _, err := svc.refresh(t.Context(), after.RefreshToken, clientAuth{}, ""); err != nil {
		t.Fatalf("refresh of a session created an hour after the revocation, before its late cut-off: %v", err)
	}
	// A later revocation's cut-off is not moved back by an earlier one
	// written after it.
	later := svc.now()
	if err := svc.shareCutoff(t.Context(), bus.KindSubject, "zed", later); err != nil {
		t.Fatal(err)
	}
	if err := svc.shareCutoff(t.Context(), bus.KindSubject, "zed", at); err != nil {
		t.Fatal(err)
	}
	if c, ok, err := svc.sessions.cutoff(t.Context(), bus.KindSubject, "zed"); err != nil || !ok || !c.at.Equal(later) {
		t.Fatalf("cut-off after a late write of an earlier one: %v %v %v, want at %v", c.at, ok, err, later)
	}
}
