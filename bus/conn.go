package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/heraldsec/herald/internal/secretfile"
)

// Defaults for stream limits.
const (
	// DefaultAuditMaxAge is how long HERALD_AUDIT keeps events.
	DefaultAuditMaxAge = 7 * 24 * time.Hour
	// DefaultDuplicates is the Nats-Msg-Id dedupe window of both streams.
	DefaultDuplicates = 2 * time.Minute
	// DefaultMaxConsumers bounds the consumers of each of Herald's streams
	// and buckets: a verifier holds one on HERALD and HERALD_KEYS while it
	// runs, one on HERALD_SNAPSHOTS while it starts, and one on HERALD_BFF
	// per request waiting for another replica's refresh, so fleets of
	// thousands of verifiers fit, while a stolen verifier credential cannot
	// exhaust the server's memory with consumers.
	DefaultMaxConsumers = 10_000
	// ConsumerInactiveLimit is the longest a consumer of Herald's streams
	// and buckets stays without a client: nats.go's ordered consumers ask
	// for this (5 minutes), and one created without a threshold, even as
	// durable, gets it. So no consumer outlives its client for long: the
	// consumer API cannot tell a durable request from an ephemeral one by
	// its subject, so a credential allowed to create consumers cannot be
	// kept from naming one durable; this limit takes the durability away.
	ConsumerInactiveLimit = 5 * time.Minute
)

// Config configures a connection to NATS.
type Config struct {
	// URL is one or more comma-separated nats:// URLs. Required.
	URL string
	// Name identifies the connection in NATS monitoring, e.g. "herald-verifier".
	Name string
	// Logger receives connection state changes. Nil uses slog.Default().
	Logger *slog.Logger
	// Retry makes Connect succeed while no server is reachable yet and keep
	// trying in the background, as a sidecar started before NATS must.
	Retry bool
	// NkeyFile is a file holding an nkey user seed, for servers that
	// authenticate users by nkey, such as the embedded server secured by
	// AuthFiles. Empty: none.
	NkeyFile string
	// InboxPrefix replaces NATS's _INBOX prefix of reply subjects, for
	// users allowed to subscribe to their own inboxes only (a verifier
	// uses VerifierInboxPrefix). Empty: _INBOX.
	InboxPrefix string
	// CredsFile is a NATS credentials file (user JWT and NKey seed, as
	// nsc writes it) for servers in operator (decentralized JWT) mode.
	// Empty: none.
	CredsFile string
	// CAFile is a PEM file of the CAs that sign the servers' TLS
	// certificates; setting it requires TLS. Empty: the system's roots,
	// for tls:// URLs.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that verify clients (mutual TLS). Both or neither.
	CertFile, KeyFile string
	// NoRandomize tries the URLs in the order given instead of shuffled:
	// a sidecar lists the NATS node of its own zone or machine first.
	NoRandomize bool
	// JetStreamDomain is the JetStream domain of the streams, for clients
	// of a leaf node whose hub runs JetStream in that domain: nats-server
	// carries only domain-prefixed JetStream requests over leaf
	// connections. Empty: the JetStream of the server connected to.
	JetStreamDomain string
}

