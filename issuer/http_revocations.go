package issuer

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldsec/herald/internal/httpserve"
)

func (h *handler) revoke(w http.ResponseWriter, r *http.Request) {
	var req RevocationRequest
	if err := decodeBodyMax(w, r, &req, maxBulkBytes); err != nil {
		h.writeError(w, err)
		return
	}
	if dry, _ := strconv.ParseBool(r.URL.Query().Get("dry_run")); dry {
		br, err := h.s.DryRun(r.Context(), req)
		if err != nil {
			h.writeError(w, err)
			return
		}
		httpserve.WriteJSON(w, http.StatusOK, br)
		return
	}
	if ws := r.URL.Query().Get("wait"); ws != "" {
		wait, err := time.ParseDuration(ws)
		if err != nil || wait <= 0 || wait > MaxWait {
			h.writeError(w, badRequest(fmt.Sprintf("wait: want a duration up to %s, such as 5s", MaxWait)))
			return
		}
		h.revokeAndWait(w, r, req, wait)
		return
	}
	res, err := h.s.Revoke(r.Context(), req, actor(r), r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, res)
}

// revokeAndWait revokes, then waits until every live verifier confirms.
// It answers 200 with the confirmation, or 504 naming the verifiers that
// have not confirmed, with the revocation itself in force either way.
func (h *handler) revokeAndWait(w http.ResponseWriter, r *http.Request, req RevocationRequest, wait time.Duration) {
	c, err := h.s.watchFleet()
	if err != nil {
		h.writeError(w, err)
		return
	}
	res, err := h.s.Revoke(r.Context(), req, actor(r), r.RemoteAddr)
	if err != nil {
		c.stop()
		h.writeError(w, err)
		return
	}
	conf, ok := h.s.confirm(r.Context(), c, res.Seq, wait)
	body := struct {
		*RevocationResult
		*Confirmation
		Error       string `json:"error,omitempty"`
		Description string `json:"error_description,omitempty"`
	}{RevocationResult: res, Confirmation: conf}
	code := http.StatusOK
	if !ok {
		code = http.StatusGatewayTimeout
		body.Error = "not_confirmed"
		body.Description = "the revocation is in force, but not every live verifier confirmed it in time"
	}
	httpserve.WriteJSON(w, code, body)
}

func (h *handler) listRevocations(w http.ResponseWriter, r *http.Request) {
	f, err := parseListFilter(r, h.s.now())
	if err != nil {
		h.writeError(w, err)
		return
	}
	out, err := h.s.ListRevocations(r.Context(), f)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, map[string]any{"revocations": out})
}
