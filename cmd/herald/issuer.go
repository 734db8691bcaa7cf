package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/internal/secretfile"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/ssf"
)

// issuerFlags are the flags shared by dev and issuer.
type issuerFlags struct {
	http, data, natsURL, natsListen, issuerURL, audience, alg, logLevel string
	eventKeyFile                                                        string
	trustIssuer, trustIssuersFile, ssfPoll, ssfPollTokenFile            string
	ssfPollClientID, ssfPollClientSecretFile, ssfPollScope              string
	ssfPollTokenURL                                                     string
	ssfKeyFile, ssfDefaultSubjects                                      string
	ssfRetention                                                        time.Duration
	accessTTL, maxAccessTTL, sessionTTL, sessionIdle, keyRotation       time.Duration
	snapshotInterval, eventStreamMaxAge                                 time.Duration
	rateLimit, clientRateLimit                                          float64
	replicas, snapshotEvery                                             int
	ssf                                                                 bool
	nats                                                                natsFlags
}

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
	fs.StringVar(&f.trustIssuer, "trust-issuer", "", "trust these external issuers (comma-separated issuer URLs): verifiers accept their access tokens, and their logout tokens and SETs revoke")
	fs.StringVar(&f.trustIssuersFile, "trust-issuers-file", "", "JSON file of trusted external issuers with their settings (audience, claims, algorithms, signals); see docs/federation.md")
	fs.StringVar(&f.ssfPoll, "ssf-poll", "", "poll this Shared Signals endpoint for SETs (RFC 8936); the transmitter must be a trusted issuer")
	fs.StringVar(&f.ssfPollTokenFile, "ssf-poll-token-file", "", "file (mode 0600) holding the bearer token for --ssf-poll")
	fs.StringVar(&f.ssfPollClientID, "ssf-poll-client-id", "", "OAuth client id at the transmitter: --ssf-poll gets short-lived tokens with client credentials instead of --ssf-poll-token-file")
	fs.StringVar(&f.ssfPollClientSecretFile, "ssf-poll-client-secret-file", "", "file (mode 0600) holding the client secret of --ssf-poll-client-id")
	fs.StringVar(&f.ssfPollScope, "ssf-poll-scope", issuer.DefaultSSFPollScope, "scope --ssf-poll-client-id asks for")
	fs.StringVar(&f.ssfPollTokenURL, "ssf-poll-token-url", "", "token endpoint for --ssf-poll-client-id (default: the token_endpoint of the trusted issuer at the poll URL's origin)")
	fs.BoolVar(&f.ssf, "ssf", true, "run the SSF transmitter: receivers create streams of Herald's revocations as CAEP SETs (only when the issuer URL is https, or http on a loopback host)")
	fs.StringVar(&f.ssfKeyFile, "ssf-key-file", "", "PEM RSA private key (mode 0600) signing the SETs Herald transmits as an SSF transmitter, shared by the replicas of a deployment (default: created in <data>/ssf-key.pem)")
	fs.StringVar(&f.ssfDefaultSubjects, "ssf-default-subjects", ssf.SubjectsAll, "subjects of new SSF streams until receivers add or remove some: ALL or NONE")
	fs.DurationVar(&f.ssfRetention, "ssf-retention", bus.DefaultSSFRetention, "how long revocations are kept for SSF receivers that are away or paused")
	f.nats.register(fs)
}

func (f *issuerFlags) config(log *slog.Logger, tel *telemetry) (issuer.Config, error) {
	trust, err := f.trust()
	if err != nil {
		return issuer.Config{}, err
	}
	polls, err := f.polls()
	if err != nil {
		return issuer.Config{}, err
	}
	return issuer.Config{
		Trust:              trust,
		SSFPolls:           polls,
		MeterProvider:      tel.meter,
		Metrics:            tel.metrics,
		DataDir:            f.data,
		HTTPAddr:           f.http,
		IssuerURL:          f.issuerURL,
		Audience:           f.audience,
		Algorithm:          f.alg,
		AccessTTL:          f.accessTTL,
		MaxAccessTTL:       f.maxAccessTTL,
		SessionTTL:         f.sessionTTL,
		SessionIdle:        f.sessionIdle,
		KeyRotation:        f.keyRotation,
		SnapshotEvery:      f.snapshotEvery,
		SnapshotInterval:   f.snapshotInterval,
		EventStreamMaxAge:  f.eventStreamMaxAge,
		RateLimit:          f.rateLimit,
		ClientRateLimit:    f.clientRateLimit,
		AdminToken:         os.Getenv("HERALD_ADMIN_TOKEN"),
		Replicas:           f.replicas,
		EventKeys:          f.nats.pins(),
		RootKeys:           f.nats.roots(),
		EventKeyFile:       f.eventKeyFile,
		DisableSSF:         !f.ssf,
		SSFKeyFile:         f.ssfKeyFile,
		SSFDefaultSubjects: f.ssfDefaultSubjects,
		SSFRetention:       f.ssfRetention,
		Logger:             log,
	}, nil
}

