package issuer

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// TestBarrier_RefreshAfterAnotherReplicasRevocation: replica a answers a
// session revocation before it marks the session ended in
// HERALD_SESSIONS. Replica b, whose follower has not applied the
// revocation yet, must not refresh the session in between: the refresh
// waits for b to catch up with HERALD and, as b cannot here, fails
// unavailable; once b has caught up it is refused as revoked.
func TestBarrier_RefreshAfterAnotherReplicasRevocation(t *testing.T) {
	_, b, sess, release := revokedBehind(t)
	if _, err := b.refresh(t.Context(), sess.RefreshToken, clientAuth{}, ""); !errors.Is(err, errCatchingUp) {
		t.Fatalf("refresh on a replica behind the revocation: %v, want %v", err, errCatchingUp)
	}
	release()
	var e *Error
	if _, err := b.refresh(t.Context(), sess.RefreshToken, clientAuth{}, ""); !errors.As(err, &e) || e.Code != "invalid_grant" {
		t.Fatalf("refresh once caught up: %v, want invalid_grant", err)
	}
}

// heldReplicas opens replicas a and b on one server: nothing follows a's
// answers (left to Run, as after a crash), and b's follower stops before
// it applies the revocation of session "held" until release is called.
func heldReplicas(t *testing.T) (a, b *Service, entered <-chan struct{}, release func()) {
	t.Helper()
	s := bustest.RunServer(t)
	a, _ = openForTest(t, s, t.TempDir(), func(svc *Service) {
		svc.outbox.skipFollow = true
	})
	// b opens once a has set up its streams: the embedded server races
	// on concurrent updates of one stream's configuration.
	waitCaughtUp(t, a)
	in, rel := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var holding atomic.Bool
	b, _ = openForTest(t, s, t.TempDir(), func(svc *Service) {
		svc.catchUpWait = 200 * time.Millisecond
		svc.follow.OnApply(func(revs []*bus.Revocation) {
			if revs[0].Value == "held" && holding.CompareAndSwap(false, true) {
				close(in)
				<-rel
			}
			svc.noteRevocations(revs)
		})
	})
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(release) // before b stops
	waitCaughtUp(t, a, b)
	return a, b, in, release
}

// revokedBehind opens heldReplicas, creates a session of alice on a and
// revokes it there once b's follower has stopped: a has answered, b has
// not applied the revocation, and HERALD_SESSIONS does not mark the
// session ended.
func revokedBehind(t *testing.T) (a, b *Service, sess *SessionResponse, release func()) {
	t.Helper()
	a, b, entered, release := heldReplicas(t)
	sess, err := a.CreateSession(t.Context(), SessionRequest{Subject: "alice"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Revoke(t.Context(), RevocationRequest{Kind: "session", Value: "held"}, "test", "test"); err != nil {
		t.Fatal(err)
	}
	<-entered
	if _, err := a.Revoke(t.Context(), RevocationRequest{Kind: "session", Value: sess.SessionID}, "test", "test"); err != nil {
		t.Fatal(err)
	}
	if cur, err := b.sessions.get(t.Context(), sess.SessionID); err != nil || cur.sess == nil || cur.sess.Ended {
		t.Fatalf("session in HERALD_SESSIONS: %+v, %v; want it there, not yet marked ended", cur.sess, err)
	}
	return a, b, sess, release
}

// waitCaughtUp waits until the revocation follower of each of svcs has
// caught up with HERALD.
func waitCaughtUp(t testing.TB, svcs ...*Service) {
	t.Helper()
	for _, svc := range svcs {
		bustest.WaitFor(t, 10*time.Second, func() error {
			if !svc.follow.CaughtUp() {
				return errors.New("revocation follower not caught up")
			}
			return nil
		})
	}
}
