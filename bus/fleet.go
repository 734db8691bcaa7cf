package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BucketVerifiers is the key-value bucket where every verifier reports its
// heartbeat, keyed by verifier id. Its name is part of the public contract.
const BucketVerifiers = "HERALD_VERIFIERS"

// Defaults for heartbeats and the fleet bucket.
const (
	// DefaultHeartbeatEvery is how often a verifier reports.
	DefaultHeartbeatEvery = 2 * time.Second
	// DefaultFleetTTL is how long a heartbeat stays in BucketVerifiers: three
	// heartbeats, so a verifier that stops reporting disappears soon after.
	DefaultFleetTTL = 3 * DefaultHeartbeatEvery
)

// MaxHeartbeatSize bounds a heartbeat's encoded form, in bytes; larger
// entries in the bucket are skipped by Fleet.List.
const MaxHeartbeatSize = 4 << 10

// verifierID is what a verifier id may hold: a valid KV key, short.
var verifierID = regexp.MustCompile(`^[A-Za-z0-9_=-][A-Za-z0-9_=.-]{0,127}$`)

// ValidVerifierID reports whether id can name a verifier: 1 to 128 letters,
// digits, '-', '_', '=' or '.', not starting with '.'.
func ValidVerifierID(id string) bool { return verifierID.MatchString(id) }

// Heartbeat is what a verifier reports about itself. Its JSON form is what
// GET /v1/verifiers lists; issuers use AppliedSeq and Live to know which
// verifiers have applied a revocation.
type Heartbeat struct {
	// ID is the verifier's stable id, kept in its data directory.
	ID string `json:"id"`
	// Host is the machine's host name.
	Host string `json:"host"`
	// Version is the herald version the verifier runs.
	Version string `json:"version"`
	// URL is where the verifier's HTTP API listens, if it has one.
	URL string `json:"url,omitempty"`
	// AppliedSeq is the last HERALD stream sequence the verifier applied.
	AppliedSeq uint64 `json:"applied_seq"`
	// StreamHead is the last sequence of the HERALD stream the verifier knows of.
	StreamHead uint64 `json:"stream_head"`
	// Lag is StreamHead - AppliedSeq.
	Lag uint64 `json:"lag"`
	// Ready reports that the verifier gives verdicts from a caught-up denylist.
	Ready bool `json:"ready"`
	// Stale reports that the verifier has been cut off from the bus for
	// longer than its maximum staleness.
	Stale bool `json:"stale"`
	// Denylist is the number of denylist entries held.
	Denylist int `json:"denylist_size"`
	// Started is when the verifier process started.
	Started time.Time `json:"started"`
	// Time is when the heartbeat was sent.
	Time time.Time `json:"time"`
	// EveryMS is the heartbeat interval in milliseconds, so that readers know
	// when a verifier has missed its heartbeats.
	EveryMS int64 `json:"every_ms"`
	// ClockOffsetMS is the verifier's clock minus the NATS server's, in
	// milliseconds, as it measured when it sent the heartbeat (ClockOffset);
	// absent when it could not. An issuer subtracts its own offset to get
	// the skew between them.
	ClockOffsetMS *int64 `json:"clock_offset_ms,omitempty"`
	// EventKeys are the kids of the event keys the verifier trusts now,
	// sorted, at most MaxHeartbeatEventKeys: whether it trusts the key
	// that signs revocations shows in the fleet (herald doctor). Absent
	// from older verifiers.
	EventKeys []string `json:"event_keys,omitempty"`
	// EventKeyTrust is how the verifier chose the event keys it trusts:
	// EventKeysPinned, EventKeysRooted or EventKeysFirstUse. Absent from
	// older verifiers.
	EventKeyTrust string `json:"event_key_trust,omitempty"`
}

// MaxHeartbeatEventKeys bounds Heartbeat.EventKeys.
const MaxHeartbeatEventKeys = 16

