package issuer

import (
	"net/http"

	"github.com/heraldsec/herald/internal/httpserve"
)

func (h *handler) createCredential(w http.ResponseWriter, r *http.Request) {
	var req CredentialRequest
	if err := decodeBody(w, r, &req); err != nil {
		h.writeError(w, err)
		return
	}
	c, err := h.s.CreateCredential(r.Context(), req, actor(r), r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusCreated, c)
}

func (h *handler) listCredentials(w http.ResponseWriter, _ *http.Request) {
	out, err := h.s.ListCredentials()
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, map[string]any{"credentials": out})
}

func (h *handler) rotateCredential(w http.ResponseWriter, r *http.Request) {
	c, err := h.s.RotateCredential(r.Context(), r.PathValue("name"), actor(r), r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, c)
}

func (h *handler) deleteCredential(w http.ResponseWriter, r *http.Request) {
	if err := h.s.DeleteCredential(r.Context(), r.PathValue("name"), actor(r), r.RemoteAddr); err != nil {
		h.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
