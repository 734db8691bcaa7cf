// Package bustest starts real embedded NATS servers with JetStream
// (bus/natsserver) for tests, and connects Herald clients to them.
package bustest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/nats-io/nats-server/v2/server"
)

// RunServer starts an embedded NATS server with JetStream on a random
// loopback port, storing under a temporary directory, and shuts it down
// when the test ends.
func RunServer(tb testing.TB) *natsserver.Server {
	tb.Helper()
	return RunServerIn(tb, tb.TempDir(), "127.0.0.1:0")
}

// RunServerIn starts an embedded server storing in dir and listening on
// listen, for tests that restart a server on the same port and data. The
// server is shut down when the test ends; shutting it down earlier is fine.
func RunServerIn(tb testing.TB, dir, listen string) *natsserver.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, natsserver.Config{Listen: listen, StoreDir: dir})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// Connect connects to s and closes the connection when the test ends.
func Connect(tb testing.TB, s *natsserver.Server) *bus.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{URL: s.ClientURL(), Name: tb.Name()})
	if err != nil {
		tb.Fatalf("connect nats: %v", err)
	}
	tb.Cleanup(c.Close)
	c.SetSigner(Signer(tb))
	return c
}

// Setup connects to s and creates Herald's streams and bucket with a
// revocation retention of maxAge.
func Setup(tb testing.TB, s *natsserver.Server, maxAge time.Duration) *bus.Conn {
	tb.Helper()
	c := Connect(tb, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.EnsureStreams(ctx, bus.StreamConfig{RevocationMaxAge: maxAge}); err != nil {
		tb.Fatalf("ensure streams: %v", err)
	}
	if err := c.PublishEventKey(ctx); err != nil {
		tb.Fatalf("publish event key: %v", err)
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
	c.SetSigner(Signer(tb))
	return c
}

// RunOptions starts a nats-server from opts as they are (after making it
// quiet: NoLog, NoSigs), for tests that need server settings natsserver.Start
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

var eventKey = sync.OnceValues(func() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
})

// EventKey returns the private event key of Signer, for tests that craft
// signed messages by hand (tampered or misplaced ones).
func EventKey(tb testing.TB) ed25519.PrivateKey {
	priv, err := eventKey()
	if err != nil {
		tb.Fatalf("event key: %v", err)
	}
	return priv
}

// Signer returns the event signer every connection from this package
// signs with: one Ed25519 event key per test binary. Setup publishes it.
func Signer(tb testing.TB) *bus.Signer {
	s, err := bus.NewSigner(EventKey(tb), "https://issuer.test")
	if err != nil {
		tb.Fatalf("event signer: %v", err)
	}
	return s
}

// EventKeyFile writes EventKey as a PKCS#8 PEM file of mode 0600 in a
// temporary directory and returns its path, for issuers that sign with
// the test event key (issuer.Config.EventKeyFile).
func EventKeyFile(tb testing.TB) string {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(EventKey(tb))
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "event-key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// ForeignConn connects to s signing with a fresh event key of its own,
// which nothing trusts: someone with publish and bucket rights on NATS but
// without the issuer's event key. Its Signer signs entries as theirs.
func ForeignConn(tb testing.TB, s *natsserver.Server) *bus.Conn {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := bus.NewSigner(priv, "https://issuer.test")
	if err != nil {
		tb.Fatal(err)
	}
	c := Connect(tb, s)
	c.SetSigner(signer)
	return c
}

var ssfKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// SSFKey returns the SSF transmitter test key: one 2048-bit RSA key per
// test binary, so that issuer replicas share it (as deployments must) and
// tests pay for one key generation.
func SSFKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	k, err := ssfKey()
	if err != nil {
		tb.Fatalf("ssf key: %v", err)
	}
	return k
}

// SSFKeyFile writes SSFKey as a PKCS#8 PEM file of mode 0600 in a
// temporary directory and returns its path (issuer.Config.SSFKeyFile).
func SSFKeyFile(tb testing.TB) string {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(SSFKey(tb))
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "ssf-key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// RunUntilStopped runs fn in a goroutine; the returned stop cancels it,
// waits for it and then calls closeFn. stop also runs at cleanup.
func RunUntilStopped(tb testing.TB, fn func(context.Context) error, closeFn func()) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("run: %v", err)
			}
			closeFn()
		})
	}
	tb.Cleanup(stop)
	return stop
}