// How a verifier chose the event keys it trusts (Heartbeat.EventKeyTrust).
const (
	// EventKeysPinned: by kid, with --event-keys (and maybe root keys too).
	EventKeysPinned = "pinned"
	// EventKeysRooted: certified by pinned root keys (--root-keys) alone.
	EventKeysRooted = "root"
	// EventKeysFirstUse: the keys found first (trust on first use).
	EventKeysFirstUse = "first-use"
)

// SkewWarning is the clock difference between an issuer, a verifier and
// the NATS server beyond which they log warnings: revocations cut off
// tokens by the issuer's clock, so a large skew shows wrong times in
// every component's view of them.
const SkewWarning = 5 * time.Second

// ClockOffset measures the clock now against the NATS server's: now's time
// minus the server's, taken half way through a stream info request on
// StreamRevocations (the server dates its answer), so the error is at most
// half the round trip.
func (c *Conn) ClockOffset(ctx context.Context, now func() time.Time) (time.Duration, error) {
	before := now()
	s, err := c.js.Stream(ctx, StreamRevocations)
	after := now()
	if err != nil {
		return 0, fmt.Errorf("measure clock offset: %w", err)
	}
	server := s.CachedInfo().TimeStamp
	if server.IsZero() {
		return 0, errors.New("measure clock offset: the server did not date its answer")
	}
	return before.Add(after.Sub(before) / 2).Sub(server), nil
}

// Live reports whether h is recent at now: sent less than three heartbeat
// intervals ago (clock skew between machines counts against it).
func (h *Heartbeat) Live(now time.Time) bool {
	every := time.Duration(h.EveryMS) * time.Millisecond
	if every <= 0 {
		every = DefaultHeartbeatEvery
	}
	return now.Sub(h.Time) < 3*every
}

// FleetConfig sets the limits of BucketVerifiers.
type FleetConfig struct {
	// TTL is how long a heartbeat is kept; a verifier that stops reporting
	// disappears from the bucket after it. It should be a few heartbeat
	// intervals. Default DefaultFleetTTL.
	TTL time.Duration
	// Replicas is the bucket's replication factor (1 or 3). Default 1.
	Replicas int
}

func (cfg *FleetConfig) kv() jetstream.KeyValueConfig {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultFleetTTL
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:      BucketVerifiers,
		Description: "Herald verifier heartbeats, by verifier id",
		History:     1,
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}
}

// EnsureFleet creates BucketVerifiers, or updates it to cfg. The issuer
// calls it at start, as it calls EnsureStreams.
func (c *Conn) EnsureFleet(ctx context.Context, cfg FleetConfig) error {
	if _, err := c.js.CreateOrUpdateKeyValue(ctx, cfg.kv()); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", BucketVerifiers, err)
	}
	return nil
}

// Fleet is BucketVerifiers: verifiers write their heartbeats to it, issuers
// list it. It is safe for concurrent use.
type Fleet struct {
	kv jetstream.KeyValue
}

// OpenFleet opens BucketVerifiers. When the bucket does not exist and
// create is true, it creates it with cfg, so that verifiers can report
// before any issuer has run; it never changes an existing bucket. When it
// does not exist and create is false, it returns an error wrapping
// jetstream.ErrBucketNotFound.
func (c *Conn) OpenFleet(ctx context.Context, create bool, cfg FleetConfig) (*Fleet, error) {
	kv, err := c.js.KeyValue(ctx, BucketVerifiers)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		kv, err = c.js.CreateKeyValue(ctx, cfg.kv())
		if errors.Is(err, jetstream.ErrBucketExists) { // another verifier was first
			kv, err = c.js.KeyValue(ctx, BucketVerifiers)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketVerifiers, err)
	}
	return &Fleet{kv: kv}, nil
}

