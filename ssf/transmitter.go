package ssf

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/heraldsec/herald/bus"
)

// Default subjects of new streams (SSF 1.0 default_subjects).
const (
	SubjectsAll  = "ALL"
	SubjectsNone = "NONE"
)

// Config configures a Transmitter.
type Config struct {
	// Conn is the issuer's bus connection. Required.
	Conn *bus.Conn
	// Issuer is the transmitter's iss: the issuer URL. Required.
	Issuer string
	// Signer signs the SETs. Required.
	Signer *Signer
	// Open checks a revocation read from HERALD_SSF (its event signature,
	// as signed for HERALD) and decodes it. Required.
	Open func(d bus.Delivery) (*bus.Event, error)
	// DefaultSubjects is ALL (the default) or NONE.
	DefaultSubjects string
	// Retention is how long HERALD_SSF keeps events for receivers that
	// are away or paused. Default bus.DefaultSSFRetention.
	Retention time.Duration
	// Replicas of HERALD_SSF and its buckets. Default 1.
	Replicas int
	// HTTP pushes SETs. Default: a client with PushTimeout that follows
	// no redirects.
	HTTP *http.Client
	// PushTimeout bounds one push. Default 10 s.
	PushTimeout time.Duration
	// LoopbackPush lets receivers push to an endpoint on a loopback host
	// (http://localhost:8080/..., https://127.0.0.1/...). Without it,
	// only a transmitter whose issuer URL is itself on a loopback host (a
	// development deployment) accepts them: elsewhere a receiver would
	// have the transmitter POST, with a header of its choosing, to the
	// services listening on the issuer's own host (a sidecar's admin
	// port, say).
	LoopbackPush bool
	// MaxStreams bounds the streams of the deployment (default 1000),
	// MaxStreamsPerReceiver those of one receiver (default 10),
	// MaxSubjects the subjects added to or removed from one stream
	// (default 1000).
	MaxStreams, MaxStreamsPerReceiver, MaxSubjects int
	// MinVerificationInterval is the streams' min_verification_interval.
	// Default 10 s.
	MinVerificationInterval time.Duration
	// RetryMin and RetryMax bound the wait between two pushes of a SET
	// the receiver did not take. Default 1 s and 60 s.
	RetryMin, RetryMax time.Duration
	// AckWait is how long a push stream's SET stays with the replica
	// that took it without news from it before another replica takes
	// it over (default 30 s); PollAckWait how long a polled SET waits for
	// the receiver's acknowledgement before it is returned again
	// (default 10 min).
	AckWait, PollAckWait time.Duration
	// Log receives the transmitter's logs. Default slog.Default().
	Log *slog.Logger
	// MeterProvider receives the per-stream metrics. Default: none.
	MeterProvider metric.MeterProvider
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

func (c *Config) withDefaults() {
	if c.DefaultSubjects == "" {
		c.DefaultSubjects = SubjectsAll
	}
	if c.Retention <= 0 {
		c.Retention = bus.DefaultSSFRetention
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.PushTimeout <= 0 {
		c.PushTimeout = 10 * time.Second
	}
	if u, err := url.Parse(c.Issuer); err == nil && isLoopback(u.Hostname()) {
		c.LoopbackPush = true
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: c.PushTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 1000
	}
	if c.MaxStreamsPerReceiver <= 0 {
		c.MaxStreamsPerReceiver = 10
	}
	if c.MaxSubjects <= 0 {
		c.MaxSubjects = 1000
	}
	if c.MinVerificationInterval <= 0 {
		c.MinVerificationInterval = 10 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.PollAckWait <= 0 {
		c.PollAckWait = 10 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	switch {
	case c.Conn == nil:
		return errors.New("a bus connection is required")
	case c.Issuer == "":
		return errors.New("the issuer URL is required")
	case c.Signer == nil:
		return errors.New("a transmitter key is required")
	case c.Open == nil:
		return errors.New("an event opener is required")
	case c.DefaultSubjects != SubjectsAll && c.DefaultSubjects != SubjectsNone:
		return fmt.Errorf("default subjects must be %s or %s, not %q", SubjectsAll, SubjectsNone, c.DefaultSubjects)
	}
	return nil
}

// Transmitter serves SSF streams: their management, push delivery of
// every push stream (Run) and poll delivery (Poll). Any number of issuer
// replicas run one each on the same bus: the streams, their positions and
// the SETs awaiting acknowledgement live there.
type Transmitter struct {
	cfg     Config
	log     *slog.Logger
	js      jetstream.JetStream
	metrics *metrics

	ready   chan struct{} // closed once Run has set up the bus
	streams jetstream.KeyValue
	pending jetstream.KeyValue

	mu      sync.Mutex
	recs    map[string]*record   // the streams, as the bucket's watch last showed them
	keys    map[string]keyEntry  // the published transmitter keys, by kid, as the watch showed them
	revs    map[string]uint64    // the bucket revision of each of recs
	workers map[string]*worker   // a push worker per push stream
	stats   map[string]*counters // this replica's deliveries, per stream
	waiting map[string]int       // polls waiting at this replica, per stream
}

// New returns a Transmitter for cfg. It touches the bus only in Run.
func New(cfg Config) (*Transmitter, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	t := &Transmitter{cfg: cfg, log: cfg.Log.With("component", "ssf"), js: cfg.Conn.JetStream(),
		ready: make(chan struct{}), recs: make(map[string]*record), keys: make(map[string]keyEntry), revs: make(map[string]uint64), workers: make(map[string]*worker),
		stats: make(map[string]*counters), waiting: make(map[string]int)}
	m, err := newMetrics(cfg.MeterProvider, t)
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	t.metrics = m
	return t, nil
}

// Issuer returns the transmitter's iss.
func (t *Transmitter) Issuer() string { return t.cfg.Issuer }

// DefaultSubjects returns ALL or NONE: the subjects a new stream has.
func (t *Transmitter) DefaultSubjects() string { return t.cfg.DefaultSubjects }

// Signer returns the transmitter's signer, whose key the jwks_uri serves.
func (t *Transmitter) Signer() *Signer { return t.cfg.Signer }

// Receiver is who calls the management API: the client id of its access
// token. Every stream belongs to the receiver that created it; another
// receiver's stream is answered as not found.
type Receiver = string

// StreamStatus is a stream's status (SSF 1.0 section 8.1.2).
type StreamStatus struct {
	ID     string `json:"stream_id"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// record is a stream as BucketSSFStreams keeps it.
type record struct {
	Stream   Stream    `json:"stream"`
	Receiver string    `json:"receiver"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	Default  string    `json:"default_subjects"`
	Subjects []Subject `json:"subjects,omitempty"` // added (NONE) or removed (ALL)
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	// StartSeq is the first sequence of HERALD_SSF the stream's consumer
	// reads: the stream's end when it was created or re-enabled after
	// being disabled.
	StartSeq uint64 `json:"start_seq"`
	// Since is when the stream was created or re-enabled after being
	// disabled: it transmits the revocations made from then on. HERALD_SSF
	// copies HERALD a moment later, so a revocation made just before may
	// lie past StartSeq; its time tells it apart.
	Since    time.Time `json:"since"`
	Verified time.Time `json:"verified,omitzero"` // the last verification request
	// Held records that the operator paused or disabled the stream: the
	// receiver may not enable it again.
	Held bool `json:"held_by_operator,omitempty"`
	// Notice is a stream-updated SET owed to the receiver: Herald, not
	// the receiver, changed the status.
	Notice *notice `json:"notice,omitempty"`
	// LastError and Gap are what operators are shown: the last delivery
	// failure, and events that expired before the stream delivered them.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Gap         string    `json:"gap,omitempty"`
}

// notice is a stream-updated event owed to a receiver.
type notice struct {
	ID     string    `json:"id"`
	Status string    `json:"status"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
}

// public is the stream as its receiver is shown it: without the push
// authorization, a secret the receiver gave and is never shown again.
func (r *record) public() *Stream {
	s := r.Stream
	s.Delivery.AuthorizationHeader = ""
	s.EventsSupported = slices.Clone(s.EventsSupported)
	return &s
}

// wants reports whether the stream transmits item it: an event it
// delivers, about a subject it covers. Verification and stream-updated
// always go.
func (r *record) wants(it Item) bool {
	if it.Type == EventVerification || it.Type == EventStreamUpdated {
		return true
	}
	if !slices.Contains(r.Stream.EventsDelivered, it.Type) {
		return false
	}
	matched := slices.ContainsFunc(r.Subjects, func(s Subject) bool { return s.Matches(it.Subject) })
	if r.Default == SubjectsNone {
		return matched
	}
	return !matched
}

func streamKey(id string) string    { return "stream." + id }
func consumerName(id string) string { return "ssf-" + id }

// newStreamID returns a stream id of RFC 3986 unreserved characters.
func newStreamID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validID reports whether id could be a stream id, before it names a
// bucket key or a consumer.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

var errStarting = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
	Description: "the transmitter is starting; retry"}

// started reports whether Run has set up the bus.
func (t *Transmitter) started() error {
	select {
	case <-t.ready:
		return nil
	default:
		return errStarting
	}
}

// load reads stream id with its revision, as receiver sees it: another
// receiver's stream is not found. An empty receiver is the operator.
func (t *Transmitter) load(ctx context.Context, receiver Receiver, id string) (*record, uint64, error) {
	if err := t.started(); err != nil {
		return nil, 0, err
	}
	if !validID(id) {
		return nil, 0, errNotFound
	}
	e, err := t.streams.Get(ctx, streamKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read stream %s: %w", id, err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("read stream %s: %w", id, err)
	}
	if receiver != "" && r.Receiver != receiver {
		return nil, 0, errNotFound
	}
	return &r, e.Revision(), nil
}

// change applies fn to receiver's stream id by compare-and-set, retrying
// when another replica changed it in between, and returns the result.
func (t *Transmitter) change(ctx context.Context, receiver Receiver, id string, fn func(*record) error) (*record, error) {
	for range 16 {
		r, rev, err := t.load(ctx, receiver, id)
		if err != nil {
			return nil, err
		}
		if err := fn(r); err != nil {
			return nil, err
		}
		r.Updated = t.cfg.Now().UTC()
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		next, err := t.streams.Update(ctx, streamKey(id), b, rev)
		if err != nil {
			if isConflict(err) {
				continue
			}
			return nil, fmt.Errorf("update stream %s: %w", id, err)
		}
		t.observe(id, r, next)
		return r, nil
	}
	return nil, fmt.Errorf("update stream %s: too many concurrent changes", id)
}

// isConsumerLimit reports whether err is HERALD_SSF's bound on consumers
// (MaxStreams, enforced by JetStream whatever the replicas do).
func isConsumerLimit(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMaximumConsumersLimit
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// all returns every stream, read from the bucket.
func (t *Transmitter) all(ctx context.Context) ([]*record, error) {
	lister, err := t.streams.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	var out []*record
	for k := range lister.Keys() {
		id, ok := strings.CutPrefix(k, "stream.")
		if !ok {
			continue
		}
		r, _, err := t.load(ctx, "", id)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Create creates a stream for receiver from req (SSF 1.0 section 8.1.1.1).
// Without a delivery the stream is polled.
func (t *Transmitter) Create(ctx context.Context, receiver Receiver, req *StreamRequest) (*Stream, error) {
	if err := t.started(); err != nil {
		return nil, err
	}
	if req.ID != "" {
		return nil, badRequest("stream_id is supplied by the transmitter")
	}
	if err := req.CheckTransmitterSupplied(nil); err != nil {
		return nil, err
	}
	d := Delivery{Method: MethodPoll}
	if req.Delivery != nil {
		d = *req.Delivery
	}
	if err := t.checkDelivery(&d); err != nil {
		return nil, err
	}
	all, err := t.all(ctx)
	if err != nil {
		return nil, err
	}
	mine := 0
	for _, r := range all {
		if r.Receiver == receiver {
			mine++
		}
	}
	if mine >= t.cfg.MaxStreamsPerReceiver || len(all) >= t.cfg.MaxStreams {
		return nil, errTooManyStreams(&t.cfg)
	}
	id := newStreamID()
	if err := t.claimSlot(ctx, receiver, id); err != nil {
		return nil, err
	}
	created := false
	defer func() {
		if !created {
			t.releaseSlot(context.WithoutCancel(ctx), receiver, id)
		}
	}()
	if d.Method == MethodPoll {
		d.EndpointURL = t.PollURL(id)
	}
	var requested []string
	if req.EventsRequested != nil {
		requested = *req.EventsRequested
	}
	var description string
	if req.Description != nil {
		description = *req.Description
	}
	now := t.cfg.Now().UTC()
	r := &record{Stream: Stream{ID: id, Issuer: t.cfg.Issuer, Audience: []string{receiver},
		EventsSupported: EventsSupported, EventsRequested: requested, EventsDelivered: Delivered(requested),
		Delivery: d, MinVerificationInterval: int(t.cfg.MinVerificationInterval / time.Second), Description: description},
		Receiver: receiver, Status: StatusEnabled, Default: t.cfg.DefaultSubjects, Created: now, Updated: now, Since: now}
	if r.StartSeq, err = t.end(ctx); err != nil {
		return nil, err
	}
	if err := t.ensureConsumer(ctx, r); err != nil {
		if isConsumerLimit(err) {
			return nil, errTooManyStreams(&t.cfg)
		}
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if _, err := t.streams.Create(ctx, streamKey(id), b); err != nil {
		t.deleteConsumer(ctx, id)
		return nil, fmt.Errorf("create stream: %w", err)
	}
	created = true
	t.log.Info("stream created", "stream", id, "receiver", receiver, "method", d.Method)
	return r.public(), nil
}

// end returns the sequence the next message of HERALD_SSF will have.
func (t *Transmitter) end(ctx context.Context) (uint64, error) {
	s, err := t.js.Stream(ctx, bus.StreamSSF)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", bus.StreamSSF, err)
	}
	return s.CachedInfo().State.LastSeq + 1, nil
}

// ensureConsumer creates or updates the durable consumer of stream r: its
// position in HERALD_SSF. A push stream's consumer hands out one message
// at a time, so its SETs go in order whichever replica sends them.
func (t *Transmitter) ensureConsumer(ctx context.Context, r *record) error {
	cc := jetstream.ConsumerConfig{
		Durable:        consumerName(r.Stream.ID),
		Description:    "SSF stream " + r.Stream.ID + " of receiver " + r.Receiver,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    r.StartSeq,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        t.cfg.AckWait,
		MaxAckPending:  1,
		MaxDeliver:     -1,
		FilterSubjects: []string{bus.SubjectRevokePrefix + ">", bus.SubjectSSFPrefix + r.Stream.ID},
	}
	if r.Stream.Delivery.Method == MethodPoll {
		cc.AckWait, cc.MaxAckPending = t.cfg.PollAckWait, 1000
	}
	if _, err := t.js.CreateOrUpdateConsumer(ctx, bus.StreamSSF, cc); err != nil {
		return fmt.Errorf("position of stream %s: %w", r.Stream.ID, err)
	}
	return nil
}

func (t *Transmitter) deleteConsumer(ctx context.Context, id string) {
	if err := t.js.DeleteConsumer(ctx, bus.StreamSSF, consumerName(id)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.log.Warn("delete stream position", "stream", id, "err", err)
	}
}

// PollURL returns the poll endpoint of stream id.
func (t *Transmitter) PollURL(id string) string {
	return strings.TrimSuffix(t.cfg.Issuer, "/") + "/ssf/poll/" + id
}

// Get returns receiver's stream id.
func (t *Transmitter) Get(ctx context.Context, receiver Receiver, id string) (*Stream, error) {
	r, _, err := t.load(ctx, receiver, id)
	if err != nil {
		return nil, err
	}
	return r.public(), nil
}

// List returns receiver's streams (an empty list when none).
func (t *Transmitter) List(ctx context.Context, receiver Receiver) ([]Stream, error) {
	if err := t.started(); err != nil {
		return nil, err
	}
	all, err := t.all(ctx)
	if err != nil {
		return nil, err
	}
	out := []Stream{}
	for _, r := range all {
		if r.Receiver == receiver {
			out = append(out, *r.public())
		}
	}
	slices.SortFunc(out, func(a, b Stream) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Update changes receiver's stream req.ID: the members req holds
// (PATCH), or all receiver-supplied members (replace, PUT), where a
// missing one is removed and a missing delivery means poll.
func (t *Transmitter) Update(ctx context.Context, receiver Receiver, req *StreamRequest, replace bool) (*Stream, error) {
	if req.ID == "" {
		return nil, badRequest("stream_id is required")
	}
	var methodChanged bool
	r, err := t.change(ctx, receiver, req.ID, func(r *record) error {
		if err := req.CheckTransmitterSupplied(&r.Stream); err != nil {
			return err
		}
		s := &r.Stream
		before := s.Delivery.Method
		switch {
		case req.Delivery != nil:
			d := *req.Delivery
			if d.Method == MethodPoll && d.EndpointURL == t.PollURL(s.ID) {
				d.EndpointURL = "" // the receiver repeated what it was given
			}
			if err := t.checkDelivery(&d); err != nil {
				return err
			}
			if d.Method == MethodPoll {
				d.EndpointURL = t.PollURL(s.ID)
			}
			s.Delivery = d
		case replace:
			s.Delivery = Delivery{Method: MethodPoll, EndpointURL: t.PollURL(s.ID)}
		}
		switch {
		case req.EventsRequested != nil:
			s.EventsRequested = *req.EventsRequested
		case replace:
			s.EventsRequested = nil
		}
		s.EventsDelivered = Delivered(s.EventsRequested)
		switch {
		case req.Description != nil:
			s.Description = *req.Description
		case replace:
			s.Description = ""
		}
		methodChanged = before != s.Delivery.Method
		return nil
	})
	if err != nil {
		return nil, err
	}
	if methodChanged {
		if err := t.ensureConsumer(ctx, r); err != nil {
			return nil, err
		}
	}
	return r.public(), nil
}

// Delete deletes receiver's stream id and its position.
func (t *Transmitter) Delete(ctx context.Context, receiver Receiver, id string) error {
	r, _, err := t.load(ctx, receiver, id)
	if err != nil {
		return err
	}
	if err := t.streams.Purge(ctx, streamKey(id)); err != nil {
		return fmt.Errorf("delete stream %s: %w", id, err)
	}
	t.deleteConsumer(ctx, id)
	t.releaseSlot(ctx, r.Receiver, id)
	t.log.Info("stream deleted", "stream", id, "receiver", receiver)
	return nil
}

// Status returns the status of receiver's stream id.
func (t *Transmitter) Status(ctx context.Context, receiver Receiver, id string) (*StreamStatus, error) {
	r, _, err := t.load(ctx, receiver, id)
	if err != nil {
		return nil, err
	}
	return &StreamStatus{ID: id, Status: r.Status, Reason: r.Reason}, nil
}

// errHeld refuses a receiver enabling a stream the operator paused or
// disabled (SSF 1.0 section 8.1.2.2 allows a 403 there).
var errHeld = &Error{Status: http.StatusForbidden, Code: "access_denied",
	Description: "the transmitter's operator paused or disabled this stream; only the operator enables it again"}

// SetStatus changes the status of receiver's stream st.ID. An empty
// receiver is the operator (any stream): then Herald, not the receiver,
// changed it, and the receiver is sent a stream-updated SET before
// anything else; a stream the operator paused or disabled only the
// operator enables again. A stream disabled then enabled again starts at
// the end of HERALD_SSF: a disabled stream holds nothing.
func (t *Transmitter) SetStatus(ctx context.Context, receiver Receiver, st StreamStatus) (*StreamStatus, error) {
	switch st.Status {
	case StatusEnabled, StatusPaused, StatusDisabled:
	default:
		return nil, badRequest("status must be enabled, paused or disabled")
	}
	if len(st.Reason) > MaxDescription {
		return nil, badRequest("reason is longer than %d bytes", MaxDescription)
	}
	end, err := t.endIfStarted(ctx)
	if err != nil {
		return nil, err
	}
	var restart bool
	r, err := t.change(ctx, receiver, st.ID, func(r *record) error {
		if receiver != "" && r.Held && st.Status == StatusEnabled {
			return errHeld
		}
		if receiver == "" {
			r.Held = st.Status != StatusEnabled
		}
		restart = r.Status == StatusDisabled && st.Status != StatusDisabled
		if restart {
			r.StartSeq, r.Since = end, t.cfg.Now().UTC()
		}
		r.Status, r.Reason = st.Status, st.Reason
		if st.Status == StatusEnabled {
			r.LastError, r.LastErrorAt = "", time.Time{}
		}
		if receiver == "" {
			r.Notice = &notice{ID: bus.NewID(), Status: st.Status, Reason: st.Reason, Time: t.cfg.Now().UTC()}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if restart || r.Status == StatusDisabled {
		// Disabled: the position is dropped; enabled again: it starts at
		// the end.
		t.deleteConsumer(ctx, st.ID)
		if restart {
			if err := t.ensureConsumer(ctx, r); err != nil {
				return nil, err
			}
		}
	}
	t.log.Info("stream status changed", "stream", st.ID, "status", st.Status, "by_receiver", receiver != "")
	return &StreamStatus{ID: st.ID, Status: r.Status, Reason: r.Reason}, nil
}

func (t *Transmitter) endIfStarted(ctx context.Context) (uint64, error) {
	if err := t.started(); err != nil {
		return 0, err
	}
	return t.end(ctx)
}

// AddSubject adds sub to receiver's stream id: with default subjects
// NONE it is transmitted from now on; with ALL a subject removed before
// is transmitted again.
func (t *Transmitter) AddSubject(ctx context.Context, receiver Receiver, id string, sub Subject) error {
	return t.subjects(ctx, receiver, id, sub, true)
}

// RemoveSubject removes sub from receiver's stream id.
func (t *Transmitter) RemoveSubject(ctx context.Context, receiver Receiver, id string, sub Subject) error {
	return t.subjects(ctx, receiver, id, sub, false)
}

func (t *Transmitter) subjects(ctx context.Context, receiver Receiver, id string, sub Subject, add bool) error {
	if sub.IsZero() {
		return badRequest("subject is required")
	}
	_, err := t.change(ctx, receiver, id, func(r *record) error {
		listed := r.Default == SubjectsNone // the list holds added subjects
		key := sub.Key()
		i, size := -1, len(key)
		for j, s := range r.Subjects {
			k := s.Key()
			if k == key {
				i = j
			}
			size += len(k)
		}
		if add == listed {
			if i >= 0 {
				return nil
			}
			if len(r.Subjects) >= t.cfg.MaxSubjects {
				return &Error{Status: http.StatusBadRequest, Code: "invalid_request",
					Description: fmt.Sprintf("a stream lists at most %d subjects", t.cfg.MaxSubjects)}
			}
			// The stream's record, subjects included, must stay well
			// below what the bus stores in one message, with room left
			// for its status and errors.
			if size > MaxSubjectsBytes {
				return &Error{Status: http.StatusBadRequest, Code: "invalid_request",
					Description: fmt.Sprintf("a stream's subjects total at most %d bytes", MaxSubjectsBytes)}
			}
			r.Subjects = append(r.Subjects, sub)
		} else if i >= 0 {
			r.Subjects = slices.Delete(r.Subjects, i, i+1)
		}
		return nil
	})
	return err
}

// errTooSoon is the refusal of a verification wait before the next is
// allowed.
func errTooSoon(wait time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "slow_down",
		Description: "verification requested again within min_verification_interval", RetryAfter: wait}
}

// Verify queues a verification SET echoing state on receiver's stream id
// (429 within MinVerificationInterval of the last one). It is transmitted
// in the stream's order, whatever its events_delivered.
func (t *Transmitter) Verify(ctx context.Context, receiver Receiver, id, state string) error {
	if len(state) > MaxDescription {
		return badRequest("state is longer than %d bytes", MaxDescription)
	}
	now := t.cfg.Now().UTC()
	_, err := t.change(ctx, receiver, id, func(r *record) error {
		if !r.Verified.IsZero() && now.Sub(r.Verified) < t.cfg.MinVerificationInterval {
			return errTooSoon(t.cfg.MinVerificationInterval - now.Sub(r.Verified))
		}
		r.Verified = now
		return nil
	})
	if err != nil {
		return err
	}
	c := control{ID: bus.NewID(), Type: EventVerification, Time: now, State: state}
	return t.publishControl(ctx, id, &c)
}

// control is a stream's own SET in HERALD_SSF: a verification.
type control struct {
	ID    string    `json:"id"`
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	State string    `json:"state,omitempty"`
}

func (t *Transmitter) publishControl(ctx context.Context, id string, c *control) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := t.js.Publish(ctx, bus.SubjectSSFPrefix+id, b, jetstream.WithMsgID(c.ID)); err != nil {
		return fmt.Errorf("queue %s on stream %s: %w", c.Type, id, err)
	}
	return nil
}

// item returns what a control message becomes.
func (c *control) item(streamID string) Item { return Verification(streamID, c.State) }

// Info is the operator's view of one stream.
type Info struct {
	ID       string    `json:"stream_id"`
	Receiver string    `json:"receiver"`
	Method   string    `json:"method"`
	Endpoint string    `json:"endpoint_url,omitempty"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	Created  time.Time `json:"created"`
	// Events lists the events the stream delivers.
	Events []string `json:"events_delivered"`
	// Lag is how many events of HERALD_SSF the stream has yet to deliver
	// or to have acknowledged.
	Lag uint64 `json:"lag"`
	// LastDelivered is when the receiver last acknowledged a SET.
	LastDelivered time.Time `json:"last_delivered,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	// Gap reports events that expired from HERALD_SSF before the stream
	// delivered them.
	Gap string `json:"gap,omitempty"`
}

// Streams returns the operator's view of every stream, by id.
func (t *Transmitter) Streams(ctx context.Context) ([]Info, error) {
	if err := t.started(); err != nil {
		return nil, err
	}
	all, err := t.all(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(all))
	for _, r := range all {
		out = append(out, t.info(ctx, r))
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Operator returns the operator's view of stream id, whoever's it is.
func (t *Transmitter) Operator(ctx context.Context, id string) (*Info, error) {
	r, _, err := t.load(ctx, "", id)
	if err != nil {
		return nil, err
	}
	in := t.info(ctx, r)
	return &in, nil
}

func (t *Transmitter) info(ctx context.Context, r *record) Info {
	in := Info{ID: r.Stream.ID, Receiver: r.Receiver, Method: r.Stream.Delivery.Method, Status: r.Status,
		Reason: r.Reason, Created: r.Created, Events: r.Stream.EventsDelivered, LastError: r.LastError,
		LastErrorAt: r.LastErrorAt, Gap: r.Gap}
	if in.Method == MethodPush {
		in.Endpoint = r.Stream.Delivery.EndpointURL
	}
	if c, err := t.js.Consumer(ctx, bus.StreamSSF, consumerName(r.Stream.ID)); err == nil {
		ci := c.CachedInfo()
		in.Lag = ci.NumPending + uint64(ci.NumAckPending)
		if ci.AckFloor.Last != nil && ci.AckFloor.Stream > 0 {
			in.LastDelivered = ci.AckFloor.Last.UTC()
		}
	}
	return in
}

// DeleteAny deletes stream id, whoever's it is, for the operator.
func (t *Transmitter) DeleteAny(ctx context.Context, id string) error {
	return t.Delete(ctx, "", id)
}