// authOptions returns the credentials and TLS options of cfg. The files
// are read at every (re)connect; that they are readable is checked now,
// so that a typo fails at start rather than in an endless retry.
func (cfg *Config) authOptions() ([]nats.Option, error) {
	var (
		opts []nats.Option
		errs []error
	)
	readable := func(what, path string) {
		f, err := os.Open(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return
		}
		f.Close()
	}
	if cfg.CredsFile != "" {
		readable("credentials file", cfg.CredsFile)
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NkeyFile != "" {
		if cfg.CredsFile != "" {
			errs = append(errs, errors.New("an nkey seed file and a credentials file exclude each other"))
		}
		// The seed is read and checked now, and again at every connect
		// to sign the server's challenge.
		if err := secretfile.Check("nkey seed file", cfg.NkeyFile, secretfile.OwnerOnly); err != nil {
			errs = append(errs, err)
		} else if opt, err := nats.NkeyOptionFromSeed(cfg.NkeyFile); err != nil {
			errs = append(errs, fmt.Errorf("nkey seed file %s: %w", cfg.NkeyFile, err))
		} else {
			opts = append(opts, opt)
		}
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	opts = append(opts, cfg.refusalHandlers()...)
	if cfg.CAFile != "" {
		readable("CA file", cfg.CAFile)
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	switch {
	case cfg.CertFile != "" && cfg.KeyFile != "":
		readable("client certificate", cfg.CertFile)
		readable("client key", cfg.KeyFile)
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	case cfg.CertFile != "" || cfg.KeyFile != "":
		errs = append(errs, errors.New("client certificate and key go together"))
	}
	return opts, errors.Join(errs...)
}

// Conn is a connection to NATS with JetStream. It is safe for concurrent use.
type Conn struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *slog.Logger
	closed chan struct{} // closed once nc is closed
	signer atomic.Pointer[Signer]

	// committers group the writes to each stream (batch.go); commitWG
	// tracks their goroutines, which end when the connection closes.
	commitMu   sync.Mutex
	committers map[string]*committer
	commitWG   sync.WaitGroup
}

// SetSigner makes the Conn sign every event it publishes with s. Publish
// refuses to publish before a signer is set: verifiers drop unsigned events.
func (c *Conn) SetSigner(s *Signer) { c.signer.Store(s) }

// Signer returns the signer set by SetSigner, or nil.
func (c *Conn) Signer() *Signer { return c.signer.Load() }

// errNoSigner is returned by Publish before SetSigner.
var errNoSigner = errors.New("bus: no event signer set")

// PublishEventKey puts the signer's public event key in BucketKeys under
// EventKeyPrefix plus its kid, where verifiers find the keys they pin.
func (c *Conn) PublishEventKey(ctx context.Context) error {
	s, kv, err := c.signedKeys(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(s.JWK())
	if err != nil {
		return fmt.Errorf("publish event key: %w", err)
	}
	name := EventKeyPrefix + s.KeyID()
	if cur, err := kv.Get(ctx, name); err == nil && bytes.Equal(cur.Value(), data) {
		return nil
	}
	if _, err := kv.Put(ctx, name, data); err != nil {
		return fmt.Errorf("publish event key %s: %w", s.KeyID(), err)
	}
	return nil
}

// signedKeys returns the signer and the keys bucket, for writing to it.
func (c *Conn) signedKeys(ctx context.Context) (*Signer, jetstream.KeyValue, error) {
	s := c.Signer()
	if s == nil {
		return nil, nil, errNoSigner
	}
	kv, err := c.Keys(ctx)
	return s, kv, err
}

// PublishKey puts token key k in BucketKeys, signed by the event signer.
func (c *Conn) PublishKey(ctx context.Context, k JWK) error {
	s, kv, err := c.signedKeys(ctx)
	if err != nil {
		return err
	}
	data, err := s.SignKey(k)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, k.Kid, data); err != nil {
		return fmt.Errorf("publish key %s: %w", k.Kid, err)
	}
	return nil
}

// PublishKeyRevoked records in BucketKeys, signed, that token key r.Kid is
// revoked for good (RevokedKey). An existing record is kept.
func (c *Conn) PublishKeyRevoked(ctx context.Context, r RevokedKey) error {
	s, kv, err := c.signedKeys(ctx)
	if err != nil {
		return err
	}
	data, err := s.SignRevokedKey(r)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, RevokedKeyPrefix+r.Kid, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record revoked key %s: %w", r.Kid, err)
	}
	return nil
}

// RevokedKeys returns the kids of the token keys recorded revoked in
// BucketKeys.
func (c *Conn) RevokedKeys(ctx context.Context) (map[string]bool, error) {
	kv, err := c.Keys(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", BucketKeys, err)
	}
	out := make(map[string]bool)
	for name := range lister.Keys() {
		if kid, ok := strings.CutPrefix(name, RevokedKeyPrefix); ok && !strings.HasPrefix(kid, EventKeyPrefix) {
			out[kid] = true
		}
	}
	return out, nil
}

// Connect connects to NATS and keeps reconnecting for as long as the Conn is
// open: Herald components ride out bus outages rather than exit.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.URL == "" {
		return nil, errors.New("connect nats: url is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "bus")
	closed := make(chan struct{})
	opts := []nats.Option{
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(cfg.Retry),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(d)))
	}
	if cfg.NoRandomize {
		opts = append(opts, nats.DontRandomize())
	}
	auth, err := cfg.authOptions()
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	opts = append(opts, auth...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", redactURL(cfg.URL), err)
	}
	var js jetstream.JetStream
	if cfg.JetStreamDomain != "" {
		js, err = jetstream.NewWithDomain(nc, cfg.JetStreamDomain)
	} else {
		js, err = jetstream.New(nc)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect jetstream: %w", err)
	}
	return &Conn{nc: nc, js: js, log: log, closed: closed}, nil
}