// Beat records h under its id.
func (f *Fleet) Beat(ctx context.Context, h *Heartbeat) error {
	if !ValidVerifierID(h.ID) {
		return fmt.Errorf("heartbeat: invalid verifier id %q", h.ID)
	}
	data, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", h.ID, err)
	}
	if _, err := f.kv.Put(ctx, h.ID, data); err != nil {
		return fmt.Errorf("heartbeat %s: %w", h.ID, err)
	}
	return nil
}

// Leave removes the heartbeat of verifier id, when it shuts down, so that
// it leaves the fleet at once instead of after the bucket's TTL.
func (f *Fleet) Leave(ctx context.Context, id string) error {
	if err := f.kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("leave fleet %s: %w", id, err)
	}
	return nil
}

// List returns the latest heartbeat of every verifier in the bucket, by id.
// Entries that do not decode are skipped. Heartbeats older than the
// bucket's TTL are already gone; use Heartbeat.Live to judge the others.
func (f *Fleet) List(ctx context.Context) ([]Heartbeat, error) {
	// A watcher whose initial values expire (the bucket's TTL) while it
	// reads them may never report that it has delivered them all: bound
	// the wait, so that a caller retries instead of hanging.
	ctx, cancel := context.WithTimeout(ctx, ListTimeout)
	defer cancel()
	w, err := f.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", BucketVerifiers, err)
	}
	defer w.Stop()
	out := []Heartbeat{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", BucketVerifiers, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s: watcher closed", BucketVerifiers)
			}
			if e == nil { // every current value has been delivered
				sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
				return out, nil
			}
			var h Heartbeat
			if len(e.Value()) > MaxHeartbeatSize || json.Unmarshal(e.Value(), &h) != nil || h.ID != e.Key() {
				continue
			}
			out = append(out, h)
		}
	}
}

// ListTimeout bounds a listing of a bucket whose entries expire, such as
// Fleet.List.
const ListTimeout = 5 * time.Second

// ListFleet returns the heartbeats in BucketVerifiers, or none when the
// bucket does not exist yet (no verifier has ever reported).
func (c *Conn) ListFleet(ctx context.Context) ([]Heartbeat, error) {
	f, err := c.OpenFleet(ctx, false, FleetConfig{})
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return []Heartbeat{}, nil
	}
	if err != nil {
		return nil, err
	}
	return f.List(ctx)
}

// SubjectFleetPrefix prefixes the core NATS subjects where a verifier
// announces its heartbeat the moment it applies revocations:
// herald.fleet.<id>. They are not stored in any stream; they let an issuer
// confirm a revocation without waiting for the next heartbeat.
const SubjectFleetPrefix = "herald.fleet."

// Announce publishes h on herald.fleet.<id>, without waiting for anyone.
func (c *Conn) Announce(h *Heartbeat) error {
	if !ValidVerifierID(h.ID) {
		return fmt.Errorf("announce: invalid verifier id %q", h.ID)
	}
	data, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("announce %s: %w", h.ID, err)
	}
	if err := c.nc.Publish(SubjectFleetPrefix+h.ID, data); err != nil {
		return fmt.Errorf("announce %s: %w", h.ID, err)
	}
	return nil
}

// WatchAnnouncements calls fn with every heartbeat verifiers announce
// until the returned stop is called. fn runs on one goroutine at a time.
// The subscription is in place when WatchAnnouncements returns, so an
// announcement made after that is not missed.
func (c *Conn) WatchAnnouncements(fn func(Heartbeat)) (stop func(), err error) {
	sub, err := c.nc.Subscribe(SubjectFleetPrefix+"*", func(m *nats.Msg) {
		var h Heartbeat
		if len(m.Data) > MaxHeartbeatSize || json.Unmarshal(m.Data, &h) != nil || SubjectFleetPrefix+h.ID != m.Subject {
			return
		}
		fn(h)
	})
	if err != nil {
		return nil, fmt.Errorf("watch announcements: %w", err)
	}
	if err := c.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("watch announcements: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