// trust returns the trusted issuers of --trust-issuer and
// --trust-issuers-file.
func (f *issuerFlags) trust() ([]federation.Issuer, error) {
	byURL, err := federation.FromURLs(splitList(f.trustIssuer))
	if err != nil {
		return nil, fmt.Errorf("--trust-issuer: %w", err)
	}
	var fromFile []federation.Issuer
	if f.trustIssuersFile != "" {
		if fromFile, err = federation.LoadFile(f.trustIssuersFile); err != nil {
			return nil, fmt.Errorf("--trust-issuers-file: %w", err)
		}
	}
	return federation.Merge(byURL, fromFile)
}

// polls returns the SSF stream of --ssf-poll, with its token or client
// credentials.
func (f *issuerFlags) polls() ([]issuer.SSFPoll, error) {
	creds := f.ssfPollClientID != "" || f.ssfPollClientSecretFile != ""
	switch {
	case f.ssfPoll == "" && f.ssfPollTokenFile == "" && !creds:
		return nil, nil
	case f.ssfPollTokenFile != "" && creds:
		return nil, errors.New("--ssf-poll-token-file and --ssf-poll-client-id go separately: a static token or client credentials")
	case f.ssfPoll == "":
		return nil, errors.New("--ssf-poll-token-file and --ssf-poll-client-id need --ssf-poll")
	case f.ssfPollTokenFile == "" && !creds:
		return nil, errors.New("--ssf-poll needs --ssf-poll-token-file, or --ssf-poll-client-id and --ssf-poll-client-secret-file")
	case creds && (f.ssfPollClientID == "" || f.ssfPollClientSecretFile == ""):
		return nil, errors.New("--ssf-poll-client-id and --ssf-poll-client-secret-file go together")
	case f.ssfPollTokenFile != "":
		if f.ssfPollTokenURL != "" || f.ssfPollScope != issuer.DefaultSSFPollScope {
			return nil, errors.New("--ssf-poll-token-url and --ssf-poll-scope go with --ssf-poll-client-id")
		}
		tok, err := secretfile.Read("SSF poll token", f.ssfPollTokenFile)
		if err != nil {
			return nil, err
		}
		return []issuer.SSFPoll{{URL: f.ssfPoll, Token: strings.TrimSpace(string(tok))}}, nil
	}
	secret, err := secretfile.Read("SSF poll client secret", f.ssfPollClientSecretFile)
	if err != nil {
		return nil, err
	}
	return []issuer.SSFPoll{{URL: f.ssfPoll, ClientID: f.ssfPollClientID, ClientSecret: strings.TrimSpace(string(secret)),
		Scope: f.ssfPollScope, TokenURL: f.ssfPollTokenURL}}, nil
}

// runIssuer runs the issuer, embedding a NATS server unless --nats is given.
func runIssuer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("issuer", "issuer [flags]", stderr)
	var f issuerFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, err := openIssuerStack(ctx, &f, "herald-issuer", stderr)
	if err != nil {
		return err
	}
	defer st.close()
	if st.bus.server != nil {
		st.log.Info("nats ready", "nats", st.bus.server.ClientURL())
	}
	return st.svc.Run(ctx)
}

// issuerStack is what the issuer and dev commands run an issuer on: a
// logger, the bus (with its embedded server, if any), telemetry, and the
// issuer itself.
type issuerStack struct {
	log *slog.Logger
	bus *natsBus
	tel *telemetry
	svc *issuer.Service
}

// openIssuerStack builds the stack in order, connecting to NATS as name.
// On error it closes what it had built.
func openIssuerStack(ctx context.Context, f *issuerFlags, name string, stderr io.Writer) (_ *issuerStack, err error) {
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return nil, err
	}
	st := &issuerStack{log: log}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	if st.bus, err = connectBus(ctx, f.natsURL, f.natsListen, f.data, name, bus.RoleIssuer, f.nats, log); err != nil {
		return nil, err
	}
	if st.tel, err = setupTelemetry(ctx, "herald-issuer", log); err != nil {
		return nil, err
	}
	cfg, err := f.config(log, st.tel)
	if err != nil {
		return nil, err
	}
	if st.svc, err = issuer.Open(ctx, cfg, st.bus.conn); err != nil {
		return nil, err
	}
	return st, nil
}

// close closes what the stack holds in the reverse order of opening, the
// bus last, then logs that Herald stopped.
func (st *issuerStack) close() {
	if st.svc != nil {
		st.svc.Close()
	}
	if st.tel != nil {
		st.tel.shutdown()
	}
	if st.bus != nil {
		st.bus.close()
	}
	st.log.Info("herald stopped")
}
