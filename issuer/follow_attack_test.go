package issuer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// TestAttack_IntrospectRefreshAfterAnotherReplicasSessionRevocation: once
// replica a has answered a session revocation, introspection of the
// session's refresh token on replica b, which has not applied the
// revocation yet and finds the session not yet marked ended in
// HERALD_SESSIONS, must not report it active.
func TestAttack_IntrospectRefreshAfterAnotherReplicasSessionRevocation(t *testing.T) {
	_, b, sess, release := revokedBehind(t)
	req := httptest.NewRequestWithContext(t.Context(), "POST", "/introspect", nil)
	if res, err := b.Introspect(req, sess.RefreshToken); err == nil && res.Active {
		t.Fatalf("refresh token of a revoked session introspected active on a replica behind the revocation")
	}
	release()
	res, err := b.Introspect(req, sess.RefreshToken)
	if err != nil || res.Active {
		t.Fatalf("introspection once caught up: %+v, %v; want inactive", res, err)
	}
}

// TestAttack_MalformedRefreshReadsNoHead: a refresh token that is not a
// session's is refused before anything is read from HERALD's stream: a
// caller that holds no refresh token cannot make the issuer read the
// stream's head.
func TestAttack_MalformedRefreshReadsNoHead(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := openForTest(t, s, t.TempDir(), nil)
	waitCaughtUp(t, svc)
	var reads atomic.Int64
	read := svc.head.read
	svc.head.read = func(ctx context.Context, stream string) (uint64, error) {
		reads.Add(1)
		return read(ctx, stream)
	}
	forged, _ := newRefreshToken(randomID(16)) // names a session that does not exist
	sess, err := svc.CreateSession(t.Context(), SessionRequest{Subject: "alice"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := newRefreshToken(sess.SessionID) // names a session, not its token
	for _, tok := range []string{"x", "hrt_", "hrt_not-a-token", forged, wrong} {
		var e *Error
		if _, err := svc.refresh(t.Context(), tok, clientAuth{}, ""); !errors.As(err, &e) || e.Code != "invalid_grant" {
			t.Fatalf("refresh with %q: %v, want invalid_grant", tok, err)
		}
	}
	if _, err := svc.refresh(t.Context(), "hrt_x", clientAuth{}, "not-a-proof"); err == nil {
		t.Fatal("refresh with a malformed DPoP proof succeeded")
	}
	if n := reads.Load(); n != 0 {
		t.Fatalf("%d reads of HERALD's head for refresh tokens naming no session, want 0", n)
	}
}

// testOutbox is an outbox for the tests of what follows answers: follow,
// settle and close need neither Pebble nor NATS.
func testOutbox() *outbox {
	return newOutbox(nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// TestAttack_SettleWaitsOnlyForEarlierWork: settle waits for the work that
// followed the answers given before it was called, not for work started
// after: under a steady load of revocations (following work always in
// flight, each run overlapping the next) a read of the audit trail still
// returns.
func TestAttack_SettleWaitsOnlyForEarlierWork(t *testing.T) {
	o := testOutbox()
	defer o.close()
	run := func() (release chan struct{}, done chan struct{}) {
		release, done = make(chan struct{}), make(chan struct{})
		o.follow(func(context.Context) { <-release; close(done) })
		return release, done
	}
	release, done := run()
	settled := make(chan error, 1)
	called := make(chan struct{})
	go func() {
		close(called)
		settled <- o.settle(context.Background())
	}()
	<-called
	// Runs overlap, one after the other: by the last, settle has long
	// looked at what was in flight when it was called.
	for range 20 {
		nextRelease, nextDone := run()
		close(release)
		<-done
		release, done = nextRelease, nextDone
	}
	defer close(release)
	select {
	case err := <-settled:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("settle still waiting for work started after it was called")
	}
}

// TestAttack_SettleSeesEarlierWork: work started before a settle is
// waited for, even if an earlier settle already waited on part of it.
func TestAttack_SettleSeesEarlierWork(t *testing.T) {
	o := testOutbox()
	defer o.close()
	var done atomic.Int64
	release := make(chan struct{})
	for range 3 {
		o.follow(func(context.Context) { <-release; done.Add(1) })
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := o.settle(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("settle with work in flight and its context ended: %v", err)
	}
	o.follow(func(context.Context) { <-release; done.Add(1) })
	close(release)
	if err := o.settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := done.Load(); n != 4 {
		t.Fatalf("settle returned with %d of 4 earlier runs done", n)
	}
}

// TestAttack_FollowRacesClose: follow called while the outbox closes
// either runs its work before close returns or not at all, and nothing
// runs after close.
func TestAttack_FollowRacesClose(t *testing.T) {
	for range 20 {
		o := testOutbox()
		var started, finished atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				o.follow(func(ctx context.Context) {
					started.Add(1)
					<-ctx.Done()
					finished.Add(1)
				})
				_ = o.settle(t.Context())
			})
		}
		o.close()
		s, f := started.Load(), finished.Load()
		if s != f {
			t.Fatalf("close returned with %d runs started, %d finished", s, f)
		}
		wg.Wait()
		if n := started.Load(); n != s {
			t.Fatalf("%d runs started after close", n-s)
		}
		if n := len(o.slots); n != 0 {
			t.Fatalf("%d slots held after close", n)
		}
	}
}

// TestAttack_ListSessionsAfterAnotherReplicasSessionRevocation: once
// replica a has answered a session revocation, replica b does not list
// the session, whether or not a has marked it ended in HERALD_SESSIONS
// and b's follower has applied the revocation: b waits to catch up, and
// fails unavailable when it cannot.
func TestAttack_ListSessionsAfterAnotherReplicasSessionRevocation(t *testing.T) {
	a, b, _, release := revokedBehind(t)
	if list, err := b.ListSessions(t.Context(), "alice"); err == nil {
		t.Fatalf("sessions listed by a replica behind the revocation: %+v", list)
	}
	if list, err := a.ListSessions(t.Context(), "alice"); err != nil || len(list) != 0 {
		t.Fatalf("sessions listed by the revoking replica: %+v, %v; want none", list, err)
	}
	release()
	if list, err := b.ListSessions(t.Context(), "alice"); err != nil || len(list) != 0 {
		t.Fatalf("sessions listed once caught up: %+v, %v; want none", list, err)
	}
}

// TestAttack_ListAuditWhenFollowingIsFull: with every slot for work that
// follows answers taken, the revocation publishes its audit event itself
// before it answers; a read of the audit trail right after the answer
// lists it once.
func TestAttack_ListAuditWhenFollowingIsFull(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := openForTest(t, s, t.TempDir(), func(svc *Service) {
		svc.outbox.slots = make(chan struct{}) // every slot taken
	})
	if _, err := svc.Revoke(t.Context(), RevocationRequest{Kind: "token", Value: "j-full"}, "test", "test"); err != nil {
		t.Fatal(err)
	}
	recs, err := svc.ListAudit(t.Context(), listFilter{limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Value == "j-full" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("audit trail after the answer: %+v; want the revocation of j-full once", recs)
	}
	if n := svc.outbox.pending(); n != 0 {
		t.Fatalf("outbox holds %d events once the trail was read, want 0", n)
	}
}
