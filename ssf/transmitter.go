package ssf

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
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
	// Open checks a revocation message read from HERALD_SSF (its event
	// signature) and decodes it. Required.
	Open func(data []byte, header map[string][]string, subject string) (*bus.Event, error)
	// DefaultSubjects is ALL (the default) or NONE.
	DefaultSubjects string
	// Retention is how long HERALD_SSF keeps events for receivers that
	// are away or paused. Default 7 days.
	Retention time.Duration
	// Replicas of HERALD_SSF and HERALD_SSF_STREAMS. Default 1.
	Replicas int
	// HTTP pushes SETs. Default: a client with PushTimeout, no redirects.
	HTTP *http.Client
	// PushTimeout bounds one push. Default 10 s.
	PushTimeout time.Duration
	// MaxStreams bounds the streams of the deployment (default 1000),
	// MaxStreamsPerReceiver those of one receiver (default 10),
	// MaxSubjects the subjects added to or removed from one stream
	// (default 1000).
	MaxStreams, MaxStreamsPerReceiver, MaxSubjects int
	// MinVerificationInterval is the stream's min_verification_interval.
	// Default 10 s.
	MinVerificationInterval time.Duration
	// Log receives the transmitter's logs. Default slog.Default().
	Log *slog.Logger
	// MeterProvider receives the per-stream metrics. Default: none.
	MeterProvider metric.MeterProvider
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// Transmitter serves SSF streams: their management, push delivery of
// every stream (Run) and poll delivery (Poll). Any number of issuer
// replicas run one each on the same bus.
type Transmitter struct {
	cfg Config
}

// New returns a Transmitter for cfg. It touches the bus only in Run.
func New(cfg Config) (*Transmitter, error) {
	return &Transmitter{cfg: cfg}, nil
}

// Run creates HERALD_SSF and HERALD_SSF_STREAMS if needed, then pushes
// the SETs of every push stream until ctx ends.
func (t *Transmitter) Run(ctx context.Context) error { <-ctx.Done(); return nil }

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

// Create creates a stream for receiver from req (SSF 1.0 section 8.1.1.1).
func (t *Transmitter) Create(ctx context.Context, receiver Receiver, req *StreamRequest) (*Stream, error) {
	return nil, errors.New("ssf: not implemented")
}

// Get returns receiver's stream id.
func (t *Transmitter) Get(ctx context.Context, receiver Receiver, id string) (*Stream, error) {
	return nil, errors.New("ssf: not implemented")
}

// List returns receiver's streams (an empty list when none).
func (t *Transmitter) List(ctx context.Context, receiver Receiver) ([]Stream, error) {
	return nil, errors.New("ssf: not implemented")
}

// Update changes receiver's stream req.ID: the members req holds
// (PATCH), or all receiver-supplied members (replace, PUT).
func (t *Transmitter) Update(ctx context.Context, receiver Receiver, req *StreamRequest, replace bool) (*Stream, error) {
	return nil, errors.New("ssf: not implemented")
}

// Delete deletes receiver's stream id and its position.
func (t *Transmitter) Delete(ctx context.Context, receiver Receiver, id string) error {
	return errors.New("ssf: not implemented")
}

// Status returns the status of receiver's stream id.
func (t *Transmitter) Status(ctx context.Context, receiver Receiver, id string) (*StreamStatus, error) {
	return nil, errors.New("ssf: not implemented")
}

// SetStatus changes the status of receiver's stream st.ID. An empty
// receiver is the operator (any stream): then Herald, not the receiver,
// changed it, and the receiver is sent a stream-updated SET.
func (t *Transmitter) SetStatus(ctx context.Context, receiver Receiver, st StreamStatus) (*StreamStatus, error) {
	return nil, errors.New("ssf: not implemented")
}

// AddSubject adds sub to receiver's stream id.
func (t *Transmitter) AddSubject(ctx context.Context, receiver Receiver, id string, sub Subject) error {
	return errors.New("ssf: not implemented")
}

// RemoveSubject removes sub from receiver's stream id.
func (t *Transmitter) RemoveSubject(ctx context.Context, receiver Receiver, id string, sub Subject) error {
	return errors.New("ssf: not implemented")
}

// Verify queues a verification SET echoing state on receiver's stream id
// (429 within MinVerificationInterval of the last one).
func (t *Transmitter) Verify(ctx context.Context, receiver Receiver, id, state string) error {
	return errors.New("ssf: not implemented")
}

// Info is the operator's view of one stream.
type Info struct {
	ID       string    `json:"stream_id"`
	Receiver string    `json:"receiver"`
	Method   string    `json:"method"`
	Endpoint string    `json:"endpoint_url,omitempty"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	Created  time.Time `json:"created"`
	// Lag is how many events of HERALD_SSF the stream has yet to deliver
	// or have acknowledged.
	Lag uint64 `json:"lag"`
	// Delivered counts SETs the receiver acknowledged since the
	// replica started; LastDelivered is when the last one was.
	LastDelivered time.Time `json:"last_delivered,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	// Gap reports events that expired from HERALD_SSF before the stream
	// delivered them.
	Gap string `json:"gap,omitempty"`
}

// Streams returns the operator's view of every stream.
func (t *Transmitter) Streams(ctx context.Context) ([]Info, error) {
	return nil, errors.New("ssf: not implemented")
}

// Operator returns stream id whoever its receiver, for the operator.
func (t *Transmitter) Operator(ctx context.Context, id string) (*Info, error) {
	return nil, errors.New("ssf: not implemented")
}

// Delete by the operator: DeleteAny.
func (t *Transmitter) DeleteAny(ctx context.Context, id string) error {
	return errors.New("ssf: not implemented")
}

var _ = jetstream.ErrKeyNotFound
