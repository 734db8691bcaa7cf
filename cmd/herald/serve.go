package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

const defaultDataDir = "herald-data"

// issuerFlags are the flags shared by dev and issuer.
type issuerFlags struct {
	http, data, natsURL, natsListen, issuerURL, audience, alg, logLevel string
	eventKeyFile                                                        string
	accessTTL, maxAccessTTL, sessionTTL, sessionIdle, keyRotation       time.Duration
	snapshotInterval, eventStreamMaxAge                                 time.Duration
	rateLimit, clientRateLimit                                          float64
	replicas, snapshotEvery                                             int
	nats                                                                natsFlags
}

// natsFlags are how issuer and verifier authenticate to NATS: files, never
// secrets on the command line.
type natsFlags struct {
	creds, nkey, ca, cert, key, domain, eventKeys, rootKeys string
	discover                                                bool
}

func (f *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials file (user JWT and seed, as nsc writes it)")
	fs.StringVar(&f.nkey, "nats-nkey", "", "NATS nkey seed file, e.g. herald-data/"+natsserver.AuthDir+"/verifier.nk of herald dev's embedded server")
	fs.BoolVar(&f.discover, "nats-discover", true, "without --nats-creds, --nats-nkey, --nats-cert or --nats-ca: use the seed and CA of herald dev's embedded server under ./"+defaultDataDir+"/"+natsserver.AuthDir+" if they exist")
	fs.StringVar(&f.ca, "nats-ca", "", "PEM file of the CAs that sign the NATS servers' certificates (requires TLS)")
	fs.StringVar(&f.cert, "nats-cert", "", "PEM client certificate for NATS servers that verify clients (with --nats-key)")
	fs.StringVar(&f.key, "nats-key", "", "PEM key of --nats-cert")
	fs.StringVar(&f.domain, "nats-domain", "", "JetStream domain of the hub, when connected to a leaf node (see deploy/README.md)")
	fs.StringVar(&f.eventKeys, "event-keys", "", "comma-separated kids of the issuers' event keys to trust (printed by the issuer as event_kid); empty: trust on first use")
	fs.StringVar(&f.rootKeys, "root-keys", "", "comma-separated kids of the offline root keys that certify and revoke event keys (herald keys root create)")
}

// roots returns the root key kids of --root-keys.
func (f *natsFlags) roots() []string { return splitList(f.rootKeys) }

// pins returns the event key kids of --event-keys.
func (f *natsFlags) pins() []string { return splitList(f.eventKeys) }

func (f *issuerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.http, "http", issuer.DefaultHTTPAddr, "issuer HTTP listen address (port 0 picks one)")
	fs.StringVar(&f.data, "data", defaultDataDir, "data directory (keys, admin token, embedded NATS)")
	fs.StringVar(&f.natsURL, "nats", "", "connect to this NATS (comma-separated URLs) instead of embedding a server")
	fs.StringVar(&f.natsListen, "nats-listen", natsserver.DefaultListen, "listen address of the embedded NATS server")
	fs.StringVar(&f.issuerURL, "issuer-url", "", "iss claim and issuer identifier (default http://<http address>)")
	fs.StringVar(&f.audience, "audience", issuer.DefaultAudience, "aud claim of access tokens")
	fs.StringVar(&f.alg, "algorithm", bus.AlgEdDSA, "signing algorithm: EdDSA or ES256")
	fs.DurationVar(&f.accessTTL, "access-ttl", issuer.DefaultAccessTTL, "access token lifetime")
	fs.DurationVar(&f.maxAccessTTL, "max-access-ttl", issuer.DefaultMaxAccessTTL, "longest access token lifetime; bounds how long revocations are kept")
	fs.DurationVar(&f.sessionTTL, "session-ttl", issuer.DefaultSessionTTL, "absolute session lifetime: refresh stops after it")
	fs.DurationVar(&f.sessionIdle, "session-idle", issuer.DefaultSessionIdle, "a session not refreshed for this long ends")
	fs.DurationVar(&f.keyRotation, "key-rotation", 0, "rotate the signing key this often, e.g. 24h (0: only on demand)")
	fs.Float64Var(&f.rateLimit, "rate-limit", issuer.DefaultRateLimit, "token endpoint requests per second per source address (-1: off)")
	fs.Float64Var(&f.clientRateLimit, "client-rate-limit", issuer.DefaultClientRateLimit, "token endpoint requests per second per client (-1: off)")
	fs.IntVar(&f.snapshotEvery, "snapshot-every", issuer.DefaultSnapshotEvery, "publish a denylist snapshot for fresh verifiers every this many revocation events (-1: off)")
	fs.DurationVar(&f.snapshotInterval, "snapshot-interval", issuer.DefaultSnapshotInterval, "also publish one this long after the last if any revocation came since")
	fs.DurationVar(&f.eventStreamMaxAge, "event-stream-max-age", issuer.DefaultEventStreamMaxAge, "longest a GET /v1/events stream lasts before the client reconnects with Last-Event-ID")
	fs.IntVar(&f.replicas, "replicas", 1, "stream and bucket replicas (3 on a NATS cluster)")
	fs.StringVar(&f.eventKeyFile, "event-key-file", "", "PEM private key (mode 0600) signing events, shared by the replicas of a deployment (default: created in <data>/event-key)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.nats.register(fs)
}

