package issuer

import (
	"net/http"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/internal/httpserve"
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
	now := time.Now() // heartbeats are dated by the verifiers' clocks: aged on the wall clock
	out := struct {
		StreamHead uint64 `json:"stream_head"`
		// ClockOffsetMS is this issuer's clock minus the NATS server's.
		ClockOffsetMS *int64        `json:"clock_offset_ms,omitempty"`
		Verifiers     []fleetMember `json:"verifiers"`
		// TrustedIssuers is the state of each trusted external issuer's
		// keys, which the issuer distributes to the fleet.
		TrustedIssuers []federation.IssuerStatus `json:"trusted_issuers,omitempty"`
	}{StreamHead: head, Verifiers: make([]fleetMember, 0, len(list)), TrustedIssuers: h.s.TrustStatus()}
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
	httpserve.WriteJSON(w, http.StatusOK, out)
}
