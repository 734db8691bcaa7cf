package issuer

import (
	"net/http"

	"github.com/heraldsec/herald/internal/httpserve"
)

func (h *handler) createSession(w http.ResponseWriter, r *http.Request) {
	var req SessionRequest
	if err := decodeBody(w, r, &req); err != nil {
		h.writeError(w, err)
		return
	}
	resp, err := h.s.CreateSession(r.Context(), req, actor(r))
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, resp)
}

func (h *handler) listSessions(w http.ResponseWriter, r *http.Request) {
	out, err := h.s.ListSessions(r.Context(), r.URL.Query().Get("sub"))
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (h *handler) endSession(w http.ResponseWriter, r *http.Request) {
	res, err := h.s.EndSession(r.Context(), r.PathValue("sid"), r.URL.Query().Get("reason"), actor(r), r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, res)
}

// endSessionByToken serves SessionEndPath: form-encoded session_id and
// refresh_token (and reason, and if_current=true), with the client
// authentication of the token endpoint. It answers 200 only once the
// session is recorded as ended in HERALD_SESSIONS and its revocation is
// acknowledged by the stream.
func (h *handler) endSessionByToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	auth, err := parseClientAuth(r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	f := r.PostForm
	var ifCurrent bool
	switch f.Get("if_current") {
	case "", "false":
	case "true":
		ifCurrent = true
	default:
		h.writeError(w, badRequest("if_current must be true or false"))
		return
	}
	res, err := h.s.EndSessionByToken(r.Context(), f.Get("session_id"), f.Get("refresh_token"), f.Get("reason"), ifCurrent, auth, r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, res)
}