// NATS returns the underlying connection.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream returns the JetStream context.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// Connected reports whether the connection is currently up.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// Close drains the connection: pending publishes and subscriptions finish,
// then it closes. It is safe to call more than once.
func (c *Conn) Close() {
	if !c.nc.IsClosed() {
		if err := c.nc.Drain(); err != nil {
			c.nc.Close()
		}
	}
	<-c.closed // Drain closes the connection when done or after its timeout
	c.commitWG.Wait()
}

// StreamConfig sets the limits of Herald's streams and bucket.
type StreamConfig struct {
	// RevocationMaxAge is how long HERALD keeps a revocation: the longest
	// access token lifetime plus leeway, after which no token it could match
	// is still valid. Required.
	RevocationMaxAge time.Duration
	// AuditMaxAge is how long HERALD_AUDIT keeps events. Default DefaultAuditMaxAge.
	AuditMaxAge time.Duration
	// Replicas is the replication factor of streams and bucket (1 or 3). Default 1.
	Replicas int
	// MaxConsumers bounds the consumers of each stream and bucket. Default
	// DefaultMaxConsumers.
	MaxConsumers int
}

// EnsureStreams creates the HERALD, HERALD_AUDIT and HERALD_SNAPSHOTS
// streams and the HERALD_KEYS bucket, or updates them to cfg. Both streams deny message
// delete and purge: the log only shrinks by age.
func (c *Conn) EnsureStreams(ctx context.Context, cfg StreamConfig) error {
	if cfg.RevocationMaxAge <= 0 {
		return errors.New("ensure streams: revocation max age is required")
	}
	if cfg.AuditMaxAge <= 0 {
		cfg.AuditMaxAge = DefaultAuditMaxAge
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxConsumers <= 0 {
		cfg.MaxConsumers = DefaultMaxConsumers
	}
	consumers := jetstream.StreamConsumerLimits{InactiveThreshold: ConsumerInactiveLimit}
	dup := min(DefaultDuplicates, cfg.RevocationMaxAge)
	streams := []jetstream.StreamConfig{{
		Name:        StreamRevocations,
		Description: "Herald revocations: applied in order by every verifier",
		Subjects:    []string{SubjectRevokePrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.RevocationMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  dup,
		DenyDelete:  true,
		DenyPurge:   true,
		// Concurrent revocations are written as one batch (batch.go).
		AllowAtomicPublish: true,

		MaxConsumers:   cfg.MaxConsumers,
		ConsumerLimits: consumers,
	}, {
		Name:        StreamAudit,
		Description: "Herald audit: issuance, sessions, keys, admin actions",
		Subjects: []string{
			SubjectIssuePrefix + ">", SubjectSessionPrefix + ">",
			SubjectKeyPrefix + ">", SubjectAdminPrefix + ">",
			SubjectSignalPrefix + ">",
		},
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		MaxAge:     cfg.AuditMaxAge,
		Storage:    jetstream.FileStorage,
		Replicas:   cfg.Replicas,
		Duplicates: DefaultDuplicates,
		DenyDelete: true,
		DenyPurge:  true,
		// Concurrent requests' events are written as one batch (batch.go).
		AllowAtomicPublish: true,

		MaxConsumers:   cfg.MaxConsumers,
		ConsumerLimits: consumers,
	}}
	for _, sc := range streams {
		if err := c.ensureStream(ctx, sc); err != nil {
			return err
		}
	}
	_, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketKeys,
		Description: "Herald public keys verifiers may trust, by kid",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", BucketKeys, err)
	}
	if err := c.limitStream(ctx, streamKeys, func(sc *jetstream.StreamConfig) { limitConsumers(sc, cfg.MaxConsumers) }); err != nil {
		return err
	}
	if err := c.EnsureSnapshots(ctx, SnapshotConfig{MaxAge: cfg.RevocationMaxAge, Replicas: cfg.Replicas}); err != nil {
		return err
	}
	return c.limitStream(ctx, StreamSnapshots, func(sc *jetstream.StreamConfig) { limitConsumers(sc, cfg.MaxConsumers) })
}

// ensureStream creates or updates a stream to sc. A server that cannot
// change the consumer limits of an existing stream (nats-server before
// they became editable) gets the rest of sc, and a warning: the stream
// keeps its consumer limits.
func (c *Conn) ensureStream(ctx context.Context, sc jetstream.StreamConfig) error {
	s, err := c.createOrUpdateStream(ctx, sc)
	if err == nil {
		c.allowAtomic(sc.Name, s.CachedInfo().Config.AllowAtomicPublish)
		return nil
	}
	s, serr := c.js.Stream(ctx, sc.Name)
	if serr != nil {
		return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
	}
	prev := s.CachedInfo().Config
	if prev.MaxConsumers == sc.MaxConsumers && prev.ConsumerLimits == sc.ConsumerLimits {
		return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
	}
	sc.MaxConsumers, sc.ConsumerLimits = prev.MaxConsumers, prev.ConsumerLimits
	s, err2 := c.js.CreateOrUpdateStream(ctx, sc)
	if err2 != nil {
		return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
	}
	c.allowAtomic(sc.Name, s.CachedInfo().Config.AllowAtomicPublish)
	c.log.Warn("the server did not bound the stream's consumers; upgrade nats-server", "stream", sc.Name, "err", err)
	return nil
}

// createOrUpdateStream creates stream sc or updates it to sc, but leaves
// alone a stream that already has every setting sc gives: the processes
// that start together (issuer replicas, verifiers) would otherwise update
// one stream at once, which nats-server does not serialize.
func (c *Conn) createOrUpdateStream(ctx context.Context, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	if s, err := c.js.Stream(ctx, sc.Name); err == nil && hasSettings(s.CachedInfo().Config, sc) {
		return s, nil
	}
	return c.js.CreateOrUpdateStream(ctx, sc)
}

// hasSettings reports whether have holds every setting want gives: each
// member of want's JSON that is not a zero value (which the server
// replaces with its defaults) is in have's, with the same value.
func hasSettings(have, want jetstream.StreamConfig) bool {
	var h, w map[string]json.RawMessage
	hb, herr := json.Marshal(have)
	wb, werr := json.Marshal(want)
	if herr != nil || werr != nil || json.Unmarshal(hb, &h) != nil || json.Unmarshal(wb, &w) != nil {
		return false
	}
	for k, v := range w {
		switch string(v) {
		case "0", "false", `""`, "null", "[]", "{}":
			continue
		}
		if !bytes.Equal(h[k], v) {
			return false
		}
	}
	return true
}

// limitConsumers sets the consumer limits of Herald's streams on sc.
func limitConsumers(sc *jetstream.StreamConfig, maxConsumers int) {
	sc.MaxConsumers = maxConsumers
	sc.ConsumerLimits = jetstream.StreamConsumerLimits{InactiveThreshold: ConsumerInactiveLimit}
}

// limitStream applies set to the configuration of stream, for limits that
// the configuration of a bucket, or of a stream created elsewhere, does
// not carry; it updates the stream only when they changed. A server that
// refuses the update (an older nats-server) is logged, not fatal.
func (c *Conn) limitStream(ctx context.Context, stream string, set func(*jetstream.StreamConfig)) error {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("limit stream %s: %w", stream, err)
	}
	before := s.CachedInfo().Config
	sc := before
	set(&sc)
	if sc.MaxConsumers == before.MaxConsumers && sc.MaxMsgs == before.MaxMsgs && sc.ConsumerLimits == before.ConsumerLimits {
		return nil
	}
	if _, err := c.js.UpdateStream(ctx, sc); err != nil {
		// As ensureStream: an older server keeps the stream as it was.
		c.log.Warn("the server did not apply the stream's limits; upgrade nats-server", "stream", stream, "err", err)
	}
	return nil
}