func (f *issuerFlags) config(log *slog.Logger, tel *telemetry) issuer.Config {
	return issuer.Config{
		MeterProvider:     tel.meter,
		Metrics:           tel.metrics,
		DataDir:           f.data,
		HTTPAddr:          f.http,
		IssuerURL:         f.issuerURL,
		Audience:          f.audience,
		Algorithm:         f.alg,
		AccessTTL:         f.accessTTL,
		MaxAccessTTL:      f.maxAccessTTL,
		SessionTTL:        f.sessionTTL,
		SessionIdle:       f.sessionIdle,
		KeyRotation:       f.keyRotation,
		SnapshotEvery:     f.snapshotEvery,
		SnapshotInterval:  f.snapshotInterval,
		EventStreamMaxAge: f.eventStreamMaxAge,
		RateLimit:         f.rateLimit,
		ClientRateLimit:   f.clientRateLimit,
		AdminToken:        os.Getenv("HERALD_ADMIN_TOKEN"),
		Replicas:          f.replicas,
		EventKeys:         f.nats.pins(),
		RootKeys:          f.nats.roots(),
		EventKeyFile:      f.eventKeyFile,
		Logger:            log,
	}
}

// natsBus is a connection to NATS and, when embedded, its server.
type natsBus struct {
	conn   *bus.Conn
	server *natsserver.Server
}

// connectBus connects to url as role, or, when url is empty, starts an
// embedded server on listen storing under dataDir/nats, secured with the
// TLS and nkey files of dataDir/nats-auth, and connects to it as the
// issuer.
func connectBus(ctx context.Context, url, listen, dataDir, name string, role bus.Role, auth natsFlags, log *slog.Logger) (*natsBus, error) {
	b := &natsBus{}
	cfg := auth.config(url, name, role, log)
	if url == "" {
		files, written, err := natsserver.EnsureAuthFiles(filepath.Join(dataDir, natsserver.AuthDir), natsserver.CertHosts(listen), time.Now())
		if err != nil {
			return nil, err
		}
		sa, err := files.Auth()
		if err != nil {
			return nil, err
		}
		s, err := natsserver.Start(ctx, natsserver.Config{Listen: listen, StoreDir: filepath.Join(dataDir, "nats"), Logger: log, Auth: sa})
		if err != nil {
			return nil, err
		}
		b.server = s
		log.Info("nats requires TLS and an nkey", "dir", files.Dir, "ca", files.CAFile(),
			"verifier_nkey", files.SeedFile(bus.RoleVerifier), "dashboard_nkey", files.SeedFile(bus.RoleDashboard),
			"created", strings.Join(written, ","))
		cfg = bus.Config{URL: s.ClientURL(), Name: name, Logger: log,
			NkeyFile: files.SeedFile(bus.RoleIssuer), CAFile: files.CAFile()}
	}
	conn, err := bus.Connect(ctx, cfg)
	if err != nil {
		b.close()
		return nil, err
	}
	b.conn = conn
	return b, nil
}

