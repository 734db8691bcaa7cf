package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is where the embedded NATS server listens unless told otherwise.
const DefaultListen = "127.0.0.1:4222"

// Config configures an embedded NATS server with JetStream.
type Config struct {
	// Listen is the client address, host:port. Port 0 picks a free port.
	// Default DefaultListen.
	Listen string
	// StoreDir holds JetStream's files. Required unless NoJetStream.
	StoreDir string
	// Logger receives the server's log lines at their own level. Nil
	// discards them.
	Logger *slog.Logger
	// Name names the server in its cluster: stream info reports leaders
	// and replicas by it, so every server of a cluster needs its own.
	// Default DefaultName; required with Cluster.
	Name string
	// Cluster, when Cluster.Listen is set, makes the server one node of a
	// JetStream cluster: streams with 3 replicas are spread over its nodes.
	Cluster ClusterConfig
	// Leaf configures leaf node connections: accepting them (a hub) and
	// making them (an edge server linked to a hub).
	Leaf LeafConfig
	// NoJetStream runs the server without JetStream, as an edge leaf node
	// does: its clients reach the hub's streams through the leaf
	// connection by naming the hub's JetStreamDomain.
	NoJetStream bool
	// JetStreamDomain names this server's (and its cluster's) JetStream,
	// so that clients of leaf nodes can address it across the leaf
	// connection (bus.Config.JetStreamDomain). nats-server does not let
	// plain JetStream API requests cross a leaf connection. Empty: none.
	JetStreamDomain string
	// Auth, when set, makes clients use TLS and authenticate with the nkey
	// of a user, which gets its role's permissions. It covers client
	// connections only, so it cannot go with Cluster or Leaf.Listen.
	// Nil: plain connections, no authentication.
	Auth *Auth
}

// DefaultName is the name of an embedded server that is given none.
const DefaultName = "herald"

// ClusterConfig joins an embedded server to a NATS cluster over routes.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node. Required with Listen.
	Name string
	// Listen is where the server accepts routes from the other nodes,
	// host:port. Port 0 picks a free port. Empty: no cluster.
	Listen string
	// Routes are the nats-route://host:port URLs of the cluster's nodes;
	// the server's own URL may be among them (it is skipped). JetStream
	// clustering needs at least one.
	Routes []string
}

// LeafConfig configures leaf node connections of an embedded server.
type LeafConfig struct {
	// Listen is where the server accepts leaf node connections, host:port.
	// Port 0 picks a free port. Empty accepts none.
	Listen string
	// Remotes are the nats-leaf://host:port URLs of the hub (one cluster,
	// any of its nodes) this server links to as a leaf node. The link is
	// retried for as long as the server runs.
	Remotes []string
}

func (cfg *Config) validate() error {
	var errs []error
	if cfg.StoreDir == "" && !cfg.NoJetStream {
		errs = append(errs, errors.New("store dir is required"))
	}
	if cfg.Cluster.Listen != "" {
		if cfg.Cluster.Name == "" {
			errs = append(errs, errors.New("cluster name is required"))
		}
		if cfg.Name == "" {
			errs = append(errs, errors.New("server name is required in a cluster"))
		}
		if len(cfg.Cluster.Routes) == 0 && !cfg.NoJetStream {
			errs = append(errs, errors.New("a JetStream cluster needs routes"))
		}
	} else if len(cfg.Cluster.Routes) > 0 {
		errs = append(errs, errors.New("cluster routes without a cluster listen address"))
	}
	if a := cfg.Auth; a != nil {
		if a.CertFile == "" || a.KeyFile == "" {
			errs = append(errs, errors.New("auth needs a server certificate and key"))
		}
		if len(a.Users) == 0 {
			errs = append(errs, errors.New("auth needs at least one user"))
		}
		if cfg.Cluster.Listen != "" || cfg.Leaf.Listen != "" {
			errs = append(errs, errors.New("auth secures clients only: it cannot go with cluster or leaf connections"))
		}
	}
	return errors.Join(errs...)
}

