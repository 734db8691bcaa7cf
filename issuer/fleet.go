package issuer

import (
	"context"
	"net/http"
	"time"

	"github.com/heraldsec/herald/bus"
)

// fleetMember is one verifier in GET /v1/verifiers: its last heartbeat,
// whether it is live, and its lag against the stream head as the issuer
// sees it now.
type fleetMember struct {
	bus.Heartbeat
	// Live: the heartbeat is less than three intervals old.
	Live bool `json:"live"`
	// AgeMS is how old the heartbeat is, in milliseconds.
	AgeMS int64 `json:"age_ms"`
	// ClockSkewMS is the verifier's clock minus this issuer's, in
	// milliseconds: the offsets both measured against the NATS server.
	// Absent when either is unknown.
	ClockSkewMS *int64 `json:"clock_skew_ms,omitempty"`
}

// skewEvery is how often the issuer measures its clock against the NATS
// server's and the verifiers' against its own.
const skewEvery = 10 * time.Second

// skewOf returns a verifier's clock minus the issuer's, from their offsets
// against the NATS server.
func skewOf(hb *bus.Heartbeat, issuerOffset time.Duration) (time.Duration, bool) {
	if hb.ClockOffsetMS == nil {
		return 0, false
	}
	return time.Duration(*hb.ClockOffsetMS)*time.Millisecond - issuerOffset, true
}

// watchSkew measures, every skewEvery until ctx ends, the issuer's clock
// against the NATS server's and the live verifiers' against the issuer's,
// keeps them for the metrics, and warns while any is beyond
// bus.SkewWarning. Failures are retried at the next check.
func (s *Service) watchSkew(ctx context.Context) error {
	t := time.NewTicker(skewEvery)
	defer t.Stop()
	for {
		s.measureSkew(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// measureSkew is one check of watchSkew.
func (s *Service) measureSkew(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, bus.ListTimeout)
	defer cancel()
	off, err := s.conn.ClockOffset(ctx, s.now)
	if err != nil {
		return
	}
	s.clockOffset.Store(int64(off))
	s.clockKnown.Store(true)
	if off.Abs() > bus.SkewWarning {
		s.log.Warn("CLOCK SKEW: this issuer's clock differs from the NATS server's; check NTP",
			"offset", off.Round(time.Millisecond), "threshold", bus.SkewWarning)
	}
	list, err := s.conn.ListFleet(ctx)
	if err != nil {
		return
	}
	var worst time.Duration
	var worstID string
	skewed := 0
	now := time.Now()
	for i := range list {
		hb := &list[i]
		skew, ok := skewOf(hb, off)
		if !ok || !hb.Live(now) {
			continue
		}
		if skew.Abs() > bus.SkewWarning {
			skewed++
		}
		if skew.Abs() >= worst.Abs() {
			worst, worstID = skew, hb.ID
		}
	}
	s.maxSkew.Store(int64(worst.Abs()))
	if skewed > 0 {
		s.log.Warn("CLOCK SKEW: verifiers' clocks differ from this issuer's; revocations are dated by the issuer's clock, check NTP",
			"verifiers", skewed, "worst", worstID, "skew", worst.Round(time.Millisecond), "threshold", bus.SkewWarning)
	}
}

// verifiers lists the verifier fleet from the HERALD_VERIFIERS bucket
// (GET /v1/verifiers, admin). Each verifier's lag is the larger of the lag
// it reported and the distance from its applied sequence to the stream
// head now; its clock skew is measured against this issuer's clock.
func (h *handler) verifiers(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, head, err := h.s.conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		h.writeError(w, err)
		return
	}
	list, err := h.s.conn.ListFleet(ctx)
	if err != nil {
		h.writeError(w, err)
		return
	}
	now := time.Now()
	out := struct {
		StreamHead uint64 `json:"stream_head"`
		// ClockOffsetMS is this issuer's clock minus the NATS server's.
		ClockOffsetMS *int64        `json:"clock_offset_ms,omitempty"`
		Verifiers     []fleetMember `json:"verifiers"`
	}{StreamHead: head, Verifiers: make([]fleetMember, 0, len(list))}
	off, offErr := h.s.conn.ClockOffset(ctx, h.s.now)
	if offErr == nil {
		ms := off.Milliseconds()
		out.ClockOffsetMS = &ms
	}
	for _, hb := range list {
		m := fleetMember{Heartbeat: hb, Live: hb.Live(now), AgeMS: now.Sub(hb.Time).Milliseconds()}
		if skew, ok := skewOf(&hb, off); ok && offErr == nil {
			ms := skew.Milliseconds()
			m.ClockSkewMS = &ms
		}
		if head > m.AppliedSeq {
			m.Lag = max(m.Lag, head-m.AppliedSeq)
		}
		out.Verifiers = append(out.Verifiers, m)
	}
	writeJSON(w, http.StatusOK, out)
}
