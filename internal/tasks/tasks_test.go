package tasks

import (
	"context"
	"errors"
	"testing"
)

func TestGroup_AllSucceed(t *testing.T) {
	g := New(t.Context())
	ran := make(chan string, 2)
	for _, name := range []string{"a", "b"} {
		g.Go(name, func(context.Context) error { ran <- name; return nil })
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	if got, want := len(ran), 2; got != want {
		t.Fatalf("tasks run = %d, want %d", got, want)
	}
}

func TestGroup_FirstErrorStopsAll(t *testing.T) {
	errBoom := errors.New("boom")
	g := New(t.Context())
	stopped := make(chan struct{})
	g.Go("waiter", func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	})
	g.Go("failer", func(context.Context) error { return errBoom })
	err := g.Wait()
	if !errors.Is(err, errBoom) {
		t.Fatalf("Wait = %v, want it to wrap %v", err, errBoom)
	}
	if got, want := err.Error(), "failer: boom"; got != want {
		t.Fatalf("Wait = %q, want %q", got, want)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the waiting task was not stopped")
	}
}

func TestGroup_NilLeavesOthersRunning(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	g := New(ctx)
	done := make(chan struct{})
	g.Go("quick", func(context.Context) error { close(done); return nil })
	g.Go("long", func(ctx context.Context) error {
		<-done
		if err := ctx.Err(); err != nil {
			t.Errorf("context ended after a task returned nil: %v", err)
		}
		cancel() // the parent ending stops the group
		<-ctx.Done()
		return nil
	})
	if err := g.Wait(); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
}

func TestGroup_EmptyWait(t *testing.T) {
	if err := New(t.Context()).Wait(); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
}
