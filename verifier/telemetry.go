package verifier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// scope names this package's meter and tracer.
const scope = "github.com/heraldsec/herald/verifier"

// tracer returns the tracer of the verifier's entry points: applying revocations, as
// children of the admin call that made them (the trace context travels in
// the NATS message headers).
func tracer() trace.Tracer {
	// Looked up at each use, not once: the global provider may be replaced
	// (a program's set-up, tests), and a cached tracer would keep the first.
	return otel.Tracer(scope)
}

// reasons lists every refusal reason, for the outcome attribute.
var reasons = []*Error{
	ErrMissing, ErrMalformed, ErrAlgorithm, ErrType, ErrUnknownKey, ErrBadSignature,
	ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrRevoked, ErrNotReady,
}

// verifyMetrics records verifications: latency and outcome by reason.
type verifyMetrics struct {
	duration metric.Float64Histogram
	ok       metric.RecordOption
	refused  []metric.RecordOption // by index in reasons; the last: no known reason
}

func newVerifyMetrics(mp metric.MeterProvider) (*verifyMetrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	h, err := mp.Meter(scope).Float64Histogram("herald.verify.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Token verifications: latency, by outcome (ok or the refusal reason)."),
		metric.WithExplicitBucketBoundaries(1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2))
	if err != nil {
		return nil, fmt.Errorf("verify metrics: %w", err)
	}
	m := &verifyMetrics{duration: h, ok: outcome("ok")}
	for _, r := range reasons {
		m.refused = append(m.refused, outcome(r.Reason))
	}
	m.refused = append(m.refused, outcome("invalid_token"))
	return m, nil
}

func outcome(s string) metric.RecordOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", s)))
}

// record records one verification that started at start.
func (m *verifyMetrics) record(ctx context.Context, start time.Time, err error) {
	if m == nil {
		return
	}
	opt := m.ok
	if err != nil {
		opt = m.refused[len(reasons)]
		var e *Error
		if errors.As(err, &e) {
			for i, r := range reasons {
				if r == e {
					opt = m.refused[i]
					break
				}
			}
		}
	}
	m.duration.Record(ctx, time.Since(start).Seconds(), opt)
}
