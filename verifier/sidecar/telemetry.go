package sidecar

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// scope names the sidecar's meter: the verifier's, as before the sidecar
// had a package of its own, so dashboards keep their series.
const scope = "github.com/heraldsec/herald/verifier"

// sidecarMetrics are the sidecar's instruments: the propagation lag of
// each revocation, and gauges read at collection time.
type sidecarMetrics struct {
	lag  metric.Float64Histogram
	attr metric.MeasurementOption
	reg  metric.Registration
}

func newSidecarMetrics(mp metric.MeterProvider, s *Sidecar) (*sidecarMetrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(scope)
	m := &sidecarMetrics{attr: metric.WithAttributeSet(attribute.NewSet(attribute.String("verifier", s.id)))}
	noSnapshot := metric.WithAttributeSet(attribute.NewSet(attribute.String("verifier", s.id), attribute.String("cause", "none")))
	unusableSnapshot := metric.WithAttributeSet(attribute.NewSet(attribute.String("verifier", s.id), attribute.String("cause", "unusable")))
	var err error
	m.lag, err = meter.Float64Histogram("herald.propagation.lag",
		metric.WithUnit("s"),
		metric.WithDescription("From a revocation's time at the issuer to this verifier enforcing it."),
		metric.WithExplicitBucketBoundaries(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1, 10))
	if err != nil {
		return nil, fmt.Errorf("sidecar metrics: %w", err)
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, gerr := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		err = errors.Join(err, gerr)
		return g
	}
	counter := func(name, desc string) metric.Int64ObservableCounter {
		c, cerr := meter.Int64ObservableCounter(name, metric.WithDescription(desc))
		err = errors.Join(err, cerr)
		return c
	}
	denylist := gauge("herald.denylist.entries", "{entry}", "Denylist entries held.")
	applied := gauge("herald.stream.applied", "{seq}", "Last HERALD stream sequence applied.")
	lag := gauge("herald.stream.lag", "{event}", "Revocations on the stream not yet applied.")
	ready := gauge("herald.ready", "", "1 when the verifier gives verdicts from a caught-up denylist.")
	stale := gauge("herald.stale", "", "1 when cut off from the bus for longer than the maximum staleness.")
	staleness := gauge("herald.bus.staleness", "ms", "Milliseconds since the verifier last heard from the bus.")
	cacheEntries := gauge("herald.verify.cache.entries", "{token}", "Verified tokens held by the fast path cache.")
	live := gauge("herald.live.requests", "{request}", "Admitted requests in flight (proxy and middleware).")
	hits := counter("herald.verify.cache.hits", "Verifications that skipped the signature check (fast path).")
	misses := counter("herald.verify.cache.misses", "Verifications not found in the fast path cache.")
	gaps := counter("herald.stream.gaps", "Gaps found in the revocation stream.")
	refused := counter("herald.stream.refused", "Events dropped for their signature: unsigned, forged, by an untrusted key, or signed for another stream.")
	malformed := counter("herald.stream.malformed", "Malformed events dropped from the revocation stream.")
	ended := counter("herald.live.revoked", "Requests in flight ended by a revocation.")
	fallbacks := counter("herald.snapshot.fallbacks", "Starts from an empty denylist that replayed the whole revocation stream, by cause: none (no snapshot published yet) or unusable (incomplete, forged, tampered, or older than the stream's retention).")
	if err != nil {
		return nil, fmt.Errorf("sidecar metrics: %w", err)
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.Status()
		h, mi, size := s.verifier.CacheStats()
		o.ObserveInt64(denylist, int64(st.Denylist), m.attr)
		o.ObserveInt64(applied, int64(st.Applied), m.attr)
		o.ObserveInt64(lag, int64(st.Lag), m.attr)
		o.ObserveInt64(ready, b2i(st.Ready), m.attr)
		o.ObserveInt64(stale, b2i(st.Stale), m.attr)
		o.ObserveInt64(staleness, int64(st.Staleness*1000), m.attr)
		o.ObserveInt64(cacheEntries, int64(size), m.attr)
		o.ObserveInt64(live, int64(s.live.Len()), m.attr)
		o.ObserveInt64(hits, int64(h), m.attr)
		o.ObserveInt64(misses, int64(mi), m.attr)
		o.ObserveInt64(gaps, int64(st.Gaps), m.attr)
		o.ObserveInt64(refused, int64(st.Refused), m.attr)
		o.ObserveInt64(malformed, int64(st.Malformed), m.attr)
		o.ObserveInt64(ended, int64(s.live.Ended()), m.attr)
		o.ObserveInt64(fallbacks, int64(st.SnapshotFallbacks-st.SnapshotUnusable), noSnapshot)
		o.ObserveInt64(fallbacks, int64(st.SnapshotUnusable), unusableSnapshot)
		return nil
	}, denylist, applied, lag, ready, stale, staleness, cacheEntries, live, hits, misses, gaps, refused, malformed, ended, fallbacks)
	if err != nil {
		return nil, fmt.Errorf("sidecar metrics: %w", err)
	}
	return m, nil
}

// close stops the gauges' callback.
func (m *sidecarMetrics) close() {
	if m != nil && m.reg != nil {
		_ = m.reg.Unregister()
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
