package issuer

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
)

// sseHeartbeat keeps idle event streams (and proxies in front) alive.
const sseHeartbeat = 15 * time.Second

// sseRecheck is how often an event stream checks, besides before each
// event, that its credential still exists with the read scope.
const sseRecheck = time.Second

// position is a place in both streams; SSE ids are "<HERALD seq>.<HERALD_AUDIT seq>",
// so Last-Event-ID resumes both.
type position struct{ herald, audit uint64 }

func (p position) String() string { return fmt.Sprintf("%d.%d", p.herald, p.audit) }

func parsePosition(s string) (position, error) {
	a, b, ok := strings.Cut(s, ".")
	h, err1 := strconv.ParseUint(a, 10, 64)
	au, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return position{}, badRequest("Last-Event-ID: want <herald seq>.<audit seq>")
	}
	return position{h, au}, nil
}

type streamItem struct {
	stream string
	d      bus.Delivery
}

// events serves GET /v1/events: Server-Sent Events over HERALD and
// HERALD_AUDIT. Each event's id is the position in both streams after it,
// so a client that reconnects with Last-Event-ID misses nothing and gets
// nothing twice. Query: type (comma-separated event types, or prefixes
// ending in '.'), tenant, from=start|now (without Last-Event-ID; default
// now), follow=false to end once the events that existed at the start
// are sent. A stream ends when its credential is deleted, rotated or
// loses the read scope (checked before each event and every sseRecheck),
// and after Config.EventStreamMaxAge.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var types []string
	if t := q.Get("type"); t != "" {
		types = strings.Split(t, ",")
	}
	tenant := q.Get("tenant")
	follow := true
	if f := q.Get("follow"); f != "" {
		var err error
		if follow, err = strconv.ParseBool(f); err != nil {
			h.writeError(w, badRequest("follow: want true or false"))
			return
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	_, headH, err := h.s.conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		h.writeError(w, err)
		return
	}
	_, headA, err := h.s.conn.StreamHead(ctx, bus.StreamAudit)
	if err != nil {
		h.writeError(w, err)
		return
	}
	var pos position
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = q.Get("last_event_id")
	}
	switch {
	case lastID != "":
		if pos, err = parsePosition(lastID); err != nil {
			h.writeError(w, err)
			return
		}
	case q.Get("from") == "start":
	case q.Get("from") == "" || q.Get("from") == "now":
		pos = position{headH, headA}
	default:
		h.writeError(w, badRequest("from: want start or now"))
		return
	}

	items := make(chan streamItem, 1024)
	deliver := func(stream string) func(bus.Delivery) {
		return func(d bus.Delivery) {
			select {
			case items <- streamItem{stream, d}:
			case <-ctx.Done():
			}
		}
	}
	stopH, err := h.s.conn.Follow(ctx, bus.StreamRevocations, pos.herald, deliver(bus.StreamRevocations))
	if err != nil {
		h.writeError(w, err)
		return
	}
	defer stopH()
	stopA, err := h.s.conn.Follow(ctx, bus.StreamAudit, pos.audit, deliver(bus.StreamAudit))
	if err != nil {
		h.writeError(w, err)
		return
	}
	defer stopA()
	defer cancel() // before the stops: unblocks deliver

	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // an event stream outlives the server's write timeout
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": herald events from %s\n\n", pos)
	if err := rc.Flush(); err != nil {
		return
	}
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	recheck := time.NewTicker(sseRecheck)
	defer recheck.Stop()
	lifetime := time.NewTimer(h.s.cfg.EventStreamMaxAge)
	defer lifetime.Stop()
	p, _ := r.Context().Value(principalKey{}).(*principal)
	authorized := func() bool { return h.s.creds.still(p, ScopeRead) }
	for {
		if !follow && pos.herald >= headH && pos.audit >= headA {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-lifetime.C:
			fmt.Fprint(w, ": the stream reached its maximum lifetime; reconnect with Last-Event-ID\n\n")
			_ = rc.Flush()
			return
		case <-recheck.C:
			if !authorized() {
				return
			}
			continue
		case <-beat.C:
			fmt.Fprint(w, ": ping\n\n")
		case it := <-items:
			if !authorized() {
				return
			}
			if it.stream == bus.StreamRevocations {
				pos.herald = it.d.Seq
			} else {
				pos.audit = it.d.Seq
			}
			e, err := h.s.openEvent(it.d, it.stream)
			if err != nil {
				h.s.refusedInFeed(ctx, it, err)
				continue
			}
			if !matchEvent(e, types, tenant) {
				continue
			}
			fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", pos, e.Type, it.d.Data)
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// refusedLogEvery bounds the log lines of events the feed refuses: one
// per interval for the whole issuer, naming how many were refused.
const refusedLogEvery = 10 * time.Second

// refusedLog rate-limits the log of refused events.
type refusedLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// refusedInFeed counts and logs (rate-limited) an event the feed leaves
// out because its signature does not hold.
func (s *Service) refusedInFeed(ctx context.Context, it streamItem, err error) {
	reason := bus.Reason(err)
	s.metrics.refuse(ctx, it.stream, reason)
	l := &s.refusedLog
	l.mu.Lock()
	now := s.now()
	if !l.last.IsZero() && now.Sub(l.last) < refusedLogEvery {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	s.log.Warn("event feed: event refused", "stream", it.stream, "seq", it.d.Seq, "subject", it.d.Subject,
		"reason", reason, "err", err, "refused_since_last_log", n)
}

// matchEvent reports whether e passes the type and tenant filters.
func matchEvent(e *bus.Event, types []string, tenant string) bool {
	if len(types) > 0 && !slices.ContainsFunc(types, func(t string) bool {
		return string(e.Type) == t || (strings.HasSuffix(t, ".") && strings.HasPrefix(string(e.Type), t))
	}) {
		return false
	}
	if tenant == "" {
		return true
	}
	switch {
	case e.Token != nil:
		return e.Token.Tenant == tenant
	case e.Session != nil:
		return e.Session.Tenant == tenant
	case e.Revocation != nil:
		return e.Revocation.Kind == bus.KindTenant && e.Revocation.Value == tenant
	}
	return false
}
