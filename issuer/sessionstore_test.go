package issuer

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// TestSessions_CompareAndSetBetweenReplicas holds two replicas' refreshes
// of one token until both have read the session at the same revision, then
// lets both write: compare-and-set lets exactly one through, and the other,
// reading again, finds the token used.
func TestSessions_CompareAndSetBetweenReplicas(t *testing.T) {
	s := bustest.RunServer(t)
	a, _ := openForTest(t, s, t.TempDir(), nil)
	b, _ := openForTest(t, s, t.TempDir(), nil)
	sess, err := a.CreateSession(t.Context(), SessionRequest{Subject: "cas"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	var mu sync.Mutex
	held := 0
	barrier := func() {
		mu.Lock()
		first := held < 2
		held++
		mu.Unlock()
		if !first {
			return // a second attempt, after losing
		}
		arrived <- struct{}{}
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			t.Error("the other replica never reached its write")
		}
	}
	a.sessions.beforeUpdate, b.sessions.beforeUpdate = barrier, barrier
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, svc := range []*Service{a, b} {
		wg.Go(func() { _, errs[i] = svc.refresh(t.Context(), sess.RefreshToken, clientAuth{}, "") })
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("both refreshes did not reach their write")
		}
	}
	close(release)
	wg.Wait()
	var lost []error
	for _, err := range errs {
		if err != nil {
			lost = append(lost, err)
		}
	}
	var e *Error
	if len(lost) != 1 || !errors.As(lost[0], &e) || e.Code != "invalid_grant" || !strings.Contains(e.Description, "already used") {
		t.Fatalf("refresh errors %v: want exactly one, reuse", errs)
	}
	if held != 3 {
		t.Fatalf("%d writes attempted, want 3: both first writes, then the loser's end of the session", held)
	}
}

// TestRefresh_RotatedEvenIfItsEventWaits: once the rotation is written to
// HERALD_SESSIONS the client must get the new token, even if its
// token.issued event cannot be published (here HERALD_AUDIT is sealed):
// the event waits in the outbox, synced, for Run.
func TestRefresh_RotatedEvenIfItsEventWaits(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := openForTest(t, s, t.TempDir(), nil)
	sess, err := svc.CreateSession(t.Context(), SessionRequest{Subject: "olga"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	js := bustest.Connect(t, s).JetStream()
	audit, err := js.Stream(t.Context(), bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	cfg := audit.CachedInfo().Config
	cfg.Sealed = true
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	resp, err := svc.refresh(t.Context(), sess.RefreshToken, clientAuth{}, "")
	if err != nil {
		t.Fatalf("refresh with the audit stream sealed: %v, want the new token", err)
	}
	if n := svc.outbox.pending(); n != 1 {
		t.Fatalf("outbox holds %d events, want the token.issued event", n)
	}
	if _, err := svc.refresh(t.Context(), resp.RefreshToken, clientAuth{}, ""); err != nil {
		t.Fatalf("refresh of the rotated token: %v", err)
	}
}