// hostPort splits a listen address and maps port 0 to nats-server's
// "random port" (nats-server reads 0 as "the default port").
func hostPort(what, addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s address %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s address %q: bad port", what, addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

func parseURLs(what string, urls []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(urls))
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			return nil, fmt.Errorf("%s url %q: want scheme://host:port", what, u)
		}
		out = append(out, p)
	}
	return out, nil
}

// options returns the nats-server options of cfg.
func (cfg *Config) options() (*server.Options, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	host, port, err := hostPort("listen", cfg.Listen)
	if err != nil {
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name = DefaultName
	}
	opts := &server.Options{
		ServerName:   name,
		Host:         host,
		Port:         port,
		JetStream:    !cfg.NoJetStream,
		StoreDir:     cfg.StoreDir,
		SyncAlways:   true,
		SyncInterval: 2 * time.Minute, // only used for the background flush; SyncAlways syncs every write
		NoSigs:       true,
		NoLog:        cfg.Logger == nil,
	}
	if !cfg.NoJetStream {
		opts.JetStreamDomain = cfg.JetStreamDomain
	}
	if cfg.Auth != nil {
		if err := cfg.Auth.apply(opts); err != nil {
			return nil, err
		}
	}
	if cfg.Cluster.Listen != "" {
		opts.Cluster.Name = cfg.Cluster.Name
		if opts.Cluster.Host, opts.Cluster.Port, err = hostPort("cluster listen", cfg.Cluster.Listen); err != nil {
			return nil, err
		}
		if opts.Routes, err = parseURLs("route", cfg.Cluster.Routes); err != nil {
			return nil, err
		}
	}
	if cfg.Leaf.Listen != "" {
		if opts.LeafNode.Host, opts.LeafNode.Port, err = hostPort("leaf listen", cfg.Leaf.Listen); err != nil {
			return nil, err
		}
	}
	if len(cfg.Leaf.Remotes) > 0 {
		urls, err := parseURLs("leaf remote", cfg.Leaf.Remotes)
		if err != nil {
			return nil, err
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: urls}}
		opts.LeafNode.ReconnectInterval = time.Second
	}
	return opts, nil
}

// Server is an embedded NATS server with JetStream.
type Server struct {
	ns *server.Server
}

// Start starts an embedded NATS server with JetStream on disk under
// cfg.StoreDir and waits until it accepts connections. With cfg.Cluster it
// is one node of a JetStream cluster, which elects its leaders after
// Start returns (see Server.NATS and JetStreamIsCurrent); with
// cfg.Leaf it accepts or makes leaf node connections.
//
// Every JetStream write is synced to disk before it is acknowledged
// (sync_interval: always): the default interval of two minutes would lose
// acknowledged revocations on a machine crash.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	opts, err := cfg.options()
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	if !cfg.NoJetStream {
		if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
			return nil, fmt.Errorf("start nats: %w", err)
		}
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

// ClientURL returns the nats:// URL clients on this machine connect to:
// the listen address, or loopback when the server listens on every
// interface. With Config.Auth the connection is upgraded to TLS,
// as the server requires.
func (s *Server) ClientURL() string {
	a, ok := s.ns.Addr().(*net.TCPAddr)
	if !ok {
		return s.ns.ClientURL()
	}
	ip := a.IP
	switch {
	case ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	return "nats://" + net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

// Addr returns the address the server accepts clients on.
func (s *Server) Addr() net.Addr { return s.ns.Addr() }

// Name returns the server's name, as stream info reports leaders and replicas.
func (s *Server) Name() string { return s.ns.Name() }

// ClusterAddr returns the address the server accepts routes on, nil
// outside a cluster.
func (s *Server) ClusterAddr() net.Addr {
	if a := s.ns.ClusterAddr(); a != nil {
		return a
	}
	return nil
}

// LeafAddr returns the address the server accepts leaf node connections
// on, nil if it accepts none.
func (s *Server) LeafAddr() net.Addr {
	v, err := s.ns.Varz(nil)
	if err != nil || v.LeafNode.Port <= 0 {
		return nil
	}
	return &net.TCPAddr{IP: net.ParseIP(v.LeafNode.Host), Port: v.LeafNode.Port}
}

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
