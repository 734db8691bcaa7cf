package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/internal/tasks"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/browser"
	"github.com/heraldsec/herald/verifier/extauthz"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// verifierFlags are the verifier's own flags.
type verifierFlags struct {
	http, adminHTTP, data, natsURL, issuerURL, audience string
	logLevel                                            string
	upstream, onStale, id, trustedProxies, grpc         string
	maxStaleness, heartbeat                             time.Duration
	cacheSize                                           int
	nats                                                natsFlags
	cookies                                             cookieFlags
}

// cookieFlags configure browser sessions (proxy mode with cookies).
type cookieFlags struct {
	on                                                          bool
	issuerURL, keyFile, loginPath, public, clientID, secretFile string
	idle, maxAge                                                time.Duration
}

func (f *cookieFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "cookie-sessions", false, "browser sessions in proxy mode: an HttpOnly __Host-herald cookie stands for a session the verifier holds (needs --upstream)")
	fs.StringVar(&f.issuerURL, "issuer-url", "", "base URL of the issuer's OAuth endpoints, for cookie sessions (default: --issuer)")
	fs.StringVar(&f.keyFile, "cookie-key-file", "", "file with the cookie sealing key, base64 of 32 bytes, mode 0600; share it between replicas (default: <data>/cookie.key, created)")
	fs.DurationVar(&f.idle, "cookie-idle", browser.DefaultIdle, "a cookie session without requests for this long ends")
	fs.DurationVar(&f.maxAge, "cookie-max-age", browser.DefaultMaxAge, "a cookie session ends this long after login")
	fs.StringVar(&f.loginPath, "cookie-login-path", "", "redirect page views without a session here (public); empty answers 401")
	fs.StringVar(&f.public, "cookie-public", "", "comma-separated path prefixes forwarded without a session, e.g. /login,/static/")
	fs.StringVar(&f.clientID, "cookie-client-id", "", "client id the verifier refreshes cookie sessions as, for a registered client")
	fs.StringVar(&f.secretFile, "cookie-client-secret-file", "", "file with the secret of --cookie-client-id")
}

// config returns the cookie session config, nil when they are off.
func (f *cookieFlags) config(issuer string) (*browser.Config, error) {
	if !f.on {
		return nil, nil
	}
	c := &browser.Config{IssuerURL: f.issuerURL, KeyFile: f.keyFile, Idle: f.idle, MaxAge: f.maxAge,
		LoginPath: f.loginPath, ClientID: f.clientID}
	if c.IssuerURL == "" {
		c.IssuerURL = issuer
	}
	for p := range strings.SplitSeq(f.public, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.PublicPaths = append(c.PublicPaths, p)
		}
	}
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return nil, fmt.Errorf("verifier: --cookie-client-secret-file: %w", err)
		}
		c.ClientSecret = strings.TrimSpace(string(b))
	}
	return c, nil
}

// verifierGCPercent is the verifier process's GOGC unless the environment
// sets one.
const verifierGCPercent = 50

