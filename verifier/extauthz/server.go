package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/tap"

	"github.com/heraldsec/herald/verifier"
)

// Defaults for Config.
const (
	// DefaultMaxRequestSize bounds a CheckRequest: Envoy's own bound on a
	// request's headers is 60 KiB, and the verifier needs no body.
	DefaultMaxRequestSize = 128 << 10
	// DefaultMaxConcurrentStreams bounds the Checks in flight on one
	// connection. Envoy multiplexes its checks over few connections and
	// opens another when one has as many calls as the server allows.
	DefaultMaxConcurrentStreams = 100
	// DefaultMaxConnections bounds the connections served at once; a
	// further one waits in the listener's queue until one closes. Envoy
	// keeps about one connection per worker thread.
	DefaultMaxConnections = 64
)

// streamWindow is gRPC's initial flow-control window of a call, which
// bounds what a client can send of a request the server has not yet
// read: 64 KiB, its minimum and default.
const streamWindow = 64 << 10

// MaxHeaderListSize bounds a call's HTTP/2 headers (its gRPC metadata),
// decoded, in bytes; a call over it is refused before its handler runs.
// Envoy sends a few headers of metadata (the request's own headers travel
// in the CheckRequest); gRPC's default of 16 MiB would let a client that
// sends each header after the first as a one-byte HPACK index make the
// server keep about 16 MiB for every call it leaves open.
const MaxHeaderListSize = 64 << 10

// DefaultCallTimeout is the default Config.CallTimeout. A verdict takes
// microseconds; a call still open after this long is one whose request
// never came in full, which would otherwise hold its buffers (up to
// MaxRequestSize) for as long as its connection lives.
const DefaultCallTimeout = 10 * time.Second

// Timeouts of the gRPC server.
const (
	// handshakeTimeout bounds a connection's HTTP/2 handshake.
	handshakeTimeout = 10 * time.Second
	// idleTimeout closes a connection without calls for this long.
	idleTimeout = 5 * time.Minute
	// shutdownTimeout is how long Serve waits for calls in flight before
	// it ends them.
	shutdownTimeout = 10 * time.Second
)

// Config configures a Server.
type Config struct {
	// Verifier gives the verdicts. Required.
	Verifier *verifier.Verifier
	// Logger receives the server's logs. Nil uses slog.Default().
	Logger *slog.Logger
	// MaxRequestSize bounds a CheckRequest, in bytes; a larger one is
	// refused with RESOURCE_EXHAUSTED before it is decoded. Default
	// DefaultMaxRequestSize.
	MaxRequestSize int
	// MaxConcurrentStreams bounds the calls in flight on one connection.
	// Default DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// MaxConnections bounds the connections served at once. Default
	// DefaultMaxConnections. With MaxConcurrentStreams it bounds what
	// callers can make the server hold: MaxConnections x
	// MaxConcurrentStreams calls, each with at most 64 KiB of request
	// unread and MaxHeaderListSize of metadata (about 800 MiB at the
	// defaults, for at most CallTimeout).
	MaxConnections int
	// CallTimeout bounds a call from its headers to its answer, however
	// long a deadline the caller sets or none; a call over it is ended
	// with DEADLINE_EXCEEDED. Default DefaultCallTimeout.
	CallTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxRequestSize == 0 {
		c.MaxRequestSize = DefaultMaxRequestSize
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Verifier == nil {
		errs = append(errs, errors.New("verifier is required"))
	}
	if c.MaxRequestSize < 1<<10 {
		errs = append(errs, fmt.Errorf("max request size %d is below 1 KiB", c.MaxRequestSize))
	}
	if c.CallTimeout < 0 {
		errs = append(errs, fmt.Errorf("call timeout %s is negative", c.CallTimeout))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("max connections %d is negative", c.MaxConnections))
	}
	return errors.Join(errs...)
}

// Server answers Envoy's Authorization/Check calls with a verifier's
// verdicts. Make one with New.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	cfg Config
	v   *verifier.Verifier
	log *slog.Logger
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server with cfg, or an error naming every problem with
// cfg.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ext_authz server config: %w", err)
	}
	return &Server{cfg: cfg, v: cfg.Verifier, log: cfg.Logger.With("component", "ext_authz")}, nil
}

// serverOptions builds the gRPC server's options from the config.
func (s *Server) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestSize),
		grpc.MaxConcurrentStreams(s.cfg.MaxConcurrentStreams),
		grpc.InitialWindowSize(streamWindow),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idleTimeout}),
		grpc.InTapHandle(s.bound),
	}
}

// bound runs as each call's headers arrive, before its request is read:
// the call's context, which its reads of the request wait on too, ends
// after CallTimeout. The stream's own end cancels it sooner.
func (s *Server) bound(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	context.AfterFunc(ctx, cancel) // releases the timer once either ends
	return ctx, nil
}

// Serve answers Check calls on ln, at most MaxConnections connections at
// once, until ctx ends, then stops gracefully: it waits up to ten seconds
// for calls in flight, then ends them. It closes ln, and returns the gRPC
// server's error, or nil after a clean stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	gs := grpc.NewServer(s.serverOptions()...)
	authv3.RegisterAuthorizationServer(gs, s)
	errc := make(chan error, 1)
	bounded := netutil.LimitListener(ln, s.cfg.MaxConnections)
	go func() { errc <- gs.Serve(bounded) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve grpc on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(shutdownTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.log.Warn("gRPC calls still in flight at shutdown: ended", "after", shutdownTimeout)
		gs.Stop() // makes GracefulStop return
		<-stopped
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("serve grpc on %s: %w", ln.Addr(), err)
	}
	return nil
}
