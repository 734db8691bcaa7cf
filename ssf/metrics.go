package ssf

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/heraldsec/herald/bus"
)

// metrics are the transmitter's instruments.
type metrics struct {
	delivered metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider, t *Transmitter) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/heraldsec/herald/ssf")
	m := new(metrics)
	var err error
	if m.delivered, err = meter.Int64Counter("herald.ssf.delivered", metric.WithUnit("{set}"),
		metric.WithDescription("SET deliveries, by stream and result (delivered, retry, refused_by_receiver, paused, refused_event, gap, acked, set_error).")); err != nil {
		return nil, err
	}
	lag, err := meter.Int64ObservableGauge("herald.ssf.lag", metric.WithUnit("{event}"),
		metric.WithDescription("Events of HERALD_SSF each SSF stream has yet to deliver or have acknowledged."))
	if err != nil {
		return nil, err
	}
	streams, err := meter.Int64ObservableGauge("herald.ssf.streams", metric.WithUnit("{stream}"),
		metric.WithDescription("SSF streams, by status."))
	if err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if t.started() != nil {
			return nil
		}
		t.mu.Lock()
		ids := make([]string, 0, len(t.recs))
		byStatus := map[string]int64{StatusEnabled: 0, StatusPaused: 0, StatusDisabled: 0}
		for id, r := range t.recs {
			ids = append(ids, id)
			byStatus[r.Status]++
		}
		t.mu.Unlock()
		for s, n := range byStatus {
			o.ObserveInt64(streams, n, metric.WithAttributes(attribute.String("status", s)))
		}
		for _, id := range ids {
			c, err := t.js.Consumer(ctx, bus.StreamSSF, consumerName(id))
			if err != nil {
				continue
			}
			ci := c.CachedInfo()
			o.ObserveInt64(lag, int64(ci.NumPending)+int64(ci.NumAckPending), metric.WithAttributes(attribute.String("stream", id)))
		}
		return nil
	}, lag, streams)
	return m, err
}

func (m *metrics) count(ctx context.Context, stream, result string) {
	m.delivered.Add(ctx, 1, metric.WithAttributes(attribute.String("stream", stream), attribute.String("result", result)))
}