// Publish publishes e to its stream with Nats-Msg-Id set to e.ID and waits
// for the JetStream acknowledgement. It returns the stream sequence. A
// republish of the same event within the dedupe window is acknowledged with
// the original sequence and not stored twice. Concurrent publishes to a
// stream are written together (batch.go).
func (c *Conn) Publish(ctx context.Context, e *Event) (uint64, error) {
	seqs, err := c.PublishAll(ctx, e)
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

// PublishAll publishes events and waits for every acknowledgement. It
// returns their sequences in order, or the first error. The events of one
// stream are written in order, together with those that concurrent
// callers publish to it, and those of different streams at once.
func (c *Conn) PublishAll(ctx context.Context, events ...*Event) ([]uint64, error) {
	msgs := make([]*nats.Msg, len(events))
	for i, e := range events {
		msg, err := c.NewMsg(ctx, e)
		if err != nil {
			return nil, err // before anything is published
		}
		msg.Header.Set(jetstream.ExpectedStreamHeader, e.Stream())
		msgs[i] = msg
	}
	// The events of each stream, in order, as one request to its committer.
	type group struct {
		stream string
		idx    []int
		cm     *committer
		r      *commitReq
	}
	var groups []*group
	for i, e := range events {
		var g *group
		for _, h := range groups {
			if h.stream == e.Stream() {
				g = h
			}
		}
		if g == nil {
			g = &group{stream: e.Stream()}
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	for _, g := range groups {
		gm := make([]*nats.Msg, len(g.idx))
		for j, i := range g.idx {
			gm[j] = msgs[i]
		}
		g.cm = c.committer(g.stream)
		g.r = g.cm.enqueue(gm)
	}
	seqs := make([]uint64, len(events))
	var first error
	for _, g := range groups {
		if err := g.cm.wait(ctx, g.r); err != nil {
			if first == nil {
				e := events[g.idx[0]]
				first = fmt.Errorf("publish %s event %s: %w", e.Type, e.ID, err)
			}
			continue
		}
		for j, i := range g.idx {
			if err := g.r.errs[j]; err != nil && first == nil {
				first = fmt.Errorf("publish %s event %s: %w", events[i].Type, events[i].ID, err)
			}
			seqs[i] = g.r.seqs[j]
		}
	}
	if first != nil {
		return nil, first
	}
	return seqs, nil
}

// NewMsg signs and encodes e into the message Publish sends, for callers
// that publish asynchronously themselves. The message carries the
// signature, the Nats-Msg-Id and the trace context of ctx (W3C
// traceparent, through the global propagator), so that one revocation is
// one trace from the admin call to every verifier.
func (c *Conn) NewMsg(ctx context.Context, e *Event) (*nats.Msg, error) {
	s := c.Signer()
	if s == nil {
		return nil, fmt.Errorf("publish %s event: %w", e.Type, errNoSigner)
	}
	data, sig, err := s.SignEvent(e)
	if err != nil {
		return nil, fmt.Errorf("publish %s event: %w", e.Type, err)
	}
	msg := nats.NewMsg(e.Subject())
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, e.ID)
	msg.Header.Set(HeaderSignature, sig)
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(msg.Header))
	return msg, nil
}

// TraceContext returns ctx carrying the trace context of a delivered
// message, for spans that continue the publisher's trace.
func TraceContext(ctx context.Context, d Delivery) context.Context {
	if d.Header == nil {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(d.Header))
}

// StreamHead returns the first and last sequence a stream holds. A stream
// that never held a message returns 0, 0; one whose messages all expired
// returns last = first - 1.
func (c *Conn) StreamHead(ctx context.Context, stream string) (first, last uint64, err error) {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s info: %w", stream, err)
	}
	st := s.CachedInfo().State
	return st.FirstSeq, st.LastSeq, nil
}

// StreamMaxAge returns how long a stream keeps messages (0: forever).
func (c *Conn) StreamMaxAge(ctx context.Context, stream string) (time.Duration, error) {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", stream, err)
	}
	return s.CachedInfo().Config.MaxAge, nil
}

// Keys returns the HERALD_KEYS bucket, which must exist.
func (c *Conn) Keys(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, BucketKeys)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketKeys, err)
	}
	return kv, nil
}

func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				parts[i] = u[:scheme+3] + "redacted" + u[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
