package federation

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// scope names this package's meter.
const scope = "github.com/heraldsec/herald/federation"

// metrics are the Federation's instruments. The issuer attribute takes
// only configured issuers' URLs, so its cardinality is bounded.
type metrics struct {
	meter         metric.Meter
	refreshErrors metric.Int64Counter // by issuer
	keyRequests   metric.Int64Counter // by outcome
	keys          metric.Int64ObservableGauge
	failing       metric.Float64ObservableGauge
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(scope)
	m := &metrics{meter: meter}
	var err error
	if m.refreshErrors, err = meter.Int64Counter("herald.federation.refresh.errors",
		metric.WithDescription("Failed refreshes of a trusted external issuer's keys (fetch or publish), by issuer.")); err != nil {
		return nil, fmt.Errorf("federation metrics: %w", err)
	}
	if m.keyRequests, err = meter.Int64Counter("herald.federation.key_requests",
		metric.WithDescription("Key requests from verifiers that met an unknown kid, by outcome: refresh, limited, known, untrusted, malformed.")); err != nil {
		return nil, fmt.Errorf("federation metrics: %w", err)
	}
	if m.keys, err = meter.Int64ObservableGauge("herald.federation.keys",
		metric.WithDescription("Keys of a trusted external issuer from its last good key sets, by issuer.")); err != nil {
		return nil, fmt.Errorf("federation metrics: %w", err)
	}
	if m.failing, err = meter.Float64ObservableGauge("herald.federation.refresh.failing", metric.WithUnit("s"),
		metric.WithDescription("How long refreshes of a trusted external issuer's keys have been failing, by issuer; 0 while they succeed.")); err != nil {
		return nil, fmt.Errorf("federation metrics: %w", err)
	}
	return m, nil
}

// observe reports the keys and failing gauges from f's status until the
// returned registration is unregistered.
func (m *metrics) observe(f *Federation) (metric.Registration, error) {
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := f.now()
		for _, s := range f.Status() {
			attr := metric.WithAttributes(attribute.String("issuer", s.Issuer))
			o.ObserveInt64(m.keys, int64(s.Keys), attr)
			var failing float64
			if s.LastError != "" && !s.ErrorSince.IsZero() {
				failing = max(now.Sub(s.ErrorSince).Seconds(), 0)
			}
			o.ObserveFloat64(m.failing, failing, attr)
		}
		return nil
	}, m.keys, m.failing)
	if err != nil {
		return nil, fmt.Errorf("federation metrics: %w", err)
	}
	return reg, nil
}

func (m *metrics) refreshError(ctx context.Context, iss string) {
	m.refreshErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("issuer", iss)))
}

func (m *metrics) keyRequest(ctx context.Context, outcome string) {
	m.keyRequests.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}
