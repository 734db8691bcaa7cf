package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is where the embedded NATS server listens unless told otherwise.
const DefaultListen = "127.0.0.1:4222"

// ServerConfig configures an embedded NATS server with JetStream.
type ServerConfig struct {
	// Listen is the client address, host:port. Port 0 picks a free port.
	// Default DefaultListen.
	Listen string
	// StoreDir holds JetStream's files. Required.
	StoreDir string
	// Logger receives the server's log lines at their own level. Nil
	// discards them.
	Logger *slog.Logger
}

// Server is an embedded NATS server with JetStream.
type Server struct {
	ns *server.Server
}

// StartServer starts an embedded NATS server with JetStream on disk under
// cfg.StoreDir and waits until it accepts connections.
//
// Every JetStream write is synced to disk before it is acknowledged
// (sync_interval: always): the default interval of two minutes would lose
// acknowledged revocations on a machine crash.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.StoreDir == "" {
		return nil, errors.New("start nats: store dir is required")
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("start nats: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("start nats: listen address %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as "the default port"
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	opts := &server.Options{
		ServerName:   "herald",
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		SyncAlways:   true,
		SyncInterval: 2 * time.Minute, // only used for the background flush; SyncAlways syncs every write
		NoSigs:       true,
		NoLog:        cfg.Logger == nil,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(&natsLogger{l: cfg.Logger.With("component", "nats")}, false, false, false)
	}
	ns.Start()
	deadline := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !ns.ReadyForConnections(deadline) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats on %s: not ready after %s", cfg.Listen, deadline)
	}
	return &Server{ns: ns}, nil
}

// ClientURL returns the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Addr returns the address the server accepts clients on.
func (s *Server) Addr() net.Addr { return s.ns.Addr() }

// NATS returns the underlying nats-server, for tests and advanced setups.
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server and waits until it has stopped. It is safe to
// call more than once.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// natsLogger adapts nats-server's logger to slog.
type natsLogger struct{ l *slog.Logger }

// Noticef logs at debug: nats-server's notices are start-up chatter.
func (n *natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Tracef(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
