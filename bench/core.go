package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// benchAdminToken is the admin credential of the bench's issuer; it never
// leaves the loopback interface.
const benchAdminToken = "hrld_bench_admin_token_not_secret"

// quietLogger returns a logger that discards everything: a scenario's
// components would otherwise drown its progress lines.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// core is Herald's centre as a scenario runs it, in this process: an
// embedded NATS server with JetStream (every write synced, as Herald runs
// it) and an issuer on a loopback port with rate limits off, so that only
// the design under test limits a load.
type core struct {
	dir  string
	log  *slog.Logger
	srv  natsServer
	conn *bus.Conn // the issuer's
	svc  *issuer.Service

	cancel context.CancelFunc
	wg     sync.WaitGroup
	runErr error
}

// startCore starts NATS and an issuer storing under dir. Close stops them.
func startCore(ctx context.Context, dir string) (*core, error) {
	return startCoreWith(ctx, dir, true, nil)
}

// startBus starts NATS alone, with Herald's streams and bucket, for the
// scale scenario: no issuer (it would follow the revocation stream too and
// compete for the CPU), and JetStream writes not synced one by one, so
// that a million revocations are published in seconds rather than
// minutes. Reading the stream, which is what scale measures, is the same
// either way.
func startBus(ctx context.Context, dir string) (*core, error) {
	return startCoreWith(ctx, dir, false, nil)
}

// natsServer is an embedded NATS server: Herald's (natsserver.Server) or the
// scale scenario's unsynced one.
type natsServer interface {
	ClientURL() string
	Shutdown()
}

// startCoreWith starts NATS and, if withIssuer, an issuer that trusts the
// external issuers trust.
func startCoreWith(ctx context.Context, dir string, withIssuer bool, trust []federation.Issuer) (_ *core, err error) {
	c := &core{dir: dir, log: quietLogger()}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if withIssuer {
		c.srv, err = natsserver.Start(ctx, natsserver.Config{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "nats")})
	} else {
		c.srv, err = startUnsyncedServer(filepath.Join(dir, "nats"))
	}
	if err != nil {
		return nil, err
	}
	if c.conn, err = c.connect(ctx, "bench-issuer"); err != nil {
		return nil, err
	}
	if !withIssuer {
		if err = c.conn.EnsureStreams(ctx, bus.StreamConfig{RevocationMaxAge: revocationLifetime + time.Minute}); err != nil {
			return nil, err
		}
		events, err := newEventSigner()
		if err != nil {
			return nil, err
		}
		c.conn.SetSigner(events)
		return c, c.conn.PublishEventKey(ctx)
	}
	c.svc, err = issuer.Open(ctx, issuer.Config{
		DataDir: filepath.Join(dir, "issuer"), HTTPAddr: "127.0.0.1:0", IssuerURL: benchIssuer,
		Audience: benchAudience, AdminToken: benchAdminToken, RateLimit: -1, ClientRateLimit: -1, Logger: c.log,
		Trust: trust, SSFLoopbackPush: true, // the push receivers run in this process
	}, c.conn)
	if err != nil {
		return nil, fmt.Errorf("start issuer: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.runErr = c.svc.Run(runCtx)
	}()
	return c, nil
}

// connect opens another connection to the core's NATS server.
// It signs events as the core's own connection does.
func (c *core) connect(ctx context.Context, name string) (*bus.Conn, error) {
	conn, err := bus.Connect(ctx, bus.Config{URL: c.srv.ClientURL(), Name: name, Logger: c.log})
	if err == nil && c.conn != nil {
		conn.SetSigner(c.conn.Signer())
	}
	return conn, err
}

// natsURL returns the URL of the core's NATS server.
func (c *core) natsURL() string { return c.srv.ClientURL() }

// Close stops the issuer, closes the connection and shuts NATS down, in
// that order. It is safe to call on a partly started core.
func (c *core) Close() error {
	if c.cancel != nil {
		c.cancel()
		c.wg.Wait()
	}
	var errs []error
	if c.svc != nil {
		errs = append(errs, c.svc.Close())
	}
	if c.conn != nil {
		c.conn.Close()
	}
	if c.srv != nil {
		c.srv.Shutdown()
	}
	if c.runErr != nil && !errors.Is(c.runErr, context.Canceled) {
		errs = append(errs, fmt.Errorf("issuer: %w", c.runErr))
	}
	return errors.Join(errs...)
}

// sessions creates n sessions, from 16 goroutines, and returns them in
// order. Subjects are prefix-0 to prefix-(n-1).
func (c *core) sessions(ctx context.Context, n int, prefix string, p *Progress) ([]*issuer.SessionResponse, error) {
	out := make([]*issuer.SessionResponse, n)
	err := forEach(n, 16, func(i int) error {
		s, err := c.svc.CreateSession(ctx, issuer.SessionRequest{Subject: fmt.Sprintf("%s-%d", prefix, i)}, "bench")
		if err != nil {
			return fmt.Errorf("create session %d: %w", i, err)
		}
		out[i] = s
		p.Step("sessions", i+1, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// forEach calls fn for 0 to n-1 from at most workers goroutines, each
// index once, and returns the first error; after one, no new call starts.
func forEach(n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		next  int
		first error
	)
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i, failed := next, first != nil
				next++
				mu.Unlock()
				if i >= n || failed {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// benchSidecar is an in-process verifier sidecar and the goroutine running it.
type benchSidecar struct {
	*sidecar.Sidecar
	conn   *bus.Conn
	cancel context.CancelFunc
	done   chan error
}

// startSidecar opens and runs an in-process sidecar on its own NATS
// connection, storing under dir. listen is false for a sidecar without
// HTTP. It does not wait for the sidecar to be ready.
func (c *core) startSidecar(ctx context.Context, name, dir string, listen bool) (*benchSidecar, error) {
	conn, err := c.connect(ctx, name)
	if err != nil {
		return nil, err
	}
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: benchIssuer, Audience: benchAudience},
		DataDir:  dir, HTTPAddr: "127.0.0.1:0", NoListen: !listen, ID: name, Logger: c.log,
	}, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &benchSidecar{Sidecar: sc, conn: conn, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- sc.Run(runCtx) }()
	return s, nil
}

// Close stops the sidecar, waits for it, and releases its denylist and
// connection.
func (s *benchSidecar) Close() error {
	s.cancel()
	err := <-s.done
	s.done <- err // a second Close gets the same answer
	errs := []error{err, s.Sidecar.Close()}
	s.conn.Close()
	return errors.Join(errs...)
}

// unsyncedServer is an embedded NATS server with JetStream whose writes
// are flushed to disk in the background rather than synced one by one.
type unsyncedServer struct{ ns *server.Server }

func startUnsyncedServer(dir string) (*unsyncedServer, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "herald-bench", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("start nats: not ready after 10s")
	}
	return &unsyncedServer{ns: ns}, nil
}

// ClientURL returns the nats:// URL clients connect to.
func (s *unsyncedServer) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits until it has stopped.
func (s *unsyncedServer) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// waitUntil polls cond every 5ms until it holds, ctx ends or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