func runVerifier(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verifier", "verifier [flags]", stderr)
	var f verifierFlags
	fs.StringVar(&f.http, "http", sidecar.DefaultHTTPAddr, "verifier HTTP listen address (port 0 picks one)")
	fs.StringVar(&f.grpc, "grpc", "", "listen address of Envoy's gRPC ext_authz service (envoy.service.auth.v3.Authorization/Check), for Envoy and Istio (port 0 picks one); empty: off")
	fs.StringVar(&f.adminHTTP, "admin-http", "", "proxy mode: listen address of the verifier's own endpoints (/v1/status, /v1/verify, /healthz, /readyz, /metrics), kept off the application's --http listener (default "+sidecar.DefaultAdminAddr+", or loopback port 0 when --http has port 0)")
	fs.StringVar(&f.data, "data", filepath.Join(defaultDataDir, "verifier"), "data directory (denylist, verifier id)")
	fs.StringVar(&f.natsURL, "nats", "nats://"+natsserver.DefaultListen, "NATS URL (comma-separated for a cluster)")
	fs.StringVar(&f.issuerURL, "issuer", "http://"+issuer.DefaultHTTPAddr, "accepted iss claim")
	fs.StringVar(&f.audience, "audience", issuer.DefaultAudience, "accepted audience")
	fs.StringVar(&f.upstream, "upstream", "", "proxy mode: forward verified requests to this http(s) URL with X-Herald-* identity headers")
	fs.DurationVar(&f.maxStaleness, "max-staleness", sidecar.DefaultMaxStaleness, "how long the verifier may be cut off from NATS before it is stale")
	fs.StringVar(&f.onStale, "on-stale", sidecar.StaleDeny, "when stale: deny (no verdicts, 503) or allow (answer from the last state, marked X-Herald-Stale)")
	fs.DurationVar(&f.heartbeat, "heartbeat", bus.DefaultHeartbeatEvery, "how often to report to the fleet (HERALD_VERIFIERS); 0 disables")
	fs.StringVar(&f.id, "id", "", "id in the fleet (default: created once, kept in <data>/verifier.id)")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "127.0.0.0/8,::1/128", "comma-separated CIDRs (or addresses) of the proxies whose X-Forwarded-Proto, and forward-auth X-Forwarded-*/X-Original-* headers, DPoP checks believe; empty trusts none")
	fs.IntVar(&f.cacheSize, "cache-size", verifier.DefaultCacheSize, "verified tokens remembered to skip signature checks; 0 disables")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.nats.register(fs)
	f.cookies.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// The sidecar runs beside every application pod: keep its heap
		// near what it holds rather than twice that. Its heap is mostly
		// the denylist's index, which holds no pointers, so collecting
		// more often costs little.
		debug.SetGCPercent(verifierGCPercent)
	}
	cookies, err := f.cookies.config(f.issuerURL)
	if err != nil {
		return err
	}
	trusted, err := parsePrefixes(f.trustedProxies)
	if err != nil {
		return fmt.Errorf("verifier: --trusted-proxies: %w", err)
	}
	cfg := sidecar.Config{
		Verifier:  verifier.Config{Issuer: f.issuerURL, Audience: f.audience, CacheSize: f.cacheSize, TrustedProxies: trusted},
		EventKeys: f.nats.pins(),
		RootKeys:  f.nats.roots(),
		DataDir:   f.data,
		HTTPAddr:  f.http, AdminAddr: f.adminHTTP,
		Upstream: f.upstream, MaxStaleness: f.maxStaleness, OnStale: f.onStale,
		HeartbeatEvery: f.heartbeat, ID: f.id, Version: version,
		Cookies: cookies, Logger: log,
	}
	switch {
	case f.cacheSize == 0:
		cfg.Verifier.CacheSize = -1
	case f.cacheSize < 0:
		return fmt.Errorf("verifier: --cache-size %d: want 0 (off) or more", f.cacheSize)
	}
	switch {
	case f.heartbeat == 0:
		cfg.HeartbeatEvery = -1
	case f.heartbeat < 0:
		return fmt.Errorf("verifier: --heartbeat %s: want 0 (off) or more", f.heartbeat)
	}
	if f.maxStaleness <= 0 {
		return fmt.Errorf("verifier: --max-staleness %s: want a positive duration", f.maxStaleness)
	}
	if f.grpc != "" {
		if _, _, err := net.SplitHostPort(f.grpc); err != nil {
			return fmt.Errorf("verifier: --grpc %q: want host:port: %w", f.grpc, err)
		}
	}
	defer log.Info("herald stopped") // after every deferred close below
	b, err := connectBus(ctx, f.natsURL, "", "", "herald-verifier", bus.RoleVerifier, f.nats, log)
	if err != nil {
		return err
	}
	defer b.close()
	tel, err := setupTelemetry(ctx, "herald-verifier", log)
	if err != nil {
		return err
	}
	defer tel.shutdown()
	cfg.MeterProvider, cfg.Metrics = tel.meter, tel.metrics
	sc, err := sidecar.Open(cfg, b.conn)
	if err != nil {
		return err
	}
	defer sc.Close()
	if f.grpc == "" {
		return sc.Run(ctx)
	}
	return runWithExtAuthz(ctx, sc, f.grpc, log)
}

// runWithExtAuthz runs sc and, on addr, Envoy's gRPC ext_authz service
// with sc's verdicts, until ctx ends or either fails. It logs the
// service's address once it listens.
func runWithExtAuthz(ctx context.Context, sc *sidecar.Sidecar, addr string, log *slog.Logger) error {
	srv, err := extauthz.New(extauthz.Config{Verifier: sc.Verifier(), Logger: log})
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("verifier: --grpc: listen: %w", err)
	}
	log.Info("ext_authz grpc listening", "grpc", ln.Addr().String())
	g := tasks.New(ctx)
	g.Go("verifier", sc.Run)
	g.Go("ext_authz grpc", func(ctx context.Context) error { return srv.Serve(ctx, ln) })
	return g.Wait()
}

// parsePrefixes parses a comma-separated list of CIDR prefixes or single
// addresses. An empty list gives an empty, not nil, slice.
func parsePrefixes(list string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for item := range strings.SplitSeq(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR prefix nor an address", item)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
