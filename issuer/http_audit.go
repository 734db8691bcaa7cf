package issuer

import (
	"net/http"
	"strconv"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/httpserve"
)

// parseListFilter reads the query of a list request; a since given as a
// duration counts back from now, the issuer's clock.
func parseListFilter(r *http.Request, now time.Time) (listFilter, error) {
	q := r.URL.Query()
	f := listFilter{value: q.Get("value"), actor: q.Get("actor"), action: q.Get("action"), limit: 100}
	if k := q.Get("kind"); k != "" {
		kind, err := bus.ParseKind(k)
		if err != nil {
			return f, badRequest(err.Error())
		}
		f.kind = kind
	}
	if s := q.Get("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			f.since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, s); err == nil {
			f.since = t
		} else {
			return f, badRequest("since: want a duration (10m) or an RFC 3339 time")
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			return f, badRequest("limit: want 1 to 10000")
		}
		f.limit = n
	}
	return f, nil
}

func (h *handler) listAudit(w http.ResponseWriter, r *http.Request) {
	f, err := parseListFilter(r, h.s.now())
	if err != nil {
		h.writeError(w, err)
		return
	}
	out, err := h.s.ListAudit(r.Context(), f)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, map[string]any{"audit": out})
}
