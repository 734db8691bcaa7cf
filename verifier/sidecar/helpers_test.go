package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// The shared fixtures of package verifiertest, under the names these
// tests use.
type (
	testKeys = verifiertest.Keys
	dpopKey  = verifiertest.DPoPKey
)

const (
	testIssuer   = verifiertest.Issuer
	testAudience = verifiertest.Audience
)

var (
	newTestKeys       = verifiertest.NewKeys
	baseClaims        = verifiertest.BaseClaims
	mustJSON          = verifiertest.MustJSON
	publishKey        = verifiertest.PublishKey
	publishRevocation = verifiertest.PublishRevocation
	newDPoPKey        = verifiertest.NewDPoPKey
)

// fixture is a real embedded NATS with Herald's streams, both test keys
// published in HERALD_KEYS, and a running sidecar that is ready.
type fixture struct {
	*testKeys
	srv  *natsserver.Server
	conn *bus.Conn
	dir  string
	sc   *Sidecar
	stop func()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureMaxAge(t, 20*time.Minute)
}

func newFixtureMaxAge(t *testing.T, maxAge time.Duration) *fixture {
	t.Helper()
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, maxAge)
	f := &fixture{testKeys: newTestKeys(t), srv: s, conn: conn, dir: t.TempDir()}
	publishKey(t, conn, f.EdKid, f.EdJWK)
	publishKey(t, conn, f.EsKid, f.EsJWK)
	f.sc, f.stop = startSidecar(t, conn, f.dir)
	waitReady(t, f.sc)
	return f
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startSidecar opens a sidecar on dir and runs it. The returned stop
// cancels Run, waits for it and closes the sidecar; it runs at cleanup if
// the test does not call it, and may be called more than once.
func startSidecar(t *testing.T, conn *bus.Conn, dir string) (*Sidecar, func()) {
	t.Helper()
	return startSidecarWith(t, conn, Config{DataDir: dir})
}

// startSidecarWith is startSidecar with more of the config: the verifier
// config, listen address and logger are filled in when left zero.
func startSidecarWith(t *testing.T, conn *bus.Conn, cfg Config) (*Sidecar, func()) {
	t.Helper()
	if cfg.Verifier.Issuer == "" {
		cfg.Verifier = verifier.Config{Issuer: testIssuer, Audience: testAudience}
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	sc, err := Open(cfg, conn)
	if err != nil {
		t.Fatalf("open sidecar: %v", err)
	}
	stop := bustest.RunUntilStopped(t, sc.Run, func() {
		if err := sc.Close(); err != nil {
			t.Errorf("close sidecar: %v", err)
		}
	})
	return sc, stop
}

func waitReady(t *testing.T, sc *Sidecar) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := sc.Status(); !st.Ready {
			return fmt.Errorf("sidecar not ready: %+v", st)
		}
		return nil
	})
}

// revoke publishes a revocation made at at and waits until sc has applied it.
func revoke(t *testing.T, conn *bus.Conn, sc *Sidecar, kind bus.Kind, value string, at time.Time) uint64 {
	t.Helper()
	seq := publishRevocation(t, conn, kind, value, at)
	if sc != nil {
		waitApplied(t, sc, seq)
	}
	return seq
}

func waitApplied(t *testing.T, sc *Sidecar, seq uint64) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if got := sc.Status().Applied; got < seq {
			return fmt.Errorf("applied %d, want %d", got, seq)
		}
		return nil
	})
}

// benchSidecarWith opens and runs a sidecar with cfg, which gets the test
// issuer and audience and no heartbeats; the returned stop ends it.
func benchSidecarWith(b *testing.B, conn *bus.Conn, cfg Config) (*Sidecar, func()) {
	b.Helper()
	cfg.Verifier = verifier.Config{Issuer: testIssuer, Audience: testAudience}
	cfg.HeartbeatEvery = -1
	sc, err := Open(cfg, conn)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	return sc, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		sc.Close()
	}
}
