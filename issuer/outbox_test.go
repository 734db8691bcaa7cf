package issuer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/nats-io/nats.go/jetstream"
)

var errCrash = errors.New("simulated crash")

// openForTest opens an issuer on dir and runs it until stop is called.
func openForTest(t testing.TB, s *natsserver.Server, dir string, prepare func(*Service)) (svc *Service, stop func()) {
	t.Helper()
	conn := bustest.Connect(t, s)
	svc, err := Open(t.Context(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", AdminToken: fuzzAdminToken, EventKeyFile: bustest.EventKeyFile(t),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ClientSecretCost: 4}, conn)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(svc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		svc.Close()
	}
	t.Cleanup(stop)
	return svc, stop
}

func streamHead(t testing.TB, conn *bus.Conn) uint64 {
	t.Helper()
	_, last, err := conn.StreamHead(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// TestOutbox_CrashBetweenCommitAndPublish: the revocation is committed with
// its events in the outbox, then the process "dies" before publishing.
// After a restart the drainer publishes it exactly once.
func TestOutbox_CrashBetweenCommitAndPublish(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	dir := t.TempDir()

	svc, stop := openForTest(t, s, dir, func(svc *Service) { svc.outbox.afterCommit = func() error { return errCrash } })
	if _, err := svc.Revoke(t.Context(), RevocationRequest{Kind: "session", Value: "s-crash"}, "test", "test"); !errors.Is(err, errCrash) {
		t.Fatalf("revoke: %v, want the simulated crash", err)
	}
	if n := svc.outbox.pending(); n != 2 {
		t.Fatalf("outbox holds %d events, want the revocation and its audit event", n)
	}
	stop() // the crash: nothing more of this process runs

	if got := streamHead(t, conn); got != 0 {
		t.Fatalf("HERALD head %d before restart, want 0", got)
	}
	svc, stop = openForTest(t, s, dir, nil)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if n := svc.outbox.pending(); n != 0 {
			return fmt.Errorf("outbox still holds %d events", n)
		}
		return nil
	})
	if got := streamHead(t, conn); got != 1 {
		t.Fatalf("HERALD head %d after restart, want exactly 1", got)
	}
	js := conn.JetStream()
	st, err := js.Stream(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := bus.Decode(msg.Data)
	if err != nil || ev.Revocation.Kind != bus.KindSession || ev.Revocation.Value != "s-crash" {
		t.Fatalf("published event %+v (%v), want the session revocation", ev, err)
	}
	stop()

	// A third start finds nothing to publish.
	svc, _ = openForTest(t, s, dir, nil)
	if n := svc.outbox.pending(); n != 0 {
		t.Fatalf("outbox holds %d events after a clean stop", n)
	}
	if got := streamHead(t, conn); got != 1 {
		t.Fatalf("HERALD head %d, want 1", got)
	}
}

// TestOutbox_CrashAfterPublish: the events were acknowledged but the
// process died before clearing the outbox. The restart republishes them
// with the same Nats-Msg-Id and JetStream stores them once.
func TestOutbox_CrashAfterPublish(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	dir := t.TempDir()
	svc, stop := openForTest(t, s, dir, func(svc *Service) { svc.outbox.afterPublish = func() error { return errCrash } })
	if _, err := svc.Revoke(t.Context(), RevocationRequest{Kind: "subject", Value: "u-crash"}, "test", "test"); !errors.Is(err, errCrash) {
		t.Fatalf("revoke: %v, want the simulated crash", err)
	}
	stop()
	if got := streamHead(t, conn); got != 1 {
		t.Fatalf("HERALD head %d, want 1", got)
	}
	svc, _ = openForTest(t, s, dir, nil)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if n := svc.outbox.pending(); n != 0 {
			return fmt.Errorf("outbox still holds %d events", n)
		}
		return nil
	})
	if got := streamHead(t, conn); got != 1 {
		t.Fatalf("HERALD head %d after republishing, want 1 (deduplicated)", got)
	}
}

// TestOutbox_FailedPublishChangesNothing: a session that JetStream does
// not acknowledge is not created; the client gets an error, no session
// exists and no event of it waits in the outbox.
func TestOutbox_FailedPublishChangesNothing(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := openForTest(t, s, t.TempDir(), nil)
	waitCaughtUp(t, svc)           // it mints only once caught up
	svc.outbox.conn.NATS().Close() // the bus is gone
	_, err := svc.CreateSession(t.Context(), SessionRequest{Subject: "nobody"}, "test")
	// Either refusal is a 503 that changed nothing: the bus refused the
	// write, or the follower noticed the bus was gone first.
	if !errors.Is(err, errUnavailable) && !errors.Is(err, errCatchingUp) {
		t.Fatalf("create session without a bus: %v, want errUnavailable or errCatchingUp", err)
	}
	kv, err := bustest.Connect(t, s).Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		t.Errorf("HERALD_SESSIONS holds %s after a failed create; want nothing", k)
	}
	if n := svc.outbox.pending(); n != 0 {
		t.Fatalf("outbox holds %d events of an undone change", n)
	}
}

// TestOutbox_AuditFollowingTheAnswerSurvivesACrash: a revocation answers
// before its audit event is published; the process dies before that
// happens. The restarted issuer publishes the audit event, once.
func TestOutbox_AuditFollowingTheAnswerSurvivesACrash(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	dir := t.TempDir()
	audits := func() int {
		t.Helper()
		st, err := conn.JetStream().Stream(t.Context(), bus.StreamAudit)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(bus.SubjectAdminPrefix+"revoke"))
		if err != nil {
			t.Fatal(err)
		}
		return int(info.State.Msgs)
	}
	svc, stop := openForTest(t, s, dir, func(svc *Service) {
		svc.outbox.skipFollow = true // what follows the answer never runs: the crash comes first
	})
	if _, err := svc.Revoke(t.Context(), RevocationRequest{Kind: "session", Value: "s-audit"}, "test", "test"); err != nil {
		t.Fatal(err)
	}
	if n := svc.outbox.pending(); n != 1 {
		t.Fatalf("outbox holds %d events after the answer, want the audit event", n)
	}
	if n := audits(); n != 0 {
		t.Fatalf("%d admin.revoke events before the restart, want 0", n)
	}
	stop()

	svc, _ = openForTest(t, s, dir, nil)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if n := svc.outbox.pending(); n != 0 {
			return fmt.Errorf("outbox still holds %d events", n)
		}
		return nil
	})
	if n := audits(); n != 1 {
		t.Fatalf("%d admin.revoke events after the restart, want 1", n)
	}
}
