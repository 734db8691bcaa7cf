package issuer

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldsec/herald/bus"
)

// scope names this package's meter and tracer.
const scope = "github.com/heraldsec/herald/issuer"

// tracer returns the tracer of the issuer's entry points; a revocation's span is the root
// of a trace that every verifier continues (through NATS headers).
func tracer() trace.Tracer {
	// Looked up at each use, not once: the global provider may be replaced
	// (a program's set-up, tests), and a cached tracer would keep the first.
	return otel.Tracer(scope)
}

// issuerMetrics are the issuer's instruments.
type issuerMetrics struct {
	revocations metric.Int64Counter // by kind
	issued      metric.Int64Counter // by grant
	refused     metric.Int64Counter // events the feed dropped, by stream and reason
	signals     metric.Int64Counter // signals received, by format and result
	reg         metric.Registration
}

func newIssuerMetrics(mp metric.MeterProvider, s *Service) (*issuerMetrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(scope)
	m := &issuerMetrics{}
	var err error
	if m.revocations, err = meter.Int64Counter("herald.revocations",
		metric.WithDescription("Revoked values acknowledged by JetStream, by kind.")); err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	if m.issued, err = meter.Int64Counter("herald.tokens.issued",
		metric.WithDescription("Access tokens issued, by grant (session, refresh_token, client_credentials).")); err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	if m.refused, err = meter.Int64Counter("herald.events.refused",
		metric.WithDescription("Events the issuer's event feed (GET /v1/events) left out for their signature: unsigned, forged, by an untrusted key, or signed for another stream; by stream and reason.")); err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	if m.signals, err = meter.Int64Counter("herald.signals.received",
		metric.WithDescription("Logout tokens and SETs received from outside, by format (logout, push, poll) and result (ok, or the RFC 8935 error code).")); err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	pending, err := meter.Int64ObservableGauge("herald.outbox.pending",
		metric.WithDescription("Events committed but not yet acknowledged by JetStream."))
	if err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	offset, err := meter.Float64ObservableGauge("herald.clock.offset", metric.WithUnit("s"),
		metric.WithDescription("This issuer's clock minus the NATS server's, measured every 10 s."))
	if err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	skew, err := meter.Float64ObservableGauge("herald.fleet.clock_skew", metric.WithUnit("s"),
		metric.WithDescription("The largest clock difference between a live verifier and this issuer, measured every 10 s."))
	if err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	fleet, err := meter.Int64ObservableGauge("herald.fleet.verifiers", metric.WithUnit("{verifier}"),
		metric.WithDescription("Verifiers with a live heartbeat in HERALD_VERIFIERS, as this issuer last listed them (every 10 s)."))
	if err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(pending, int64(s.outbox.pending()))
		if s.clockKnown.Load() {
			o.ObserveFloat64(offset, time.Duration(s.clockOffset.Load()).Seconds())
			o.ObserveFloat64(skew, time.Duration(s.maxSkew.Load()).Seconds())
		}
		if s.fleetKnown.Load() {
			o.ObserveInt64(fleet, s.fleetLive.Load())
		}
		return nil
	}, pending, offset, skew, fleet)
	if err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	return m, nil
}

func (m *issuerMetrics) revoked(ctx context.Context, k bus.Kind, n int) {
	m.revocations.Add(ctx, int64(n), metric.WithAttributes(attribute.String("kind", k.String())))
}

func (m *issuerMetrics) issue(ctx context.Context, grant string) {
	m.issued.Add(ctx, 1, metric.WithAttributes(attribute.String("grant", grant)))
}

func (m *issuerMetrics) refuse(ctx context.Context, stream, reason string) {
	m.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("stream", stream), attribute.String("reason", reason)))
}

// signal counts a signal received as format; code is its refusal's RFC
// 8935 error code, or "" when it was taken.
func (m *issuerMetrics) signal(ctx context.Context, format, code string) {
	if code == "" {
		code = "ok"
	}
	m.signals.Add(ctx, 1, metric.WithAttributes(attribute.String("format", format), attribute.String("result", code)))
}

func (m *issuerMetrics) close() {
	if m != nil && m.reg != nil {
		_ = m.reg.Unregister()
	}
}
