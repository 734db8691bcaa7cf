// Package bustest starts real embedded NATS servers with JetStream for tests.
package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/nats-io/nats-server/v2/server"
)

// RunServer starts an embedded NATS server with JetStream on a random
// loopback port, storing under a temporary directory, and shuts it down
// when the test ends.
func RunServer(tb testing.TB) *bus.Server {
	tb.Helper()
	return RunServerIn(tb, tb.TempDir(), "127.0.0.1:0")
}

// RunServerIn starts an embedded server storing in dir and listening on
// listen, for tests that restart a server on the same port and data. The
// server is shut down when the test ends; shutting it down earlier is fine.
func RunServerIn(tb testing.TB, dir, listen string) *bus.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := bus.StartServer(ctx, bus.ServerConfig{Listen: listen, StoreDir: dir})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// Connect connects to s and closes the connection when the test ends.
func Connect(tb testing.TB, s *bus.Server) *bus.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{URL: s.ClientURL(), Name: tb.Name()})
	if err != nil {
		tb.Fatalf("connect nats: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Setup connects to s and creates Herald's streams and bucket with a
// revocation retention of maxAge.
func Setup(tb testing.TB, s *bus.Server, maxAge time.Duration) *bus.Conn {
	tb.Helper()
	c := Connect(tb, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.EnsureStreams(ctx, bus.StreamConfig{RevocationMaxAge: maxAge}); err != nil {
		tb.Fatalf("ensure streams: %v", err)
	}
	return c
}

// WaitFor polls cond until it returns nil, and fails the test with cond's
// last error once timeout has passed (nats-server's checkFor). Tests wait
// on conditions with it, never on bare sleeps.
func WaitFor(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("still failing after %s: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ConnectURL connects to url (comma-separated for a cluster) and closes
// the connection when the test ends. The connection keeps reconnecting to
// any of the URLs, as Herald's components do.
func ConnectURL(tb testing.TB, url string) *bus.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{URL: url, Name: tb.Name()})
	if err != nil {
		tb.Fatalf("connect nats %s: %v", url, err)
	}
	tb.Cleanup(c.Close)
	return c
}

// RunOptions starts a nats-server from opts as they are (after making it
// quiet: NoLog, NoSigs), for tests that need server settings StartServer
// does not offer (operators, TLS, configs read from files), and shuts it
// down when the test ends.
func RunOptions(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	s.Start()
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats not ready")
	}
	return s
}
