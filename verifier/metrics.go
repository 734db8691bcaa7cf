package verifier

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
)

// reasons lists every refusal in the order /metrics reports them.
var reasons = []*Error{
	ErrMissing, ErrMalformed, ErrAlgorithm, ErrType, ErrUnknownKey, ErrBadSignature,
	ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrRevoked, ErrNotReady,
}

// outcomes counts verdicts by outcome.
type outcomes struct {
	ok      atomic.Uint64
	refused [13]atomic.Uint64 // by index in reasons; the last counts errors of no known reason
}

// count records the outcome of one verification.
func (v *Verifier) count(err error) {
	if err == nil {
		v.outcomes.ok.Add(1)
		return
	}
	var e *Error
	if errors.As(err, &e) {
		for i, r := range reasons {
			if r == e {
				v.outcomes.refused[i].Add(1)
				return
			}
		}
	}
	v.outcomes.refused[len(reasons)].Add(1)
}

// metrics serves /metrics in the Prometheus text format (version 0.0.4).
func (h *Handler) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	sc := h.sc
	st := sc.Status()
	v := sc.verifier
	var b []byte
	metric := func(name, typ, help string) {
		b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("herald_verify_total", "counter", "Token verifications by outcome (ok or the refusal reason).")
	b = fmt.Appendf(b, "herald_verify_total{outcome=\"ok\"} %d\n", v.outcomes.ok.Load())
	for i, r := range reasons {
		b = fmt.Appendf(b, "herald_verify_total{outcome=%q} %d\n", r.Reason, v.outcomes.refused[i].Load())
	}
	b = fmt.Appendf(b, "herald_verify_total{outcome=\"invalid_token\"} %d\n", v.outcomes.refused[len(reasons)].Load())
	hits, misses, size := v.CacheStats()
	metric("herald_verify_cache_hits_total", "counter", "Verifications that skipped the signature check (fast path).")
	b = fmt.Appendf(b, "herald_verify_cache_hits_total %d\n", hits)
	metric("herald_verify_cache_misses_total", "counter", "Verifications not found in the fast path cache.")
	b = fmt.Appendf(b, "herald_verify_cache_misses_total %d\n", misses)
	metric("herald_verify_cache_entries", "gauge", "Verified tokens held by the fast path cache.")
	b = fmt.Appendf(b, "herald_verify_cache_entries %d\n", size)
	metric("herald_denylist_entries", "gauge", "Denylist entries held.")
	b = fmt.Appendf(b, "herald_denylist_entries %d\n", st.Denylist)
	metric("herald_applied_sequence", "gauge", "Last HERALD stream sequence applied.")
	b = fmt.Appendf(b, "herald_applied_sequence %d\n", st.Applied)
	metric("herald_stream_lag", "gauge", "Revocations on the stream not yet applied.")
	b = fmt.Appendf(b, "herald_stream_lag %d\n", st.Lag)
	metric("herald_bus_staleness_seconds", "gauge", "Seconds since the verifier last heard from the bus.")
	b = fmt.Appendf(b, "herald_bus_staleness_seconds %.3f\n", st.Staleness)
	metric("herald_stale", "gauge", "1 when cut off from the bus for longer than the maximum staleness.")
	b = fmt.Appendf(b, "herald_stale %d\n", btoi(st.Stale))
	metric("herald_ready", "gauge", "1 when the verifier is ready.")
	b = fmt.Appendf(b, "herald_ready %d\n", btoi(st.Ready))
	metric("herald_stream_gaps_total", "counter", "Gaps found in the revocation stream.")
	b = fmt.Appendf(b, "herald_stream_gaps_total %d\n", st.Gaps)
	metric("herald_live_requests", "gauge", "Admitted requests in flight (proxy and middleware).")
	b = fmt.Appendf(b, "herald_live_requests %d\n", sc.live.len())
	metric("herald_live_requests_revoked_total", "counter", "Requests in flight ended by a revocation.")
	b = fmt.Appendf(b, "herald_live_requests_revoked_total %d\n", sc.live.ended.Load())
	_, _ = w.Write(b) // the client went away; nothing to do
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
