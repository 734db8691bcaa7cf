package ssf

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// A transmitter started while NATS is down waits for it instead of
// failing (which would stop the issuer), and serves once it is back.
func TestRun_WaitsForTheBus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(t.TempDir(), "nats")
	srv := bustest.RunServerIn(t, dir, addr)
	bustest.Setup(t, srv, bustest.RevocationMaxAge)
	conn := bustest.Connect(t, srv)
	srv.Shutdown()

	signer, err := NewSigner(testKey())
	if err != nil {
		t.Fatal(err)
	}
	failed := make(chan string, 16)
	tr, err := New(Config{Conn: conn, Issuer: testIssuer, Signer: signer, RetryMin: 10 * time.Millisecond,
		Open: func(bus.Delivery) (*bus.Event, error) { return nil, nil }, Log: slog.New(&warnings{failed})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if _, err := tr.List(t.Context(), "receiver-a"); !isStatus(err, 503) {
		t.Errorf("before the bus is back: %v, want 503", err)
	}
	// The first attempt fails once the JetStream request times out.
	select {
	case err := <-done:
		t.Fatalf("Run returned while NATS was down: %v", err)
	case <-failed:
	case <-time.After(30 * time.Second):
		t.Fatal("no failed attempt while NATS was down")
	}
	bustest.RunServerIn(t, dir, addr)
	select {
	case <-tr.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the transmitter did not start once NATS was back")
	}
	if _, err := tr.Create(t.Context(), "receiver-a", &StreamRequest{}); err != nil {
		t.Fatalf("create once the bus is back: %v", err)
	}
}

// warnings is a slog handler that sends the message of every warning.
type warnings struct{ c chan<- string }

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	select {
	case w.c <- r.Message:
	default:
	}
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }
