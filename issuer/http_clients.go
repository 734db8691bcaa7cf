package issuer

import (
	"net/http"

	"github.com/heraldsec/herald/internal/httpserve"
)

func (h *handler) createClient(w http.ResponseWriter, r *http.Request) {
	var req ClientRequest
	if err := decodeBody(w, r, &req); err != nil {
		h.writeError(w, err)
		return
	}
	c, err := h.s.CreateClient(r.Context(), req, actor(r), r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusCreated, c)
}

func (h *handler) listClients(w http.ResponseWriter, _ *http.Request) {
	out, err := h.s.ListClients()
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, map[string]any{"clients": out})
}

func (h *handler) rotateClientSecret(w http.ResponseWriter, r *http.Request) {
	c, err := h.s.RotateClientSecret(r.Context(), r.PathValue("id"), actor(r), r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, c)
}

// deleteClient revokes a client: its tokens stop verifying and it gets no
// new ones. The record stays, marked revoked, for the audit trail.
func (h *handler) deleteClient(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok, err := h.s.client(id); err != nil || !ok {
		if err == nil {
			err = errNoClient
		}
		h.writeError(w, err)
		return
	}
	res, err := h.s.Revoke(r.Context(), RevocationRequest{Kind: "client", Value: id, Reason: r.URL.Query().Get("reason")},
		actor(r), r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, res)
}