// close drains the connection, then stops the embedded server.
func (b *natsBus) close() {
	if b.conn != nil {
		b.conn.Close()
	}
	if b.server != nil {
		b.server.Shutdown()
	}
}

func runIssuer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("issuer", "issuer [flags]", stderr)
	var f issuerFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	defer log.Info("herald stopped") // after every deferred close below
	b, err := connectBus(ctx, f.natsURL, f.natsListen, f.data, "herald-issuer", bus.RoleIssuer, f.nats, log)
	if err != nil {
		return err
	}
	defer b.close()
	if b.server != nil {
		log.Info("nats ready", "nats", b.server.ClientURL())
	}
	tel, err := setupTelemetry(ctx, "herald-issuer", log)
	if err != nil {
		return err
	}
	defer tel.shutdown()
	svc, err := issuer.Open(ctx, f.config(log, tel), b.conn)
	if err != nil {
		return err
	}
	defer svc.Close()
	return svc.Run(ctx)
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", "dev [flags]", stderr)
	var f issuerFlags
	f.register(fs)
	verifierHTTP := fs.String("verifier-http", sidecar.DefaultHTTPAddr, "verifier HTTP listen address (port 0 picks one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	defer log.Info("herald stopped") // after every deferred close below
	b, err := connectBus(ctx, f.natsURL, f.natsListen, f.data, "herald-dev", bus.RoleIssuer, f.nats, log)
	if err != nil {
		return err
	}
	defer b.close() // last: after the verifier's denylist is closed
	tel, err := setupTelemetry(ctx, "herald-issuer", log)
	if err != nil {
		return err
	}
	defer tel.shutdown()
	svc, err := issuer.Open(ctx, f.config(log, tel), b.conn)
	if err != nil {
		return err
	}
	defer svc.Close()
	sc, err := sidecar.Open(sidecar.Config{
		Verifier:      verifier.Config{Issuer: svc.IssuerURL(), Audience: f.audience},
		EventKeys:     append([]string{svc.EventKeyID()}, f.nats.pins()...),
		RootKeys:      f.nats.roots(),
		DataDir:       filepath.Join(f.data, "verifier"),
		HTTPAddr:      *verifierHTTP,
		Logger:        log,
		Version:       version,
		MeterProvider: tel.meter,
		Metrics:       tel.metrics,
	}, b.conn)
	if err != nil {
		return err
	}
	defer sc.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, r := range []func(context.Context) error{svc.Run, sc.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = r(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	natsURL, natsAuth := f.natsURL, "(given with --nats)"
	if b.server != nil {
		natsURL = b.server.ClientURL()
		natsAuth = fmt.Sprintf("TLS, CA and nkeys in %s (verifier.nk, dashboard.nk)", filepath.Join(f.data, natsserver.AuthDir))
	}
	tokenFile := filepath.Join(f.data, issuer.AdminTokenFile)
	if os.Getenv("HERALD_ADMIN_TOKEN") != "" {
		tokenFile = "(HERALD_ADMIN_TOKEN)"
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if sc.WaitReady(ctx) != nil {
			return // stopped before it was ready
		}
		log.Info("herald dev ready", "issuer", svc.URL(), "verifier", sc.URL(), "nats", natsURL, "admin_token", tokenFile)
		fmt.Fprintf(stdout, "Herald is running.\n  issuer:      %s (dashboard)\n  verifier:    %s\n  nats:        %s\n  nats auth:   %s\n  admin token: %s\nPress Ctrl-C to stop.\n",
			svc.URL(), sc.URL(), natsURL, natsAuth, tokenFile)
	}()
	wg.Wait()
	return errors.Join(errs...)
}
